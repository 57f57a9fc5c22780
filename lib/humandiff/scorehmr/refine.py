"""Score-guided refinement (Sec. 4.1, Algorithm 1) over the shared diffusion core.

Starting from the regression's pose ``x_reg`` (B, 144), each outer iteration

1. DDIM-inverts the current estimate from clean data up to the noise level ``tau`` (Eq. 7,
   :func:`humandiff.diffusion.ddim_invert` walking ``tau, tau - dt, ..., 0`` backwards);
2. runs deterministic DDIM back down to clean data with the guided noise of Eq. 10,
   ``eps' = eps + sqrt(1 - alpha_bar_t) * grad_{x_t} sum_k rho_k L_k(x0_hat(x_t))``
   (:class:`humandiff.diffusion.Guidance` with ``mode="eps"`` and scale 1, the rho's inside the
   loss), the gradient flowing through the denoiser; ``x0_hat`` is recomputed from ``eps'``.

Sign: the guidance loss is minimised (the core's convention), so a positive rho moves the
sample towards lower loss; the guided score is that of ``p(x_t | c) exp(-sum_k rho_k L_k)``.

Camera: when a camera translation ``gamma`` (B, 3) is given it is optimised alongside, as in the
reference implementation: at every guided DDIM step the loss is evaluated at the current
``gamma``, and one Adam step (lr 0.01) is taken on ``gamma`` with that loss's gradient before the
pose step uses the same loss. Terms that ignore the camera leave it unchanged.

Early stop: after each outer iteration the guidance loss ``sum_k rho_k L_k`` is evaluated at the new
clean estimate and summed per group (a person's views, a sequence's frames, else each row); a group
stops, keeping its estimate and camera, when ``|L_prev - L| / max(|L_prev|, |L|, stop_floor) <
stop_tolerance`` (1e-5; ``L_prev`` is the loss after the previous iteration, or at the start).
The floor of 1 (the reference implementation's) keeps a loss that is already about zero from
running on. Sec. 4.1 states the rule per iteration of the loop; the reference checks it between
guided DDIM steps instead. The loop ends when every group has stopped or after ``max_iterations``.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Callable, Literal, Mapping

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from humandiff.diffusion import Denoiser, Guidance, NoiseSchedule, check_timesteps, ddim_invert, ddim_sample
from humandiff.io.artifacts import ArtifactError
from humandiff.scorehmr.losses import group_index, group_sum
from humandiff.scorehmr.model import POSE_DIM, PREDICTION, pose_to_rotations

Setting = Literal["fit", "multiview", "video"]
SETTINGS: tuple[str, ...] = ("fit", "multiview", "video")
#: ``objective(pose (B, 144), camera_t (B, 3) | None) -> {name: (B,)}`` (see :mod:`.losses`).
ObjectiveFn = Callable[[Tensor, Tensor | None], Mapping[str, Tensor]]
#: Term names whose rho is a field of :class:`ScoreHMROptions`.
RHO_FIELDS = {"repr": "rho_repr", "mv": "rho_mv", "temp": "rho_temp"}


@dataclass(frozen=True)
class ScoreHMROptions:
    """ScoreHMR's settings; the defaults are the paper's (supplementary B, FACTS.md section 6).

    ``tau``: noise level the refinement starts from (50); ``ddim_step``: DDIM step size (2);
    ``for_setting("multiview")`` gives tau 100, step 10. ``max_iterations``: outer loop S_max (10);
    ``stop_tolerance``: lambda_thr on the relative change (1e-5; 0 never stops early);
    ``stop_floor``: the denominator's floor (see the module doc). ``rho_repr`` (0.003), ``rho_mv``
    (0.005), ``rho_temp`` (30): step sizes of the terms named ``"repr"``, ``"mv"``, ``"temp"``;
    ``rho_other``: ``{name: rho}`` for a user's own terms. ``optimize_camera``: Adam on the
    camera translation (lr ``camera_lr`` 0.01, betas ``adam_betas``) at every guided step.
    """

    tau: int = 50
    ddim_step: int = 2
    max_iterations: int = 10
    stop_tolerance: float = 1e-5
    stop_floor: float = 1.0
    rho_repr: float = 0.003
    rho_mv: float = 0.005
    rho_temp: float = 30.0
    rho_other: dict[str, float] = field(default_factory=dict)
    optimize_camera: bool = True
    camera_lr: float = 0.01
    adam_betas: tuple[float, float] = (0.9, 0.999)

    def __post_init__(self) -> None:
        for name in ("tau", "ddim_step", "max_iterations"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ArtifactError(f"ScoreHMROptions: parameter '{name}' must be a positive integer, got {value!r}")
        if self.ddim_step > self.tau:
            raise ArtifactError(f"ScoreHMROptions: parameter 'ddim_step' must be <= tau ({self.tau}), "
                                f"got {self.ddim_step}")
        for name in ("stop_tolerance", "rho_repr", "rho_mv", "rho_temp"):
            _check_number(name, getattr(self, name), allow_zero=True)
        for name in ("stop_floor", "camera_lr"):
            _check_number(name, getattr(self, name), allow_zero=False)
        if not isinstance(self.optimize_camera, bool):
            raise ArtifactError(f"ScoreHMROptions: parameter 'optimize_camera' must be true or false, "
                                f"got {self.optimize_camera!r}")
        if not isinstance(self.rho_other, Mapping) or not all(isinstance(n, str) and n for n in self.rho_other):
            raise ArtifactError(f"ScoreHMROptions: parameter 'rho_other' must map term names to rho, "
                                f"got {self.rho_other!r}")
        for name, value in self.rho_other.items():
            if name in RHO_FIELDS:
                raise ArtifactError(f"ScoreHMROptions: parameter 'rho_other' names '{name}', "
                                    f"whose rho is '{RHO_FIELDS[name]}'")
            _check_number(f"rho_other.{name}", value, allow_zero=True)
        object.__setattr__(self, "rho_other", {name: float(value) for name, value in self.rho_other.items()})
        betas = tuple(self.adam_betas)
        if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0.0 <= b < 1.0 for b in betas):
            raise ArtifactError(f"ScoreHMROptions: parameter 'adam_betas' must be two numbers in [0, 1), "
                                f"got {self.adam_betas!r}")
        object.__setattr__(self, "adam_betas", (float(betas[0]), float(betas[1])))

    @classmethod
    def for_setting(cls, setting: Setting, **overrides: Any) -> "ScoreHMROptions":
        """The paper's settings for ``"fit"`` and ``"video"`` (tau 50, step 2) or ``"multiview"``
        (tau 100, step 10), then ``overrides``."""
        if setting not in SETTINGS:
            raise ArtifactError(f"ScoreHMROptions: setting must be one of {', '.join(SETTINGS)}, got {setting!r}")
        base = cls(tau=100, ddim_step=10) if setting == "multiview" else cls()
        return base.with_overrides(overrides)

    def with_overrides(self, overrides: Mapping[str, Any]) -> "ScoreHMROptions":
        """A copy with ``overrides`` (e.g. a params.yaml block); unknown names are a one-line error."""
        unknown = sorted(set(overrides) - {f.name for f in fields(self)})
        if unknown:
            raise ArtifactError(f"ScoreHMROptions: unknown parameter(s) {', '.join(unknown)}")
        return replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["adam_betas"] = list(self.adam_betas)
        return out

    def timesteps(self) -> Tensor:
        """The sampler's model timesteps ``tau, tau - dt, ..., >= 0`` (S,); inversion walks them backwards."""
        return torch.arange(self.tau, -1, -self.ddim_step)

    def rho(self, name: str) -> float:
        """The step size of the term called ``name``; an unknown name is a one-line error."""
        if name in RHO_FIELDS:
            return float(getattr(self, RHO_FIELDS[name]))
        if name not in self.rho_other:
            raise ArtifactError(f"ScoreHMROptions: no rho for guidance term '{name}' "
                                f"(known: {', '.join([*RHO_FIELDS, *self.rho_other])}; add it to 'rho_other')")
        return self.rho_other[name]


