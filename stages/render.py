"""Stage render: the image sets (train, val, test, multiview, video) from the motion dataset.

Poses the body model with the raw clips' SMPL parameters, renders each image with a random
perspective camera, clothing or body-part colouring, lighting, a procedural background and
optional occluders, and writes NPZ shards plus a Parquet index with the full ground truth (see
humandiff.imaging.shards). The set of a clip follows its split in the prepared motion index, so
no test clip reaches training; an index prepared from another source (``prepare_motion.source:
humanml3d``) is refused, since only the synthetic clips carry SMPL parameters to render. Also writes a contact sheet with the ground-truth 2D joints and
metrics (counts, throughput); :mod:`humandiff.imaging.build` holds the steps.
"""

from __future__ import annotations

from pathlib import Path

import click

from humandiff.body.model import load_body_model
from humandiff.imaging import clip_table, plan_units
from humandiff.imaging.build import (
    CONFIG_PARAMS,
    check_betas,
    check_sets_follow_splits,
    load_raw_motions,
    render_config,
    render_metrics,
    write_image_sets,
)
from humandiff.io import load_parquet, save_json
from humandiff.io.stage import positive, run_stage, stage_params
from humandiff.motion.video import write_image

SECTION = "render"
#: The section: the render settings and set sizes (render_config), and these stage settings.
PARAMS = {**CONFIG_PARAMS, "seed": int, "workers": int, "shard_size": int, "sheet_columns": int}


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True, type=click.Path())
@click.option("--motions", default="data/motion/raw/motions.npz", show_default=True, type=click.Path())
@click.option("--clips", default="data/motion/raw/clips.parquet", show_default=True, type=click.Path())
@click.option("--split-index", default="data/motion/hml/index.parquet", show_default=True, type=click.Path())
@click.option("--out-dir", default="data/images", show_default=True, type=click.Path())
@click.option("--report-dir", default="reports/render", show_default=True, type=click.Path())
@click.option("--metrics", "metrics_file", default="reports/metrics/render.json", show_default=True, type=click.Path())
@run_stage
def main(params_file: str, motions: str, clips: str, split_index: str, out_dir: str, report_dir: str,
         metrics_file: str) -> None:
    p = stage_params(params_file, SECTION, PARAMS, complete=True)
    positive(params_file, SECTION, p, "workers", "image_size", "shard_size", "sheet_columns")
    body_path = stage_params(params_file, "body", {"model_path": str})["model_path"]
    clip_rows, arrays, fps = load_raw_motions(motions, clips)
    settings, sizes = render_config(p, fps, params_file, SECTION)
    check_betas(motions, arrays, load_body_model(body_path), body_path)  # fail early, with one line, on a bad model
    table = clip_table(clip_rows, load_parquet(split_index, ["clip_id", "source_id", "split", "mirror", "length"]), arrays["offsets"])
    units = plan_units(table, arrays, sizes, p["seed"])

    rendered = write_image_sets(out_dir, units, body_path, settings, p["workers"], p["shard_size"], p["sheet_columns"])
    write_image(Path(report_dir) / "contact_sheet.png", rendered.sheet[..., ::-1])
    check_sets_follow_splits(rendered.index, table)
    save_json(metrics_file, render_metrics(rendered, p["image_size"], p["workers"]))


if __name__ == "__main__":
    main()
