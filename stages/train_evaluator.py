"""Stage train_evaluator: the text-to-motion evaluator (Guo et al.'s matching model) used for every metric.

Trains on the train split, keeps the epoch with the lowest val loss (as Guo et al.), and writes
the model, its val metrics (R-precision in batches of 32, or of the whole val split when it is
smaller, as the summary line and ``chance_top3`` say) and its loss curve (CSV for ``dvc plots`` and a PNG).
"""

from __future__ import annotations

import time

import click
import torch

from humandiff.eval.report import write_loss_curves
from humandiff.evaluators.evaluator import (
    CaptionedClips,
    EvaluatorConfig,
    EvaluatorTraining,
    MatchingEvaluator,
    evaluator_metrics,
    evaluator_summary,
    save_evaluator,
    splits_token_table,
    train_evaluator,
)
from humandiff.io import save_json
from humandiff.io.stage import positive, run_stage, section_config
from humandiff.motion.dataset import load_mean_std, load_motion_split
from humandiff.train.device import resolve_device

SECTION = "train_evaluator"
#: The section holds the fields of EvaluatorConfig and EvaluatorTraining, and these stage settings.
EXTRA = {"threads": int, "device": str}
#: Fields params.yaml may leave at their defaults (the MiniLM word size, no weight decay, clip 1).
DEFAULTS = ("word_dim", "weight_decay", "grad_clip")


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
    device = resolve_device(p["device"], f"{params_file}: parameter '{SECTION}.device'")
    torch.set_num_threads(p["threads"])
    splits = [load_motion_split(index_file, features_file, None, name) for name in ("train", "val")]
    eval_mean, eval_std = load_mean_std(mean_std_file, "eval")
    table = splits_token_table(splits, config.max_tokens)
    train, val = (CaptionedClips.from_split(split, table) for split in splits)

    torch.manual_seed(options.seed)
    model = MatchingEvaluator(config, eval_mean, eval_std).to(device)  # initialised on the CPU, then moved
    started = time.perf_counter()
    history = train_evaluator(model, train, val, table, options, progress=True)
    seconds = time.perf_counter() - started
    model.cpu()  # a CPU checkpoint whatever the device
    save_evaluator(out_file, model)

    write_loss_curves(plots_dir, "evaluator", history.train_loss, history.val_loss, f"evaluator {options.loss} loss")
    save_json(metrics_file, evaluator_metrics(history, options, model, table, len(train), len(val), seconds))
    click.echo(evaluator_summary(history, len(val)))


if __name__ == "__main__":
    main()