def _check_number(name: str, value: Any, allow_zero: bool) -> None:
    number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not number or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ArtifactError(f"ScoreHMROptions: parameter '{name}' must be a finite number {bound}, got {value!r}")


@dataclass(frozen=True)
class ScoreHMRResult:
    """Outcome of :func:`refine`.

    ``pose`` (B, 144) the refined pose; ``camera`` (B, 3) the refined camera translation (None
    without one). ``history[name]`` (S + 1, B): every term (unweighted, under its name) and
    ``"total"`` (the guidance loss ``sum_k rho_k L_k``), row 0 at the start and row s after outer
    iteration s, evaluated at the clean estimate; ``history["rel_change"]`` (S, B): each row's
    group's relative change after iteration s. ``iterations`` (B,): outer iterations each row ran;
    ``converged`` (B,): whether it stopped by the rule (False: ran all ``max_iterations``);
    ``seconds`` (S,): wall time of each outer iteration.
    """

    pose: Tensor
    camera: Tensor | None
    history: dict[str, np.ndarray]
    iterations: np.ndarray
    converged: np.ndarray
    seconds: np.ndarray

    @property
    def rotations(self) -> Tensor:
        """The refined pose as rotation matrices (B, 24, 3, 3)."""
        return pose_to_rotations(self.pose)


