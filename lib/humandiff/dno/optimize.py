"""Diffusion Noise Optimisation (Karunratanakul et al., 2024, Algorithm 1) over the shared diffusion core.

DNO optimises the initial noise ``z = x_T`` of a deterministic ODE solver so that the decoded
motion ``x = solver(z)`` minimises a criterion. Each step solves the whole chain (DDIM-10,
eta 0, empty text), back-propagates the criterion to ``z``, divides the gradient by its L2 norm
per sample and takes an Adam step with a warmed-up cosine learning rate; an optional perturbation
``gamma * N(0, I)`` is added to ``z`` after each step. The solver and the criterion are callables,
so any differentiable loss on the motion works (see :mod:`humandiff.dno.criteria`).

Start points: DDIM inversion of the input motion (:func:`invert_motion`, 100 steps) for editing,
``N(0, I)`` for refinement, completion, blending and in-betweening. Not in the paper, for priors
whose DDIM inversion is far from exact: ``inversion_choices`` are further inversion step counts,
of which each input keeps the one that decodes closest to it (:func:`invert_closest`), and
``inversion_fit_steps = K > 0`` then runs K steps of the same optimiser on the reconstruction
error of the input (:func:`fit_inversion`).

Cost model: one DNO step is ``ddim_steps`` model forward passes plus their backward passes (the
criterion is negligible), i.e. about ``ddim_steps`` times a forward+backward of the model on the
batch; ``checkpoint=True`` recomputes each forward during the backward (about +1 forward per
model call; ``benchmarks/bench_dno.py`` measures the cost) and keeps only a few ``x``-sized tensors
per step.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Callable, Literal, Mapping

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from humandiff.diffusion import Denoiser, NoiseSchedule, Prediction, Spacing, ddim_invert, ddim_sample
from humandiff.io.artifacts import ArtifactError
from humandiff.dno.criteria import content_loss, decorrelation_loss, total_loss

#: ``z (B, T, D) -> x0 (B, T, D)``, differentiable w.r.t. ``z`` (the ODE solver of Eq. 2).
Solver = Callable[[Tensor], Tensor]
#: ``x0 (B, T, D) -> (B,)`` or ``{term: (B,)}`` (summed), to be minimised.
Criterion = Callable[[Tensor], Tensor | Mapping[str, Tensor]]
TaskKind = Literal["edit", "refine"]


@dataclass(frozen=True)
class DNOOptions:
    """DNO's settings; the defaults are the paper's editing setup (FACTS.md section 5).

    ``for_task("refine")`` gives the refinement / completion setup (500 steps, no content term,
    decorrelation weight 1000). ``lr_schedule="constant"`` is the "w/o LR scheduler & warm-up"
    ablation (constant ``lr``, no warm-up); ``normalize_gradient=False`` the "w/o normalised
    gradient" one; ``perturbation`` is gamma.
    """

    steps: int = 300
    lr: float = 0.05
    warmup_steps: int = 50
    lr_schedule: Literal["cosine", "constant"] = "cosine"
    normalize_gradient: bool = True
    perturbation: float = 0.0
    lambda_content: float = 0.01
    lambda_decorr: float = 0.0
    content_squared: bool = False
    ddim_steps: int = 10
    inversion_steps: int = 100
    inversion_choices: tuple[int, ...] = ()
    inversion_fit_steps: int = 0
    spacing: Spacing = "trailing"
    checkpoint: bool = False
    adam_betas: tuple[float, float] = (0.9, 0.999)

    def __post_init__(self) -> None:
        for name in ("steps", "ddim_steps", "inversion_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ArtifactError(f"DNOOptions: parameter '{name}' must be a positive integer, got {value!r}")
        choices = self.inversion_choices
        if not isinstance(choices, (tuple, list)) or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 1
                                                             for c in choices):
            raise ArtifactError(f"DNOOptions: parameter 'inversion_choices' must be a list of positive integers, got {choices!r}")
        object.__setattr__(self, "inversion_choices", tuple(choices))
        for name in ("warmup_steps", "inversion_fit_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ArtifactError(f"DNOOptions: parameter '{name}' must be a non-negative integer, got {value!r}")
        for name in ("lr", "perturbation", "lambda_content", "lambda_decorr"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
                raise ArtifactError(f"DNOOptions: parameter '{name}' must be a finite number >= 0, got {value!r}")
        if self.lr_schedule not in ("cosine", "constant"):
            raise ArtifactError(f"DNOOptions: parameter 'lr_schedule' must be 'cosine' or 'constant', got {self.lr_schedule!r}")
        if self.spacing not in ("trailing", "leading"):
            raise ArtifactError(f"DNOOptions: parameter 'spacing' must be 'trailing' or 'leading', got {self.spacing!r}")
        betas = tuple(self.adam_betas)
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ArtifactError(f"DNOOptions: parameter 'adam_betas' must be two numbers in [0, 1), got {self.adam_betas!r}")
        object.__setattr__(self, "adam_betas", (float(betas[0]), float(betas[1])))

    @classmethod
    def for_task(cls, kind: TaskKind, **overrides: Any) -> "DNOOptions":
        """The paper's settings for ``"edit"`` (300 steps, lambda_cont 0.01) or ``"refine"``
        (500 steps, lambda_decorr 1000, also completion / blending / in-betweening), then overrides."""
        if kind == "edit":
            base = cls()
        elif kind == "refine":
            base = cls(steps=500, lambda_content=0.0, lambda_decorr=1000.0)
        else:
            raise ArtifactError(f"DNOOptions: task kind must be 'edit' or 'refine', got {kind!r}")
        return base.with_overrides(overrides)

    def with_overrides(self, overrides: Mapping[str, Any]) -> "DNOOptions":
        """A copy with ``overrides`` (e.g. a params.yaml block); unknown names are a one-line error."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ArtifactError(f"DNOOptions: unknown parameter(s) {', '.join(unknown)}")
        values = dict(overrides)
        for name in ("adam_betas", "inversion_choices"):
            if isinstance(values.get(name), list):
                values[name] = tuple(values[name])
        for name in ("lr", "perturbation", "lambda_content", "lambda_decorr"):
            if isinstance(values.get(name), int) and not isinstance(values.get(name), bool):
                values[name] = float(values[name])
        return replace(self, **values)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["adam_betas"] = list(self.adam_betas)
        out["inversion_choices"] = list(self.inversion_choices)
        return out


