"""The DAT reverse diffusion process (Algorithm 1) over the shared diffusion core.

Conventions, written once:

- Chains: each of the B images runs ``N`` chains; chain ``n`` of image ``b`` is row ``b N + n`` of
  the ``(B N, V, 3)`` batch the core samples (image conditioning is repeated ``N`` times).
- The input-specific distribution U: ``M`` poses ``u_i`` (B, M, J, 3) in the same frame and units
  as ``f(h)`` (the coarse joint regressor ``f`` (J, V) of :mod:`humandiff.body.hierarchy` applied to
  the mesh). :func:`input_distribution` draws them from the perception network's xy and depth
  heatmaps (``M = N``); :func:`single_pose` gives the ``M = 1`` pose ``u_c`` of the "w/ u_c" ablation.
- The gap (Eq. 10), per chain: ``D_k = sum_i ||u_i - f(h0_hat(h_k))||^2`` (sum over the M poses and
  the J joints), ``h0_hat`` the denoiser's clean estimate at ``h_k`` (Eq. 7).
- DAT's step, ``HMDiffOptions.dat_mode``: ``"xt"`` is Alg. 1 line 9 literally, the core's DDIM step
  with ``Guidance(mode="xt")``: ``h_{k-1} = DDIM(h_k) - gamma * grad_{h_k} D_k``, the gradient
  flowing through the denoiser (``h0_hat`` depends on ``h_k`` directly and through ``g``).
  ``"x0"`` (the default) is the core's ``Guidance(mode="x0")``: the step is taken on the clean
  estimate, ``h0_hat <- h0_hat - gamma * grad_{h0_hat} D_k``, and DDIM continues from it (no
  gradient through the denoiser; docs/hmdiff.md "Default-preset diagnosis": through an undertrained
  denoiser the x_t gradient is ~1/sqrt(alpha_bar_t) times larger and diverges). The guidance loss
  is minimised, so a positive ``gamma`` moves ``f(h0_hat)`` towards the poses.
- Noise floor, ``HMDiffOptions.min_alpha_bar``: DAT (and the activation strategy's reference
  ``D_K``) starts at the first step whose ``alpha_bar_t >= min_alpha_bar``; earlier steps are plain
  DDIM with DAT off in the history and the activation state untouched. 0 is Algorithm 1 literally
  (DAT from the first step); the default 1e-2 skips the linear K = 200 schedule's steps where the
  clean estimate amplifies the denoiser's error by 1/sqrt(alpha_bar) (182x at t = 199).
- Activation strategy: ``R_k = D_k / D_K`` with ``D_K`` the gap at the first DAT step (``R_K = 1``);
  a chain uses DAT at step k while ``R_k >= r`` and it has used DAT at every earlier DAT step; once
  ``R_k < r`` it is off for good. The state (``D_K`` and the on/off flag per chain,
  :class:`ActivationState`) is a value passed into each step and returned by
  :func:`update_activation`; the step's gate is computed by the same function from the same
  ``D_k`` (the guidance loss keeps its value but carries a gradient only where the gate is on).
- Coordinates: the chains run in the denoiser's diffusion coordinates (``coordinates``, a
  :class:`humandiff.hmdiff.model.MeshCoordinates`; None: metres). U is given in metres and encoded
  alike (``encode_joints``), so ``D_k`` is Eq. 10 in those coordinates (``scale^2`` times the gap in
  metres^2, the same ``R_k``) and gamma moves the mesh in metres as it would without them. The
  samples are decoded to metres.
- The prediction is the centre (mean) of the N clean samples, then up-sampled by a collaborator.

Ablations (Table 5) as :class:`HMDiffOptions` switches: ``dat=False`` (no DAT), ``alignment="direct"``
(the L2 gap on ``h_k`` itself, ``h_{k-1} = DDIM(h_k) - gamma * grad_{h_k} sum_i ||u_i - f(h_k)||^2``,
disrupting the chain), ``prior="single"`` (u_c instead of U; the caller passes :func:`single_pose`),
``activation=False`` (DAT at every step), ``start="pose"`` (``H_U``: the pose samples mapped to
meshes by a linear pose-to-mesh map, noised to the first step's level by the forward process).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Callable, Literal, Mapping

import numpy as np
import torch
from torch import Tensor

from humandiff.diffusion import (
    CLEAN,
    Denoiser,
    Guidance,
    NoiseSchedule,
    Spacing,
    ddim_step,
    q_sample,
    resolve_timesteps,
)
from humandiff.io.artifacts import ArtifactError
from humandiff.perception.model import heatmap_to_image, integral_depth, refine_peaks, sample_pose_distribution

#: Table 5's rows and Table 4's no-DAT row as option overrides (``HMDiffOptions.for_ablation``).
ABLATIONS: dict[str, dict[str, Any]] = {
    "full": {},
    "no_dat": {"dat": False},
    "start_from_pose": {"start": "pose", "dat": False},
    "direct_l2": {"alignment": "direct"},
    "single_pose": {"prior": "single"},
    "no_activation": {"activation": False},
}


@dataclass(frozen=True)
class HMDiffOptions:
    """HMDiff's test-time settings; the defaults are the paper's (Sec. 5: N = 25, DDIM 40 steps,
    r = 0.05, gamma = 0.2).

    ``num_samples`` N chains per image; ``ddim_steps`` of the K-step schedule (``spacing`` as the
    core's, ``eta`` 0: deterministic DDIM); ``threshold`` r in (0, 1); ``gamma`` DAT's weight; the
    ablation switches (see the module doc) ``dat``, ``alignment``, ``prior``, ``activation``,
    ``start``; ``min_alpha_bar`` in [0, 1): DAT and ``D_K`` only at steps with ``alpha_bar_t`` at
    least this (0: the paper's Algorithm 1, DAT from the first step); ``dat_mode`` ``"x0"`` (the
    step on the clean estimate, the core's ``Guidance(mode="x0")``) or ``"xt"`` (the paper's shift of
    ``h_k`` through the denoiser). The defaults of these two are not the paper's: see the module doc
    and docs/hmdiff.md.
    """

    num_samples: int = 25
    ddim_steps: int = 40
    threshold: float = 0.05
    gamma: float = 0.2
    eta: float = 0.0
    spacing: Spacing = "trailing"
    dat: bool = True
    alignment: Literal["estimate", "direct"] = "estimate"
    prior: Literal["distribution", "single"] = "distribution"
    activation: bool = True
    start: Literal["noise", "pose"] = "noise"
    min_alpha_bar: float = 1e-2
    dat_mode: Literal["x0", "xt"] = "x0"

    def __post_init__(self) -> None:
        for name, label in (("num_samples", "N"), ("ddim_steps", "DDIM steps")):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ArtifactError(f"HMDiffOptions: parameter '{name}' ({label}) must be an integer >= 1, got {value!r}")
        threshold = self.threshold
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 < threshold < 1.0:
            raise ArtifactError(f"HMDiffOptions: parameter 'threshold' (r) must lie in (0, 1), got {threshold!r}")
        for name in ("gamma", "eta"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ArtifactError(f"HMDiffOptions: parameter '{name}' must be a finite number >= 0, got {value!r}")
        floor = self.min_alpha_bar
        if isinstance(floor, bool) or not isinstance(floor, (int, float)) or not 0.0 <= floor < 1.0:
            raise ArtifactError(f"HMDiffOptions: parameter 'min_alpha_bar' must lie in [0, 1), got {floor!r}")
        choices = {"dat_mode": ("x0", "xt"), "spacing": ("trailing", "leading"), "alignment": ("estimate", "direct"),
                   "prior": ("distribution", "single"), "start": ("noise", "pose")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ArtifactError(f"HMDiffOptions: parameter '{name}' must be one of {', '.join(allowed)}, "
                                    f"got {getattr(self, name)!r}")
        for name in ("dat", "activation"):
            if not isinstance(getattr(self, name), bool):
                raise ArtifactError(f"HMDiffOptions: parameter '{name}' must be true or false, got {getattr(self, name)!r}")

    @classmethod
    def for_ablation(cls, name: str, **overrides: Any) -> "HMDiffOptions":
        """The full method or one of :data:`ABLATIONS`, then ``overrides``."""
        if name not in ABLATIONS:
            raise ArtifactError(f"HMDiffOptions: ablation must be one of {', '.join(ABLATIONS)}, got {name!r}")
        return cls().with_overrides({**ABLATIONS[name], **overrides})

    def with_overrides(self, overrides: Mapping[str, Any]) -> "HMDiffOptions":
        """A copy with ``overrides`` (e.g. a params.yaml block); unknown names are a one-line error."""
        unknown = sorted(set(overrides) - {f.name for f in fields(self)})
        if unknown:
            raise ArtifactError(f"HMDiffOptions: unknown parameter(s) {', '.join(unknown)}")
        return replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------- the input distribution
def _check_maps(heatmaps: Tensor, depth_maps: Tensor, intrinsics: Tensor, root_depth: Tensor) -> None:
    if heatmaps.dim() != 4 or depth_maps.shape != heatmaps.shape:
        raise ArtifactError(f"HMDiff: 'heatmaps' {tuple(heatmaps.shape)} and 'depth_maps' {tuple(depth_maps.shape)} "
                            "must both be (B, J, h, w)")
    batch = heatmaps.shape[0]
    if intrinsics.shape != (batch, 4) or root_depth.shape != (batch,):
        raise ArtifactError(f"HMDiff: 'intrinsics' {tuple(intrinsics.shape)} and 'root_depth' {tuple(root_depth.shape)} "
                            f"must be ({batch}, 4) and ({batch},)")
    for name, value in (("heatmaps", heatmaps), ("depth_maps", depth_maps), ("intrinsics", intrinsics),
                        ("root_depth", root_depth)):
        if not bool(torch.isfinite(value).all()):
            raise ArtifactError(f"HMDiff: '{name}' contains NaN or Inf")
    if bool((heatmaps < 0).any()) or bool((heatmaps.flatten(2).sum(-1) <= 0).any()):
        raise ArtifactError("HMDiff: 'heatmaps' must be non-negative with some mass in every joint's map")
    if bool((root_depth <= 0).any()):
        raise ArtifactError("HMDiff: 'root_depth' must be > 0 (the pelvis in front of the camera)")


def lift_poses(cells: Tensor, intrinsics: Tensor, root_depth: Tensor, root: Tensor, stride: int) -> Tensor:
    """Heatmap poses (B, M, J, 3) as ``(u, v)`` heatmap cells and depth relative to the pelvis (m) ->
    camera-frame points (B, M, J, 3) in metres relative to ``root`` (B, 2) (the pelvis in heatmap cells
    at ``root_depth`` (B,) metres): ``X = (x - cx) Z / fx``, ``Y = (y - cy) Z / fy``, ``Z = Z_root + z``."""
    fx, fy, cx, cy = (intrinsics[:, i].to(cells.dtype)[:, None, None] for i in range(4))
    pixels = heatmap_to_image(cells[..., :2], stride)
    depth = root_depth.to(cells.dtype)[:, None, None] + cells[..., 2]
    points = torch.stack([(pixels[..., 0] - cx) * depth / fx, (pixels[..., 1] - cy) * depth / fy, depth], -1)
    root_pixels = heatmap_to_image(root.to(cells.dtype), stride)
    z = root_depth.to(cells.dtype)
    origin = torch.stack([(root_pixels[:, 0] - cx[:, 0, 0]) * z / fx[:, 0, 0],
                          (root_pixels[:, 1] - cy[:, 0, 0]) * z / fy[:, 0, 0], z], -1)
    return points - origin[:, None, None]


def input_distribution(heatmaps: Tensor, depth_maps: Tensor, intrinsics: Tensor, root_depth: Tensor,
                       num_samples: int, generator: torch.Generator, stride: int = 4, root_joint: int = 0) -> Tensor:
    """U: ``num_samples`` 3D poses (B, N, J, 3) drawn from the xy distributions (B, J, h, w) and depth
    maps (B, J, h, w) (metres relative to the pelvis) by :func:`humandiff.perception.model.sample_pose_distribution`,
    each draw moved uniformly inside its heatmap cell (a cell is a histogram bin), lifted by
    :func:`lift_poses` about the pelvis's refined peak. ``intrinsics`` (B, 4) [fx, fy, cx, cy];
    ``root_depth`` (B,) the pelvis's camera depth (e.g. the regression's ``joints_cam[:, 0, 2]``)."""
    _check_maps(heatmaps, depth_maps, intrinsics, root_depth)
    probs = heatmaps / heatmaps.flatten(2).sum(-1)[..., None, None]
    cells = sample_pose_distribution(probs, depth_maps, num_samples, generator)  # (B, N, J, 3)
    jitter = torch.rand(cells.shape[:-1] + (2,), generator=generator, dtype=cells.dtype) - 0.5
    cells = torch.cat([cells[..., :2] + jitter.to(cells.device), cells[..., 2:]], -1)
    root = refine_peaks(probs)[:, root_joint]
    return lift_poses(cells, intrinsics, root_depth, root, stride)


def single_pose(heatmaps: Tensor, depth_maps: Tensor, intrinsics: Tensor, root_depth: Tensor, stride: int = 4,
                root_joint: int = 0) -> Tensor:
    """u_c (B, 1, J, 3): each joint's refined heatmap peak with its expected depth, lifted as
    :func:`input_distribution` does."""
    _check_maps(heatmaps, depth_maps, intrinsics, root_depth)
    probs = heatmaps / heatmaps.flatten(2).sum(-1)[..., None, None]
    peaks = refine_peaks(probs)
    cells = torch.cat([peaks, integral_depth(probs, depth_maps)[..., None]], -1)[:, None]
    return lift_poses(cells, intrinsics, root_depth, peaks[:, root_joint], stride)


# ------------------------------------------------------------------------------- gap and activation
def pose_gap(mesh: Tensor, poses: Tensor, regressor: Tensor) -> Tensor:
    """Eq. 10 per chain (R,): ``sum_i ||u_i - f(mesh)||^2`` for meshes (R, V, 3), poses (R, M, J, 3), ``f`` (J, V)."""
    joints = torch.einsum("jv,rvc->rjc", regressor.to(mesh.dtype), mesh)
    return (poses.to(mesh.dtype) - joints[:, None]).square().sum((1, 2, 3))


@dataclass(frozen=True)
class ActivationState:
    """The activation strategy's state per chain: ``active`` (R,) bool, DAT still on; ``reference``
    (R,) the first gap ``D_K``, None before the first step."""

    active: Tensor
    reference: Tensor | None = None

    @classmethod
    def start(cls, chains: int, enabled: bool = True) -> "ActivationState":
        return cls(torch.full((chains,), bool(enabled)))


def activation_gate(state: ActivationState, gap: Tensor, threshold: float, strategy: bool = True) -> tuple[Tensor, Tensor]:
    """``(gate (R,) bool, ratio (R,))`` at a step with gap ``D_k`` (R,): ``R_k = D_k / D_K`` (1 at the
    first step); the gate is ``active & R_k >= r`` (``active`` alone without the ``strategy``)."""
    gap = gap.detach()
    reference = gap if state.reference is None else state.reference.to(gap)
    ratio = gap / reference.clamp_min(torch.finfo(gap.dtype).tiny)
    active = state.active.to(gap.device)
    return (active & (ratio >= threshold)) if strategy else active, ratio


def update_activation(state: ActivationState, gap: Tensor, threshold: float, strategy: bool = True
                      ) -> tuple[ActivationState, Tensor, Tensor]:
    """Algorithm 1 lines 6-11 as a pure function: ``(next state, gate (R,), ratio (R,))``; a chain whose
    gate is off stays off."""
    gate, ratio = activation_gate(state, gap, threshold, strategy)
    reference = gap.detach() if state.reference is None else state.reference
    return ActivationState(gate, reference), gate, ratio


def dat_guidance(poses: Tensor, regressor: Tensor, state: ActivationState, options: HMDiffOptions) -> Guidance:
    """The core's guidance (mode ``options.dat_mode``) of one step: the loss ``D_k`` (R,) whose gradient
    is kept only where :func:`activation_gate` is on (its value is ``D_k`` everywhere, so the step
    reports ``D_k``)."""

    def loss(x0_hat: Tensor, t: Tensor) -> Tensor:
        gap = pose_gap(x0_hat, poses, regressor)
        gate, _ = activation_gate(state, gap, options.threshold, options.activation)
        return torch.where(gate, gap, gap.detach())

    return Guidance(loss=loss, scale=options.gamma, mode=options.dat_mode)


def direct_shift(h: Tensor, poses: Tensor, regressor: Tensor, gate: Tensor, gamma: float) -> Tensor:
    """The "direct L2" ablation's shift (R, V, 3): ``-gamma grad_h sum_i ||u_i - f(h)||^2`` where ``gate`` is on."""
    f = regressor.to(h.dtype)
    residual = (torch.einsum("jv,rvc->rjc", f, h)[:, None] - poses.to(h.dtype)).sum(1)  # (R, J, 3)
    grad = 2.0 * torch.einsum("jv,rjc->rvc", f, residual)
    return -gamma * gate.to(h.dtype)[:, None, None] * grad


