"""Stage train_mdm: train the MDM-style text-to-motion diffusion prior.

Reads the prepared motion features, mean/std and caption embeddings; trains on the train split
with the generic loop (resumable from ``--checkpoint``, DDP under torchrun, EMA); writes the EMA
weights and the model config, the loss curve (a DVC plot) and a metrics JSON with the wall time
and a held-out denoising loss of the EMA model on the val split.
"""

from __future__ import annotations

import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import click
import numpy as np
import torch

from humandiff.motion.dataset import MotionTextDataset, collate_motion, load_embeddings, load_mean_std, load_motion_split
from humandiff.motion.dataset import MotionSplit
from humandiff.io import ArtifactError, file_digest, save_json
from humandiff.prior.mdm import (
    GeometryWeights,
    MDMConfig,
    MotionDiffusionModel,
    count_parameters,
    denoising_loss,
    save_mdm,
    training_loss,
)
from humandiff.io.stage import positive, run_stage, stage_params
from humandiff.text.clauses import clause_conditions
from humandiff.train.loop import LoopConfig, init_distributed, shutdown_distributed, train, write_loss_curve
from humandiff.train.device import resolve_device, to_device

SECTION = "train_mdm"
PARAMS = {
    "seed": int, "threads": int,
    "latent_dim": int, "num_layers": int, "num_heads": int, "ff_dim": int, "dropout": float, "frames_per_token": int,
    "diffusion_steps": int, "schedule": str, "cond_drop": float, "conditioning": str,
    "max_frames": int, "steps": int, "batch_size": int, "lr": float, "weight_decay": float,
    "warmup_steps": int, "lr_decay": str, "grad_clip": float, "ema_decay": float, "bf16": bool,
    "length_buckets": int, "checkpoint_every": int,
    "lambda_joints": float, "lambda_velocity": float, "lambda_foot": float, "geometry_signal_weighted": bool,
    "standardize_text": bool,
    "high_noise_share": float, "high_noise_fraction": float, "clause_slots": int,
    "word_tokens": int, "clip_progress": bool,
}
#: Timesteps at which the held-out loss is measured (fractions of T).
VAL_LEVELS = (0.25, 0.5, 0.75)


