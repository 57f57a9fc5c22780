"""Stage train_evaluator: the text-to-motion evaluator (Guo et al.'s matching model) used for every metric.

Trains on the train split, keeps the epoch with the lowest val loss (as Guo et al.), and writes
the model, its val metrics (R-precision when the val split holds >= 32 clips) and its loss curve
(CSV for ``dvc plots`` and a PNG).
"""

from __future__ import annotations

import time
from pathlib import Path

import click
import numpy as np
import torch

from humandiff.motion.dataset import load_mean_std, load_motion_split
from humandiff.eval.report import line_plot, write_curves_csv, write_png
from humandiff.eval.t2m import R_PRECISION_BATCH
from humandiff.io import save_json
from humandiff.evaluators.evaluator import (
    CaptionedClips,
    EvaluatorConfig,
    EvaluatorTraining,
    MatchingEvaluator,
    save_evaluator,
    train_evaluator,
)
from humandiff.io.stage import positive, run_stage, section_config
from humandiff.train.device import resolve_device

SECTION = "train_evaluator"
#: The section holds the fields of EvaluatorConfig and EvaluatorTraining, and these stage settings.
EXTRA = {"threads": int, "device": str}
#: Fields params.yaml may leave at their defaults (the MiniLM word size, no weight decay, clip 1).
DEFAULTS = ("word_dim", "weight_decay", "grad_clip")


def finite_or_none(value: float) -> float | None:
    """JSON has no NaN: not measured -> null."""
    return float(value) if np.isfinite(value) else None


def captioned(split, table) -> CaptionedClips:
    """The split's clips with their captions as token-table rows."""
    clips = [split.clip(k) for k in range(len(split))]
    return CaptionedClips(clips, [table.rows(split.captions(k)) for k in range(len(split))])


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True, type=click.Path())
@click.option("--index", "index_file", default="data/motion/hml/index.parquet", show_default=True, type=click.Path())
@click.option("--features", "features_file", default="data/motion/hml/features.npz", show_default=True, type=click.Path())
@click.option("--mean-std", "mean_std_file", default="data/motion/hml/mean_std.npz", show_default=True, type=click.Path())
@click.option("--out", "out_file", default="data/models/evaluator.pt", show_default=True, type=click.Path())
@click.option("--metrics", "metrics_file", default="reports/metrics/evaluator.json", show_default=True, type=click.Path())
@click.option("--plots-dir", default="reports/plots", show_default=True, type=click.Path())
@run_stage
def main(params_file: str, index_file: str, features_file: str, mean_std_file: str, out_file: str,
         metrics_file: str, plots_dir: str) -> None:
    (config, options), p = section_config(params_file, SECTION, (EvaluatorConfig, EvaluatorTraining), EXTRA,
                                          defaults=DEFAULTS)
    positive(params_file, SECTION, p, "threads")
    device = resolve_device(p["device"], f"{params_file}: {SECTION}.device")
    torch.set_num_threads(p["threads"])
    train_split = load_motion_split(index_file, features_file, None, "train")
    val_split = load_motion_split(index_file, features_file, None, "val")
    eval_mean, eval_std = load_mean_std(mean_std_file, "eval")

    from humandiff.text.tokens import minilm_token_table

    captions = [c for split in (train_split, val_split) for k in range(len(split)) for c in split.captions(k)]
    table = minilm_token_table(captions, config.max_tokens)
    train, val = captioned(train_split, table), captioned(val_split, table)

    torch.manual_seed(options.seed)
    model = MatchingEvaluator(config, eval_mean, eval_std).to(device)  # initialised on the CPU, then moved
    started = time.perf_counter()
    history = train_evaluator(model, train, val, table, options, progress=True)
    seconds = time.perf_counter() - started
    model.cpu()  # a CPU checkpoint whatever the device
    save_evaluator(out_file, model)

    best = history.best_epoch - 1
    plots = Path(plots_dir)
    write_curves_csv(plots / "evaluator_loss.csv", {"train_loss": history.train_loss, "val_loss": history.val_loss})
    write_png(plots / "evaluator_loss.png", line_plot({"train loss": history.train_loss, "val loss": history.val_loss},
                                                      f"evaluator {options.loss} loss"))
    save_json(metrics_file, {
        "loss": options.loss,
        "best_epoch": history.best_epoch,
        "epochs": options.epochs,
        "val_loss": history.val_loss[best],
        # R-precision needs >= 32 val clips (null below).
        **{f"val_{name}": finite_or_none(getattr(history, f"val_{name}")[best])
           for name in ("top1", "top2", "top3", "mm_dist")},
        "chance_top3": 3 / R_PRECISION_BATCH,
        "train_clips": len(train),
        "val_clips": len(val),
        "parameters": int(sum(t.numel() for t in model.parameters())),
        "vocabulary": int(len(table.vectors) - 1),
        "train_seconds": round(seconds, 1),
    })
    click.echo(f"evaluator: best epoch {history.best_epoch} (val loss {history.val_loss[best]:.4f}), val top-3 "
               f"{history.val_top3[best]:.3f} (chance {3 / R_PRECISION_BATCH:.3f}), MM-Dist {history.val_mm_dist[best]:.3f}")


if __name__ == "__main__":
    main()
