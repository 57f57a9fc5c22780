"""ScoreHMR's guidance losses (Sec. 4.3): plain differentiable functions a user can swap.

Conventions (every term here follows them):

- ``pose`` ``(B, 144)`` is the diffused vector of :mod:`humandiff.scorehmr.model` (24 camera-frame
  rotations in 6D; row 0..5 the global orientation). ``camera_t`` ``(B, 3)`` is the camera
  translation ``gamma`` in metres, added to the body model's joints posed at the origin, so the
  camera-frame joints are ``J(pose, betas) + gamma`` (OpenCV camera: x right, y down, z forward;
  rotation ``R = I`` because ``pose`` holds the global orientation, as the paper).
- A **term** is ``term(pose (B, 144), camera_t (B, 3) or None) -> (B,)``: one value per row, to be
  minimised; the paper's loss is the sum over rows. Terms that do not use the camera ignore it.
- An **objective** (:class:`Objective`, built by :func:`combine`) is named terms,
  ``objective(pose, camera_t) -> {name: (B,)}`` unweighted; the refinement weights each by its
  ``rho`` (``"repr"``, ``"mv"``, ``"temp"``: :class:`~humandiff.scorehmr.refine.ScoreHMROptions`).
- **Groups** ``(B,)`` integer ids tie rows together: the views of one person (multi-view) or
  the frames of one sequence (video; its rows contiguous and in time order). Rows of different
  groups never interact, so a whole test set runs as one batch.

The terms:

- :func:`reprojection_loss` (Eq. 12): robust (Geman-McClure) reprojection of the body model's 24
  joints, weighted by the squared confidence (the reference implementation's and SPIN's weighting;
  Eq. 12 writes the confidence itself, the same for 0/1 visibility). **Sigma scaling**: the paper's
  sigma = 100 px is for images about 1000 px across. Residuals are first expressed in pixels of an
  image whose larger side is ``reference_size`` = 1000 px, ``r' = r * 1000 / S`` for an image of
  larger side ``S``, and ``GM(r', 100)`` is taken there. So sigma keeps the paper's meaning (a
  tenth of the image: 12.8 of our pixels at S = 128) and the loss keeps the paper's magnitude, so
  ``rho_repr = 0.003`` needs no retuning; in our own pixels this is ``(1000 / S)^2 GM(r, 100 S / 1000)``.
  (The reference multiplies by ``(1000 / S)^2`` but keeps sigma at 100 raw pixels, which saturates
  at a tenth of the image only when S is about 1000.)
- :func:`multiview_consistency_loss` (Eq. 13): each view's body pose (joints 1..23, the global
  orientation kept per view) against the mean over the person's views, times
  ``consistency_weight^2`` (300^2 in the reference implementation, which the paper's rho_mv = 0.005
  assumes).
- :func:`temporal_consistency_loss` (Eq. 14): squared difference of the whole pose vector between
  consecutive frames of a sequence (assigned to the later frame).

:class:`Reprojection`, :class:`MultiViewConsistency` and :class:`TemporalConsistency` bind these
to their observations as terms; the video setting is
``combine(repr=Reprojection(...), temp=TemporalConsistency(groups))``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

import torch
from torch import Tensor

from humandiff.io.artifacts import ArtifactError
from humandiff.perception.model import project_camera_points, smpl_joints_from_rotations
from humandiff.scorehmr.model import NUM_JOINTS, ROTATION_DIM, pose_to_rotations

#: ``term(pose (B, 144), camera_t (B, 3) | None) -> (B,)``, to be minimised.
GuidanceTerm = Callable[[Tensor, Tensor | None], Tensor]

#: The paper's robustness scale (pixels of an image about 1000 px across).
PAPER_SIGMA = 100.0
#: The image size the paper's sigma and rho_repr refer to (pixels, larger side).
PAPER_IMAGE_SIZE = 1000.0
#: The reference implementation's factor on Eq. 13 (squared), which rho_mv = 0.005 assumes.
MULTIVIEW_CONSISTENCY_WEIGHT = 300.0


# ------------------------------------------------------------------------------------ plain functions
def geman_mcclure(residual: Tensor, sigma: float) -> Tensor:
    """Elementwise ``sigma^2 r^2 / (sigma^2 + r^2)``: quadratic for ``|r| << sigma``, saturating at
    ``sigma^2`` for outliers (any shape)."""
    if not sigma > 0:
        raise ArtifactError(f"geman_mcclure: parameter 'sigma' must be > 0, got {sigma}")
    squared = residual.square()
    return sigma**2 * squared / (sigma**2 + squared)


def body_joints(body_model, pose: Tensor, betas: Tensor) -> Tensor:
    """The body model's 24 joints (B, 24, 3) for pose vectors (B, 144) and betas (B or 1, L), at the origin."""
    rotations = pose_to_rotations(pose)
    return smpl_joints_from_rotations(body_model, rotations, betas.expand(pose.shape[0], -1))


