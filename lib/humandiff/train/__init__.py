"""Reusable training machinery: a DDP-ready, resumable loop with EMA and a loss curve."""

from humandiff.train.loop import (
    DistInfo,
    LoopConfig,
    LoopResult,
    epoch_batches,
    init_distributed,
    learning_rate_at,
    load_checkpoint,
    save_checkpoint,
    shutdown_distributed,
    step_seed,
    train,
    write_loss_curve,
)

__all__ = [
    "DistInfo",
    "LoopConfig",
    "LoopResult",
    "epoch_batches",
    "init_distributed",
    "learning_rate_at",
    "load_checkpoint",
    "save_checkpoint",
    "shutdown_distributed",
    "step_seed",
    "train",
    "write_loss_curve",
]
