"""Stage train_hmdiff: one of HMDiff's networks (``hmdiff.models.<name>``) on the frozen perception outputs.

Diffusion models (the image-feature denoiser HMDiff samples with, and Table 4's pose-heatmap and
both-feature denoisers) learn the diffusion loss plus the vertex, joint, normal and edge losses on
the clean estimate; the regression Baselines A and B (Table 3) learn the geometry losses of their
one-pass mesh. Both learn the coarse -> middle up-sampling. Resumable from ``--checkpoint``;
writes the EMA model, the loss curve (a DVC plot) and the run's size and timing.
"""

from __future__ import annotations

import time

import click
import torch

from humandiff.body.model import load_body_model
from humandiff.hmdiff.data import build_geometry, load_set
from humandiff.hmdiff.settings import pick, read_params
from humandiff.hmdiff.training import (HMDiffNet, RowDataset, hmdiff_loss_fn, network_config, save_hmdiff,
                                       settings_dict, curve_columns)
from humandiff.io import save_json
from humandiff.io.digests import file_digest
from humandiff.io.stage import run_stage, stage_params
from humandiff.train.loop import train, write_loss_curve

SECTION = "hmdiff"


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True, type=click.Path())
@click.option("--model", "name", required=True, help="an entry of hmdiff.models")
@click.option("--images", "images_dir", default="data/images", show_default=True, type=click.Path())
@click.option("--extract-dir", default="data/extract", show_default=True, type=click.Path())
@click.option("--out", "out_file", required=True, type=click.Path())
@click.option("--checkpoint", "checkpoint_file", required=True, type=click.Path(),
              help="resumable training state (a rerun with the same data and params continues from it)")
@click.option("--plot", "plot_file", required=True, type=click.Path())
@click.option("--metrics", "metrics_file", required=True, type=click.Path())
@click.option("--stop-at", type=int, default=None, help="end this process at that step (as an interruption would)")
@run_stage
def main(params_file: str, name: str, images_dir: str, extract_dir: str, out_file: str, checkpoint_file: str,
         plot_file: str, metrics_file: str, stop_at: int | None) -> None:
    p = read_params(params_file)
    spec = pick(params_file, p.models, name, "models")
    body_path = stage_params(params_file, "body", {"model_path": str})["model_path"]
    torch.set_num_threads(p.threads)
    geometry = build_geometry(body_path, p.hierarchy, p.fit_poses, p.seed)
    data = load_set(images_dir, extract_dir, "train", load_body_model(body_path), geometry, p.train_images)
    config = network_config(spec, p.architecture, geometry, data)
    torch.manual_seed(p.seed)
    model = HMDiffNet(config, geometry)
    model.coordinates.fit(data.coarse)  # the diffusion's coordinates (a resumed run restores the same buffers)
    dataset = RowDataset(data)
    fingerprint = {"model": config.to_dict(), "weights": settings_dict(p.weights), "upsample": p.upsample_weight,
                   "hierarchy": list(geometry.hierarchy.sizes), "body": file_digest(body_path), "images": len(data),
                   "extract": file_digest(f"{extract_dir}/train.npz")}
    started = time.process_time()
    result = train(model, dataset, dataset.collate, hmdiff_loss_fn(geometry, p.weights, p.upsample_weight), p.loop,
                   checkpoint_file=checkpoint_file, stop_at=stop_at, desc=f"train_hmdiff@{name}", fingerprint=fingerprint)
    if result.step < p.loop.steps:
        return
    save_hmdiff(out_file, result.ema.eval(), {"model": name, "steps": result.step, "train_images": len(data)})
    write_loss_curve(plot_file, result.history, curve_columns(result.history))
    steps_run = max(result.steps_run, 1)
    save_json(metrics_file, {
        "model": name, "parameters": sum(t.numel() for t in model.parameters()), "train_images": len(data),
        "coarse_vertices": geometry.coarse_vertices, "steps": result.step, "batch_size": p.loop.batch_size,
        "train_seconds": round(result.total_seconds, 1), "seconds_per_step": round(result.wall_seconds / steps_run, 4),
        "cpu_seconds_per_step": round((time.process_time() - started) / steps_run, 4),
        "final_loss": round(result.history[-1]["loss"], 4) if result.history else None})


if __name__ == "__main__":
    main()
