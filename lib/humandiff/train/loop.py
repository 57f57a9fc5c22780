"""A small, generic training loop: DDP, resume, EMA, loss curve, progress bar.

``train(model, dataset, collate, loss_fn, config, checkpoint_file=...)`` optimises ``model`` with
AdamW for ``config.steps`` steps over batches of ``dataset`` and keeps an EMA copy of it.

- **Runs where it is told**: ``device`` (see :func:`humandiff.train.device.resolve_device`) holds
  the model, the optimiser state and every batch; ``loss_fn`` draws its random numbers from the
  step's CPU generator (so a CUDA run draws the very numbers a CPU run does) and moves them to
  the batch's device itself (``.to(x.device)``, a no-op on the CPU).
- **Runs unchanged under torchrun**: with ``WORLD_SIZE > 1`` in the environment it joins a
  process group (gloo on CPU, nccl on GPU, each rank on ``cuda:LOCAL_RANK``), wraps the model in
  DistributedDataParallel and gives each rank its shard of every epoch through
  ``DistributedSampler``; ``config.batch_size`` is the global batch, split evenly over the ranks.
  Only rank 0 writes files.
- **Resumable**: every ``checkpoint_every`` steps (and at the end) rank 0 atomically writes
  model, EMA, optimiser, step, loss history, elapsed training time and a fingerprint of the run
  (config, a digest of the code and whatever the caller adds, e.g. data hashes). On start, a
  checkpoint with the same fingerprint is resumed; any other is ignored and overwritten, so a rerun
  after a code change trains afresh instead of "resuming" the finished run. Checkpoints hold CPU
  tensors and load onto whatever device the resuming run uses (the device is not part of the
  fingerprint): a run begun on a GPU can finish on the CPU and vice versa.
- **Deterministic**: every source of randomness is a function of ``(seed, step, rank)`` or
  ``(seed, epoch)``: the global torch RNG (dropout) is reseeded at every step and ``loss_fn``
  gets a fresh generator per step, batches come from ``DistributedSampler(seed, epoch)``, and the
  dataset draws from its ``set_epoch`` epoch. The RNG state at a checkpoint is thus fully given by
  its step, and a resumed run matches an uninterrupted one bit for bit on CPU.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, DistributedSampler
from tqdm import tqdm

from humandiff.io.artifacts import ArtifactError, atomic_path, load_torch, save_torch
from humandiff.io.digests import code_digest
from humandiff.train.device import to_device
from humandiff.train.ema import ema_copy, ema_decay_at, ema_update

#: ``loss_fn(model, batch, generator) -> (scalar loss, {name: float})``.
LossFn = Callable[[nn.Module, Any, torch.Generator], tuple[Tensor, dict[str, float]]]


@dataclass(frozen=True)
class LoopConfig:
    """Optimisation settings. ``batch_size`` is global (all ranks together).

    ``lr_decay``: "constant" or "cosine" (down to ``min_lr_ratio * lr`` at the last step), after
    a linear warm-up of ``warmup_steps``. ``length_buckets`` > 1 groups that many batches' worth
    of each rank's shuffled items, sorts them by ``lengths`` and cuts them into batches (in
    shuffled order): less padding for variable-length data.
    """

    steps: int
    batch_size: int
    lr: float
    weight_decay: float = 0.0
    warmup_steps: int = 0
    lr_decay: Literal["constant", "cosine"] = "constant"
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    ema_warmup: bool = True
    checkpoint_every: int = 500
    log_every: int = 10
    seed: int = 0
    bf16: bool = False
    length_buckets: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "checkpoint_every", "log_every"):
            value = getattr(self, name)
            if not isinstance(value, int):
                raise ArtifactError(f"LoopConfig: parameter '{name}' must be an integer, got {value!r}")
            if value < 1:
                raise ArtifactError(f"LoopConfig: parameter '{name}' must be > 0, got {value!r}")
        for name in ("warmup_steps", "length_buckets"):
            if getattr(self, name) < 0:
                raise ArtifactError(f"LoopConfig: parameter '{name}' must be >= 0, got {getattr(self, name)!r}")
        if not self.lr > 0:
            raise ArtifactError(f"LoopConfig: parameter 'lr' must be > 0, got {self.lr!r}")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise ArtifactError("LoopConfig: parameters 'weight_decay' and 'grad_clip' must be >= 0")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ArtifactError(f"LoopConfig: parameter 'ema_decay' must lie in [0, 1), got {self.ema_decay!r}")
        if self.lr_decay not in ("constant", "cosine"):
            raise ArtifactError(f"LoopConfig: parameter 'lr_decay' must be 'constant' or 'cosine', got {self.lr_decay!r}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ArtifactError(f"LoopConfig: parameter 'min_lr_ratio' must lie in [0, 1], got {self.min_lr_ratio!r}")


@dataclass
class LoopResult:
    """What a run leaves: the trained model (unwrapped), its EMA copy, the loss curve
    (``history`` rows ``{"step", "loss", ...}``), the step reached, the step it resumed from (0 for a
    fresh start), wall seconds of this process's training, the steps it ran, and the training
    seconds of the whole run (all processes that contributed, via the checkpoint)."""

    model: nn.Module
    ema: nn.Module
    history: list[dict[str, float]]
    step: int
    resumed_from: int
    wall_seconds: float
    steps_run: int
    total_seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Distributed helpers


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device | str | None = None) -> DistInfo:
    """Join the process group that torchrun describes in the environment (no-op for one process).

    ``device``: where this process computes (resolved, e.g. by
    :func:`humandiff.train.device.resolve_device`); a CUDA device means ``cuda:LOCAL_RANK`` under
    torchrun, with nccl, and the CPU means gloo. ``None`` keeps the default from before devices
    were a setting: the CPU for one process, CUDA (when available) for several. Every call of a
    process should name the same device: the first one that joins the group picks its backend.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if device is None:
        use_cuda = torch.cuda.is_available() and world_size > 1
    else:
        device = torch.device(device)
        use_cuda = device.type == "cuda"
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world_size > 1 and not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if use_cuda else "gloo")
    if dist.is_initialized():
        rank, world_size = dist.get_rank(), dist.get_world_size()
    else:
        rank, world_size = 0, 1
    if use_cuda and world_size > 1:
        device = torch.device("cuda", local_rank)
    elif device is None:
        device = torch.device("cpu")
    return DistInfo(rank, world_size, device)


