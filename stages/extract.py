"""Stage extract: run the perception network on the image sets and write what the methods consume.

Per image (see humandiff.perception.extraction): 2D keypoints with confidences from the heatmaps
(never from the ground truth), the xy and depth heatmaps (quantised), the pooled feature and the
spatial tokens, and the SMPL regression. Also scores the network against the ground truth (PCK,
regression MPJPE / PA-MPJPE, acceleration error on video; humandiff.perception.report) and writes
reports/perception.md with a figure of predicted keypoints.
"""

from __future__ import annotations

from pathlib import Path

import click
import torch
from tqdm import tqdm

from humandiff.body.model import load_body_model
from humandiff.imaging import atomic_directory, load_image_set, load_index
from humandiff.io import check_finite, save_json
from humandiff.io.artifacts import atomic_path
from humandiff.io.stage import positive, run_stage, section_config, stage_params
from humandiff.motion.video import write_image
from humandiff.perception.extract import TRUTH_FIELDS, ExtractSettings, check_image_sets, extract_set
from humandiff.perception.extraction import save_extraction
from humandiff.perception.model import load_perception
from humandiff.perception.report import (figure_link, perception_metrics, perception_report, prediction_sheet,
                                         set_metrics, sheet_tiles)
from humandiff.train.device import on_device, resolve_device

SECTION = "extract"


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True, type=click.Path())
@click.option("--images", "images_dir", default="data/images", show_default=True, type=click.Path())
@click.option("--model", "model_file", default="data/models/perception.pt", show_default=True, type=click.Path())
@click.option("--out-dir", default="data/extract", show_default=True, type=click.Path())
@click.option("--report", "report_file", default="reports/perception.md", show_default=True, type=click.Path())
@click.option("--figure", "figure_file", default="reports/perception/predictions.png", show_default=True, type=click.Path())
@click.option("--metrics", "metrics_file", default="reports/metrics/perception.json", show_default=True, type=click.Path())
@run_stage
def main(params_file: str, images_dir: str, model_file: str, out_dir: str, report_file: str,
         figure_file: str, metrics_file: str) -> None:
    settings, p = section_config(params_file, SECTION, ExtractSettings, {"threads": int, "device": str})
    positive(params_file, SECTION, p, "threads")
    body_path = stage_params(params_file, "body", {"model_path": str})["model_path"]
    device = resolve_device(p["device"], f"{params_file}: parameter '{SECTION}.device'")
    torch.set_num_threads(p["threads"])
    index = load_index(images_dir)
    model, extra = load_perception(model_file)
    check_image_sets(images_dir, index, settings.sets, f"'{SECTION}.sets'")  # every shard, before the network runs
    model = on_device(model.fast_layout(), device)  # the network on the device; decoding on the CPU
    sigma = float(extra.get("sigma", 1.0))
    body_model = load_body_model(body_path)

    per_set, tiles, network_seconds = {}, [], 0.0
    bar = tqdm(total=int(index["set"].isin(settings.sets).sum()), desc=SECTION, unit="img", dynamic_ncols=True)
    with atomic_directory(out_dir) as tmp:
        for set_name in settings.sets:
            rows, truth = load_image_set(images_dir, set_name, TRUTH_FIELDS, index=index)
            run = extract_set(model, body_model, rows, truth, settings, sigma, bar.update)
            check_finite(Path(out_dir) / f"{set_name}.npz", run.packed)
            save_extraction(tmp / f"{set_name}.npz", run.packed)
            network_seconds += run.seconds
            per_set[set_name] = set_metrics(set_name, rows, run.predictions, truth)
            if set_name == "test":
                tiles = sheet_tiles(truth, run.predictions, run.packed["image_id"], settings.sheet_images)
    bar.close()

    metrics = perception_metrics(per_set, model.config.image_size, network_seconds)
    write_image(figure_file, prediction_sheet(tiles)[..., ::-1])  # OpenCV writes BGR
    save_json(metrics_file, metrics)
    with atomic_path(report_file, suffix=".md") as handle:
        handle.write_text(perception_report(metrics, per_set, figure_link(figure_file, report_file)))


if __name__ == "__main__":
    main()
