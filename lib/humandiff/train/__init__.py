"""Reusable training machinery: a DDP-ready, resumable loop with EMA and a loss curve."""

from humandiff.train.loop import (
    DistInfo,
    LoopConfig,
    LoopResult,
    epoch_batches,
    init_distributed,
    learning_rate_at,
    load_resume_state,
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
    "load_resume_state",
    "shutdown_distributed",
    "step_seed",
    "train",
    "write_loss_curve",
]
