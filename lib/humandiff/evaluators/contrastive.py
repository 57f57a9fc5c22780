"""The one contrastive training loop of the models that embed text and motion into one space.

Both the Guo-style evaluator (:mod:`humandiff.evaluators.evaluator`) and the TMR-style reward
model (:mod:`humandiff.evaluators.tmr`) train the same way: length-bucketed shuffled batches,
one caption drawn per clip each epoch, every other pair of the batch as a negative, gradient
clipping, and the epoch with the lowest val loss kept. What differs is passed in: how a batch is
collated, the loss, the optimizer and the validation scores.

The loop runs on the device of the model's parameters: batches are collated on the CPU (numpy
random numbers, the same on any device) and moved there. On the CPU the moves are no-ops, so a
run is bit-for-bit what it was before the loop was shared.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from humandiff.io import ArtifactError
from humandiff.motion.hml3d import FEATURE_DIM
from humandiff.train.device import to_device

#: Collates one batch on the CPU: (data, chosen clip indices (B,), the epoch's captions, rng) -> tensors.
Collate = Callable[[Any, np.ndarray, np.ndarray, np.random.Generator], Sequence[torch.Tensor]]
#: The contrastive loss of one collated batch: (model, *tensors) -> scalar.
BatchLoss = Callable[..., torch.Tensor]


class CaptionedData(Protocol):
    """Clips (T_i, 263) with captions: what the loop needs of a training split."""

    clips: list[np.ndarray]

    def __len__(self) -> int: ...

    def sample_captions(self, rng: np.random.Generator) -> np.ndarray: ...


class ContrastiveOptions(Protocol):
    """The training options the loop reads (both models' training dataclasses have them)."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    grad_clip: float
    seed: int


@dataclass
class ContrastiveHistory:
    """Per-epoch train and val loss and the chosen epoch (1-based); a model's history adds one
    ``val_<name>`` list per validation score."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = 0


def register_statistics(module: nn.Module, mean: np.ndarray | None, std: np.ndarray | None,
                        names: tuple[str, str], label: str) -> None:
    """Feature statistics (263,) as float32 buffers ``names`` of ``module`` (zeros / ones when None), checked:
    the right shape, finite, std > 0 (``label`` names them in the errors)."""
    mean = np.zeros(FEATURE_DIM, np.float32) if mean is None else np.asarray(mean, np.float32)
    std = np.ones(FEATURE_DIM, np.float32) if std is None else np.asarray(std, np.float32)
    if mean.shape != (FEATURE_DIM,) or std.shape != (FEATURE_DIM,):
        raise ArtifactError(f"{label} have shapes {mean.shape}/{std.shape}, expected ({FEATURE_DIM},)")
    if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
        raise ArtifactError(f"{label} must be finite with {names[1]} > 0")
    module.register_buffer(names[0], torch.from_numpy(mean.copy()))
    module.register_buffer(names[1], torch.from_numpy(std.copy()))


def parameter_count(model: nn.Module) -> int:
    """Number of parameters (weights) of ``model``, as the stages report it."""
    return int(sum(t.numel() for t in model.parameters()))


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's parameters."""
    return next(model.parameters()).device


def pad_clips(clips: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-padded (B, T_max, D) float32 and lengths (B,) int64 from clips (T_i, D)."""
    if not clips:
        raise ArtifactError("pad_clips: no clips")
    lengths = np.array([len(c) for c in clips], dtype=np.int64)
    if lengths.min() < 1:
        raise ArtifactError("pad_clips: a clip has no frames")
    out = np.zeros((len(clips), int(lengths.max()), clips[0].shape[-1]), np.float32)
    for row, clip in enumerate(clips):
        out[row, : len(clip)] = clip
    return torch.from_numpy(out), torch.from_numpy(lengths)


def length_bucketed_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator,
                            buckets: int = 8) -> list[np.ndarray]:
    """Index batches (each of 2..batch_size clips) covering a shuffled order of ``lengths`` (N,).

    Each run of ``buckets`` batches' worth of shuffled clips is sorted by length before it is
    cut, so a batch holds clips of similar length (less padding); the batches come in shuffled
    order. ``buckets`` 1 gives plain shuffled batches. A final single clip is dropped (a
    contrastive batch needs a negative).
    """
    if batch_size < 2 or buckets < 1:
        raise ArtifactError(f"batches: batch_size {batch_size} must be >= 2 and buckets {buckets} >= 1")
    lengths = np.asarray(lengths)
    order = rng.permutation(len(lengths))
    batches = []
    span = batch_size * buckets
    for start in range(0, len(order), span):
        chunk = order[start : start + span]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    batches = [b for b in batches if len(b) >= 2]
    return [batches[i] for i in rng.permutation(len(batches))]


def fixed_batches(count: int, batch_size: int) -> list[np.ndarray]:
    """Index batches of about ``batch_size`` in index order (the val split), those of one clip left out."""
    return [b for b in np.array_split(np.arange(count), -(-count // batch_size)) if len(b) >= 2]


@torch.no_grad()
def mean_batch_loss(model: nn.Module, data: CaptionedData, batches: Sequence[np.ndarray], captions: np.ndarray,
                    rng: np.random.Generator, collate: Collate, loss: BatchLoss) -> float:
    """Mean loss of ``batches`` of ``data`` in eval mode (the mode is restored); NaN without a batch."""
    was_training = model.training
    model.eval()
    device = model_device(model)
    losses = [float(loss(model, *to_device(collate(data, chosen, captions, rng), device))) for chosen in batches]
    model.train(was_training)
    return float(np.mean(losses)) if losses else float("nan")


def train_contrastive(model: nn.Module, train: CaptionedData, val: CaptionedData, options: ContrastiveOptions,
                      history: ContrastiveHistory, *, name: str, optimizer: type[torch.optim.Optimizer],
                      collate: Collate, loss: BatchLoss, validate: Callable[[nn.Module], dict[str, float]],
                      progress: bool = True) -> ContrastiveHistory:
    """Train ``model`` with ``optimizer`` (Adam, AdamW: ``lr`` and ``weight_decay`` of ``options``).

    Seeds torch and a numpy generator from ``options.seed``; each epoch draws length-bucketed
    batches and one caption per clip, then for each batch ``collate(train, chosen, captions, rng)``
    (on the CPU; moved to the model's device) and ``loss(model, *tensors)``, a clipped step.
    ``validate(model)`` after each epoch returns ``{"loss": ..., name: score}``; each score is
    appended to ``history.val_<name>``. The model ends with the weights of the epoch of lowest val
    loss, in eval mode. ``name`` labels the progress bars and errors.
    """
    if len(val) < 2:
        raise ArtifactError(f"{name} training: the val split has {len(val)} clips, needs >= 2")
    torch.manual_seed(options.seed)
    rng = np.random.default_rng(options.seed)
    step = optimizer(model.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    device = model_device(model)
    lengths = np.array([len(c) for c in train.clips])
    best_loss, best_state = None, None
    for epoch in range(1, options.epochs + 1):
        model.train()
        batches = length_bucketed_batches(lengths, options.batch_size, rng)
        captions = train.sample_captions(rng)
        losses = []
        for chosen in tqdm(batches, desc=f"{name} epoch {epoch}/{options.epochs}", disable=not progress, leave=False):
            value = loss(model, *to_device(collate(train, chosen, captions, rng), device))
            if not torch.isfinite(value):
                raise ArtifactError(f"{name} training: non-finite loss at epoch {epoch}")
            step.zero_grad(set_to_none=True)
            value.backward()
            nn.utils.clip_grad_norm_(model.parameters(), options.grad_clip)
            step.step()
            losses.append(float(value.detach()))
        scores = validate(model)
        history.train_loss.append(float(np.mean(losses)))
        history.val_loss.append(scores["loss"])
        for key, score in scores.items():
            if key != "loss":
                getattr(history, f"val_{key}").append(score)
        if best_loss is None or scores["loss"] < best_loss:
            best_loss, best_state, history.best_epoch = scores["loss"], copy.deepcopy(model.state_dict()), epoch
    model.load_state_dict(best_state)
    model.eval()
    return history