def _weighted(terms: Mapping[str, Tensor], rhos: Mapping[str, float]) -> Tensor:
    return sum(rhos[name] * value for name, value in terms.items())


def refine(
    x_init: Tensor,
    denoiser: Denoiser,
    objective: ObjectiveFn,
    options: ScoreHMROptions,
    *,
    schedule: NoiseSchedule,
    features: Tensor | None = None,
    camera: Tensor | None = None,
    groups: Tensor | None = None,
    progress: bool = False,
) -> ScoreHMRResult:
    """Algorithm 1: refine ``x_init`` under the guidance ``objective``.

    Args:
        x_init: the regression's pose (B, 144) (:func:`~humandiff.scorehmr.model.rotations_to_pose`).
        denoiser: ``eps_phi(x_t, t, features=c)`` predicting noise, deterministic (eval mode).
        objective: ``(pose, camera_t) -> {name: (B,)}`` (:func:`~humandiff.scorehmr.losses.combine`);
            each name needs a rho in ``options``.
        options: :class:`ScoreHMROptions`.
        schedule: the denoiser's noise schedule (cosine, T = 1000).
        features: image features (B, d), passed to the denoiser as ``features`` (None: no kwarg).
        camera: camera translation (B, 3), optimised when ``options.optimize_camera``.
        groups: (B,) ids of rows that stop together (a person's views, a sequence's frames).
        progress: show a tqdm bar over the outer iterations.
    """
    if isinstance(denoiser, nn.Module) and denoiser.training:
        raise ArtifactError("refine: the denoiser is in training mode; call .eval() first")
    if not isinstance(x_init, Tensor) or x_init.dim() != 2 or x_init.shape[1] != POSE_DIM or not x_init.is_floating_point():
        shape = tuple(x_init.shape) if isinstance(x_init, Tensor) else type(x_init).__name__
        raise ArtifactError(f"refine: parameter 'x_init' must be a float tensor (B, {POSE_DIM}), got {shape}")
    batch = x_init.shape[0]
    if camera is not None and (not isinstance(camera, Tensor) or camera.shape != (batch, 3)):
        shape = tuple(camera.shape) if isinstance(camera, Tensor) else type(camera).__name__
        raise ArtifactError(f"refine: parameter 'camera' must have shape ({batch}, 3), got {shape}")
    for name, value in (("x_init", x_init), ("camera", camera)):
        if value is not None and not bool(torch.isfinite(value).all()):
            raise ArtifactError(f"refine: parameter '{name}' holds NaN or infinite values")
    index, count = group_index(groups, batch, "refine")
    index = index.to(x_init.device)
    timesteps = check_timesteps(options.timesteps(), schedule)
    model_kwargs = None if features is None else {"features": features}
    chain = dict(timesteps=timesteps, prediction=PREDICTION, model_kwargs=model_kwargs)

    x = x_init.detach().clone()
    cam = None if camera is None else camera.detach().clone().to(x.dtype)
    cam_param = None if cam is None else cam.clone()
    optimizer = None
    if cam_param is not None and options.optimize_camera:
        optimizer = torch.optim.Adam([cam_param], lr=options.camera_lr, betas=options.adam_betas)
    active = torch.ones(batch, dtype=torch.bool, device=x.device)

    def evaluate(pose: Tensor, camera_t: Tensor | None) -> tuple[dict[str, Tensor], Tensor, dict[str, float]]:
        with torch.no_grad():
            terms = objective(pose, camera_t)
            if not terms:
                raise ArtifactError("refine: the objective returned no terms")
            reserved = sorted(set(terms) & {"total", "rel_change"})
            if reserved:
                raise ArtifactError(f"refine: guidance term name '{reserved[0]}' is reserved for the history")
            rhos = {name: options.rho(name) for name in terms}
            return terms, _weighted(terms, rhos), rhos

    def step_loss(x0_hat: Tensor, t: Tensor) -> Tensor:
        """Guidance loss (B,) at one DDIM step, at the current camera; the camera then takes one Adam
        step down this loss's gradient (the pose's step uses the loss as returned)."""
        cam_in = None
        if cam_param is not None:
            cam_in = cam_param.detach().clone().requires_grad_(optimizer is not None)
        terms = objective(x0_hat, cam_in)
        total = _weighted(terms, rhos) * active.to(x0_hat.dtype)
        if optimizer is not None:
            (grad,) = torch.autograd.grad(total.sum(), cam_in, retain_graph=True, allow_unused=True)
            if grad is not None:
                optimizer.zero_grad(set_to_none=True)
                cam_param.grad = grad.detach()
                optimizer.step()
        return total

    terms, total, rhos = evaluate(x, cam)
    records: dict[str, list[np.ndarray]] = {name: [_np(value)] for name, value in terms.items()}
    records["total"] = [_np(total)]
    records["rel_change"] = []
    previous = group_sum(total, index, count)
    iterations = np.zeros(batch, dtype=np.int64)
    converged = torch.zeros(batch, dtype=torch.bool, device=x.device)
    seconds: list[float] = []
    guidance = Guidance(loss=step_loss, scale=1.0, mode="eps")

    for _ in tqdm(range(options.max_iterations), desc="scorehmr", disable=not progress, leave=False):
        started = time.perf_counter()
        x_tau = ddim_invert(denoiser, x, schedule, **chain)
        x_new = ddim_sample(denoiser, x_tau, schedule, guidance=guidance, **chain)
        keep = active[:, None]
        x = torch.where(keep, x_new, x)
        if cam is not None:
            cam = torch.where(keep, cam_param.detach(), cam)
            with torch.no_grad():
                cam_param.copy_(cam)  # stopped rows keep their camera
        iterations += active.cpu().numpy()

        terms, total, _ = evaluate(x, cam)
        current = group_sum(total, index, count)
        denominator = torch.maximum(torch.maximum(previous.abs(), current.abs()),
                                    torch.full_like(current, options.stop_floor))
        relative = ((previous - current).abs() / denominator)[index]
        stopping = active & (relative < options.stop_tolerance)
        for name, value in terms.items():
            records[name].append(_np(value))
        records["total"].append(_np(total))
        records["rel_change"].append(_np(relative))
        converged |= stopping
        active &= ~stopping
        previous = current
        seconds.append(time.perf_counter() - started)
        if not bool(active.any()):
            break

    history = {name: np.stack(values) for name, values in records.items()}
    return ScoreHMRResult(pose=x, camera=cam, history=history, iterations=iterations,
                          converged=converged.cpu().numpy(), seconds=np.asarray(seconds))


def _np(value: Tensor) -> np.ndarray:
    return value.detach().double().cpu().numpy()