def learning_rate(step: int, options: DNOOptions) -> float:
    """Learning rate of step ``step`` in ``[0, steps)``.

    ``cosine``: linear warm-up ``lr * (step + 1) / warmup_steps`` over the first ``warmup_steps``
    steps, then ``lr * (1 + cos(pi * (step - W) / (steps - W))) / 2``, which reaches 0 at
    ``step = steps`` (after the last update). ``constant``: ``lr`` throughout.
    """
    if not 0 <= step < options.steps:
        raise ArtifactError(f"learning_rate: step {step} outside [0, {options.steps})")
    if options.lr_schedule == "constant":
        return options.lr
    warmup = min(options.warmup_steps, options.steps - 1)
    if step < warmup:
        return options.lr * (step + 1) / warmup
    progress = (step - warmup) / (options.steps - warmup)
    return options.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def normalize_per_sample(grad: Tensor, eps: float = 1e-12) -> Tensor:
    """``grad / ||grad||_2`` per sample for ``grad`` (B, ...); an all-zero sample stays zero."""
    norms = grad.flatten(1).norm(dim=1).reshape((-1,) + (1,) * (grad.dim() - 1))
    return grad / norms.clamp(min=eps)


def ddim_solver(
    model: Denoiser,
    schedule: NoiseSchedule,
    ddim_steps: int = 10,
    *,
    model_kwargs: Mapping[str, Any] | None = None,
    checkpoint: bool = False,
    spacing: Spacing = "trailing",
    prediction: Prediction = "x0",
) -> Solver:
    """The ODE solver of Eq. 2: deterministic DDIM (eta 0, no clipping) of the denoiser.

    ``model(x_t, t, **model_kwargs)`` (e.g. the prior with an empty text and a frame mask) must be
    deterministic: a ``nn.Module`` still in training mode (dropout) is refused. ``prediction``:
    what it predicts (the prior's ``MDMConfig.prediction``; MDM's is x0).
    """
    if isinstance(model, nn.Module) and model.training:
        raise ArtifactError("ddim_solver: the model is in training mode (dropout); call model.eval() first")

    def solve(z: Tensor) -> Tensor:
        return ddim_sample(model, z, schedule, num_steps=ddim_steps, spacing=spacing, prediction=prediction, eta=0.0,
                           model_kwargs=model_kwargs, checkpoint=checkpoint, differentiable=True)

    return solve


@torch.no_grad()
def invert_motion(
    model: Denoiser,
    schedule: NoiseSchedule,
    x0: Tensor,
    steps: int = 100,
    *,
    model_kwargs: Mapping[str, Any] | None = None,
    spacing: Spacing = "trailing",
    prediction: Prediction = "x0",
) -> Tensor:
    """DDIM inversion of normalised motions ``x0`` (B, T, D) to the noise ``x_T`` (B, T, D) DNO starts from;
    ``prediction`` as in :func:`ddim_solver`."""
    return ddim_invert(model, x0, schedule, num_steps=steps, spacing=spacing, prediction=prediction,
                       model_kwargs=model_kwargs)


