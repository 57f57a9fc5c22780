"""Stage train_scorehmr: ScoreHMR's pose denoiser on the training set's frozen image features.

Trains PoseDenoiser (Eq. 11: noise prediction, cosine schedule, T = 1000) on pairs of a training
image's feature from the frozen perception network (``feature``: pooled or regression) and its
pose (``target``: gt, or pseudo, scorehmr_targets' SMPLify fits) with the generic loop (resumable
from ``--checkpoint``, EMA). Writes the EMA model, the loss curve (a DVC plot) and the timing.
"""

from __future__ import annotations

import time
from pathlib import Path

import click
import torch

from humandiff.io import file_digest, save_json
from humandiff.io.stage import positive, run_stage, section_config
from humandiff.scorehmr.data import load_set
from humandiff.scorehmr.training import (CURVE_COLUMNS, DenoiserSettings, fit_denoiser, save_denoiser, settings_dict,
                                         training_pairs)
from humandiff.train.device import resolve_device
from humandiff.train.loop import LoopConfig, write_loss_curve

SECTION = "train_scorehmr"
EXTRA = {"threads": int, "device": str}
DEFAULTS = ("min_lr_ratio", "ema_warmup", "log_every", "bf16", "length_buckets", "grad_clip", "warmup_steps")


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True, type=click.Path())
@click.option("--extract-dir", default="data/extract", show_default=True, type=click.Path())
@click.option("--images", "images_dir", default="data/images", show_default=True, type=click.Path())
@click.option("--targets", "pseudo_file", default="data/scorehmr/targets/pseudo_gt.npz", show_default=True, type=click.Path())
@click.option("--out", "out_file", default="data/scorehmr/model.pt", show_default=True, type=click.Path())
@click.option("--checkpoint", "checkpoint_file", default="data/scorehmr_checkpoint/train_checkpoint.pt", show_default=True,
              type=click.Path(), help="resumable training state (a rerun with the same data and params continues from it)")
@click.option("--plot", "plot_file", default="reports/plots/scorehmr_loss.csv", show_default=True, type=click.Path())
@click.option("--metrics", "metrics_file", default="reports/metrics/train_scorehmr.json", show_default=True, type=click.Path())
@click.option("--stop-at", type=int, default=None, help="end this process at that step (as an interruption would)")
@run_stage
def main(params_file: str, extract_dir: str, images_dir: str, pseudo_file: str, out_file: str, checkpoint_file: str,
         plot_file: str, metrics_file: str, stop_at: int | None) -> None:
    (loop, settings), p = section_config(params_file, SECTION, (LoopConfig, DenoiserSettings), EXTRA, defaults=DEFAULTS)
    positive(params_file, SECTION, p, "threads")
    device = resolve_device(p["device"], f"{params_file}: parameter '{SECTION}.device'")
    torch.set_num_threads(p["threads"])
    train = load_set(extract_dir, images_dir, "train")
    dataset = training_pairs(train, settings, pseudo_file)
    fingerprint = {"extraction": file_digest(Path(extract_dir) / "train.npz"),
                   "targets": file_digest(pseudo_file) if settings.target == "pseudo" else None}
    began = time.perf_counter()
    result = fit_denoiser(dataset, settings, loop, checkpoint_file=checkpoint_file, fingerprint=fingerprint,
                          stop_at=stop_at, desc=SECTION, device=device)
    if result.step < loop.steps:
        return
    ema = result.ema.cpu().eval()
    save_denoiser(out_file, ema, {**settings_dict(settings), "steps": result.step, "train_images": len(dataset)})
    write_loss_curve(plot_file, result.history, CURVE_COLUMNS)
    save_json(metrics_file, {"train_images": len(dataset), "steps": result.step, "batch_size": loop.batch_size,
                             "parameters": sum(q.numel() for q in ema.parameters()), "feature_dim": ema.config.feature_dim,
                             "train_seconds": round(result.total_seconds, 1), "stage_seconds": round(time.perf_counter() - began, 1),
                             "resumed_from": result.resumed_from, "final_loss": round(result.history[-1]["loss"], 4),
                             **settings_dict(settings)})


if __name__ == "__main__":
    main()
