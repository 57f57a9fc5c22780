"""Exponential moving average (EMA) of a model's weights.

The average lives in an ordinary module of the same architecture (a ``copy.deepcopy`` of the
trained one), so it saves, loads and runs like any model; :func:`ema_update` moves it towards the
trained weights in place. DNO retrained MDM with EMA because checkpoints of the raw weights gave
inconsistent samples; the average is what sampling uses.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from humandiff.io.artifacts import ArtifactError


def ema_copy(model: nn.Module) -> nn.Module:
    """A frozen copy of ``model`` to hold the average (no gradients, eval mode)."""
    average = copy.deepcopy(model)
    average.eval()
    for parameter in average.parameters():
        parameter.requires_grad_(False)
    return average


def ema_decay_at(step: int, decay: float, warmup: bool = True) -> float:
    """The decay used at optimiser step ``step`` (0-based count of updates already applied).

    With ``warmup`` the decay is ``min(decay, (1 + step) / (10 + step))``: early on the average
    follows the fast-changing weights closely instead of remembering the random initialisation,
    which matters for runs of a few thousand steps.
    """
    if not 0.0 <= decay < 1.0:
        raise ArtifactError(f"ema: parameter 'decay' must lie in [0, 1), got {decay}")
    if step < 0:
        raise ArtifactError(f"ema: parameter 'step' must be >= 0, got {step}")
    return min(decay, (1.0 + step) / (10.0 + step)) if warmup else decay


@torch.no_grad()
def ema_update(average: nn.Module, model: nn.Module, decay: float) -> None:
    """``average <- decay * average + (1 - decay) * model`` for every floating parameter and buffer.

    Integer buffers (counters) are copied. Both modules must have the same state-dict keys and shapes.
    """
    if not 0.0 <= decay <= 1.0:
        raise ArtifactError(f"ema_update: parameter 'decay' must lie in [0, 1], got {decay}")
    target, source = average.state_dict(), model.state_dict()
    if target.keys() != source.keys():
        missing = sorted(set(target) ^ set(source))[:3]
        raise ArtifactError(f"ema_update: the average and the model differ in state-dict keys, e.g. {missing}")
    for key, value in target.items():
        new = source[key].detach()
        if value.shape != new.shape:
            raise ArtifactError(f"ema_update: field '{key}' has shape {tuple(value.shape)} in the average, {tuple(new.shape)} in the model")
        if value.dtype.is_floating_point:
            value.mul_(decay).add_(new.to(value.dtype), alpha=1.0 - decay)
        else:
            value.copy_(new)