def invert_closest(
    model: Denoiser,
    schedule: NoiseSchedule,
    x0: Tensor,
    solver: Solver,
    reconstruction: Criterion,
    step_counts: tuple[int, ...],
    *,
    model_kwargs: Mapping[str, Any] | None = None,
    spacing: Spacing = "trailing",
    prediction: Prediction = "x0",
) -> tuple[Tensor, Tensor, Tensor]:
    """Per input, the DDIM inversion among ``step_counts`` whose decode ``solver(z)`` is closest to it.

    ``x0`` (B, T, D) normalised inputs; ``reconstruction`` ``x -> (B,)`` their error. Returns the
    chosen noise (B, T, D), the step count each input kept (B,) and the chosen noise's decode
    (B, T, D), so that a caller measuring the start does not solve again. With an inexact prior
    no step count is best for every input (the pipeline records each task's choice and distance
    as ``inversion_steps`` and ``inversion_mpjpe_cm``). ``prediction`` as in :func:`ddim_solver`.
    """
    if not step_counts:
        raise ArtifactError("invert_closest: parameter 'step_counts' is empty")
    best: tuple[Tensor, Tensor, Tensor, Tensor] | None = None  # noise, decode, error, steps
    for steps in step_counts:
        z = invert_motion(model, schedule, x0, steps, model_kwargs=model_kwargs, spacing=spacing, prediction=prediction)
        with torch.no_grad():
            decoded = solver(z)
            error = total_loss(_terms(reconstruction, decoded, x0.shape[0])).detach()
        if best is None:
            best = (z, decoded, error, torch.full_like(error, steps, dtype=torch.long))
            continue
        better = error < best[2]
        pick = better.reshape((-1,) + (1,) * (z.dim() - 1))
        best = (torch.where(pick, z, best[0]), torch.where(pick, decoded, best[1]), torch.where(better, error, best[2]),
                torch.where(better, torch.full_like(best[3], steps), best[3]))
    return best[0], best[3], best[1]