def reprojection_loss(
    joints: Tensor,
    camera_t: Tensor,
    keypoints: Tensor,
    confidence: Tensor,
    intrinsics: Tensor,
    image_size: Tensor | float,
    *,
    sigma: float = PAPER_SIGMA,
    reference_size: float = PAPER_IMAGE_SIZE,
) -> Tensor:
    """Eq. 12 per row (B,): ``sum_j conf_j^2 sum_xy GM((Pi_K(J_j + gamma) - y_j) * reference_size / S, sigma)``.

    Args:
        joints: body joints at the origin (B, J, 3), metres, camera axes.
        camera_t: camera translation gamma (B, 3), metres.
        keypoints: detected joints (B, J, 2), pixels.
        confidence: their confidences (B, J) in [0, 1].
        intrinsics: (B, 4) ``[fx, fy, cx, cy]`` pixels.
        image_size: the image's larger side S, pixels: a number or (B,).
        sigma, reference_size: see the module doc (sigma scaling).
    """
    batch = joints.shape[0]
    scale = reference_size / torch.as_tensor(image_size).to(joints).expand(batch)
    pixels = project_camera_points(joints + camera_t[:, None].to(joints), intrinsics.to(joints))
    robust = geman_mcclure((pixels - keypoints.to(joints)) * scale[:, None, None], sigma)
    return (confidence.to(joints).square()[..., None] * robust).sum((1, 2))


def group_index(groups: Tensor | None, batch: int, where: str) -> tuple[Tensor, int]:
    """Dense group index (B,) in ``[0, G)`` and G for group ids (B,); ``None`` puts every row in its own group."""
    if groups is None:
        return torch.arange(batch), batch
    if not isinstance(groups, Tensor) or groups.shape != (batch,) or groups.dtype.is_floating_point \
            or groups.dtype == torch.bool:
        shape = tuple(groups.shape) if isinstance(groups, Tensor) else type(groups).__name__
        raise ArtifactError(f"{where}: parameter 'groups' must be integer ids of shape ({batch},), got {shape}")
    unique, inverse = torch.unique(groups, return_inverse=True)
    return inverse, int(unique.numel())


def group_sum(values: Tensor, index: Tensor, count: int) -> Tensor:
    """Per-group sums (G,) of per-row values (B,) for a dense group index (B,) from :func:`group_index`."""
    return torch.zeros(count, dtype=values.dtype, device=values.device).index_add(0, index.to(values.device), values)


def multiview_consistency_loss(
    pose: Tensor, groups: Tensor, consistency_weight: float = MULTIVIEW_CONSISTENCY_WEIGHT
) -> Tensor:
    """Eq. 13 per row (B,): ``w^2 ||x_b^(n) - mean_{views of n's person} x_b||^2`` on the body pose
    ``x_b`` (joints 1..23 in 6D, 138 numbers; the global orientation is left to each view).

    ``pose`` (B, 144); ``groups`` (B,) the person each view shows. Summed over a person's views it is
    ``w^2 / N`` times the sum of squared distances over all pairs of views.
    """
    index, count = group_index(groups, pose.shape[0], "multiview_consistency_loss")
    index = index.to(pose.device)
    body = pose[:, ROTATION_DIM:]
    sizes = torch.zeros(count, dtype=pose.dtype, device=pose.device).index_add(0, index, torch.ones_like(pose[:, 0]))
    means = torch.zeros(count, body.shape[1], dtype=pose.dtype, device=pose.device).index_add(0, index, body)
    means = means / sizes[:, None]
    return consistency_weight**2 * (body - means[index]).square().sum(1)