def _barrier(info: DistInfo) -> None:
    if info.world_size > 1:
        dist.barrier()


def _mean_over_ranks(value: float, info: DistInfo) -> float:
    if info.world_size == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=info.device)  # nccl reduces CUDA tensors only
    dist.all_reduce(tensor)
    return float(tensor.item()) / info.world_size


# ---------------------------------------------------------------------------------------------
# Devices


# ---------------------------------------------------------------------------------------------
# Schedules, seeds, batches


def learning_rate_at(step: int, config: LoopConfig) -> float:
    """Learning rate of optimiser step ``step`` (0-based): linear warm-up, then constant or cosine."""
    if config.warmup_steps and step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.lr_decay == "constant":
        return config.lr
    span = max(config.steps - config.warmup_steps, 1)
    progress = min(max(step - config.warmup_steps, 0) / span, 1.0)
    return config.lr * (config.min_lr_ratio + (1.0 - config.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def step_seed(seed: int, step: int, rank: int) -> int:
    """A 63-bit seed mixed from (seed, step, rank)."""
    return int(np.random.SeedSequence([int(seed), int(step), int(rank)]).generate_state(1, dtype=np.uint64)[0] >> 1)


def epoch_batches(num_items: int, per_rank_batch: int, epoch: int, seed: int, rank: int, world_size: int,
                  lengths: Sequence[int] | np.ndarray | None = None, buckets: int = 0) -> list[list[int]]:
    """The batches (lists of item indices) rank ``rank`` trains on in ``epoch``; incomplete ones dropped.

    The shard comes from ``DistributedSampler(shuffle=True, seed, drop_last=True)`` at ``epoch``;
    with ``buckets > 1`` and ``lengths``, groups of ``buckets`` batches are sorted by length before
    being cut, and the batches are then shuffled (seeded by seed and epoch).
    """
    sampler = DistributedSampler(range(num_items), num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True)
    sampler.set_epoch(epoch)
    order = list(sampler)
    usable = len(order) // per_rank_batch * per_rank_batch
    order = order[:usable]
    if buckets > 1 and lengths is not None:
        lengths = np.asarray(lengths)
        group = buckets * per_rank_batch
        sorted_order: list[int] = []
        for start in range(0, usable, group):
            chunk = order[start : start + group]
            sorted_order += [chunk[j] for j in np.argsort(lengths[chunk], kind="stable")]
        batches = [sorted_order[i : i + per_rank_batch] for i in range(0, usable, per_rank_batch)]
        shuffle = np.random.default_rng((seed, epoch, 7919)).permutation(len(batches))
        return [batches[j] for j in shuffle]
    return [order[i : i + per_rank_batch] for i in range(0, usable, per_rank_batch)]


def _batch_stream(dataset: Dataset, collate: Callable[[list], Any], per_rank_batch: int, config: LoopConfig,
                  info: DistInfo, start_step: int, lengths: Sequence[int] | np.ndarray | None) -> Iterator[Any]:
    """Batches from step ``start_step`` on, epoch after epoch (skipping consumed batches without loading them)."""
    num_items = len(dataset)
    per_epoch = len(epoch_batches(num_items, per_rank_batch, 0, config.seed, info.rank, info.world_size))
    if per_epoch == 0:
        raise ArtifactError(
            f"train: the dataset has {num_items} items, fewer than one batch of {per_rank_batch} per rank x {info.world_size} ranks"
        )
    epoch, skip = divmod(start_step, per_epoch)
    while True:
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        batches = epoch_batches(num_items, per_rank_batch, epoch, config.seed, info.rank, info.world_size,
                                lengths, config.length_buckets)
        for indices in islice(batches, skip, None):
            yield collate([dataset[i] for i in indices])
        epoch, skip = epoch + 1, 0


# ---------------------------------------------------------------------------------------------
# Checkpoints


def _fingerprint(config: LoopConfig, extra: dict[str, Any] | None, world_size: int) -> dict[str, Any]:
    # world size is part of it: the shards, hence the trajectory, depend on it
    return {"loop": {k: (str(v) if not isinstance(v, (int, float, bool)) else v) for k, v in asdict(config).items()},
            "world_size": world_size, "code": code_digest(), "extra": _plain(extra or {})}


def _plain(value: Any) -> Any:
    """JSON-like copy with only str/int/float/bool/None/list/dict (loadable with weights_only=True)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def load_resume_state(path: str | Path) -> dict[str, Any] | None:
    """A training state written by :func:`humandiff.io.save_torch`, or ``None`` if absent or unreadable."""
    try:
        return load_torch(path)
    except ArtifactError:  # a truncated or foreign file is not resumable: start over
        return None


# ---------------------------------------------------------------------------------------------
# The loop


def train(
    model: nn.Module,
    dataset: Dataset,
    collate: Callable[[list], Any],
    loss_fn: LossFn,
    config: LoopConfig,
    *,
    checkpoint_file: str | Path | None = None,
    fingerprint: dict[str, Any] | None = None,
    lengths: Sequence[int] | np.ndarray | None = None,
    stop_at: int | None = None,
    progress: bool = True,
    desc: str = "train",
    device: torch.device | str | None = None,
) -> LoopResult:
    """Train ``model`` in place (see the module doc). Returns the unwrapped model and its EMA, both
    on the training device.

    ``stop_at`` ends this process at that step after writing a checkpoint, as an interruption
    would (a later call resumes); ``lengths`` (items,) enables ``config.length_buckets``;
    ``device`` as :func:`init_distributed` takes it (``None``: the CPU for one process).
    """
    info = init_distributed(device)
    per_rank_batch, remainder = divmod(config.batch_size, info.world_size)
    if remainder or per_rank_batch < 1:
        raise ArtifactError(f"LoopConfig: parameter 'batch_size'={config.batch_size} must be a multiple of the {info.world_size} ranks")
    if stop_at is not None and not 0 < stop_at <= config.steps:
        raise ArtifactError(f"train: parameter 'stop_at' must lie in [1, {config.steps}], got {stop_at}")

    model.to(info.device)
    model.train()
    if info.world_size > 1:
        # every rank starts from rank 0's weights, the EMA copy included (DDP would sync only the model)
        with torch.no_grad():
            for value in model.state_dict().values():
                dist.broadcast(value, src=0)
    ema = ema_copy(model)
    decay_params = [p for n, p in model.named_parameters() if p.dim() >= 2]
    other_params = [p for n, p in model.named_parameters() if p.dim() < 2]
    # no weight decay on biases and norms, as usual for transformers
    optimizer = torch.optim.AdamW([{"params": decay_params, "weight_decay": config.weight_decay},
                                   {"params": other_params, "weight_decay": 0.0}], lr=config.lr)
    stamp = _fingerprint(config, fingerprint, info.world_size)
    step, history, window, elapsed_before = 0, [], [], 0.0
    state = load_resume_state(checkpoint_file) if checkpoint_file is not None else None
    if state is not None and state.get("fingerprint") == stamp:
        initial = {k: v.clone() for k, v in model.state_dict().items()}
        try:
            model.load_state_dict(state["model"])
            ema.load_state_dict(state["ema"])
            optimizer.load_state_dict(state["optimizer"])
            step, history, window = int(state["step"]), list(state["history"]), list(state["window"])
            elapsed_before = float(state["elapsed"])
        except (RuntimeError, KeyError, ValueError):  # weights of another architecture: start over
            model.load_state_dict(initial)
            ema = ema_copy(model)
            optimizer.state.clear()
            step, history, window, elapsed_before = 0, [], [], 0.0
    resumed_from = step
    net = DistributedDataParallel(model) if info.world_size > 1 else model

    def checkpoint() -> None:
        if checkpoint_file is not None and info.is_main:
            # CPU tensors: the file does not depend on the device, and any device resumes it
            save_torch(checkpoint_file, {"model": to_device(model.state_dict(), "cpu"), "ema": to_device(ema.state_dict(), "cpu"),
                                         "optimizer": to_device(optimizer.state_dict(), "cpu"), "step": step,
                                         "history": history, "window": window, "fingerprint": stamp,
                                         "elapsed": elapsed_before + time.perf_counter() - started})
        _barrier(info)

    end = config.steps if stop_at is None else stop_at
    batches = _batch_stream(dataset, collate, per_rank_batch, config, info, step, lengths)
    bar = tqdm(total=config.steps, initial=step, desc=desc, disable=not (progress and info.is_main), dynamic_ncols=True)
    started = time.perf_counter()
    steps_run = 0
    while step < end:
        batch = to_device(next(batches), info.device)
        seed = step_seed(config.seed, step, info.rank)
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed ^ 0x5DEECE66D)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate_at(step, config)
        # bf16 autocast runs the matmuls in bf16; weights, gradients and Adam state stay fp32
        with torch.autocast(info.device.type, dtype=torch.bfloat16) if config.bf16 else contextlib.nullcontext():
            loss, logs = loss_fn(net, batch, generator)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"train: loss became {float(loss.detach())} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        ema_update(ema, model, ema_decay_at(step, config.ema_decay, config.ema_warmup))
        step += 1
        steps_run += 1
        window.append(dict(logs, loss=float(loss.detach())))
        if step % config.log_every == 0 or step == config.steps:
            row = {"step": step, **{k: _mean_over_ranks(float(np.mean([w[k] for w in window])), info) for k in window[0]},
                   "lr": learning_rate_at(step - 1, config)}
            history.append(row)
            window = []
            bar.set_postfix(loss=f"{row['loss']:.4f}")
        bar.update(1)
        if step % config.checkpoint_every == 0 or step == end:
            checkpoint()
    bar.close()
    wall = time.perf_counter() - started
    return LoopResult(model, ema, history, step, resumed_from, wall, steps_run, elapsed_before + wall)


def shutdown_distributed() -> None:
    """Leave the process group :func:`init_distributed` joined (no-op for one process)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def write_loss_curve(path: str | Path, history: Sequence[dict[str, float]], columns: Sequence[str] = ("step", "loss")) -> None:
    """The loss curve as CSV (a DVC plot): a header and one row per logged step."""
    lines = [",".join(columns)] + [",".join(f"{row[c]:.6g}" if c != "step" else str(int(row[c])) for c in columns) for row in history]
    with atomic_path(path, suffix=".csv") as tmp:
        tmp.write_text("\n".join(lines) + "\n")