def fit_inversion(z_inverted: Tensor, solver: Solver, reconstruction: Criterion, options: DNOOptions) -> DNOResult:
    """Refine inverted noise ``z_inverted`` (B, T, D) so that ``solver(z)`` reproduces the input.

    DDIM inversion is exact only for a model whose x0 estimate is exact at low noise; a prior with
    an error floor there (ours, from 4-frame tokens) inverts to noise whose decode can be far from
    the input (the pipeline records it per task as ``inversion_mpjpe_cm``).
    ``options.inversion_fit_steps`` steps of Algorithm 1 with only ``reconstruction`` (``x0 ->
    (B,)``, e.g. the joint error to the input) as the criterion, no content or decorrelation term
    and a warm-up of a fifth of the steps, bring it close (``fitted_inversion_mpjpe_cm``).
    """
    steps = options.inversion_fit_steps
    if steps < 1:
        raise ArtifactError("fit_inversion: parameter 'inversion_fit_steps' must be >= 1")
    fit = replace(options, steps=steps, warmup_steps=max(1, steps // 5), lr_schedule="cosine", lambda_content=0.0,
                  lambda_decorr=0.0, perturbation=0.0)
    return optimize_noise(z_inverted, solver, reconstruction, fit)


@dataclass(frozen=True)
class DNOResult:
    """Outcome of :func:`optimize_noise`.

    ``z`` (B, T, D) the optimised noise; ``x`` (B, T, D) its decoded motion (one last solve);
    ``history[name]`` (steps, B) per step for every criterion term, ``"content"`` and
    ``"decorr"`` (already weighted by their lambdas, present when the lambda is > 0), ``"total"``
    (their sum) and ``"grad_norm"`` (the raw gradient's L2 norm before normalisation), all
    evaluated at the ``z`` the step started from; ``lr`` (steps,) the learning rates used;
    ``step_seconds`` (steps,) the wall time of each step; ``final[name]`` (B,) the terms and total
    at the returned ``z``.
    """

    z: Tensor
    x: Tensor
    history: dict[str, np.ndarray]
    lr: np.ndarray
    step_seconds: np.ndarray
    final: dict[str, np.ndarray]


def _terms(criterion: Criterion, x: Tensor, batch: int) -> dict[str, Tensor]:
    out = criterion(x)
    terms = {"criterion": out} if isinstance(out, Tensor) else dict(out)
    if not terms:
        raise ArtifactError("optimize_noise: the criterion returned no terms")
    for name, value in terms.items():
        if not isinstance(value, Tensor) or value.shape != (batch,):
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ArtifactError(f"optimize_noise: criterion term '{name}' has shape {shape}, expected ({batch},)")
        if name in ("content", "decorr", "total", "grad_norm"):
            raise ArtifactError(f"optimize_noise: criterion term name '{name}' is reserved")
    return terms


def _latent_terms(z: Tensor, options: DNOOptions, z_reference: Tensor | None, lengths: Tensor | None,
                  content_weight: Tensor | None = None) -> dict[str, Tensor]:
    terms = {}
    if options.lambda_content > 0:
        content = options.lambda_content * content_loss(z, z_reference, squared=options.content_squared)
        terms["content"] = content if content_weight is None else content_weight.to(content) * content
    if options.lambda_decorr > 0:
        terms["decorr"] = options.lambda_decorr * decorrelation_loss(z, lengths)
    return terms


def optimize_noise(
    z_init: Tensor,
    solver: Solver,
    criterion: Criterion,
    options: DNOOptions,
    *,
    z_reference: Tensor | None = None,
    lengths: Tensor | None = None,
    content_weight: Tensor | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> DNOResult:
    """Algorithm 1: minimise ``criterion(solver(z)) + lambda_cont ||z - z_ref|| + lambda_decorr L_decorr(z)``.

    Args:
        z_init: start noise (B, T, D): the inverted input (editing) or ``N(0, I)`` (refinement).
        solver: ``z -> x0``, differentiable (e.g. :func:`ddim_solver`).
        criterion: ``x0 -> (B,)`` or ``{term: (B,)}`` on the decoded motion.
        options: :class:`DNOOptions`.
        z_reference: (B, T, D) the content anchor; defaults to ``z_init`` (Eq. 5).
        lengths: (B,) valid frames per sample for the decorrelation loss (padding excluded).
        content_weight: (B,) >= 0 per-sample factors on ``lambda_content`` (None: 1 for all).
        generator: source of the perturbation noise (needed when ``options.perturbation > 0``).
        progress: show a tqdm bar.
    """
    if not isinstance(z_init, Tensor) or z_init.dim() < 2 or not z_init.is_floating_point():
        raise ArtifactError("optimize_noise: parameter 'z_init' must be a float tensor (B, ...)")
    if options.perturbation > 0 and generator is None:
        raise ArtifactError("optimize_noise: a perturbation > 0 needs parameter 'generator'")
    batch = z_init.shape[0]
    z_reference = (z_init if z_reference is None else z_reference).detach()
    if z_reference.shape != z_init.shape:
        raise ArtifactError(f"optimize_noise: 'z_reference' {tuple(z_reference.shape)} differs from 'z_init' {tuple(z_init.shape)}")
    if content_weight is not None and (content_weight.shape != (batch,) or not bool(torch.isfinite(content_weight).all())
                                       or bool((content_weight < 0).any())):
        raise ArtifactError(f"optimize_noise: 'content_weight' must be ({batch},) finite and >= 0, "
                            f"got {tuple(content_weight.shape)}")
    z = z_init.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=options.lr, betas=options.adam_betas)
    records: dict[str, list[np.ndarray]] = {}
    rates = np.zeros(options.steps)
    seconds = np.zeros(options.steps)

    for step in tqdm(range(options.steps), desc="dno", disable=not progress, leave=False):
        started = time.perf_counter()
        rate = learning_rate(step, options)
        rates[step] = rate
        for group in optimizer.param_groups:
            group["lr"] = rate
        with torch.enable_grad():
            terms = _terms(criterion, solver(z), batch)
            terms.update(_latent_terms(z, options, z_reference, lengths, content_weight))
            total = total_loss(terms)
            (grad,) = torch.autograd.grad(total.sum(), z)
        if not bool(torch.isfinite(grad).all()):
            raise ArtifactError(f"optimize_noise: non-finite gradient at step {step}")
        for name, value in {**terms, "total": total, "grad_norm": grad.flatten(1).norm(dim=1)}.items():
            records.setdefault(name, []).append(value.detach().double().cpu().numpy())
        z.grad = normalize_per_sample(grad) if options.normalize_gradient else grad
        optimizer.step()
        if options.perturbation > 0:
            with torch.no_grad():
                z.add_(options.perturbation * torch.randn(z.shape, generator=generator, dtype=z.dtype).to(z.device))
        seconds[step] = time.perf_counter() - started

    with torch.no_grad():
        z_final = z.detach()
        x = solver(z_final).detach()
        terms = _terms(criterion, x, batch)
        terms.update(_latent_terms(z_final, options, z_reference, lengths, content_weight))
        terms["total"] = total_loss(terms)
    history = {name: np.stack(values) for name, values in records.items()}
    final = {name: value.double().cpu().numpy() for name, value in terms.items()}
    return DNOResult(z=z_final, x=x, history=history, lr=rates, step_seconds=seconds, final=final)
