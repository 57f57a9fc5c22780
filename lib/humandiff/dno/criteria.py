"""DNO's criteria (Karunratanakul et al., Sec. 5): plain differentiable functions of a motion or its noise.

Motion criteria act on joint positions recovered from the 263-d features (metres, y up):

- :func:`pose_loss` (Eq. 3): L1 distance of the recovered joints to targets over an observed set
  ``O`` of (joint, frame) pairs, divided by ``|O|``. The observed set is a dense 0/1 weight per
  coordinate, so "pelvis on the ground plane" observes x and z only.
- :func:`obstacle_loss` (Eq. 4): vertical cylinders (circles on the ground plane) with a per-frame
  centre (static or moving); a joint closer than the safe distance ``tau`` to the union of the
  obstacles costs ``tau - SDF``. Eq. 4 sums ``-min(SDF, tau)``; adding the constant ``tau`` per
  (joint, frame) keeps every gradient and makes the loss zero once the body is clear.

Latent criteria act on the optimised noise ``z = x_T`` ``(B, T, D)``:

- :func:`content_loss` (Eq. 5): ``||z - z_ref||_2`` per sample (the paper's norm; ``squared=True``
  gives the squared variant).
- :func:`decorrelation_loss` (Eq. 7, summed over scales as in Eq. 8): the time axis is zero-padded
  to a power of two; at each scale the squared mean of ``z * roll(z, 1)`` over time and feature
  dims is added, then pairs of frames are average-pooled, until the length is 2.

:func:`motion_criterion` turns named joint losses into the DNO criterion over normalised features
``x0 (B, T, 263) -> {name: (B,)}``; :func:`guidance_loss` wraps the same criterion for the
guided-diffusion baseline (``Guidance(..., mode="x0")``). A user criterion is any function of
joints ``(B, T, 22, 3) -> (B,)``::

    def head_below(joints):                     # keep the head under 1 m
        return torch.relu(joints[:, :, 15, 1] - 1.0).mean(1)
    criterion = motion_criterion(mean, std, {"head": (1.0, head_below)})
    result = optimize_noise(z, solver, criterion, DNOOptions.for_task("refine"))
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
import torch
from torch import Tensor

from humandiff.io.artifacts import ArtifactError
from humandiff.motion.hml3d import denormalize_features, recover_from_ric

#: ``joints (B, T, 22, 3) -> (B,)``: a loss on recovered joint positions.
JointLoss = Callable[[Tensor], Tensor]
#: ``x0 (B, T, 263) normalised -> {term: (B,)}``: what DNO and the guided baseline minimise.
MotionCriterion = Callable[[Tensor], dict[str, Tensor]]


def _check(tensor: Tensor, name: str, ndim: int, last: tuple[int, ...] = ()) -> None:
    if not isinstance(tensor, Tensor) or tensor.dim() != ndim or (last and tuple(tensor.shape[-len(last):]) != last):
        shape = tuple(tensor.shape) if isinstance(tensor, Tensor) else type(tensor).__name__
        want = "(" + ", ".join(["*"] * (ndim - len(last)) + [str(s) for s in last]) + ")"
        raise ArtifactError(f"criteria: parameter '{name}' has shape {shape}, expected {want}")


def pose_loss(joints: Tensor, targets: Tensor, observed: Tensor) -> Tensor:
    """Eq. 3: ``1/|O| sum_{(j,k) in O} ||c_hat_j^k - c_j^k||_1`` per sample.

    Args:
        joints: recovered joints (B, T, J, 3).
        targets: target positions (B, T, J, 3); ignored where not observed.
        observed: weights (B, T, J, 3) in {0, 1} per coordinate; a (joint, frame) pair belongs to
            ``O`` when any of its coordinates is observed.
    Returns:
        (B,) loss in metres; 0 for a sample with an empty observed set.
    """
    _check(joints, "joints", 4, (3,))
    if targets.shape != joints.shape or observed.shape != joints.shape:
        raise ArtifactError(
            f"pose_loss: 'targets' {tuple(targets.shape)} and 'observed' {tuple(observed.shape)} must match "
            f"'joints' {tuple(joints.shape)}"
        )
    weights = observed.to(joints.dtype)
    # observed entries only: unobserved targets may hold anything (NaN placeholders included)
    error = torch.where(weights > 0, (joints - torch.nan_to_num(targets.to(joints.dtype))).abs(), torch.zeros_like(joints))
    pairs = (weights > 0).any(-1).flatten(1).sum(1).to(joints.dtype)
    return (error * weights).flatten(1).sum(1) / pairs.clamp(min=1.0)


def cylinder_sdf(points_xz: Tensor, centres: Tensor, radii: Tensor) -> Tensor:
    """Signed distance on the ground plane to the union of K circles, per frame.

    Args:
        points_xz: (B, T, J, 2) joint x, z.
        centres: (B, K, T, 2) circle centres per frame (moving obstacles change over T).
        radii: (B, K) radii; a radius <= 0 marks an unused slot (padding between samples).
    Returns:
        (B, T, J) distance, negative inside an obstacle; +inf where a sample has no obstacle.
    """
    _check(points_xz, "points_xz", 4, (2,))
    _check(centres, "centres", 4, (2,))
    if radii.shape != centres.shape[:2] or centres.shape[0] != points_xz.shape[0] or centres.shape[2] != points_xz.shape[1]:
        raise ArtifactError(
            f"cylinder_sdf: 'centres' {tuple(centres.shape)} and 'radii' {tuple(radii.shape)} do not fit "
            f"'points_xz' {tuple(points_xz.shape)}"
        )
    offsets = points_xz[:, None] - centres[:, :, :, None, :]  # (B, K, T, J, 2)
    # the epsilon keeps the gradient finite for a joint exactly at a centre
    distance = (offsets.square().sum(-1) + 1e-12).sqrt() - radii[:, :, None, None]
    distance = torch.where(radii[:, :, None, None] > 0, distance, torch.full_like(distance, float("inf")))
    return distance.min(1).values


def obstacle_loss(
    joints: Tensor, centres: Tensor, radii: Tensor, safe_distance: float | Tensor, frame_mask: Tensor | None = None
) -> Tensor:
    """Eq. 4 shifted to zero outside: ``sum_{j,k} relu(tau - SDF^k(c_hat_j^k))`` per sample (B,).

    ``joints`` (B, T, J, 3); ``centres`` (B, K, T, 2); ``radii`` (B, K); ``safe_distance`` tau
    (scalar or (B,)); ``frame_mask`` (B, T) True on real frames (padding costs nothing).
    """
    _check(joints, "joints", 4, (3,))
    sdf = cylinder_sdf(joints[..., [0, 2]], centres.to(joints.dtype), radii.to(joints.dtype))
    tau = torch.as_tensor(safe_distance, dtype=joints.dtype, device=joints.device)
    tau = tau.reshape(-1, 1, 1) if tau.dim() == 1 else tau
    penalty = torch.relu(tau - sdf)
    if frame_mask is not None:
        penalty = penalty * frame_mask[..., None].to(penalty.dtype)
    return penalty.flatten(1).sum(1)


def content_loss(z: Tensor, z_reference: Tensor, squared: bool = False) -> Tensor:
    """Eq. 5: ``||z_ref - z||_2`` per sample (B,) over all but the batch dim; ``squared`` drops the root."""
    if z.shape != z_reference.shape:
        raise ArtifactError(f"content_loss: 'z' {tuple(z.shape)} and 'z_reference' {tuple(z_reference.shape)} differ")
    squares = (z - z_reference).flatten(1).square().sum(1)
    if squared:
        return squares
    # sqrt(x + eps) - sqrt(eps): the norm with a finite gradient at z == z_ref (DNO's first editing step)
    eps = 1e-12
    return (squares + eps).sqrt() - eps**0.5


def _decorrelation_one_length(z: Tensor, stop_at: int) -> Tensor:
    """Multi-scale decorrelation (B,) of z (B, T, D), all with the same length T."""
    length = z.shape[1]
    padded = 1 << max(int(length - 1).bit_length(), 1)
    if padded > length:
        z = torch.cat([z, z.new_zeros(z.shape[0], padded - length, z.shape[2])], 1)
    loss = z.new_zeros(z.shape[0])
    while True:
        loss = loss + (z * torch.roll(z, shifts=1, dims=1)).mean(dim=(1, 2)).square()
        if z.shape[1] <= stop_at:
            return loss
        z = 0.5 * (z[:, 0::2] + z[:, 1::2])


def decorrelation_loss(z: Tensor, lengths: Tensor | None = None, stop_at: int = 2) -> Tensor:
    """Eq. 7 summed over scales m in {M, M/2, ..., 2}: per-sample (B,) for noise z (B, T, D).

    ``lengths`` (B,) restricts each sample to its first ``lengths[b]`` frames (padding excluded).
    White noise gives about ``sum_m 1/(m D)`` (near 0); a constant unit signal gives about 1 per scale.
    """
    _check(z, "z", 3)
    if lengths is None:
        return _decorrelation_one_length(z, stop_at)
    lengths = torch.as_tensor(lengths, device=z.device).long()
    if lengths.shape != (z.shape[0],) or bool((lengths < 2).any()) or bool((lengths > z.shape[1]).any()):
        raise ArtifactError(f"decorrelation_loss: 'lengths' must be (B,) within [2, {z.shape[1]}], got {lengths.tolist()}")
    loss = z.new_zeros(z.shape[0])
    for length in torch.unique(lengths).tolist():
        rows = torch.nonzero(lengths == length).flatten()
        loss = loss.index_put((rows,), _decorrelation_one_length(z[rows, :length], stop_at))
    return loss


def motion_criterion(
    mean: np.ndarray | Tensor, std: np.ndarray | Tensor, terms: Mapping[str, tuple[float, JointLoss]]
) -> MotionCriterion:
    """The DNO criterion over normalised features: ``x0 (B, T, 263) -> {name: weight * loss(joints)}``.

    ``mean``/``std`` (263,) undo the prior's normalisation; joints come from ``recover_from_ric``
    (differentiable). A term with weight 0 is skipped (not evaluated).
    """
    if not terms:
        raise ArtifactError("motion_criterion: parameter 'terms' is empty")
    for name, term in terms.items():
        if not (isinstance(term, tuple) and len(term) == 2 and callable(term[1])):
            raise ArtifactError(f"motion_criterion: term '{name}' must be (weight, function of joints)")
    mean_np = np.asarray(mean, dtype=np.float32) if not isinstance(mean, Tensor) else mean.detach().cpu().numpy()
    std_np = np.asarray(std, dtype=np.float32) if not isinstance(std, Tensor) else std.detach().cpu().numpy()

    def criterion(x0: Tensor) -> dict[str, Tensor]:
        joints = recover_from_ric(denormalize_features(x0, mean_np, std_np))
        return {name: float(weight) * loss(joints) for name, (weight, loss) in terms.items() if weight != 0}

    return criterion


def total_loss(terms: Mapping[str, Tensor]) -> Tensor:
    """Sum of the per-sample terms (B,) of a criterion's output."""
    values = list(terms.values())
    if not values:
        raise ArtifactError("criterion returned no terms")
    total = values[0]
    for value in values[1:]:
        total = total + value
    return total


def guidance_loss(criterion: MotionCriterion) -> Callable[[Tensor, Tensor], Tensor]:
    """The same criterion as a guidance loss ``(x0_hat (B, T, 263), t (B,)) -> (B,)`` for ``Guidance``."""

    def loss(x0_hat: Tensor, t: Tensor) -> Tensor:
        return total_loss(criterion(x0_hat))

    return loss
