"""The fitting baselines of Tables 2-4: single-stage SMPLify, and its video and multi-view variants.

SMPLify (Bogo et al. 2016) in the single-stage form SPIN implements (Kolotouros et al. 2019), which
the paper benchmarks: from the regression's estimate, Adam (lr 0.01, 100 steps) minimises, per image,

- ``data``: the robust reprojection of the body model's joints (:func:`.losses.reprojection_loss`,
  Geman-McClure sigma 100, squared confidences) in pixels of a ``reference_size`` = 224 px crop,
  the frame SPIN fits in and in which its prior weights below were chosen;
- ``pose_prior``: ``4.78^2`` times the negative log-likelihood of the body pose (axis-angle,
  69 numbers) under the best component of a Gaussian mixture fitted on training poses
  (SMPLify's max-mixture prior; :func:`fit_gmm`, :meth:`GaussianMixture.max_component_nll`);
- ``angle_prior``: ``15.2^2 sum exp(s_i theta_i)^2`` on the bending angles of the elbows (about y)
  and the knees (about x) with the signs that penalise bending the wrong way (:func:`angle_prior`);
- ``shape_prior``: ``5^2 ||beta||^2``;
- ``depth``: ``100^2 (gamma_z - gamma_z_init)^2``, which keeps the camera's depth at the
  regression's (SPIN's camera-fitting term): the keypoints alone hardly constrain it.

The variables are the body pose (axis-angle), the global orientation (as an axis-angle
*correction* ``R = exp(delta) R_init``, so an upright body seen by a y-down camera, a half turn,
is no singularity), the betas and the camera translation ``gamma``.

Variants, through :meth:`SMPLifyOptions.for_setting`:

- ``"video"`` adds ``smooth_weight`` times Eq. 14 on the 6D pose of consecutive frames
  (:func:`.losses.temporal_consistency_loss`, the paper's temporal fitting baseline adds a
  smoothness term);
- ``"multiview"`` adds ``multiview_weight`` times Eq. 13 without the reference's 300^2 factor:
  each view's body pose is pulled towards the mean body pose of the person's views
  (:func:`.losses.multiview_consistency_loss`), the global orientation kept per view.

Both weights (500) are ours, not a paper's: they give the coupling term the same weight relative to
the data term as ScoreHMR's rho_temp / rho_repr have, in these units
(``0.003 (1000 / 224)^2 : 30``, about ``1 : 500``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal, Mapping

import numpy as np
import torch
from torch import Tensor

from humandiff.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from humandiff.io.artifacts import ArtifactError
from humandiff.perception.model import smpl_joints_from_rotations
from humandiff.scorehmr.losses import (
    PAPER_SIGMA,
    Keypoints,
    multiview_consistency_loss,
    reprojection_loss,
    temporal_consistency_loss,
)
from humandiff.scorehmr.model import NUM_JOINTS, POSE_DIM, pose_to_rotations, rotations_to_pose

SMPLifySetting = Literal["fit", "video", "multiview"]
#: Body-pose (69) indices of the left elbow's y, the right elbow's y, the left knee's x and the
#: right knee's x, and the signs under which a positive value bends the joint the wrong way (SMPLify).
ANGLE_PRIOR_INDICES = (52, 55, 9, 12)
ANGLE_PRIOR_SIGNS = (1.0, -1.0, -1.0, -1.0)


# ------------------------------------------------------------------------------------ the pose prior
@dataclass(frozen=True, eq=False)
class GaussianMixture:
    """A Gaussian mixture in float64: ``weights`` (K,) summing to 1, ``means`` (K, D),
    ``covariances`` (K, D, D) symmetric positive definite."""

    weights: Tensor
    means: Tensor
    covariances: Tensor
    _whitening: Tensor = field(init=False, repr=False)
    _log_dets: Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        weights, means, covariances = (torch.as_tensor(v, dtype=torch.float64) for v in
                                       (self.weights, self.means, self.covariances))
        k = weights.shape[0] if weights.dim() == 1 else -1
        d = means.shape[1] if means.dim() == 2 else -1
        if k < 1 or means.shape != (k, d) or covariances.shape != (k, d, d):
            raise ArtifactError(f"GaussianMixture: fields must be weights (K,), means (K, D), covariances (K, D, D), got "
                                f"{tuple(weights.shape)}, {tuple(means.shape)}, {tuple(covariances.shape)}")
        if not all(bool(torch.isfinite(v).all()) for v in (weights, means, covariances)):
            raise ArtifactError("GaussianMixture: fields hold NaN or infinite values")
        if bool((weights <= 0).any()) or abs(float(weights.sum()) - 1.0) > 1e-6:
            raise ArtifactError("GaussianMixture: field 'weights' must be positive and sum to 1")
        cholesky, info = torch.linalg.cholesky_ex(covariances)
        if bool((info != 0).any()) or not bool(torch.allclose(covariances, covariances.transpose(1, 2))):
            raise ArtifactError("GaussianMixture: field 'covariances' must be symmetric positive definite")
        eye = torch.eye(covariances.shape[1], dtype=torch.float64).expand_as(covariances)
        whitening = torch.linalg.solve_triangular(cholesky, eye, upper=False)  # L_k^-1, Sigma_k = L_k L_k^T
        for name, value in (("weights", weights), ("means", means), ("covariances", covariances),
                            ("_whitening", whitening), ("_log_dets", 2.0 * cholesky.diagonal(dim1=1, dim2=2).log().sum(1))):
            object.__setattr__(self, name, value)

    @property
    def num_components(self) -> int:
        return int(self.weights.shape[0])

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    def component_nll(self, x: Tensor) -> Tensor:
        """``0.5 (x - mu_k)^T Sigma_k^-1 (x - mu_k) + 0.5 log det Sigma_k - log w_k`` (N, K) for x (N, D)
        (the negative log of ``w_k N(x; mu_k, Sigma_k)`` less the constant ``D/2 log 2 pi``)."""
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ArtifactError(f"GaussianMixture: input has shape {tuple(x.shape)}, expected (N, {self.dim})")
        x64, means, whitening = x.to(torch.float64), self.means.to(x.device), self._whitening.to(x.device)
        # ||L_k^-1 (x - mu_k)||^2 one component at a time: memory (N, D), not (N, K, D)
        mahalanobis = torch.stack([((x64 - means[k]) @ whitening[k].T).square().sum(1)
                                   for k in range(self.num_components)], 1)
        constant = 0.5 * self._log_dets - self.weights.log()
        return (0.5 * mahalanobis + constant.to(x.device)).to(x.dtype)

    def max_component_nll(self, x: Tensor) -> Tensor:
        """SMPLify's pose prior (N,): the smallest :meth:`component_nll` over the components."""
        return self.component_nll(x).min(dim=1).values

    def log_prob(self, x: Tensor) -> Tensor:
        """The mixture's log density (N,) for x (N, D)."""
        return torch.logsumexp(-self.component_nll(x), dim=1) - 0.5 * self.dim * math.log(2.0 * math.pi)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """``weights``, ``means``, ``covariances`` as numpy arrays (for an .npz)."""
        return {"weights": self.weights.numpy(), "means": self.means.numpy(), "covariances": self.covariances.numpy()}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, Any]) -> "GaussianMixture":
        missing = [name for name in ("weights", "means", "covariances") if name not in arrays]
        if missing:
            raise ArtifactError(f"GaussianMixture: missing field(s) {', '.join(missing)}")
        return cls(*(torch.as_tensor(np.asarray(arrays[name])) for name in ("weights", "means", "covariances")))


