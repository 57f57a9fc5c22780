"""Loss guidance and classifier-free guidance.

Sign convention: a guidance ``loss`` is something to *minimise* (a negative log-likelihood of the
observation), and a positive ``scale`` always moves samples towards lower loss:

- ``mode="eps"`` (ScoreHMR, Eq. 10):
  ``eps' = eps + sqrt(1 - alpha_bar_t) * scale * grad_{x_t} L(x0_hat(x_t))``; the gradient flows
  through the denoiser. Since ``score = -eps / sqrt(1 - alpha_bar_t)`` this is
  ``score' = score - scale * grad_{x_t} L``: the score of ``p(x_t) * exp(-scale * L)``.
  ``x0_hat`` is recomputed from ``eps'``.
- ``mode="x0"`` (reconstruction guidance on the clean estimate alone, GMD-style):
  ``x0_hat' = x0_hat - scale * grad_{x0_hat} L(x0_hat)``, a gradient step on the estimate alone
  (no backprop through the denoiser); ``eps`` is recomputed from ``(x_t, x0_hat')`` so the DDIM or
  DDPM step stays consistent with the moved estimate.
- ``mode="xt"`` (HMDiff's DAT, Alg. 1): the unguided step's result is shifted,
  ``x_{t-1}' = x_{t-1} - scale * grad_{x_t} L(x0_hat(x_t))``.

``loss(x0_hat, t)`` gets ``x0_hat`` ``(B, ...)`` and ``t`` ``(B,)`` and returns per-sample losses
``(B,)`` (their sum is differentiated, so each sample's gradient is its own, independent of the
batch size) or a scalar (differentiated as is).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping

import torch
from torch import Tensor

from humandiff.io.artifacts import ArtifactError

GuidanceMode = Literal["eps", "x0", "xt"]
#: ``model(x_t (B, ...), t (B,) long, **kwargs) -> (B, ...)``: an x0 or eps prediction.
Denoiser = Callable[..., Tensor]
#: ``loss(x0_hat (B, ...), t (B,)) -> (B,)`` or scalar, to be minimised.
GuidanceLoss = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class Guidance:
    """A loss on the clean estimate steering each sampling step (see the module doc for signs)."""

    loss: GuidanceLoss
    scale: float
    mode: GuidanceMode = "eps"

    def __post_init__(self) -> None:
        if self.mode not in ("eps", "x0", "xt"):
            raise ArtifactError(f"Guidance: parameter 'mode' must be 'eps', 'x0' or 'xt', got {self.mode!r}")
        if not math.isfinite(float(self.scale)):
            raise ArtifactError(f"Guidance: parameter 'scale' must be finite, got {self.scale}")


def _batchable(cond: Mapping[str, Any], uncond: Mapping[str, Any], batch: int) -> bool:
    """Whether cond and uncond kwargs can run as one call of batch ``2B`` by concatenation."""
    if cond.keys() != uncond.keys():
        return False
    for key, c in cond.items():
        u = uncond[key]
        if isinstance(c, Tensor) and isinstance(u, Tensor):
            if c.dim() == 0 or c.shape != u.shape or c.shape[0] != batch:
                return False
        elif isinstance(c, Tensor) or isinstance(u, Tensor) or not _same(c, u):
            return False
    return True


def _same(a: Any, b: Any) -> bool:
    """Identity or plain equality; objects whose ``==`` is not a bool (arrays) count as different."""
    if a is b:
        return True
    try:
        return bool(a == b)
    except (TypeError, ValueError, RuntimeError):
        return False


def classifier_free_guidance(
    model: Denoiser,
    scale: float,
    cond_kwargs: Mapping[str, Any],
    uncond_kwargs: Mapping[str, Any],
    batched: bool = True,
) -> Denoiser:
    """Wrap ``model`` into ``pred = uncond + scale * (cond - uncond)`` (MDM: s = 2.5).

    ``cond_kwargs`` / ``uncond_kwargs`` are the model's keyword arguments for the two passes
    (e.g. ``{"text_emb": emb}`` and ``{"text_emb": null_emb}``, batch-first ``(B, ...)``). When
    they have the same keys, tensors of equal shapes with ``B`` rows and equal non-tensors, the two
    passes run as one call on the concatenated batch ``(2B, ...)``; extra keyword arguments given
    at call time are forwarded to both passes (tensors repeated along dim 0 in the batched call,
    so they must be batch-first). ``batched=False`` forces two calls (e.g. batch-dependent layers).
    ``scale = 1`` gives the conditional model, ``scale = 0`` the unconditional one.
    """
    cond, uncond = dict(cond_kwargs), dict(uncond_kwargs)

    def guided(x_t: Tensor, t: Tensor, **extra: Any) -> Tensor:
        if batched and _batchable(cond, uncond, x_t.shape[0]):
            both = {k: torch.cat([v, uncond[k]]) if isinstance(v, Tensor) else v for k, v in cond.items()}
            both.update({k: torch.cat([v, v]) if isinstance(v, Tensor) else v for k, v in extra.items()})
            out_cond, out_uncond = model(torch.cat([x_t, x_t]), torch.cat([t, t]), **both).chunk(2)
        else:
            out_cond = model(x_t, t, **cond, **extra)
            out_uncond = model(x_t, t, **uncond, **extra)
        return out_uncond + scale * (out_cond - out_uncond)

    return guided
