"""The ``train_mdm`` stage's pieces: its params beside the configs, the caption conditions, the
initial model and its loss, the held-out loss of the EMA model and the metrics JSON.

The section holds the fields of :class:`~humandiff.prior.mdm.MDMConfig` and
:class:`~humandiff.train.loop.LoopConfig` (built by :func:`humandiff.io.stage.section_config`) and
the stage settings in :data:`TRAIN_EXTRA`; :func:`check_training_params` checks the settings no
config checks.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from humandiff.io import file_digest
from humandiff.io.stage import positive
from humandiff.motion.dataset import MotionSplit, MotionTextDataset, collate_motion, load_embeddings, load_motion_split
from humandiff.prior.mdm import (
    GeometryWeights,
    MDMConfig,
    MotionDiffusionModel,
    count_parameters,
    denoising_loss,
    training_loss,
)
from humandiff.text.clauses import clause_conditions
from humandiff.train.device import to_device

#: The section's stage settings beside the fields of MDMConfig and LoopConfig.
TRAIN_EXTRA = {
    "threads": int, "device": str, "max_frames": int, "standardize_text": bool,
    "lambda_joints": float, "lambda_velocity": float, "lambda_foot": float, "geometry_signal_weighted": bool,
    "high_noise_share": float, "high_noise_fraction": float,
}
#: Config fields params.yaml may leave at their defaults (the data's sizes, x0 prediction, the loop's details).
TRAIN_DEFAULTS = ("feature_dim", "text_dim", "prediction", "min_lr_ratio", "ema_warmup", "log_every")
#: Timesteps at which the held-out loss is measured (fractions of T).
VAL_LEVELS = (0.25, 0.5, 0.75)


def check_training_params(params_file: str | Path, section: str, p: dict) -> None:
    """One-line errors for the stage settings of ``p`` (the section) that neither config checks."""
    positive(params_file, section, p, "threads", "max_frames")
    for key in ("lambda_joints", "lambda_velocity", "lambda_foot"):
        if p[key] < 0:
            raise ValueError(f"{params_file}: parameter '{section}.{key}' must be >= 0, got {p[key]!r}")
    if not 0.0 <= p["high_noise_share"] <= 1.0:
        raise ValueError(f"{params_file}: parameter '{section}.high_noise_share' must lie in [0, 1], got {p['high_noise_share']!r}")
    if not 0.0 < p["high_noise_fraction"] <= 1.0:
        raise ValueError(f"{params_file}: parameter '{section}.high_noise_fraction' must lie in (0, 1], "
                         f"got {p['high_noise_fraction']!r}")
    if p["max_frames"] < 4:
        raise ValueError(f"{params_file}: parameter '{section}.max_frames' must be >= 4, got {p['max_frames']}")
    if p["frames_per_token"] not in (1, 2, 4):
        # training crops are multiples of 4 frames: tokens must never straddle a crop's end
        raise ValueError(f"{params_file}: parameter '{section}.frames_per_token' must be 1, 2 or 4, got {p['frames_per_token']!r}")


def condition_table(embeddings_file: str | Path, config: MDMConfig) -> np.ndarray | None:
    """The model's conditions (C, condition_dim) for every caption row of ``embeddings_file``: the
    sentence embeddings followed by the clause embeddings and the word pieces; None when the config
    has neither clause slots nor word tokens (the sentence embeddings are the conditions)."""
    if config.clause_slots == 0 and config.word_tokens == 0:
        return None
    rows, sentences = load_embeddings(embeddings_file)
    captions = sorted(rows, key=rows.__getitem__)
    return clause_conditions(captions, sentences, config.clause_slots, word_tokens=config.word_tokens)


def with_conditions(split: MotionSplit, conditions: np.ndarray | None) -> MotionSplit:
    """``split`` whose caption rows index ``conditions`` (from :func:`condition_table`) when it has them."""
    return split if conditions is None else replace(split, embeddings=conditions)


def conditioned_split(index_file: str | Path, features_file: str | Path, embeddings_file: str | Path, split: str,
                      conditions: np.ndarray | None) -> MotionSplit:
    """The ``split`` of the prepared motions, its caption rows indexing ``conditions`` when there are any."""
    return with_conditions(load_motion_split(index_file, features_file, embeddings_file, split), conditions)


def training_fingerprint(p: dict, config: MDMConfig, inputs: Sequence[str | Path]) -> dict:
    """What a resumed run must share with the checkpoint: the section, the model config and the inputs' digests.
    The thread count and the device change only float rounding: a run may resume with others."""
    return {"params": {k: v for k, v in p.items() if k not in ("threads", "device")}, "model": config.to_dict(),
            "data": [file_digest(f) for f in inputs]}


def initial_model(config: MDMConfig, seed: int, standardize_on: MotionSplit | None = None) -> MotionDiffusionModel:
    """The model with the initial weights of ``seed``; with ``standardize_on``, its text statistics are
    those of the captions that split's clips use."""
    torch.manual_seed(seed)
    model = MotionDiffusionModel(config)
    if standardize_on is not None:
        used = np.unique(np.concatenate(standardize_on.caption_rows))
        model.set_text_statistics(torch.from_numpy(standardize_on.embeddings[used]))
    return model


