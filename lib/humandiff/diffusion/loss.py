"""Training side of the core: the denoiser's regression target, its loss and the training timesteps.

Conventions, shared by every paper's training:

- Forward process: ``x_t = q_sample(schedule, x0, t, noise) = sqrt(ab_t) x0 + sqrt(1 - ab_t) noise``
  with ``noise ~ N(0, I)``, one model timestep ``t`` in ``[0, T)`` per sample and ``ab_t =
  alphas_cumprod[t]`` (:mod:`humandiff.diffusion.schedule`).
- ``prediction`` says what the network's output ``(B, ...)`` estimates, hence the target it is
  compared with (:func:`prediction_target`):

  - ``"x0"``: the clean data (MDM); target ``x0``.
  - ``"eps"``: the noise (DDPM, ScoreHMR); target ``noise``.
  - ``"v"``: the velocity (Salimans & Ho, 2022); target ``sqrt(ab_t) noise - sqrt(1 - ab_t) x0``.

  The three are linear in ``(x_t, output)`` given ``t``: any output gives the clean estimate by
  :func:`~humandiff.diffusion.sampling.x0_from_prediction`.
- Reduction (:func:`prediction_loss`): the squared error ``(output - target)^2`` elementwise;
  per sample, its mean over the real frames' elements (``mask`` ``(B, T)``, True on real frames
  of data ``(B, T, ...)``: the masked sum divided by real frames x elements per frame, so a
  sample without real frames gives 0; without a mask, the mean over all elements); then times
  the sample's ``weights[b]``. The result is per sample ``(B,)``; a batch's loss is its mean, so
  weights are absolute, not normalised over the batch.
- Timesteps (:class:`TimestepSampler`): uniform in ``[0, T)``, optionally with a share of the
  batch from the top noise levels. Randomness comes only from an explicit ``torch.Generator``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from humandiff.diffusion.sampling import PREDICTIONS, PredictionType
from humandiff.diffusion.schedule import NoiseSchedule, as_timesteps, gather_at
from humandiff.io.artifacts import ArtifactError


def prediction_target(
    prediction: PredictionType,
    x0: Tensor,
    noise: Tensor,
    schedule: NoiseSchedule | None = None,
    t: int | Tensor | None = None,
) -> Tensor:
    """The regression target ``(B, ...)`` of a denoiser trained on ``q_sample(schedule, x0, t, noise)``.

    ``"x0"`` and ``"eps"`` return ``x0`` and ``noise`` themselves; ``"v"`` needs ``schedule`` and ``t``.
    """
    if prediction == "x0":
        return x0
    if prediction == "eps":
        return noise
    if prediction == "v":
        if schedule is None or t is None:
            raise ArtifactError("prediction_target: prediction 'v' needs parameters 'schedule' and 't'")
        return gather_at(schedule.sqrt_alphas_cumprod, t, x0) * noise - gather_at(
            schedule.sqrt_one_minus_alphas_cumprod, t, x0
        ) * x0
    raise ArtifactError(
        f"prediction_target: parameter 'prediction' must be one of {', '.join(PREDICTIONS)}, got {prediction!r}"
    )


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Per-sample mean ``(B,)`` of ``values`` ``(B, T, ...)`` over the frames where ``mask`` ``(B, T)`` is True.

    A sample without a real frame gives 0.
    """
    if mask.shape != values.shape[:2]:
        raise ArtifactError(f"masked_mean: parameter 'mask' has shape {tuple(mask.shape)}, "
                            f"expected {tuple(values.shape[:2])}")
    weights = mask.to(values.dtype).reshape(mask.shape + (1,) * (values.dim() - 2)).expand_as(values)
    return (values * weights).flatten(1).sum(1) / weights.flatten(1).sum(1).clamp(min=1.0)


def prediction_loss(
    schedule: NoiseSchedule,
    output: Tensor,
    x0: Tensor,
    noise: Tensor,
    t: Tensor,
    prediction: PredictionType,
    *,
    mask: Tensor | None = None,
    weights: Tensor | None = None,
) -> Tensor:
    """Per-sample denoising loss ``(B,)`` of a model ``output`` ``(B, ...)`` at ``x_t = q_sample(schedule, x0, t, noise)``.

    ``x0``, ``noise`` ``(B, ...)`` and ``t`` ``(B,)`` are what made ``x_t``; ``mask`` ``(B, T)``
    bool for data ``(B, T, ...)``, ``weights`` ``(B,)``; reduction as in the module doc.
    """
    if prediction not in PREDICTIONS:
        raise ArtifactError(
            f"prediction_loss: parameter 'prediction' must be one of {', '.join(PREDICTIONS)}, got {prediction!r}"
        )
    for name, value in (("output", output), ("noise", noise)):
        if value.shape != x0.shape:
            raise ArtifactError(
                f"prediction_loss: parameter '{name}' has shape {tuple(value.shape)}, expected {tuple(x0.shape)}"
            )
    t = as_timesteps(t, x0)
    T = schedule.num_timesteps
    if bool(((t < 0) | (t >= T)).any()):
        raise ArtifactError(f"prediction_loss: parameter 't' must lie in [0, {T}), got {t.tolist()}")
    if mask is not None and (mask.dtype != torch.bool or mask.shape != x0.shape[:2]):
        raise ArtifactError(f"prediction_loss: parameter 'mask' must be bool of shape {tuple(x0.shape[:2])}, "
                            f"got {mask.dtype} {tuple(mask.shape)}")
    if weights is not None and weights.shape != x0.shape[:1]:
        raise ArtifactError(f"prediction_loss: parameter 'weights' must have shape ({x0.shape[0]},), "
                            f"got {tuple(weights.shape)}")
    error = (output - prediction_target(prediction, x0, noise, schedule, t)).square()
    loss = error.flatten(1).mean(1) if mask is None else masked_mean(error, mask)
    return loss if weights is None else loss * weights.to(loss.dtype)


