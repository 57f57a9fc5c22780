"""Forward noising, parameter conversions, DDPM / DDIM steps, samplers and DDIM inversion.

Pure functions over a :class:`~humandiff.diffusion.schedule.NoiseSchedule`. The denoiser is a
callable ``model(x_t (B, ...), t (B,) long, **model_kwargs) -> (B, ...)`` that predicts either the
clean data (``prediction="x0"``, MDM) or the noise (``prediction="eps"``, ScoreHMR); every step
turns its output into the pair ``(x0_hat, eps_hat)``. A model trained to predict ``v``
(:mod:`humandiff.diffusion.loss`) is sampled as the x0 denoiser :func:`x0_from_prediction` makes of
it. Randomness comes only from an explicit ``torch.Generator`` or explicit noise tensors.

Timesteps: a sampler walks a strictly decreasing list of model timesteps and then steps into
``CLEAN`` (-1, ``alpha_bar = 1``); :func:`ddim_invert` walks the same list backwards, from
``CLEAN`` up to ``timesteps[0]``, so ``ddim_sample(m, ddim_invert(m, x0, s, timesteps=ts), s,
timesteps=ts)`` is a round trip (exact up to the ODE discretisation error, see
:func:`ddim_invert_step`).

Gradients: with ``differentiable=False`` (default) everything runs without a graph and returns
detached tensors (guidance gradients are still taken). With ``differentiable=True`` the whole
chain keeps its graph, e.g. to optimise ``x_T`` through DDIM-10 (DNO); ``checkpoint=True`` then
recomputes each model call in the backward pass (``torch.utils.checkpoint``, non-reentrant) so
the memory kept for backward grows only by a few ``x``-sized tensors per step, not by the model's
activations.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping, NamedTuple, Sequence, get_args

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint as checkpoint_call

from humandiff.diffusion.guidance import Denoiser, Guidance
from humandiff.diffusion.schedule import (
    CLEAN,
    NoiseSchedule,
    Spacing,
    alpha_bar_at,
    as_timesteps,
    check_timesteps,
    gather_at,
    make_timesteps,
)
from humandiff.io.artifacts import ArtifactError

#: What the samplers take: the model predicts the clean data or the noise.
Prediction = Literal["x0", "eps"]
#: Every parametrisation a denoiser may be trained with (:mod:`humandiff.diffusion.loss`): the
#: samplers' two and ``"v" = sqrt(ab) eps - sqrt(1 - ab) x0``, sampled through :func:`x0_from_prediction`.
PredictionType = Literal["x0", "eps", "v"]
PREDICTIONS: tuple[str, ...] = get_args(PredictionType)
#: Per-step noise: ``(S, B, ...)`` or a sequence of ``S`` tensors ``(B, ...)``.
StepNoise = Tensor | Sequence[Tensor]


# ---------------------------------------------------------------------------------------------
# Forward process and conversions


def q_sample(schedule: NoiseSchedule, x0: Tensor, t: int | Tensor, noise: Tensor) -> Tensor:
    """Draw from ``q(x_t | x0)``: ``sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise``, all ``(B, ...)``."""
    if noise.shape != x0.shape:
        raise ArtifactError(f"q_sample: parameter 'noise' has shape {tuple(noise.shape)}, expected {tuple(x0.shape)}")
    ab = alpha_bar_at(schedule, t, x0)
    return ab.sqrt().to(x0.dtype) * x0 + (1.0 - ab).sqrt().to(x0.dtype) * noise


def x0_from_eps(schedule: NoiseSchedule, x_t: Tensor, t: int | Tensor, eps: Tensor) -> Tensor:
    """``(x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)``, ``(B, ...)``; ``t`` a model timestep."""
    return (x_t - gather_at(schedule.sqrt_one_minus_alphas_cumprod, t, x_t) * eps) / gather_at(
        schedule.sqrt_alphas_cumprod, t, x_t
    )


def eps_from_x0(schedule: NoiseSchedule, x_t: Tensor, t: int | Tensor, x0: Tensor) -> Tensor:
    """``(x_t - sqrt(alpha_bar_t) x0) / sqrt(1 - alpha_bar_t)``, ``(B, ...)``; ``t`` a model timestep."""
    return (x_t - gather_at(schedule.sqrt_alphas_cumprod, t, x_t) * x0) / gather_at(
        schedule.sqrt_one_minus_alphas_cumprod, t, x_t
    )


def score_from_eps(schedule: NoiseSchedule, t: int | Tensor, eps: Tensor) -> Tensor:
    """``grad_{x_t} log p(x_t) = -eps / sqrt(1 - alpha_bar_t)``, ``(B, ...)``."""
    return -eps / gather_at(schedule.sqrt_one_minus_alphas_cumprod, t, eps)


def eps_from_score(schedule: NoiseSchedule, t: int | Tensor, score: Tensor) -> Tensor:
    """Inverse of :func:`score_from_eps`: ``-sqrt(1 - alpha_bar_t) score``."""
    return -gather_at(schedule.sqrt_one_minus_alphas_cumprod, t, score) * score


def split_prediction(
    schedule: NoiseSchedule, x_t: Tensor, t: int | Tensor, output: Tensor, prediction: Prediction
) -> tuple[Tensor, Tensor]:
    """Turn a model output ``(B, ...)`` into ``(x0_hat, eps_hat)`` given what the model predicts."""
    if prediction == "x0":
        return output, eps_from_x0(schedule, x_t, t, output)
    if prediction == "eps":
        return x0_from_eps(schedule, x_t, t, output), output
    raise ArtifactError(f"split_prediction: parameter 'prediction' must be 'x0' or 'eps', got {prediction!r}")


def x0_from_v(schedule: NoiseSchedule, x_t: Tensor, t: int | Tensor, v: Tensor) -> Tensor:
    """``sqrt(alpha_bar_t) x_t - sqrt(1 - alpha_bar_t) v`` for ``v = sqrt(ab) eps - sqrt(1 - ab) x0``, ``(B, ...)``."""
    return gather_at(schedule.sqrt_alphas_cumprod, t, x_t) * x_t - gather_at(
        schedule.sqrt_one_minus_alphas_cumprod, t, x_t
    ) * v


def x0_from_prediction(
    schedule: NoiseSchedule, x_t: Tensor, t: int | Tensor, output: Tensor, prediction: PredictionType
) -> Tensor:
    """The clean estimate ``x0_hat`` ``(B, ...)`` of a model output ``(B, ...)`` of any :data:`PredictionType`.

    ``"x0"`` returns ``output`` itself (no arithmetic); ``"eps"`` is :func:`x0_from_eps`, ``"v"``
    :func:`x0_from_v`. This is how a ``"v"`` model reaches the samplers: wrap it into an x0 denoiser.
    """
    if prediction == "x0":
        return output
    if prediction == "eps":
        return x0_from_eps(schedule, x_t, t, output)
    if prediction == "v":
        return x0_from_v(schedule, x_t, t, output)
    raise ArtifactError(
        f"x0_from_prediction: parameter 'prediction' must be one of {', '.join(PREDICTIONS)}, got {prediction!r}"
    )


def q_posterior(
    schedule: NoiseSchedule, x0: Tensor, x_t: Tensor, t: int | Tensor, t_prev: int | Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Mean ``(B, ...)`` and variance ``(B, 1, ..., 1)`` of ``q(x_{t_prev} | x_t, x0)``.

    ``t_prev`` defaults to ``t - 1`` (``CLEAN`` after 0). For a skip ``t -> s`` the step's beta is
    ``1 - alpha_bar_t / alpha_bar_s``, which reduces to DDPM's posterior when ``s = t - 1``:
    mean = ``sqrt(ab_s) beta / (1 - ab_t) x0 + sqrt(1 - beta) (1 - ab_s) / (1 - ab_t) x_t``,
    variance = ``beta (1 - ab_s) / (1 - ab_t)``.
    """
    t = as_timesteps(t, x_t)
    s = t - 1 if t_prev is None else as_timesteps(t_prev, x_t)
    _check_pair(t, s, "q_posterior")
    ab_t, ab_s = alpha_bar_at(schedule, t, x_t), alpha_bar_at(schedule, s, x_t)
    beta = 1.0 - ab_t / ab_s
    coef_x0 = (ab_s.sqrt() * beta / (1.0 - ab_t)).to(x_t.dtype)
    coef_xt = ((1.0 - beta).sqrt() * (1.0 - ab_s) / (1.0 - ab_t)).to(x_t.dtype)
    variance = (beta * (1.0 - ab_s) / (1.0 - ab_t)).to(x_t.dtype)
    return coef_x0 * x0 + coef_xt * x_t, variance