def condition_table(embeddings_file: Path, config: MDMConfig) -> np.ndarray | None:
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


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True, type=click.Path())
@click.option("--hml-dir", default="data/motion/hml", show_default=True, type=click.Path())
@click.option("--embeddings", "embeddings_file", default="data/motion/text/embeddings.parquet", show_default=True, type=click.Path())
@click.option("--out-dir", default="data/mdm", show_default=True, type=click.Path())
@click.option("--checkpoint", "checkpoint_file", default="data/mdm/train_checkpoint.pt", show_default=True, type=click.Path())
@click.option("--plot", "plot_file", default="reports/plots/mdm_loss.csv", show_default=True, type=click.Path())
@click.option("--metrics", "metrics_file", default="reports/metrics/train_mdm.json", show_default=True, type=click.Path())
@click.option("--stop-at", default=None, type=int, help="Stop at this step after checkpointing (a later run resumes).")
@run_stage
def main(params_file: str, hml_dir: str, embeddings_file: str, out_dir: str, checkpoint_file: str, plot_file: str,
         metrics_file: str, stop_at: int | None) -> None:
    p = stage_params(params_file, SECTION, PARAMS)
    positive(params_file, SECTION, p, "threads", "steps", "batch_size", "lr", "max_frames", "checkpoint_every")
    for key in ("lambda_joints", "lambda_velocity", "lambda_foot", "weight_decay", "grad_clip", "warmup_steps", "length_buckets"):
        if p[key] < 0:
            raise ValueError(f"{params_file}: parameter '{SECTION}.{key}' must be >= 0, got {p[key]!r}")
    if not 0.0 <= p["high_noise_share"] <= 1.0:
        raise ValueError(f"{params_file}: parameter '{SECTION}.high_noise_share' must lie in [0, 1], got {p['high_noise_share']!r}")
    if not 0.0 < p["high_noise_fraction"] <= 1.0:
        raise ValueError(f"{params_file}: parameter '{SECTION}.high_noise_fraction' must lie in (0, 1], got {p['high_noise_fraction']!r}")
    if p["clause_slots"] < 0:
        raise ValueError(f"{params_file}: parameter '{SECTION}.clause_slots' must be >= 0, got {p['clause_slots']!r}")
    if p["max_frames"] < 4:
        raise ValueError(f"{params_file}: parameter '{SECTION}.max_frames' must be >= 4, got {p['max_frames']}")
    if p["frames_per_token"] not in (1, 2, 4):
        # training crops are multiples of 4 frames: tokens must never straddle a crop's end
        raise ValueError(f"{params_file}: parameter '{SECTION}.frames_per_token' must be 1, 2 or 4, got {p['frames_per_token']!r}")
    try:
        config = MDMConfig.from_section(p)
    except ArtifactError as exc:  # the config checks its own fields; name them as params.yaml does
        raise ValueError(str(exc).replace("MDMConfig: parameter '", f"{params_file}: parameter '{SECTION}.")) from None
    loop = LoopConfig(steps=p["steps"], batch_size=p["batch_size"], lr=p["lr"], weight_decay=p["weight_decay"],
                      warmup_steps=p["warmup_steps"], lr_decay=p["lr_decay"], grad_clip=p["grad_clip"],
                      ema_decay=p["ema_decay"], checkpoint_every=p["checkpoint_every"], seed=p["seed"], bf16=p["bf16"],
                      length_buckets=p["length_buckets"])
    device = resolve_device(p.get("device", "cpu"), f"{params_file}: parameter '{SECTION}.device'")
    torch.set_num_threads(p["threads"])
    info = init_distributed(device)

    hml = Path(hml_dir)
    inputs = [hml / "index.parquet", hml / "features.npz", hml / "mean_std.npz", Path(embeddings_file)]
    conditions = condition_table(inputs[3], config)  # encodes every clause once, for both splits
    train_split = with_conditions(load_motion_split(inputs[0], inputs[1], inputs[3], "train"), conditions)
    mean, std = load_mean_std(inputs[2])
    dataset = MotionTextDataset(train_split, mean, std, max_frames=p["max_frames"], seed=p["seed"])
    # the thread count and the device change only float rounding: a run may resume with others
    fingerprint = {"params": {k: v for k, v in p.items() if k not in ("threads", "device")}, "model": config.to_dict(),
                   "data": [file_digest(f) for f in inputs]}

    torch.manual_seed(p["seed"])  # the initial weights
    model = MotionDiffusionModel(config)
    if p["standardize_text"]:
        used = np.unique(np.concatenate(train_split.caption_rows))
        model.set_text_statistics(torch.from_numpy(train_split.embeddings[used]))
    geometry = GeometryWeights(torch.from_numpy(mean), torch.from_numpy(std), p["lambda_joints"], p["lambda_velocity"], p["lambda_foot"],
                               signal_weighted=p["geometry_signal_weighted"])
    loss_fn = partial(training_loss, schedule=config.noise_schedule(), cond_drop=config.cond_drop, geometry=geometry,
                      high_noise_share=p["high_noise_share"], high_noise_fraction=p["high_noise_fraction"],
                      prediction=config.prediction)
    started = time.perf_counter()
    result = train(model, dataset, collate_motion, loss_fn, loop, checkpoint_file=checkpoint_file, fingerprint=fingerprint,
                   lengths=dataset.crop_lengths(), stop_at=stop_at, desc=SECTION, device=device)
    if not info.is_main or result.step < loop.steps:
        shutdown_distributed()
        return

    out = Path(out_dir)
    save_mdm(out / "model.pt", out / "config.json", to_device(result.ema.state_dict(), "cpu"), config)
    write_loss_curve(plot_file, result.history)
    val_split = with_conditions(load_motion_split(inputs[0], inputs[1], inputs[3], "val"), conditions)
    val_set = MotionTextDataset(val_split, mean, std, max_frames=p["max_frames"], random=False)
    tail = result.history[-max(1, len(result.history) // 10):]
    save_json(metrics_file, {
        "parameters": count_parameters(model),
        "steps": result.step,
        "resumed_from": result.resumed_from,
        "ranks": info.world_size,
        "train_clips": len(train_split),
        "epochs": round(result.step * loop.batch_size / len(train_split), 2),
        "final_loss": float(np.mean([row["loss"] for row in tail])),
        "val_loss_ema": held_out_loss(result.ema, val_set, config, p["seed"], device=info.device),
        "train_seconds": round(result.total_seconds, 1),
        "train_seconds_this_run": round(result.wall_seconds, 1),
        "seconds_per_step": round(result.wall_seconds / max(result.steps_run, 1), 4),
        "stage_seconds": round(time.perf_counter() - started, 1),
    })
    shutdown_distributed()


if __name__ == "__main__":
    main()