def random_timesteps(
    schedule: NoiseSchedule, batch_size: int, generator: torch.Generator, device: torch.device | str = "cpu"
) -> Tensor:
    """Training timesteps drawn uniformly from ``[0, T)``, LongTensor ``(batch_size,)``."""
    return torch.randint(0, schedule.num_timesteps, (batch_size,), generator=generator, device=device)


def _check_fraction(value: float, name: str, low_open: bool) -> None:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not ((0.0 < value) if low_open else (0.0 <= value)) or not value <= 1.0:
        interval = "(0, 1]" if low_open else "[0, 1]"
        raise ArtifactError(f"TimestepSampler: parameter '{name}' must lie in {interval}, got {value!r}")


@dataclass(frozen=True)
class TimestepSampler:
    """Training timesteps ``(B,)``: uniform in ``[0, T)``, except a ``high_noise_share`` of the
    batch drawn uniformly from the top ``high_noise_fraction`` of the levels.

    Sample ``b`` first draws a uniform level (:func:`random_timesteps`); with a share above 0 a
    second draw ``rand (B,) < high_noise_share`` picks the samples that take
    ``T - 1 - randint(0, max(1, round(T * high_noise_fraction)))`` instead. With the default share
    0 no extra random numbers are drawn, so it equals :func:`random_timesteps`. Long redundant
    signals (motion clips) give their content away down to low signal-to-noise ratios, so what a
    sample becomes is decided in the top few percent of the levels, which uniform draws seldom visit.
    """

    high_noise_share: float = 0.0
    high_noise_fraction: float = 0.1

    def __post_init__(self) -> None:
        _check_fraction(self.high_noise_share, "high_noise_share", low_open=False)
        _check_fraction(self.high_noise_fraction, "high_noise_fraction", low_open=True)

    def __call__(
        self,
        schedule: NoiseSchedule,
        batch_size: int,
        generator: torch.Generator,
        device: torch.device | str = "cpu",
    ) -> Tensor:
        """LongTensor ``(batch_size,)`` of model timesteps in ``[0, T)``, all drawn from ``generator``."""
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ArtifactError(f"TimestepSampler: parameter 'batch_size' must be a positive integer, got {batch_size!r}")
        t = random_timesteps(schedule, batch_size, generator, device)
        if self.high_noise_share == 0.0:
            return t
        T = schedule.num_timesteps
        top = max(1, round(T * self.high_noise_fraction))
        high = torch.rand(batch_size, generator=generator, device=device) < self.high_noise_share
        return torch.where(high, T - 1 - torch.randint(0, top, (batch_size,), generator=generator, device=device), t)


def error_weight(schedule: NoiseSchedule, t: Tensor, source: str, target: str) -> Tensor:
    """Per-sample factor ``(B,)`` float64 that turns the squared error of a ``source`` output into that of the
    same estimate read as a ``target`` output, at timesteps ``t`` ``(B,)``.

    With ``e0 = x0_hat - x0``: ``eps_hat - noise = -sqrt(ab_t / (1 - ab_t)) e0`` and ``v_hat - v =
    -e0 / sqrt(1 - ab_t)``, so per unit of ``||e0||^2`` the squared errors are ``x0: 1``,
    ``eps: ab_t / (1 - ab_t)`` (the signal-to-noise ratio) and ``v: 1 / (1 - ab_t)``; the factor is
    target over source.
    """
    for name, value in (("source", source), ("target", target)):
        if value not in PREDICTIONS:
            raise ArtifactError(f"error_weight: parameter '{name}' must be one of {', '.join(PREDICTIONS)}, got {value!r}")
    ab = schedule.alphas_cumprod.to(t.device)[t.long()].double()
    per_x0 = {"x0": torch.ones_like(ab), "eps": ab / (1.0 - ab), "v": 1.0 / (1.0 - ab)}
    return per_x0[target] / per_x0[source]