# ------------------------------------------------------------------------------- the reverse process
@dataclass(frozen=True)
class HMDiffResult:
    """Outcome of :func:`dat_reverse`.

    ``samples`` (B, N, V, 3) the clean meshes of the chains; ``center`` (B, V, 3) their mean;
    ``mesh`` the centre up-sampled by the collaborator (None without one); ``history`` per step
    (S steps): ``timestep`` (S,), ``gap`` D_k, ``ratio`` R_k and ``dat`` (DAT applied, bool), each
    (S, B, N) (at steps below ``min_alpha_bar``: ``dat`` False and ``ratio`` 1, no ``D_K`` yet);
    ``seconds`` the wall time.
    """

    samples: Tensor
    center: Tensor
    mesh: Any
    history: dict[str, np.ndarray]
    seconds: float


def _repeat(value: Any, times: int) -> Any:
    return value.repeat_interleave(times, 0) if isinstance(value, Tensor) else value


def dat_reverse(
    model: Denoiser,
    schedule: NoiseSchedule,
    regressor: Tensor,
    poses: Tensor,
    options: HMDiffOptions = HMDiffOptions(),
    *,
    generator: torch.Generator,
    model_kwargs: Mapping[str, Any] | None = None,
    pose_to_mesh: Tensor | None = None,
    upsample: Callable[[Tensor], Any] | None = None,
    coordinates: Any = None,
) -> HMDiffResult:
    """Algorithm 1 for B images at once.

    Args:
        model: the eps-predicting denoiser ``g(h (R, V, 3), t (R,), **model_kwargs)``.
        schedule: its schedule (linear, K = 200).
        regressor: f (J, V), the coarse joint regressor.
        poses: U (B, M, J, 3) (or u_c with M = 1), in f's frame.
        options: :class:`HMDiffOptions`.
        generator: source of the start noise (and of DDIM's noise when ``eta > 0``).
        model_kwargs: per-image conditioning (batch-first tensors of B rows, repeated N times here).
        pose_to_mesh: (V, J) linear map for ``start="pose"`` (:func:`humandiff.body.hierarchy.fit_pose_to_mesh`).
        upsample: ``center (B, V, 3) -> mesh`` (e.g. :class:`humandiff.hmdiff.model.MeshUpsampler`).
        coordinates: the denoiser's :class:`humandiff.hmdiff.model.MeshCoordinates` (None: metres).
    """
    started = time.perf_counter()
    if poses.dim() != 4 or poses.shape[-1] != 3 or poses.shape[2] != regressor.shape[0]:
        raise ArtifactError(f"dat_reverse: 'poses' has shape {tuple(poses.shape)}, expected (B, M, {regressor.shape[0]}, 3)")
    if options.prior == "single" and poses.shape[1] != 1:
        raise ArtifactError(f"dat_reverse: prior 'single' needs one pose per image (u_c), got {poses.shape[1]}")
    batch, count = poses.shape[0], options.num_samples
    vertices = regressor.shape[1]
    rows = batch * count
    dtype = poses.dtype if poses.is_floating_point() else torch.float32
    chain_poses = poses.to(dtype).repeat_interleave(count, 0)  # (R, M, J, 3), metres
    encode = coordinates.encode if coordinates is not None else (lambda mesh: mesh)
    decode = coordinates.decode if coordinates is not None else (lambda h: h)
    meshes_from_poses = chain_poses  # kept in metres for the pose-to-mesh map of start="pose"
    if coordinates is not None:
        chain_poses = coordinates.encode_joints(chain_poses, regressor)
    kwargs = {name: _repeat(value, count) for name, value in (model_kwargs or {}).items()}
    levels = resolve_timesteps(schedule, options.ddim_steps, spacing=options.spacing).tolist() + [CLEAN]

    noise = torch.randn((rows, vertices, 3), generator=generator, dtype=dtype).to(poses.device)
    if options.start == "pose":
        if pose_to_mesh is None or tuple(pose_to_mesh.shape) != (vertices, poses.shape[2]):
            raise ArtifactError(f"dat_reverse: start 'pose' needs 'pose_to_mesh' of shape ({vertices}, {poses.shape[2]})")
        pick = torch.arange(rows, device=poses.device) % poses.shape[1]
        meshes = torch.einsum("vj,rjc->rvc", pose_to_mesh.to(dtype), meshes_from_poses[torch.arange(rows), pick])
        x = q_sample(schedule, encode(meshes), levels[0], noise)
    else:
        x = noise

    state = ActivationState.start(rows, options.dat)
    alpha_bar = schedule.alphas_cumprod.detach().cpu().double()
    record: dict[str, list[np.ndarray]] = {"gap": [], "ratio": [], "dat": []}
    for level, next_level in zip(levels[:-1], levels[1:]):
        step_noise = None
        if options.eta > 0 and next_level != CLEAN:
            step_noise = torch.randn(x.shape, generator=generator, dtype=dtype).to(x.device)
        usable = float(alpha_bar[level]) >= options.min_alpha_bar  # the noise floor: no DAT, no D_K below it
        guided = usable and options.dat and options.alignment == "estimate" and bool(state.active.any())
        guidance = dat_guidance(chain_poses, regressor, state, options) if guided else None
        out = ddim_step(model, x, level, next_level, schedule, prediction="eps", eta=options.eta, noise=step_noise,
                        guidance=guidance, model_kwargs=kwargs)
        gap = out.guidance_loss if guided else pose_gap(out.x0_hat, chain_poses, regressor)
        if usable:
            state, gate, ratio = update_activation(state, gap, options.threshold, options.activation)
        else:
            gate = torch.zeros(rows, dtype=torch.bool, device=gap.device)
            ratio = torch.ones(rows, dtype=gap.dtype, device=gap.device)  # no D_K yet: R = 1 by convention
        if options.dat and options.alignment == "direct" and bool(gate.any()):
            x = out.x + direct_shift(x, chain_poses, regressor, gate, options.gamma)  # gradient at h_k
        else:
            x = out.x
        for name, value in (("gap", gap), ("ratio", ratio), ("dat", gate)):
            record[name].append(value.detach().cpu().numpy().reshape(batch, count))
    samples = decode(x.detach()).reshape(batch, count, vertices, 3)
    center = samples.mean(1)
    history = {name: np.stack(values) for name, values in record.items()}
    history["timestep"] = np.asarray(levels[:-1], dtype=np.int64)
    return HMDiffResult(samples, center, upsample(center) if upsample is not None else None, history,
                        time.perf_counter() - started)