def temporal_consistency_loss(pose: Tensor, groups: Tensor | None = None) -> Tensor:
    """Eq. 14 per row (B,): ``||x^(n) - x^(n-1)||^2`` over the whole pose vector, on the later frame
    of each consecutive pair within a sequence; the first frame of every sequence gets 0.

    ``pose`` (B, 144) frames in time order; ``groups`` (B,) sequence ids, each sequence's rows
    contiguous (None: one sequence).
    """
    batch = pose.shape[0]
    groups = torch.zeros(batch, dtype=torch.long) if groups is None else groups
    index, count = group_index(groups, batch, "temporal_consistency_loss")
    runs = 1 + int((index[1:] != index[:-1]).sum()) if batch > 0 else 0
    if runs != count:
        raise ArtifactError("temporal_consistency_loss: parameter 'groups' must keep each sequence's rows contiguous")
    same = (index[1:] == index[:-1]).to(device=pose.device, dtype=pose.dtype)
    steps = (pose[1:] - pose[:-1]).square().sum(1) * same
    return torch.cat([torch.zeros_like(pose[:1, 0]), steps])


# ------------------------------------------------------------------------------------ bound terms
@dataclass(frozen=True, eq=False)
class Keypoints:
    """2D keypoint detections of the body model's 24 joints, one image per row.

    ``joints`` (B, 24, 2) pixels; ``confidence`` (B, 24) in [0, 1] (0 for a missing joint);
    ``intrinsics`` (B, 4) ``[fx, fy, cx, cy]``; ``image_size`` (B,) the larger side in pixels
    (a number is repeated).
    """

    joints: Tensor
    confidence: Tensor
    intrinsics: Tensor
    image_size: Tensor | float

    def __post_init__(self) -> None:
        batch = self.joints.shape[0] if isinstance(self.joints, Tensor) else -1
        expected = {"joints": (batch, NUM_JOINTS, 2), "confidence": (batch, NUM_JOINTS), "intrinsics": (batch, 4)}
        for name, shape in expected.items():
            value = getattr(self, name)
            if not isinstance(value, Tensor) or tuple(value.shape) != shape or not value.is_floating_point():
                got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                raise ArtifactError(f"Keypoints: field '{name}' must be a float tensor of shape {shape}, got {got}")
            if not bool(torch.isfinite(value).all()):
                raise ArtifactError(f"Keypoints: field '{name}' holds NaN or infinite values")
        if bool(((self.confidence < 0) | (self.confidence > 1)).any()):
            raise ArtifactError("Keypoints: field 'confidence' must lie in [0, 1]")
        size = torch.as_tensor(self.image_size, dtype=self.joints.dtype)
        if size.dim() == 0:
            size = size.expand(batch).clone()
        if size.shape != (batch,) or not bool((size > 0).all()) or not bool(torch.isfinite(size).all()):
            raise ArtifactError(f"Keypoints: field 'image_size' must be a positive number or ({batch},), got {self.image_size!r}")
        object.__setattr__(self, "image_size", size)

    def __len__(self) -> int:
        return int(self.joints.shape[0])


