"""Stage train_perception: the image backbone with its keypoint, depth-map and SMPL regression heads.

Trains humandiff.perception.model.PerceptionNet on the rendered train set with the generic loop
(resumable from ``--checkpoint``, DDP under torchrun, EMA), then evaluates the EMA weights on the
val set. Writes the EMA model, the loss curve (a DVC plot) and a metrics JSON with the timing and
the val accuracy.
"""

from __future__ import annotations

import time
from pathlib import Path

import click
import torch

from humandiff.body.model import load_body_model
from humandiff.imaging import load_image_set, load_index
from humandiff.perception.dataset import TRAINING_FIELDS, PerceptionDataset, colour_jitter
from humandiff.io import ArtifactError, file_digest, save_json
from humandiff.perception.model import (
    LossWeights,
    PerceptionConfig,
    PerceptionNet,
    count_parameters,
    evaluate_predictions,
    perception_loss,
    predict,
    save_perception,
    teacher_evidence,
)
from humandiff.io.stage import positive, run_stage, stage_params
from humandiff.train.loop import LoopConfig, init_distributed, shutdown_distributed, train, write_loss_curve
from humandiff.train.device import on_device, resolve_device

SECTION = "train_perception"
PARAMS = {
    "seed": int, "threads": int, "steps": int, "batch_size": int, "lr": float, "weight_decay": float,
    "warmup_steps": int, "lr_decay": str, "grad_clip": float, "ema_decay": float, "checkpoint_every": int,
    "widths": list, "blocks": list, "head_width": int, "token_dim": int, "regressor_width": int,
    "ief_iterations": int, "layout_channels": int, "teacher_fraction": float, "teacher_pixel_noise": float,
    "teacher_depth_noise": float, "colour_jitter": float, "sigma": float, "occluded_weight": float,
    "w_heatmap": float, "w_keypoint": float, "w_depth": float, "w_joints3d": float, "w_joints2d": float,
    "w_rotations": float, "w_betas": float, "eval_batch_size": int,
}
CURVE_COLUMNS = ("step", "loss", "heatmap", "keypoint", "depth", "joints3d", "joints2d", "rotations", "betas")


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
    p = stage_params(params_file, SECTION, PARAMS)
    positive(params_file, SECTION, p, "threads", "steps", "batch_size", "lr", "checkpoint_every", "eval_batch_size",
             "sigma")
    body_path = stage_params(params_file, "body", {"model_path": str})["model_path"]
    device = resolve_device(p.get("device", "cpu"), f"{params_file}: parameter '{SECTION}.device'")
    torch.set_num_threads(p["threads"])
    loop = LoopConfig(steps=p["steps"], batch_size=p["batch_size"], lr=p["lr"], weight_decay=p["weight_decay"],
                      warmup_steps=p["warmup_steps"], lr_decay=p["lr_decay"], grad_clip=p["grad_clip"],
                      ema_decay=p["ema_decay"], checkpoint_every=p["checkpoint_every"], seed=p["seed"])
    weights = LossWeights(heatmap=p["w_heatmap"], keypoint=p["w_keypoint"], depth=p["w_depth"], joints3d=p["w_joints3d"],
                          joints2d=p["w_joints2d"], rotations=p["w_rotations"], betas=p["w_betas"], sigma=p["sigma"],
                          occluded_weight=p["occluded_weight"])
    if not 0 <= p["colour_jitter"] < 1:
        raise ArtifactError(f"{params_file}: parameter '{SECTION}.colour_jitter' must lie in [0, 1), got {p['colour_jitter']}")
    body_model = load_body_model(body_path)
    index = load_index(images_dir)
    _, train_arrays = load_image_set(images_dir, "train", TRAINING_FIELDS, index=index)
    dataset = PerceptionDataset(train_arrays)
    del train_arrays
    config = PerceptionConfig(image_size=dataset.image_size, widths=tuple(p["widths"]), blocks=tuple(p["blocks"]),
                              head_width=p["head_width"], token_dim=p["token_dim"], regressor_width=p["regressor_width"],
                              layout_channels=p["layout_channels"], ief_iterations=p["ief_iterations"],
                              num_betas=int(dataset.targets["betas"].shape[1]))
    if not 0 <= p["teacher_fraction"] <= 1 or p["teacher_pixel_noise"] < 0 or p["teacher_depth_noise"] < 0:
        raise ArtifactError(f"{params_file}: parameters '{SECTION}.teacher_*' must satisfy 0 <= fraction <= 1 and noise >= 0")
    torch.manual_seed(p["seed"])
    model = PerceptionNet(config).fast_layout()

    def loss_fn(net, batch, generator):
        images = colour_jitter(batch["images"], generator, p["colour_jitter"])
        teacher = teacher_evidence(batch["joints_2d"], batch["joints_cam"], config.image_size, generator,
                                   p["teacher_pixel_noise"], p["teacher_depth_noise"])
        use_teacher = torch.rand(len(images), generator=generator).to(images.device) < p["teacher_fraction"]
        return perception_loss(net(images, teacher, use_teacher), batch, body_model, weights, config.image_size)

    fingerprint = {"index": file_digest(Path(images_dir) / "index.parquet"), "config": config.to_dict(),
                   "weights": weights.__dict__, "body": str(body_path),
                   **{k: p[k] for k in ("colour_jitter", "teacher_fraction", "teacher_pixel_noise", "teacher_depth_noise")}}
    info = init_distributed(device)
    body_model.to(info.device)  # the loss poses it with the batch
    cpu_started = time.process_time()
    result = train(model, dataset, dataset.collate, loss_fn, loop, checkpoint_file=checkpoint_file,
                   fingerprint=fingerprint, stop_at=stop_at, desc="train_perception", device=device)
    if result.step < loop.steps or not info.is_main:
        shutdown_distributed()
        return

    cpu_per_step = (time.process_time() - cpu_started) / max(result.steps_run, 1)
    body_model.cpu()  # predict decodes on the CPU; only the network runs on the device
    ema = result.ema.eval()
    val_metrics: dict[str, float] = {}
    if (index["set"] == "val").any():
        _, val = load_image_set(images_dir, "val", TRAINING_FIELDS, index=index)
        started = time.perf_counter()
        predictions = predict(on_device(ema, info.device), val["image"], val["intrinsics"], body_model, p["eval_batch_size"],
                              p["sigma"])
        val_seconds = time.perf_counter() - started
        val_metrics = {f"val_{k}": round(v, 4) for k, v in evaluate_predictions(predictions, val).items()}
        val_metrics["val_images"] = len(val["image"])
        val_metrics["val_images_per_s"] = round(len(val["image"]) / val_seconds, 2)
    save_perception(out_file, ema.cpu(), {"sigma": p["sigma"], "steps": result.step, "train_images": len(dataset)})
    write_loss_curve(plot_file, result.history, CURVE_COLUMNS)
    steps_run = max(result.steps_run, 1)
    save_json(metrics_file, {
        "parameters": count_parameters(model),
        "train_images": len(dataset),
        "steps": result.step,
        "batch_size": loop.batch_size,
        "epochs": round(result.step * loop.batch_size / len(dataset), 2),
        "threads": p["threads"],
        "train_seconds": round(result.total_seconds, 1),
        "seconds_per_step": round(result.wall_seconds / steps_run, 4),
        # CPU seconds of this process per step (all threads): on a machine shared with other jobs the
        # wall time above overstates what the step costs; this does not
        "cpu_seconds_per_step": round(cpu_per_step, 4),
        "resumed_from": result.resumed_from,
        "final_loss": round(result.history[-1]["loss"], 4) if result.history else None,
        **val_metrics,
    })
    shutdown_distributed()


if __name__ == "__main__":
    main()
