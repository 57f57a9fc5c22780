"""Noise schedules and timestep subsets.

Conventions used by the whole diffusion core:

- A schedule has ``T`` model timesteps ``t = 0 .. T-1``; ``alphas_cumprod[t]`` is the signal
  level ``alpha_bar_t`` of ``x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps`` (the indexing
  of DDPM / improved DDPM / MDM code, where ``t = 0`` is already slightly noisy).
- The timestep ``CLEAN = -1`` stands for the data itself (``alpha_bar = 1``): every sampler ends
  there and DDIM inversion starts there. The model is never called at ``CLEAN``.
- All schedule arrays are float64 on the CPU; :func:`gather_at` computes in float64 and casts to
  the input's dtype and device only at the end, so float32 chains keep precise coefficients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Sequence

import torch
from torch import Tensor

from humandiff.io.artifacts import ArtifactError

#: Timestep value meaning "clean data" (alpha_bar = 1).
CLEAN = -1

Spacing = Literal["trailing", "leading"]


@dataclass(frozen=True, eq=False)
class NoiseSchedule:
    """A discrete variance schedule; every array is float64 of shape ``(T,)``.

    Build it with :func:`cosine_schedule`, :func:`linear_schedule` or :meth:`from_betas`.
    """

    name: str
    betas: Tensor = field(repr=False)
    alphas_cumprod: Tensor = field(repr=False)
    sqrt_alphas_cumprod: Tensor = field(repr=False)
    sqrt_one_minus_alphas_cumprod: Tensor = field(repr=False)

    def __post_init__(self) -> None:
        arrays = {
            "betas": self.betas,
            "alphas_cumprod": self.alphas_cumprod,
            "sqrt_alphas_cumprod": self.sqrt_alphas_cumprod,
            "sqrt_one_minus_alphas_cumprod": self.sqrt_one_minus_alphas_cumprod,
        }
        length = self.betas.shape[0] if self.betas.dim() == 1 else -1
        for key, value in arrays.items():
            if value.dtype != torch.float64 or value.dim() != 1 or value.shape[0] != length or length < 1:
                raise ArtifactError(
                    f"NoiseSchedule '{self.name}': field '{key}' must be float64 of shape (T,) with T >= 1"
                )
        if not bool(((self.betas > 0) & (self.betas < 1)).all()):
            raise ArtifactError(f"NoiseSchedule '{self.name}': field 'betas' must lie in (0, 1)")

    @classmethod
    def from_betas(cls, betas: Tensor | Sequence[float], name: str = "custom") -> "NoiseSchedule":
        """Schedule from per-step betas ``(T,)``; derived arrays are computed in float64."""
        betas = torch.as_tensor(betas, dtype=torch.float64).detach().clone().cpu()
        if betas.dim() != 1 or betas.numel() < 1 or not bool(((betas > 0) & (betas < 1)).all()):
            raise ArtifactError(f"NoiseSchedule '{name}': parameter 'betas' must be a non-empty 1-D sequence in (0, 1)")
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        return cls(
            name=name,
            betas=betas,
            alphas_cumprod=alphas_cumprod,
            sqrt_alphas_cumprod=alphas_cumprod.sqrt(),
            sqrt_one_minus_alphas_cumprod=(1.0 - alphas_cumprod).sqrt(),
        )

    @property
    def num_timesteps(self) -> int:
        """``T``, the number of model timesteps."""
        return int(self.betas.shape[0])


def cosine_schedule(num_timesteps: int, offset: float = 0.008, max_beta: float = 0.999) -> NoiseSchedule:
    """Cosine schedule of improved DDPM (used by MDM and ScoreHMR).

    ``alpha_bar(u) = cos^2((u + s) / (1 + s) * pi / 2) / cos^2(s / (1 + s) * pi / 2)`` with
    ``u = t / T``; ``beta_t = min(1 - alpha_bar((t + 1) / T) / alpha_bar(t / T), max_beta)`` so
    ``alphas_cumprod[0] = alpha_bar(1 / T)`` and the clipped last beta keeps ``alpha_bar > 0``.
    """
    if int(num_timesteps) != num_timesteps or num_timesteps < 1:
        raise ArtifactError(
            f"cosine_schedule: parameter 'num_timesteps' must be a positive integer, got {num_timesteps}"
        )
    if not 0.0 < max_beta < 1.0:
        raise ArtifactError(f"cosine_schedule: parameter 'max_beta' must lie in (0, 1), got {max_beta}")

    def alpha_bar(u: Tensor) -> Tensor:
        return torch.cos((u + offset) / (1.0 + offset) * math.pi / 2.0) ** 2

    u = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    levels = alpha_bar(u)
    betas = (1.0 - levels[1:] / levels[:-1]).clamp(max=max_beta)
    return NoiseSchedule.from_betas(betas, name=f"cosine{num_timesteps}")


def linear_schedule(num_timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> NoiseSchedule:
    """Linear betas of DDPM (used by HMDiff, K = 200), scaled by ``1000 / T``.

    The scaling (as in improved DDPM) keeps the total noise comparable for any ``T``:
    ``betas = linspace(beta_start * 1000 / T, beta_end * 1000 / T, T)``.
    """
    if int(num_timesteps) != num_timesteps or num_timesteps < 1:
        raise ArtifactError(
            f"linear_schedule: parameter 'num_timesteps' must be a positive integer, got {num_timesteps}"
        )
    scale = 1000.0 / num_timesteps
    start, end = beta_start * scale, beta_end * scale
    if not (0.0 < start <= end < 1.0):
        raise ArtifactError(
            f"linear_schedule: parameter 'num_timesteps'={num_timesteps} gives betas {start:g}..{end:g}, outside (0, 1)"
        )
    betas = torch.linspace(start, end, num_timesteps, dtype=torch.float64)
    return NoiseSchedule.from_betas(betas, name=f"linear{num_timesteps}")


def make_schedule(name: str, num_timesteps: int) -> NoiseSchedule:
    """Schedule by name, ``"cosine"`` or ``"linear"`` (as written in ``params.yaml``)."""
    if name == "cosine":
        return cosine_schedule(num_timesteps)
    if name == "linear":
        return linear_schedule(num_timesteps)
    raise ArtifactError(f"make_schedule: parameter 'name' must be 'cosine' or 'linear', got {name!r}")


def as_timesteps(t: int | Tensor, like: Tensor) -> Tensor:
    """Timesteps as a LongTensor ``(B,)`` on ``like``'s device; an int is repeated over the batch."""
    batch = like.shape[0]
    if isinstance(t, Tensor):
        t = t.to(device=like.device, dtype=torch.long)
        if t.dim() == 0:
            t = t.expand(batch)
        if t.shape != (batch,):
            raise ArtifactError(f"timesteps: parameter 't' must have shape ({batch},), got {tuple(t.shape)}")
        return t
    return torch.full((batch,), int(t), dtype=torch.long, device=like.device)