def training_objective(config: MDMConfig, p: dict, mean: np.ndarray, std: np.ndarray) -> Callable:
    """The training loss of the section ``p``: denoising plus the geometric terms, dropped captions
    and a share of top-level timesteps."""
    geometry = GeometryWeights(torch.from_numpy(mean), torch.from_numpy(std), p["lambda_joints"], p["lambda_velocity"],
                               p["lambda_foot"], signal_weighted=p["geometry_signal_weighted"])
    return partial(training_loss, schedule=config.noise_schedule(), cond_drop=config.cond_drop, geometry=geometry,
                   high_noise_share=p["high_noise_share"], high_noise_fraction=p["high_noise_fraction"],
                   prediction=config.prediction)


@torch.no_grad()
def held_out_loss(model: MotionDiffusionModel, dataset: MotionTextDataset, config: MDMConfig, seed: int,
                  batch_size: int = 64, device: torch.device | str = "cpu") -> float:
    """Mean masked x0 MSE of ``model`` (on ``device``) on every item of ``dataset`` at the VAL_LEVELS
    timesteps (fixed noise, drawn on the CPU whatever the device)."""
    schedule = config.noise_schedule()
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    total, count = 0.0, 0
    for start in range(0, len(dataset), batch_size):
        batch = to_device(collate_motion([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]), device)
        for level in VAL_LEVELS:
            t = torch.full((batch["motion"].shape[0],), int(level * (config.diffusion_steps - 1))).to(device)
            noise = torch.randn(batch["motion"].shape, generator=generator).to(device)
            loss, _ = denoising_loss(model, schedule, batch["motion"], t, noise, text_emb=batch["text_emb"], mask=batch["mask"],
                                     prediction=config.prediction)
            total += float(loss.sum())
            count += loss.shape[0]
    return total / max(count, 1)


def training_metrics(model: torch.nn.Module, result, batch_size: int, ranks: int, train_clips: int, val_loss: float,
                     stage_seconds: float) -> dict:
    """train_mdm's metrics JSON from the loop's ``result`` (:class:`~humandiff.train.loop.LoopResult`): size,
    steps, epochs, the mean loss of the last tenth of the curve, the EMA's held-out loss and the times."""
    tail = result.history[-max(1, len(result.history) // 10):]
    return {
        "parameters": count_parameters(model),
        "steps": result.step,
        "resumed_from": result.resumed_from,
        "ranks": ranks,
        "train_clips": train_clips,
        "epochs": round(result.step * batch_size / train_clips, 2),
        "final_loss": float(np.mean([row["loss"] for row in tail])),
        "val_loss_ema": val_loss,
        "train_seconds": round(result.total_seconds, 1),
        "train_seconds_this_run": round(result.wall_seconds, 1),
        "seconds_per_step": round(result.wall_seconds / max(result.steps_run, 1), 4),
        "stage_seconds": round(stage_seconds, 1),
    }
