"""Stage report_scorehmr: ScoreHMR's Tables 1-4, sweeps, findings and pictures.

Gathers the run records of the scorehmr, scorehmr_regression, scorehmr_smplify, scorehmr_sweep and
scorehmr_ablation stages (humandiff.scorehmr.report) into reports/scorehmr.md, the paper's numbers
beside ours, and reports/metrics/scorehmr.json; draws the regression's and ScoreHMR's meshes over
test images with a side view, and a strip of a video sequence (humandiff.scorehmr.figures).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
import numpy as np

from humandiff.body.model import load_body_model
from humandiff.imaging import load_image_set, load_index
from humandiff.io import save_json
from humandiff.io.artifacts import atomic_path
from humandiff.io.stage import positive, run_stage, stage_params
from humandiff.motion.video import write_image
from humandiff.scorehmr.figures import camera_vertices, overlay_sheet, video_strip
from humandiff.scorehmr.report import load_records, metrics_json, report_markdown
from humandiff.scorehmr.run import load_run
from humandiff.scorehmr.training import load_denoiser

SECTION = "report_scorehmr"


def _meshes(body_model, data_dir: Path, setting: str, rows: np.ndarray) -> dict[str, np.ndarray]:
    runs = {m: load_run(data_dir / setting / f"{m}.npz") for m in ("regression", "scorehmr")}
    return {m: camera_vertices(body_model, r["pose"][rows], r["betas"][rows], r["camera"][rows]) for m, r in runs.items()}


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True, type=click.Path())
@click.option("--data-dir", default="data/scorehmr", show_default=True, type=click.Path())
@click.option("--images", "images_dir", default="data/images", show_default=True, type=click.Path())
@click.option("--report", "report_file", default="reports/scorehmr.md", show_default=True, type=click.Path())
@click.option("--report-dir", default="reports/scorehmr", show_default=True, type=click.Path())
@click.option("--metrics", "metrics_file", default="reports/metrics/scorehmr.json", show_default=True, type=click.Path())
@click.option("--model", "model_file", default="data/scorehmr/model.pt", show_default=True, type=click.Path())
@click.option("--targets-metrics", default="reports/metrics/scorehmr_targets.json", show_default=True, type=click.Path())
@run_stage
def main(params_file: str, data_dir: str, images_dir: str, report_file: str, report_dir: str, metrics_file: str,
         model_file: str, targets_metrics: str) -> None:
    p = stage_params(params_file, SECTION, {"overlay_images": int, "strip_frames": int}, complete=True)
    positive(params_file, SECTION, p, "overlay_images", "strip_frames")
    body_path = stage_params(params_file, "body", {"model_path": str})["model_path"]
    records = load_records(data_dir)
    metrics = metrics_json(records)
    denoiser, training = load_denoiser(model_file)
    training |= {"parameters": sum(q.numel() for q in denoiser.parameters()), "feature_dim": denoiser.config.feature_dim}
    targets = json.loads(Path(targets_metrics).read_text()) if Path(targets_metrics).is_file() else {}

    body_model, index, root = load_body_model(body_path), load_index(images_dir), Path(data_dir)
    faces = np.asarray(body_model.faces, dtype=np.int64)
    figures = {}
    for setting, set_name, count, draw in (("fit", "test", p["overlay_images"], overlay_sheet),
                                           ("video", "video", p["strip_frames"], video_strip)):
        run = load_run(root / setting / "scorehmr.npz")
        _, shards = load_image_set(images_dir, set_name, ("image", "intrinsics"),
                                   index=index[index["image_id"].isin(run["image_id"])])
        rows = np.flatnonzero(run["groups"] == run["groups"][0])  # the first sequence (fit: the first image)
        rows = rows[np.linspace(0, len(rows) - 1, min(count, len(rows))).round().astype(int)] if setting == "video" \
            else np.arange(min(count, len(run["image_id"])))
        picture = draw(shards["image"][rows], shards["intrinsics"][rows], _meshes(body_model, root, setting, rows), faces)
        path = Path(report_dir) / f"{setting}.png"
        write_image(path, picture[..., ::-1])  # OpenCV writes BGR
        figures[f"{setting}: regression (pink) vs ScoreHMR (green)"] = os.path.relpath(path, Path(report_file).parent)

    save_json(metrics_file, metrics)
    with atomic_path(report_file, suffix=".md") as handle:
        handle.write_text(report_markdown(metrics, records, training, targets, figures))


if __name__ == "__main__":
    main()