def gather_at(values: Tensor, t: int | Tensor, like: Tensor) -> Tensor:
    """``values[t]`` for ``values`` ``(T,)`` and ``t`` ``(B,)``, shaped ``(B, 1, ..., 1)`` like ``like``.

    Indexing happens in the values' dtype (float64 for schedules); the result is cast to
    ``like``'s dtype and device. ``t`` must lie in ``[0, T)``.
    """
    t = as_timesteps(t, like)
    if bool(((t < 0) | (t >= values.shape[0])).any()):
        raise ArtifactError(f"gather_at: parameter 't' must lie in [0, {values.shape[0]}), got {t.tolist()}")
    out = values.to(t.device)[t]
    return out.to(like.dtype).reshape((like.shape[0],) + (1,) * (like.dim() - 1))


def alpha_bar_at(schedule: NoiseSchedule, t: int | Tensor, like: Tensor) -> Tensor:
    """``alpha_bar_t`` in float64, shaped ``(B, 1, ..., 1)``; ``t = CLEAN`` (-1) gives 1.

    Stays float64 (callers combine several levels before casting to the data dtype).
    """
    t = as_timesteps(t, like)
    T = schedule.num_timesteps
    if bool(((t < CLEAN) | (t >= T)).any()):
        raise ArtifactError(f"alpha_bar_at: parameter 't' must lie in [-1, {T}), got {t.tolist()}")
    levels = schedule.alphas_cumprod.to(t.device)[t.clamp(min=0)]
    levels = torch.where(t == CLEAN, torch.ones_like(levels), levels)
    return levels.reshape((like.shape[0],) + (1,) * (like.dim() - 1))


def make_timesteps(num_timesteps: int, num_steps: int, spacing: Spacing = "trailing") -> Tensor:
    """``num_steps`` evenly spaced model timesteps of ``[0, T)``, strictly decreasing ``(num_steps,)``.

    With ``leading = floor(i * T / num_steps)`` for ``i = 0 .. num_steps - 1``:

    - ``"trailing"`` (default): ``T - 1 - leading``, e.g. T=1000, 10 steps: 999, 899, ..., 99.
      Every step count starts at ``T - 1``, where ``x_T ~ N(0, I)`` holds, so DDIM-100 inversion
      and DDIM-10 sampling meet at the same level.
    - ``"leading"``: ``leading`` itself, descending: 900, 800, ..., 0 (the ``ddimN`` respacing of
      the guided-diffusion code MDM and DNO build on).

    A sampler walks these in order and ends at ``CLEAN``; ``num_steps = T`` gives all timesteps.
    """
    if int(num_steps) != num_steps or not 1 <= num_steps <= num_timesteps:
        raise ArtifactError(f"make_timesteps: parameter 'num_steps' must lie in [1, {num_timesteps}], got {num_steps}")
    leading = torch.arange(num_steps, dtype=torch.long) * num_timesteps // num_steps
    if spacing == "trailing":
        return num_timesteps - 1 - leading
    if spacing == "leading":
        return leading.flip(0)
    raise ArtifactError(f"make_timesteps: parameter 'spacing' must be 'trailing' or 'leading', got {spacing!r}")


def check_timesteps(timesteps: Tensor | Sequence[int], schedule: NoiseSchedule) -> Tensor:
    """Validate a sampler's timestep list: strictly decreasing model timesteps in ``[0, T)``.

    Returns it as a CPU LongTensor ``(S,)``. ScoreHMR's "t = 50 in steps of 2" is
    ``torch.arange(50, -1, -2)``.
    """
    ts = torch.as_tensor(timesteps).detach().cpu()
    if ts.dtype.is_floating_point or ts.dtype == torch.bool or ts.dim() != 1 or ts.numel() < 1:
        raise ArtifactError("timesteps: parameter 'timesteps' must be a non-empty 1-D integer sequence")
    ts = ts.long()
    T = schedule.num_timesteps
    if int(ts.min()) < 0 or int(ts.max()) >= T:
        raise ArtifactError(f"timesteps: parameter 'timesteps' must lie in [0, {T}), got {ts.tolist()}")
    if ts.numel() > 1 and not bool((ts[1:] < ts[:-1]).all()):
        raise ArtifactError(f"timesteps: parameter 'timesteps' must be strictly decreasing, got {ts.tolist()}")
    return ts