# ---------------------------------------------------------------------------------------------
# One step


@dataclass(frozen=True)
class StepOutput:
    """Result of one step, all ``(B, ...)``: the new sample and the (guided) estimates it used.

    ``guidance_loss`` is the detached guidance loss at the unguided ``x0_hat`` (``(B,)`` or a
    scalar, as the loss returns it), ``None`` without guidance.
    """

    x: Tensor
    x0_hat: Tensor
    eps_hat: Tensor
    guidance_loss: Tensor | None = None


class _Estimate(NamedTuple):
    x0_hat: Tensor
    eps_hat: Tensor
    loss: Tensor | None
    shift: Tensor | None  # added to the step's result ("xt" guidance)


def _grad_mode(differentiable: bool) -> contextlib.AbstractContextManager:
    return contextlib.nullcontext() if differentiable else torch.no_grad()


def _check_pair(high: Tensor, low: Tensor, where: str, high_name: str = "t", low_name: str = "t_prev") -> None:
    if bool((low >= high).any()):
        raise ArtifactError(
            f"{where}: parameter '{low_name}' must be below '{high_name}', "
            f"got {high_name}={high.tolist()} {low_name}={low.tolist()}"
        )


def _step_levels(
    schedule: NoiseSchedule, high: int | Tensor, low: int | Tensor, like: Tensor, where: str, names: tuple[str, str]
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Validated ``(high (B,), low (B,), ab_high, ab_low)`` for a step between two levels, before any model call."""
    high_vec, low_vec = as_timesteps(high, like), as_timesteps(low, like)
    ab_high, ab_low = alpha_bar_at(schedule, high_vec, like), alpha_bar_at(schedule, low_vec, like)
    _check_pair(high_vec, low_vec, where, *names)
    return high_vec, low_vec, ab_high, ab_low


def _call_model(
    model: Denoiser, x_t: Tensor, t: Tensor, model_kwargs: Mapping[str, Any] | None, checkpoint: bool
) -> Tensor:
    kwargs = dict(model_kwargs or {})
    if checkpoint and torch.is_grad_enabled():
        out = checkpoint_call(model, x_t, t, use_reentrant=False, **kwargs)
    else:
        out = model(x_t, t, **kwargs)
    if not isinstance(out, Tensor) or out.shape != x_t.shape:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ArtifactError(f"model: output has shape {shape}, expected {tuple(x_t.shape)} like its input x_t")
    return out


def _check_loss(loss: Tensor, batch: int) -> None:
    if not isinstance(loss, Tensor) or not (loss.dim() == 0 or loss.shape == (batch,)):
        shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
        raise ArtifactError(f"Guidance: loss returned shape {shape}, expected () or ({batch},)")


def _guided_estimate(
    model: Denoiser,
    x_t: Tensor,
    t: Tensor,
    schedule: NoiseSchedule,
    prediction: Prediction,
    guidance: Guidance | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    checkpoint: bool = False,
    differentiable: bool = False,
) -> _Estimate:
    """Model call at ``(x_t (B, ...), t (B,))`` turned into ``(x0_hat, eps_hat)`` with guidance applied."""
    if guidance is None:
        out = _call_model(model, x_t, t, model_kwargs, checkpoint)
        return _Estimate(*split_prediction(schedule, x_t, t, out, prediction), None, None)

    if guidance.mode == "x0":
        out = _call_model(model, x_t, t, model_kwargs, checkpoint)
        x0_hat, _ = split_prediction(schedule, x_t, t, out, prediction)
        with torch.enable_grad():
            x0_in = x0_hat if differentiable and x0_hat.requires_grad else x0_hat.detach().requires_grad_(True)
            loss = guidance.loss(x0_in, t)
            _check_loss(loss, x_t.shape[0])
            (grad,) = torch.autograd.grad(loss.sum(), x0_in, create_graph=differentiable)
        x0_hat = x0_hat - guidance.scale * grad
        return _Estimate(x0_hat, eps_from_x0(schedule, x_t, t, x0_hat), loss.detach(), None)

    # "eps" and "xt": the gradient w.r.t. x_t flows through the denoiser
    with torch.enable_grad():
        x_in = x_t if differentiable and x_t.requires_grad else x_t.detach().requires_grad_(True)
        out = _call_model(model, x_in, t, model_kwargs, checkpoint)
        x0_hat, eps_hat = split_prediction(schedule, x_in, t, out, prediction)
        loss = guidance.loss(x0_hat, t)
        _check_loss(loss, x_t.shape[0])
        (grad,) = torch.autograd.grad(loss.sum(), x_in, create_graph=differentiable)
    if not differentiable:
        x0_hat, eps_hat = x0_hat.detach(), eps_hat.detach()
    if guidance.mode == "xt":
        return _Estimate(x0_hat, eps_hat, loss.detach(), -guidance.scale * grad)
    eps_hat = eps_hat + gather_at(schedule.sqrt_one_minus_alphas_cumprod, t, x_t) * guidance.scale * grad
    return _Estimate(x0_from_eps(schedule, x_t, t, eps_hat), eps_hat, loss.detach(), None)


def ddim_step(
    model: Denoiser,
    x_t: Tensor,
    t: int | Tensor,
    t_prev: int | Tensor,
    schedule: NoiseSchedule,
    *,
    prediction: Prediction = "x0",
    eta: float = 0.0,
    noise: Tensor | None = None,
    guidance: Guidance | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    checkpoint: bool = False,
    differentiable: bool = False,
) -> StepOutput:
    """DDIM step ``x_t -> x_{t_prev}`` (``t_prev < t``, ``CLEAN`` allowed), ``(B, ...)``.

    ``x_prev = sqrt(ab_prev) x0_hat + sqrt(1 - ab_prev - sigma^2) eps_hat + sigma noise`` with
    ``sigma = eta sqrt((1 - ab_prev) / (1 - ab_t)) sqrt(1 - ab_t / ab_prev)``. ``eta = 0`` is the
    deterministic ODE step, ``eta = 1`` equals the DDPM ancestral step. ``noise`` ``(B, ...)`` is
    required when ``sigma > 0`` (it is zero into ``CLEAN``).
    """
    with _grad_mode(differentiable):
        t_vec, s_vec, ab_t, ab_s = _step_levels(schedule, t, t_prev, x_t, "ddim_step", ("t", "t_prev"))
        est = _guided_estimate(
            model, x_t, t_vec, schedule, prediction, guidance, model_kwargs, checkpoint, differentiable
        )
        sigma = eta * ((1.0 - ab_s) / (1.0 - ab_t) * (1.0 - ab_t / ab_s)).sqrt()
        eps_coef = (1.0 - ab_s - sigma**2).clamp(min=0.0).sqrt()
        x_prev = ab_s.sqrt().to(x_t.dtype) * est.x0_hat + eps_coef.to(x_t.dtype) * est.eps_hat
        if bool((sigma > 0).any()):
            if noise is None or noise.shape != x_t.shape:
                raise ArtifactError(f"ddim_step: parameter 'noise' {tuple(x_t.shape)} is required when eta > 0")
            x_prev = x_prev + sigma.to(x_t.dtype) * noise
        if est.shift is not None:
            x_prev = x_prev + est.shift
        return StepOutput(x_prev, est.x0_hat, est.eps_hat, est.loss)


def ddpm_step(
    model: Denoiser,
    x_t: Tensor,
    t: int | Tensor,
    schedule: NoiseSchedule,
    *,
    t_prev: int | Tensor | None = None,
    prediction: Prediction = "x0",
    noise: Tensor | None = None,
    guidance: Guidance | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    checkpoint: bool = False,
    differentiable: bool = False,
) -> StepOutput:
    """Ancestral step ``x_{t_prev} ~ q(x_{t_prev} | x_t, x0 = x0_hat)`` (``t_prev`` defaults to ``t - 1``).

    Uses the posterior variance of :func:`q_posterior` ("fixed small", as MDM); ``noise``
    ``(B, ...)`` is required unless stepping into ``CLEAN`` (variance 0).
    """
    with _grad_mode(differentiable):
        t_vec = as_timesteps(t, x_t)
        s_in = t_vec - 1 if t_prev is None else t_prev
        t_vec, s_vec, _, _ = _step_levels(schedule, t_vec, s_in, x_t, "ddpm_step", ("t", "t_prev"))
        est = _guided_estimate(
            model, x_t, t_vec, schedule, prediction, guidance, model_kwargs, checkpoint, differentiable
        )
        mean, variance = q_posterior(schedule, est.x0_hat, x_t, t_vec, s_vec)
        x_prev = mean
        if bool((variance > 0).any()):
            if noise is None or noise.shape != x_t.shape:
                raise ArtifactError(f"ddpm_step: parameter 'noise' of shape {tuple(x_t.shape)} is required above t = 0")
            x_prev = mean + variance.sqrt() * noise
        if est.shift is not None:
            x_prev = x_prev + est.shift
        return StepOutput(x_prev, est.x0_hat, est.eps_hat, est.loss)


def ddim_invert_step(
    model: Denoiser,
    x_t: Tensor,
    t: int | Tensor,
    t_next: int | Tensor,
    schedule: NoiseSchedule,
    *,
    prediction: Prediction = "x0",
    fixed_point_iters: int = 0,
    model_kwargs: Mapping[str, Any] | None = None,
    checkpoint: bool = False,
    differentiable: bool = False,
) -> StepOutput:
    """Deterministic DDIM step upwards ``x_t -> x_{t_next}`` (``t_next > t``, ``t`` may be ``CLEAN``).

    ``x_next = sqrt(ab_next) (x_t - sqrt(1 - ab_t) e) / sqrt(ab_t) + sqrt(1 - ab_next) e``, all
    ``(B, ...)``. The exact inverse of the sampler's step ``t_next -> t`` needs
    ``e = eps_hat(x_next, t_next)``, which is unknown; the usual explicit step takes
    ``e = eps_hat(x_t, t)`` (DDIM / guided-diffusion; from ``CLEAN``, where the model has no
    timestep, it is called at ``(x_t, t_next)``), an error of first order in the step size.

    ``fixed_point_iters = k`` then solves the implicit equation by k fixed-point iterations
    evaluating the model at ``(x_next, t_next)``, which makes the round trip exact as they converge.
    The update is written in the parametrisation that barely moves with ``x_next`` and so contracts
    fast: the ``eps`` form above where the destination is mostly signal (``ab_next >= 1/2``, and
    always from ``CLEAN``), the ``x0`` form ``x_next = sqrt(ab_next) x0_hat + sqrt((1 - ab_next) /
    (1 - ab_t)) (x_t - sqrt(ab_t) x0_hat)`` where it is mostly noise; both have the same fixed point.
    """
    with _grad_mode(differentiable):
        n_vec, t_vec, ab_n, ab_t = _step_levels(schedule, t_next, t, x_t, "ddim_invert_step", ("t_next", "t"))
        eps_coef_x = (ab_n / ab_t).sqrt().to(x_t.dtype)
        eps_coef_e = ((1.0 - ab_n).sqrt() - (ab_n / ab_t).sqrt() * (1.0 - ab_t).sqrt()).to(x_t.dtype)
        # from CLEAN there is no model timestep at x_t: evaluate at the destination level instead
        t_eval = torch.where(t_vec == CLEAN, n_vec, t_vec)
        out = _call_model(model, x_t, t_eval, model_kwargs, checkpoint)
        x0_hat, eps_hat = split_prediction(schedule, x_t, t_eval, out, prediction)
        x_next = eps_coef_x * x_t + eps_coef_e * eps_hat
        if fixed_point_iters > 0:
            noisy = ((ab_n < 0.5) & (ab_t < 1.0)).to(x_t.dtype)
            # 1 - ab_t is 0 only from CLEAN, where the eps form is used; clamp keeps the unused branch finite
            x0_coef_x = ((1.0 - ab_n) / (1.0 - ab_t).clamp(min=1e-300)).sqrt().to(x_t.dtype)
            x0_coef_0 = ab_n.sqrt().to(x_t.dtype) - x0_coef_x * ab_t.sqrt().to(x_t.dtype)
        for _ in range(fixed_point_iters):
            out = _call_model(model, x_next, n_vec, model_kwargs, checkpoint)
            x0_hat, eps_hat = split_prediction(schedule, x_next, n_vec, out, prediction)
            x0_form = x0_coef_x * x_t + x0_coef_0 * x0_hat
            x_next = noisy * x0_form + (1.0 - noisy) * (eps_coef_x * x_t + eps_coef_e * eps_hat)
        return StepOutput(x_next, x0_hat, eps_hat)


# ---------------------------------------------------------------------------------------------
# Chains


@dataclass(frozen=True)
class Trajectory:
    """A chain's history, for debugging and DNO's per-step record (all detached copies).

    ``levels`` ``(S + 1,)`` are the timesteps visited in order (``CLEAN`` = -1 included);
    ``xs`` holds the S + 1 states ``(B, ...)`` at those levels (``xs[0]`` the input, ``xs[-1]``
    the result, which is also ``sample``, kept with its graph when differentiable); ``x0_hats``
    the S clean estimates the steps used; ``guidance_losses`` the S losses (empty without guidance).
    """

    sample: Tensor
    levels: Tensor
    xs: tuple[Tensor, ...]
    x0_hats: tuple[Tensor, ...]
    guidance_losses: tuple[Tensor, ...]


def resolve_timesteps(
    schedule: NoiseSchedule,
    num_steps: int | None = None,
    timesteps: Tensor | Sequence[int] | None = None,
    spacing: Spacing = "trailing",
) -> Tensor:
    """The sampler's strictly decreasing model timesteps ``(S,)``: explicit ``timesteps``, or
    ``num_steps`` evenly spaced (:func:`make_timesteps`), or all ``T`` when both are ``None``."""
    if timesteps is not None and num_steps is not None:
        raise ArtifactError("timesteps: give either parameter 'num_steps' or 'timesteps', not both")
    if timesteps is not None:
        return check_timesteps(timesteps, schedule)
    return make_timesteps(schedule.num_timesteps, schedule.num_timesteps if num_steps is None else num_steps, spacing)


def _draw_noise(noise: StepNoise | None, generator: torch.Generator | None, index: int, like: Tensor) -> Tensor:
    """Noise ``(B, ...)`` for step ``index``: ``noise[index]`` if given, else a draw from ``generator``."""
    if noise is not None:
        if index >= len(noise):
            raise ArtifactError(f"sampler: parameter 'noise' has {len(noise)} steps, step {index} needs one more")
        return noise[index].to(device=like.device, dtype=like.dtype)
    if generator is None:
        raise ArtifactError("sampler: a stochastic step needs parameter 'generator' or 'noise'")
    return torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)


def _run_chain(
    step: Callable[[Tensor, int, int, int], StepOutput], x: Tensor, levels: list[int], keep: bool
) -> Tensor | Trajectory:
    """Apply ``step(x, level, next_level, index) -> StepOutput`` along consecutive ``levels``."""
    xs, x0_hats, losses = [x.detach().clone()], [], []
    for index, (level, next_level) in enumerate(zip(levels[:-1], levels[1:])):
        out = step(x, level, next_level, index)
        x = out.x
        if keep:
            xs.append(x.detach().clone())
            x0_hats.append(out.x0_hat.detach().clone())
            if out.guidance_loss is not None:
                losses.append(out.guidance_loss.detach().clone())
    if not keep:
        return x
    return Trajectory(x, torch.tensor(levels, dtype=torch.long), tuple(xs), tuple(x0_hats), tuple(losses))


def ddim_sample(
    model: Denoiser,
    x_T: Tensor,
    schedule: NoiseSchedule,
    *,
    num_steps: int | None = None,
    timesteps: Tensor | Sequence[int] | None = None,
    spacing: Spacing = "trailing",
    prediction: Prediction = "x0",
    eta: float = 0.0,
    guidance: Guidance | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    generator: torch.Generator | None = None,
    noise: StepNoise | None = None,
    checkpoint: bool = False,
    differentiable: bool = False,
    return_trajectory: bool = False,
) -> Tensor | Trajectory:
    """DDIM from ``x_T`` ``(B, ...)`` at level ``timesteps[0]`` down to clean data ``(B, ...)``.

    Timesteps: explicit (strictly decreasing, e.g. ``torch.arange(50, -1, -2)``) or ``num_steps``
    evenly spaced with ``spacing`` (:func:`make_timesteps`); all ``T`` when neither is given.
    ``eta > 0`` needs ``generator`` or ``noise`` ``(S, B, ...)`` (step i uses ``noise[i]``; the last
    step, into ``CLEAN``, uses none). Returns the sample, or a :class:`Trajectory` when asked.
    """
    ts = resolve_timesteps(schedule, num_steps, timesteps, spacing)

    def step(x: Tensor, level: int, next_level: int, index: int) -> StepOutput:
        stochastic = eta > 0 and next_level != CLEAN
        return ddim_step(
            model, x, level, next_level, schedule, prediction=prediction, eta=eta,
            noise=_draw_noise(noise, generator, index, x) if stochastic else None,
            guidance=guidance, model_kwargs=model_kwargs, checkpoint=checkpoint, differentiable=differentiable,
        )

    return _run_chain(step, x_T, ts.tolist() + [CLEAN], return_trajectory)


def ddpm_sample(
    model: Denoiser,
    x_T: Tensor,
    schedule: NoiseSchedule,
    *,
    num_steps: int | None = None,
    timesteps: Tensor | Sequence[int] | None = None,
    spacing: Spacing = "trailing",
    prediction: Prediction = "x0",
    guidance: Guidance | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    generator: torch.Generator | None = None,
    noise: StepNoise | None = None,
    checkpoint: bool = False,
    differentiable: bool = False,
    return_trajectory: bool = False,
) -> Tensor | Trajectory:
    """Ancestral DDPM sampling from ``x_T`` ``(B, ...)``; by default over all ``T`` timesteps.

    A timestep subset samples the respaced chain (posterior of each skip, see :func:`q_posterior`).
    Needs ``generator`` or ``noise`` ``(S, B, ...)``, as :func:`ddim_sample` with ``eta > 0``.
    """
    ts = resolve_timesteps(schedule, num_steps, timesteps, spacing)

    def step(x: Tensor, level: int, next_level: int, index: int) -> StepOutput:
        return ddpm_step(
            model, x, level, schedule, t_prev=next_level, prediction=prediction,
            noise=_draw_noise(noise, generator, index, x) if next_level != CLEAN else None,
            guidance=guidance, model_kwargs=model_kwargs, checkpoint=checkpoint, differentiable=differentiable,
        )

    return _run_chain(step, x_T, ts.tolist() + [CLEAN], return_trajectory)


def ddim_invert(
    model: Denoiser,
    x0: Tensor,
    schedule: NoiseSchedule,
    *,
    num_steps: int | None = None,
    timesteps: Tensor | Sequence[int] | None = None,
    spacing: Spacing = "trailing",
    prediction: Prediction = "x0",
    fixed_point_iters: int = 0,
    model_kwargs: Mapping[str, Any] | None = None,
    checkpoint: bool = False,
    differentiable: bool = False,
    return_trajectory: bool = False,
) -> Tensor | Trajectory:
    """Deterministic DDIM inversion of clean ``x0`` ``(B, ...)`` up to level ``timesteps[0]``.

    Takes the *sampler's* timesteps (same arguments as :func:`ddim_sample`) and walks them
    backwards: ``CLEAN -> timesteps[-1] -> ... -> timesteps[0]``. ScoreHMR: ``timesteps =
    torch.arange(50, -1, -2)``; DNO editing: ``num_steps=100``. See :func:`ddim_invert_step` for
    ``fixed_point_iters``. Returns ``x`` at ``timesteps[0]``, or a :class:`Trajectory`.
    """
    if int(fixed_point_iters) != fixed_point_iters or fixed_point_iters < 0:
        raise ArtifactError(
            f"ddim_invert: parameter 'fixed_point_iters' must be a non-negative integer, got {fixed_point_iters}"
        )
    ts = resolve_timesteps(schedule, num_steps, timesteps, spacing)

    def step(x: Tensor, level: int, next_level: int, index: int) -> StepOutput:
        return ddim_invert_step(
            model, x, level, next_level, schedule, prediction=prediction, fixed_point_iters=fixed_point_iters,
            model_kwargs=model_kwargs, checkpoint=checkpoint, differentiable=differentiable,
        )

    return _run_chain(step, x0, [CLEAN] + ts.flip(0).tolist(), return_trajectory)