@dataclass(frozen=True, eq=False)
class Reprojection:
    """Eq. 12 as a term: the body model posed by ``pose`` with fixed ``betas`` (B or 1, L), moved by
    ``camera_t`` and projected with the keypoints' intrinsics (see :func:`reprojection_loss`)."""

    body_model: object = field(repr=False)
    betas: Tensor
    keypoints: Keypoints
    sigma: float = PAPER_SIGMA
    reference_size: float = PAPER_IMAGE_SIZE

    def __post_init__(self) -> None:
        if not (self.sigma > 0 and self.reference_size > 0):
            raise ArtifactError(f"Reprojection: fields 'sigma' and 'reference_size' must be > 0, "
                                f"got {self.sigma}, {self.reference_size}")
        if self.betas.dim() != 2 or self.betas.shape[0] not in (1, len(self.keypoints)):
            raise ArtifactError(f"Reprojection: field 'betas' has shape {tuple(self.betas.shape)}, "
                                f"expected (1 or {len(self.keypoints)}, L)")

    def __call__(self, pose: Tensor, camera_t: Tensor | None) -> Tensor:
        if camera_t is None:
            raise ArtifactError("Reprojection: needs the camera translation (refine's parameter 'camera')")
        k = self.keypoints
        return reprojection_loss(body_joints(self.body_model, pose, self.betas), camera_t, k.joints, k.confidence,
                                 k.intrinsics, k.image_size,
                                 sigma=self.sigma, reference_size=self.reference_size)


@dataclass(frozen=True, eq=False)
class MultiViewConsistency:
    """Eq. 13 as a term; ``groups`` (B,) the person each view shows, every person seen in >= 2 views."""

    groups: Tensor
    consistency_weight: float = MULTIVIEW_CONSISTENCY_WEIGHT

    def __post_init__(self) -> None:
        index, count = group_index(self.groups, int(self.groups.shape[0]) if isinstance(self.groups, Tensor) else -1,
                                   "MultiViewConsistency")
        views = torch.bincount(index, minlength=count)
        if bool((views < 2).any()):
            raise ArtifactError(f"MultiViewConsistency: {int((views < 2).sum())} person(s) seen in only 1 view; "
                                "multi-view refinement needs >= 2 views each")

    def __call__(self, pose: Tensor, camera_t: Tensor | None) -> Tensor:
        return multiview_consistency_loss(pose, self.groups, self.consistency_weight)


@dataclass(frozen=True, eq=False)
class TemporalConsistency:
    """Eq. 14 as a term; ``groups`` (B,) sequence ids (None: one sequence), rows in time order."""

    groups: Tensor | None = None

    def __call__(self, pose: Tensor, camera_t: Tensor | None) -> Tensor:
        return temporal_consistency_loss(pose, self.groups)


@dataclass(frozen=True, eq=False)
class Objective:
    """Named terms evaluated together: ``objective(pose, camera_t) -> {name: (B,)}``, unweighted."""

    terms: Mapping[str, GuidanceTerm]

    def __post_init__(self) -> None:
        if not self.terms:
            raise ArtifactError("Objective: no terms given")
        for name, term in self.terms.items():
            if not isinstance(name, str) or not name or not callable(term):
                raise ArtifactError(f"Objective: term {name!r} must be a callable under a non-empty name")
        object.__setattr__(self, "terms", dict(self.terms))

    def __call__(self, pose: Tensor, camera_t: Tensor | None) -> dict[str, Tensor]:
        batch = pose.shape[0]
        values = {}
        for name, term in self.terms.items():
            value = term(pose, camera_t)
            if not isinstance(value, Tensor) or value.shape != (batch,):
                shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                raise ArtifactError(f"Objective: term '{name}' returned shape {shape}, expected ({batch},)")
            values[name] = value
        return values


def combine(**terms: GuidanceTerm) -> Objective:
    """The objective of several named terms, e.g. video: ``combine(repr=..., temp=...)``."""
    return Objective(terms)


__all__ = [
    "GuidanceTerm",
    "Keypoints",
    "MULTIVIEW_CONSISTENCY_WEIGHT",
    "MultiViewConsistency",
    "Objective",
    "PAPER_IMAGE_SIZE",
    "PAPER_SIGMA",
    "Reprojection",
    "TemporalConsistency",
    "body_joints",
    "combine",
    "geman_mcclure",
    "group_index",
    "group_sum",
    "multiview_consistency_loss",
    "reprojection_loss",
    "temporal_consistency_loss",
]
