"""Stage eval_hmdiff: one row of HMDiff's tables (``hmdiff.runs.<name>``) on the first test images.

HMDiff with DAT, Table 4's no-DAT runs (each at its best DDIM step count of a sweep), Table 5's
ablations, Baselines A and B, or the perception network's regression head (Table 1). Writes the
row (MPVE, MPJPE, PA-MPJPE in mm, steps; no timings) as JSON, the per-image errors, figure meshes,
samples and the R_k history as NPZ, and the run's speed to its own metrics file (wall clock, which
no stage depends on).
"""

from __future__ import annotations

from pathlib import Path

import click
import torch
from tqdm import tqdm

from humandiff.body.model import load_body_arrays, load_body_model
from humandiff.hmdiff.data import build_geometry, load_set
from humandiff.hmdiff.run import evaluate_run
from humandiff.hmdiff.settings import pick, read_params
from humandiff.hmdiff.training import load_hmdiff
from humandiff.io import check_finite, save_json
from humandiff.io.artifacts import save_npz
from humandiff.io.stage import run_stage, stage_params

SECTION = "hmdiff"


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True, type=click.Path())
@click.option("--run", "name", required=True, help="an entry of hmdiff.runs")
@click.option("--images", "images_dir", default="data/images", show_default=True, type=click.Path())
@click.option("--extract-dir", default="data/extract", show_default=True, type=click.Path())
@click.option("--models-dir", default="data/hmdiff/models", show_default=True, type=click.Path())
@click.option("--out-dir", default="data/hmdiff/eval", show_default=True, type=click.Path())
@click.option("--speed", "speed_file", required=True, type=click.Path(), help="wall-clock metrics (no stage reads them)")
@run_stage
def main(params_file: str, name: str, images_dir: str, extract_dir: str, models_dir: str, out_dir: str, speed_file: str) -> None:
    p = read_params(params_file)
    spec = pick(params_file, p.runs, name, "runs")
    body_path = stage_params(params_file, "body", {"model_path": str})["model_path"]
    torch.set_num_threads(p.threads)
    geometry = build_geometry(body_path, p.hierarchy, p.fit_poses, p.seed)
    body_model = load_body_model(body_path)
    data = load_set(images_dir, extract_dir, "test", body_model, geometry, p.eval.images)
    model = None if spec.kind == "head" else load_hmdiff(Path(models_dir) / f"{spec.model}.pt", geometry)[0]
    if model is not None:
        model.requires_grad_(False)
    joint_regressor = torch.as_tensor(load_body_arrays(body_path)["J_regressor"], dtype=torch.float32)
    bar = tqdm(total=len(spec.steps) if spec.kind == "diffusion" else 1, desc=f"eval_hmdiff@{name}", unit="setting",
               dynamic_ncols=True)
    outcome = evaluate_run(name, spec, p.eval, data, geometry, joint_regressor, model, body_model, p.seed, bar.update)
    bar.close()
    if "diverged_options" not in outcome.summary:  # a diverged run's row holds its NaN meshes on purpose
        check_finite(Path(out_dir) / f"{name}.npz", outcome.arrays)
    save_npz(Path(out_dir) / f"{name}.npz", outcome.arrays)
    save_json(Path(out_dir) / f"{name}.json", outcome.summary)
    save_json(speed_file, outcome.speed)


if __name__ == "__main__":
    main()
