"""Stage report_hmdiff: HMDiff's Tables 1, 3, 4, 5 and 6 with the paper's numbers beside ours, pictures, metrics JSON.

Reads every ``eval_hmdiff@<run>`` row (``<eval-dir>/<run>.{json,npz}``), the trained models' configs
(for each row's compute), and the first test images with their truth (for the pictures). Reads
no wall-clock figure: FPS stays in ``reports/metrics/hmdiff_speed/`` and the benchmark. Writes
``reports/hmdiff.md``, ``reports/metrics/hmdiff.json`` and the pictures under ``--report-dir``.
"""

from __future__ import annotations

from pathlib import Path

import click
import torch

from humandiff.body.model import load_body_model
from humandiff.eval.report import write_png
from humandiff.hmdiff.data import build_geometry, load_set
from humandiff.hmdiff.model import forward_macs
from humandiff.hmdiff.report import build_report, compute_per_image, load_rows
from humandiff.hmdiff.settings import read_params
from humandiff.hmdiff.training import load_hmdiff
from humandiff.imaging import atomic_directory, load_image_set
from humandiff.io import atomic_path, save_json
from humandiff.io.stage import run_stage, stage_params

SECTION = "hmdiff"


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True, type=click.Path())
@click.option("--images", "images_dir", default="data/images", show_default=True, type=click.Path())
@click.option("--extract-dir", default="data/extract", show_default=True, type=click.Path())
@click.option("--models-dir", default="data/hmdiff/models", show_default=True, type=click.Path())
@click.option("--eval-dir", default="data/hmdiff/eval", show_default=True, type=click.Path())
@click.option("--report", "report_file", default="reports/hmdiff.md", show_default=True, type=click.Path())
@click.option("--report-dir", default="reports/hmdiff", show_default=True, type=click.Path())
@click.option("--metrics", "metrics_file", default="reports/metrics/hmdiff.json", show_default=True, type=click.Path())
@run_stage
def main(params_file: str, images_dir: str, extract_dir: str, models_dir: str, eval_dir: str, report_file: str,
         report_dir: str, metrics_file: str) -> None:
    p = read_params(params_file)
    body_path = stage_params(params_file, "body", {"model_path": str})["model_path"]
    torch.set_num_threads(p.threads)
    rows = load_rows(eval_dir, list(p.runs))
    geometry = build_geometry(body_path, p.hierarchy, p.fit_poses, p.seed)
    count = min(p.report["sheet_images"], p.eval.figure_images, *(len(r.arrays["vertices"]) for r in rows.values()))
    data = load_set(images_dir, extract_dir, "test", load_body_model(body_path), geometry, count)
    shards = load_image_set(images_dir, "test", ("image", "joints_cam"))[1]
    compute = {}
    for name, spec in p.runs.items():
        if spec.kind != "head":
            config = load_hmdiff(Path(models_dir) / f"{spec.model}.pt", geometry)[0].config
            tokens = int(data.tokens.shape[1]) * (config.context != "pose") + config.pose_joints * (config.context != "image")
            compute[name] = compute_per_image(rows[name].summary, forward_macs(config, tokens), p.eval.num_samples)
    figures = {"images": shards["image"][:count], "truth": data.vertices.numpy(), "pelvis": shards["joints_cam"][:count, 0],
               "intrinsics": data.intrinsics.numpy(), "regressor": geometry.regressor.numpy(),
               "spread_images": p.report["spread_images"]}
    with atomic_directory(report_dir) as tmp:
        report = build_report(rows, compute, int(rows["hmdiff"].summary["images"]) if "hmdiff" in rows else 0,
                              geometry.hierarchy.sizes, p.eval.num_samples, p.eval.threshold, p.eval.gamma, figures,
                              report_dir, report_file, write_png, tmp)
    save_json(metrics_file, report.metrics)
    with atomic_path(report_file, suffix=".md") as tmp:
        tmp.write_text(report.markdown)


if __name__ == "__main__":
    main()
