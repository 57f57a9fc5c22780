"""Stage train_mdm: train the MDM-style text-to-motion diffusion prior.

Reads the prepared motion features, mean/std and caption embeddings; trains on the train split
with the generic loop (resumable from ``--checkpoint``, DDP under torchrun, EMA); writes the EMA
weights and the model config, the loss curve (a DVC plot) and a metrics JSON with the wall time
and a held-out denoising loss of the EMA model on the val split (:mod:`humandiff.prior.training`).
"""

from __future__ import annotations

import time
from pathlib import Path

import click
import torch

from humandiff.io import save_json
from humandiff.io.stage import run_stage, section_config
from humandiff.motion.dataset import MotionTextDataset, collate_motion, load_mean_std
from humandiff.prior.mdm import MDMConfig, save_mdm
from humandiff.prior.training import (
    TRAIN_DEFAULTS,
    TRAIN_EXTRA,
    check_training_params,
    condition_table,
    conditioned_split,
    held_out_loss,
    initial_model,
    training_fingerprint,
    training_metrics,
    training_objective,
)
from humandiff.train.device import resolve_device, to_device
from humandiff.train.loop import LoopConfig, init_distributed, shutdown_distributed, train, write_loss_curve

SECTION = "train_mdm"


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
    (config, loop), p = section_config(params_file, SECTION, (MDMConfig, LoopConfig), TRAIN_EXTRA, defaults=TRAIN_DEFAULTS)
    check_training_params(params_file, SECTION, p)
    device = resolve_device(p["device"], f"{params_file}: parameter '{SECTION}.device'")
    torch.set_num_threads(p["threads"])
    info = init_distributed(device)

    hml = Path(hml_dir)
    index, features, mean_std, embeddings = hml / "index.parquet", hml / "features.npz", hml / "mean_std.npz", Path(embeddings_file)
    conditions = condition_table(embeddings, config)  # encodes every clause once, for both splits
    train_split = conditioned_split(index, features, embeddings, "train", conditions)
    mean, std = load_mean_std(mean_std)
    dataset = MotionTextDataset(train_split, mean, std, max_frames=p["max_frames"], seed=p["seed"])
    fingerprint = training_fingerprint(p, config, [index, features, mean_std, embeddings])
    model = initial_model(config, p["seed"], train_split if p["standardize_text"] else None)
    loss_fn = training_objective(config, p, mean, std)
    val_split = conditioned_split(index, features, embeddings, "val", conditions)  # a bad val split fails before training
    started = time.perf_counter()
    result = train(model, dataset, collate_motion, loss_fn, loop, checkpoint_file=checkpoint_file, fingerprint=fingerprint,
                   lengths=dataset.crop_lengths(), stop_at=stop_at, desc=SECTION, device=device)
    if not info.is_main or result.step < loop.steps:
        shutdown_distributed()
        return

    out = Path(out_dir)
    save_mdm(out / "model.pt", out / "config.json", to_device(result.ema.state_dict(), "cpu"), config)
    write_loss_curve(plot_file, result.history)
    val_set = MotionTextDataset(val_split, mean, std, max_frames=p["max_frames"], random=False)
    val_loss = held_out_loss(result.ema, val_set, config, p["seed"], device=info.device)
    save_json(metrics_file, training_metrics(model, result, loop.batch_size, info.world_size, len(train_split), val_loss,
                                             time.perf_counter() - started))
    shutdown_distributed()


if __name__ == "__main__":
    main()
