"""Stage train_perception: the image backbone with its keypoint, depth-map and SMPL regression heads.

Trains PerceptionNet on the rendered train set with the generic loop (resumable from ``--checkpoint``,
DDP under torchrun, EMA) and the loss of humandiff.perception.train, then scores the EMA weights on
the val set. Writes the EMA model, the loss curve (a DVC plot) and the timing and val accuracy.
"""

from __future__ import annotations

import time
from pathlib import Path

import click
import torch

from humandiff.body.model import load_body_model
from humandiff.imaging import load_image_set, load_index
from humandiff.io import save_json
from humandiff.io.stage import positive, run_stage, section_config, stage_params
from humandiff.perception.dataset import TRAINING_FIELDS, PerceptionDataset
from humandiff.perception.model import PerceptionConfig, PerceptionNet, save_perception
from humandiff.perception.train import (CURVE_COLUMNS, DEFAULT_PARAMS, EXTRA_PARAMS, Augmentation, loss_weights,
                                        perception_loss_fn, refuse_image_fields, run_fingerprint, sized_config,
                                        training_metrics, validation_metrics)
from humandiff.train.device import on_device, resolve_device
from humandiff.train.loop import LoopConfig, init_distributed, shutdown_distributed, train, write_loss_curve

SECTION = "train_perception"


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True, type=click.Path())
@click.option("--images", "images_dir", default="data/images", show_default=True, type=click.Path())
@click.option("--out", "out_file", default="data/models/perception.pt", show_default=True, type=click.Path())
@click.option("--checkpoint", "checkpoint_file", default="data/models/perception_checkpoint.pt", show_default=True, type=click.Path(),
              help="resumable training state (a rerun with the same data and params continues from it)")
@click.option("--plot", "plot_file", default="reports/plots/perception_loss.csv", show_default=True, type=click.Path())
@click.option("--metrics", "metrics_file", default="reports/metrics/train_perception.json", show_default=True,
              type=click.Path())
@click.option("--stop-at", type=int, default=None, help="end this process at that step (as an interruption would)")
@run_stage
def main(params_file: str, images_dir: str, out_file: str, checkpoint_file: str, plot_file: str, metrics_file: str,
         stop_at: int | None) -> None:
    (loop, architecture, augmentation), p = section_config(params_file, SECTION, (LoopConfig, PerceptionConfig, Augmentation),
                                                           EXTRA_PARAMS, defaults=DEFAULT_PARAMS)
    positive(params_file, SECTION, p, "threads", "eval_batch_size", "sigma")  # LoopConfig checks its own
    refuse_image_fields(params_file, SECTION, p)
    weights = loss_weights(params_file, SECTION, p)
    body_path = stage_params(params_file, "body", {"model_path": str})["model_path"]
    device = resolve_device(p["device"], f"{params_file}: parameter '{SECTION}.device'")
    torch.set_num_threads(p["threads"])
    body_model = load_body_model(body_path)
    index = load_index(images_dir)
    dataset = PerceptionDataset(load_image_set(images_dir, "train", TRAINING_FIELDS, index=index)[1])
    config = sized_config(architecture, dataset)
    torch.manual_seed(loop.seed)
    model = PerceptionNet(config).fast_layout()

    info = init_distributed(device)
    body_model.to(info.device)  # the loss poses it with the batch
    cpu_started = time.process_time()
    result = train(model, dataset, dataset.collate, perception_loss_fn(body_model, config.image_size, weights, augmentation),
                   loop, checkpoint_file=checkpoint_file, stop_at=stop_at, desc=SECTION, device=device,
                   fingerprint=run_fingerprint(Path(images_dir) / "index.parquet", config, weights, body_path, augmentation))
    if result.step < loop.steps or not info.is_main:
        shutdown_distributed()
        return

    metrics = training_metrics(result, model, loop, len(dataset), p["threads"], time.process_time() - cpu_started)
    body_model.cpu()  # predict decodes on the CPU; only the network runs on the device
    ema = result.ema.eval()
    if (index["set"] == "val").any():
        val = load_image_set(images_dir, "val", TRAINING_FIELDS, index=index)[1]
        metrics |= validation_metrics(on_device(ema, info.device), val, body_model, p["eval_batch_size"], p["sigma"])
    save_perception(out_file, ema.cpu(), {"sigma": p["sigma"], "steps": result.step, "train_images": len(dataset)})
    write_loss_curve(plot_file, result.history, CURVE_COLUMNS)
    save_json(metrics_file, metrics)
    shutdown_distributed()


if __name__ == "__main__":
    main()
