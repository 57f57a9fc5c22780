"""Stage train_reward: the TMR-style reward model SoPo scores its samples with (never used for metrics).

Trains on the train split with its own seed, keeps the epoch with the lowest val contrastive
loss, and reports text -> motion retrieval on the test split.
"""

from __future__ import annotations

import time
from pathlib import Path

import click
import numpy as np
import torch

from humandiff.motion.dataset import load_mean_std, load_motion_split
from humandiff.eval.report import write_curves_csv
from humandiff.eval.t2m import R_PRECISION_BATCH
from humandiff.io import save_json
from humandiff.evaluators.tmr import (
    CaptionedMotions,
    RewardConfig,
    RewardModel,
    RewardTraining,
    retrieval_scores,
    save_reward_model,
    train_reward,
)
from humandiff.io.stage import positive, run_stage, section_config
from humandiff.train.device import resolve_device

SECTION = "train_reward"
#: The section holds the fields of RewardConfig and RewardTraining, and these stage settings.
EXTRA = {"threads": int, "device": str, "test_replications": int}
#: Fields params.yaml may leave at their defaults (the MiniLM embedding size, 256 tokens, clip 1).
DEFAULTS = ("text_dim", "max_tokens", "grad_clip")


def captioned(split) -> CaptionedMotions:
    """The split's clips with the MiniLM embeddings of their captions."""
    return CaptionedMotions([split.clip(k) for k in range(len(split))],
                            [split.embeddings[rows] for rows in split.caption_rows])


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
    device = resolve_device(p["device"], f"{params_file}: {SECTION}.device")
    torch.set_num_threads(p["threads"])
    splits = {name: captioned(load_motion_split(index_file, features_file, embeddings_file, name))
              for name in ("train", "val", "test")}
    mean, std = load_mean_std(mean_std_file, "model")

    torch.manual_seed(options.seed)
    model = RewardModel(config, mean, std).to(device)  # initialised on the CPU, then moved
    started = time.perf_counter()
    history = train_reward(model, splits["train"], splits["val"], options, progress=True)
    seconds = time.perf_counter() - started
    test = retrieval_scores(model, splits["test"], np.random.default_rng([options.seed, 2]), p["test_replications"])
    model.cpu()  # a CPU checkpoint whatever the device
    save_reward_model(out_file, model)

    write_curves_csv(Path(plots_dir) / "reward_loss.csv", {"train_loss": history.train_loss, "val_loss": history.val_loss})
    save_json(metrics_file, {
        "test_top1": test["top1"], "test_top2": test["top2"], "test_top3": test["top3"],
        "test_matched_reward": test["matched_reward"], "test_mismatched_reward": test["mismatched_reward"],
        "chance_top3": 3 / R_PRECISION_BATCH,
        "retrieval": f"text -> motion among shuffled batches of {R_PRECISION_BATCH}, cosine ranking, "
                     f"{p['test_replications']} caption draws",
        "best_epoch": history.best_epoch, "epochs": options.epochs,
        "val_loss": history.val_loss[history.best_epoch - 1],
        "train_clips": len(splits["train"]), "test_clips": len(splits["test"]),
        "parameters": int(sum(t.numel() for t in model.parameters())),
        "train_seconds": round(seconds, 1),
    })
    click.echo(f"reward: best epoch {history.best_epoch}, test top-3 {test['top3']:.3f} "
               f"(chance {3 / R_PRECISION_BATCH:.3f}), matched {test['matched_reward']:.3f} "
               f"vs mismatched {test['mismatched_reward']:.3f}")


if __name__ == "__main__":
    main()