def _kmeans_plus_plus(data: Tensor, count: int, generator: torch.Generator) -> Tensor:
    centers = [data[int(torch.randint(data.shape[0], (1,), generator=generator))]]
    for _ in range(1, count):
        distance = torch.cdist(data, torch.stack(centers)).square().min(dim=1).values
        if float(distance.sum()) <= 0:
            raise ArtifactError(f"fit_gmm: the data has fewer than {count} distinct points")
        centers.append(data[int(torch.multinomial(distance, 1, generator=generator))])
    return torch.stack(centers)


def fit_gmm(
    data: Tensor | np.ndarray,
    num_components: int = 8,
    *,
    seed: int = 0,
    max_iterations: int = 100,
    tolerance: float = 1e-5,
    reg_covar: float = 1e-6,
    kmeans_iterations: int = 20,
) -> GaussianMixture:
    """A full-covariance mixture fitted to ``data`` (N, D) by EM, deterministic under ``seed``.

    Start: k-means++ centres drawn with a ``torch.Generator(seed)``, ``kmeans_iterations`` Lloyd
    steps, the clusters' shares, means and covariances. Then EM until the mean log-likelihood
    improves by less than ``tolerance`` or ``max_iterations``; ``reg_covar`` is added to every
    covariance's diagonal (as scikit-learn), so that no component collapses. SMPLify's prior has 8
    components over the 69 body-pose numbers.
    """
    x = torch.as_tensor(np.asarray(data) if not isinstance(data, Tensor) else data).to(torch.float64)
    if x.dim() != 2 or not bool(torch.isfinite(x).all()):
        raise ArtifactError(f"fit_gmm: parameter 'data' must be finite (N, D), got shape {tuple(x.shape)}")
    if not isinstance(num_components, int) or num_components < 1 or x.shape[0] < 2 * num_components:
        raise ArtifactError(f"fit_gmm: parameter 'num_components' must be >= 1 with N >= 2 K, got K={num_components}, "
                            f"N={x.shape[0]}")
    if not reg_covar > 0:
        raise ArtifactError(f"fit_gmm: parameter 'reg_covar' must be > 0, got {reg_covar}")
    n, d = x.shape
    generator = torch.Generator().manual_seed(int(seed))
    centers = _kmeans_plus_plus(x, num_components, generator)
    for _ in range(kmeans_iterations):
        labels = torch.cdist(x, centers).argmin(dim=1)
        for k in range(num_components):
            members = x[labels == k]
            if members.shape[0] > 0:
                centers[k] = members.mean(0)
    labels = torch.cdist(x, centers).argmin(dim=1)
    responsibilities = torch.nn.functional.one_hot(labels, num_components).to(torch.float64)
    eye = torch.eye(d, dtype=torch.float64)
    previous = -math.inf
    mixture = None
    for _ in range(max_iterations + 1):
        # M step from the current responsibilities
        counts = responsibilities.sum(0) + 10 * torch.finfo(torch.float64).eps
        means = responsibilities.T @ x / counts[:, None]
        covariances = torch.stack([((responsibilities[:, k, None] * (x - means[k])).T @ (x - means[k])) / counts[k]
                                   for k in range(num_components)])
        covariances = 0.5 * (covariances + covariances.transpose(1, 2)) + reg_covar * eye
        mixture = GaussianMixture(counts / n, means, covariances)
        # E step
        log_joint = -mixture.component_nll(x) - 0.5 * d * math.log(2.0 * math.pi)
        log_likelihood = torch.logsumexp(log_joint, dim=1)
        mean_ll = float(log_likelihood.mean())
        if abs(mean_ll - previous) < tolerance:
            break
        previous = mean_ll
        responsibilities = (log_joint - log_likelihood[:, None]).exp()
    return mixture


