"""Stage train_reward: the TMR-style reward model SoPo scores its samples with (never used for metrics).

Trains on the train split with its own seed, keeps the epoch with the lowest val contrastive
loss, and reports text -> motion retrieval on the test split.
"""

from __future__ import annotations

import time

import click
import numpy as np
import torch

from humandiff.eval.report import write_loss_curves
from humandiff.evaluators.tmr import (
    CaptionedMotions,
    RewardConfig,
    RewardModel,
    RewardTraining,
    retrieval_scores,
    reward_metrics,
    reward_summary,
    save_reward_model,
    train_reward,
)
from humandiff.io import save_json
from humandiff.io.stage import positive, run_stage, section_config
from humandiff.motion.dataset import load_mean_std, load_motion_split
from humandiff.train.device import resolve_device

SECTION = "train_reward"
#: The section holds the fields of RewardConfig and RewardTraining, and these stage settings.
EXTRA = {"threads": int, "device": str, "test_replications": int}
#: Fields params.yaml may leave at their defaults (the MiniLM embedding size, 256 tokens, clip 1).
DEFAULTS = ("text_dim", "max_tokens", "grad_clip")


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True, type=click.Path())
@click.option("--index", "index_file", default="data/motion/hml/index.parquet", show_default=True, type=click.Path())
@click.option("--features", "features_file", default="data/motion/hml/features.npz", show_default=True, type=click.Path())
@click.option("--mean-std", "mean_std_file", default="data/motion/hml/mean_std.npz", show_default=True, type=click.Path())
@click.option("--embeddings", "embeddings_file", default="data/motion/text/embeddings.parquet", show_default=True,
              type=click.Path())
@click.option("--out", "out_file", default="data/models/reward.pt", show_default=True, type=click.Path())
@click.option("--metrics", "metrics_file", default="reports/metrics/reward.json", show_default=True, type=click.Path())
@click.option("--plots-dir", default="reports/plots", show_default=True, type=click.Path())
@run_stage
def main(params_file: str, index_file: str, features_file: str, mean_std_file: str, embeddings_file: str,
         out_file: str, metrics_file: str, plots_dir: str) -> None:
    (config, options), p = section_config(params_file, SECTION, (RewardConfig, RewardTraining), EXTRA, defaults=DEFAULTS)
    positive(params_file, SECTION, p, "threads", "test_replications")
    device = resolve_device(p["device"], f"{params_file}: parameter '{SECTION}.device'")
    torch.set_num_threads(p["threads"])
    train, val, test = (CaptionedMotions.from_split(load_motion_split(index_file, features_file, embeddings_file, name))
                        for name in ("train", "val", "test"))
    mean, std = load_mean_std(mean_std_file, "model")

    torch.manual_seed(options.seed)
    model = RewardModel(config, mean, std).to(device)  # initialised on the CPU, then moved
    started = time.perf_counter()
    history = train_reward(model, train, val, options, progress=True)
    seconds = time.perf_counter() - started
    scores = retrieval_scores(model, test, np.random.default_rng([options.seed, 2]), p["test_replications"])
    model.cpu()  # a CPU checkpoint whatever the device
    save_reward_model(out_file, model)

    write_loss_curves(plots_dir, "reward", history.train_loss, history.val_loss)
    save_json(metrics_file, reward_metrics(scores, history, options, model, len(train), len(test),
                                           p["test_replications"], seconds))
    click.echo(reward_summary(history, scores))


if __name__ == "__main__":
    main()