# ------------------------------------------------------------------------------------ priors
def angle_prior(body_pose: Tensor) -> Tensor:
    """SMPLify's bending prior (B,): ``sum_i exp(s_i theta_i)^2`` for axis-angle body poses (B, 69)."""
    signs = torch.tensor(ANGLE_PRIOR_SIGNS, dtype=body_pose.dtype, device=body_pose.device)
    return torch.exp(body_pose[:, list(ANGLE_PRIOR_INDICES)] * signs).square().sum(1)


# ------------------------------------------------------------------------------------ fitting
@dataclass(frozen=True)
class SMPLifyOptions:
    """Single-stage SMPLify's settings; defaults are SPIN's (``steps`` 100, Adam lr 0.01, sigma 100 in
    a 224 px crop, weights 4.78 / 15.2 / 5 for the pose, angle and shape priors, 100 for the depth).

    ``smooth_weight`` and ``multiview_weight`` (0 here) switch on the video and multi-view variants,
    see :meth:`for_setting`. ``optimize_betas`` / ``optimize_camera``: whether the betas and the camera
    translation are variables (SPIN: both).
    """

    steps: int = 100
    lr: float = 0.01
    sigma: float = PAPER_SIGMA
    reference_size: float = 224.0
    pose_prior_weight: float = 4.78
    angle_prior_weight: float = 15.2
    shape_prior_weight: float = 5.0
    depth_weight: float = 100.0
    smooth_weight: float = 0.0
    multiview_weight: float = 0.0
    optimize_betas: bool = True
    optimize_camera: bool = True
    adam_betas: tuple[float, float] = (0.9, 0.999)

    def __post_init__(self) -> None:
        if not isinstance(self.steps, int) or isinstance(self.steps, bool) or self.steps < 1:
            raise ArtifactError(f"SMPLifyOptions: parameter 'steps' must be a positive integer, got {self.steps!r}")
        for name in ("lr", "sigma", "reference_size"):
            value = getattr(self, name)
            if not _finite(value) or value <= 0:
                raise ArtifactError(f"SMPLifyOptions: parameter '{name}' must be a finite number > 0, got {value!r}")
        for name in ("pose_prior_weight", "angle_prior_weight", "shape_prior_weight", "depth_weight", "smooth_weight",
                     "multiview_weight"):
            value = getattr(self, name)
            if not _finite(value) or value < 0:
                raise ArtifactError(f"SMPLifyOptions: parameter '{name}' must be a finite number >= 0, got {value!r}")
        for name in ("optimize_betas", "optimize_camera"):
            if not isinstance(getattr(self, name), bool):
                raise ArtifactError(f"SMPLifyOptions: parameter '{name}' must be true or false, got {getattr(self, name)!r}")
        betas = tuple(self.adam_betas)
        if len(betas) != 2 or not all(_finite(b) and 0.0 <= b < 1.0 for b in betas):
            raise ArtifactError(f"SMPLifyOptions: parameter 'adam_betas' must be two numbers in [0, 1), got {self.adam_betas!r}")
        object.__setattr__(self, "adam_betas", (float(betas[0]), float(betas[1])))

    @classmethod
    def for_setting(cls, setting: SMPLifySetting, **overrides: Any) -> "SMPLifyOptions":
        """``"fit"`` (SPIN's single stage), ``"video"`` (+ smoothness, weight 500) or ``"multiview"``
        (+ pull towards the views' mean body pose, weight 500), then ``overrides``."""
        bases = {"fit": cls(), "video": cls(smooth_weight=500.0), "multiview": cls(multiview_weight=500.0)}
        if setting not in bases:
            raise ArtifactError(f"SMPLifyOptions: setting must be one of {', '.join(bases)}, got {setting!r}")
        return bases[setting].with_overrides(overrides)

    def with_overrides(self, overrides: Mapping[str, Any]) -> "SMPLifyOptions":
        """A copy with ``overrides`` unknown names are a one-line error."""
        unknown = sorted(set(overrides) - {f.name for f in fields(self)})
        if unknown:
            raise ArtifactError(f"SMPLifyOptions: unknown parameter(s) {', '.join(unknown)}")
        return replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["adam_betas"] = list(self.adam_betas)
        return out


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class SMPLifyResult:
    """Outcome of :func:`smplify`: ``pose`` (B, 144) in the diffused 6D layout, ``betas`` (B, L),
    ``camera`` (B, 3); ``history[name]`` (steps, B) every weighted term and ``"total"`` at the
    start of each step; ``final[name]`` (B,) the same at the result."""

    pose: Tensor
    betas: Tensor
    camera: Tensor
    history: dict[str, np.ndarray]
    final: dict[str, np.ndarray]

    @property
    def rotations(self) -> Tensor:
        return pose_to_rotations(self.pose)


def smplify(
    body_model,
    prior: GaussianMixture,
    keypoints: Keypoints,
    init_pose: Tensor,
    init_betas: Tensor,
    init_camera: Tensor,
    options: SMPLifyOptions,
    *,
    groups: Tensor | None = None,
) -> SMPLifyResult:
    """Fit the body model to ``keypoints`` from the regression's estimate (see the module doc).

    Args:
        body_model: from :func:`humandiff.body.load_body_model`.
        prior: the pose prior, a mixture over axis-angle body poses (69 numbers).
        keypoints: the detections (B rows), as ScoreHMR's reprojection term sees them.
        init_pose: (B, 144) the regression's pose; ``init_betas`` (B, L); ``init_camera`` (B, 3).
        options: :class:`SMPLifyOptions`.
        groups: (B,) sequence ids (video; rows contiguous, in time order) or person ids
            (multi-view); needed when ``smooth_weight`` or ``multiview_weight`` is > 0.
    """
    batch = len(keypoints)
    if init_pose.shape != (batch, POSE_DIM) or init_camera.shape != (batch, 3) or init_betas.dim() != 2 \
            or init_betas.shape[0] != batch:
        raise ArtifactError(f"smplify: expected init_pose ({batch}, {POSE_DIM}), init_betas ({batch}, L), init_camera "
                            f"({batch}, 3); got {tuple(init_pose.shape)}, {tuple(init_betas.shape)}, {tuple(init_camera.shape)}")
    if prior.dim != 3 * (NUM_JOINTS - 1):
        raise ArtifactError(f"smplify: the pose prior has dimension {prior.dim}, expected {3 * (NUM_JOINTS - 1)}")
    if (options.smooth_weight > 0 or options.multiview_weight > 0) and groups is None:
        raise ArtifactError("smplify: 'smooth_weight' or 'multiview_weight' > 0 needs parameter 'groups'")
    dtype, device = init_pose.dtype, init_pose.device
    init_rotations = pose_to_rotations(init_pose.detach())
    root = init_rotations[:, 0]
    delta = torch.zeros(batch, 3, dtype=dtype, device=device, requires_grad=True)
    body_pose = matrix_to_axis_angle(init_rotations[:, 1:]).reshape(batch, -1).clone().requires_grad_(True)
    betas = init_betas.detach().clone().to(device, dtype).requires_grad_(options.optimize_betas)
    camera = init_camera.detach().clone().to(device, dtype).requires_grad_(options.optimize_camera)
    variables = [delta, body_pose] + [v for v in (betas, camera) if v.requires_grad]
    depth_init = init_camera[:, 2].detach().to(device, dtype)
    k = keypoints

    def current_rotations() -> Tensor:
        return torch.cat([(axis_angle_to_matrix(delta) @ root)[:, None],
                          axis_angle_to_matrix(body_pose.reshape(batch, NUM_JOINTS - 1, 3))], 1)

    def terms() -> dict[str, Tensor]:
        rotations = current_rotations()
        joints = smpl_joints_from_rotations(body_model, rotations, betas)
        values = {
            "data": reprojection_loss(joints, camera, k.joints, k.confidence, k.intrinsics,
                                      k.image_size, sigma=options.sigma, reference_size=options.reference_size),
            "pose_prior": options.pose_prior_weight**2 * prior.max_component_nll(body_pose),
            "angle_prior": options.angle_prior_weight**2 * angle_prior(body_pose),
            "shape_prior": options.shape_prior_weight**2 * betas.square().sum(1),
            "depth": options.depth_weight**2 * (camera[:, 2] - depth_init).square(),
        }
        if options.smooth_weight > 0 or options.multiview_weight > 0:
            pose6d = rotations_to_pose(rotations)
            if options.smooth_weight > 0:
                values["smooth"] = options.smooth_weight * temporal_consistency_loss(pose6d, groups)
            if options.multiview_weight > 0:
                values["multiview"] = options.multiview_weight * multiview_consistency_loss(pose6d, groups, 1.0)
        values["total"] = sum(values.values())
        return values

    optimizer = torch.optim.Adam(variables, lr=options.lr, betas=options.adam_betas)
    records: dict[str, list[np.ndarray]] = {}
    for _ in range(options.steps):
        with torch.enable_grad():
            values = terms()
            optimizer.zero_grad(set_to_none=True)
            values["total"].sum().backward()
        for name, value in values.items():
            records.setdefault(name, []).append(value.detach().double().cpu().numpy())
        optimizer.step()
    with torch.no_grad():
        values = terms()
        pose = rotations_to_pose(current_rotations())
    return SMPLifyResult(
        pose=pose,
        betas=betas.detach(),
        camera=camera.detach(),
        history={name: np.stack(v) for name, v in records.items()},
        final={name: v.double().cpu().numpy() for name, v in values.items()},
    )
