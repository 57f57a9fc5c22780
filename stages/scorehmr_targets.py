"""Stage scorehmr_targets: SMPLify's pose prior and the pseudo ground truth of Table 1's ablation.

Fits a Gaussian mixture (SMPLify's pose prior) to the training set's true body poses, then fits
single-stage SMPLify to the training images' ground-truth 2D joints from the regression's
estimate: the pseudo ground truth that stands in for SPIN's and EFT's fits
(humandiff.scorehmr.training). Writes both and how far the fits lie from the truth.
"""

from __future__ import annotations

import time

import click
import numpy as np
import torch

from humandiff.body.model import load_body_model
from humandiff.io import save_json, save_npz
from humandiff.io.stage import positive, run_stage, stage_params
from humandiff.scorehmr.data import body_joints_np, joint_metrics, load_set, regression_start
from humandiff.scorehmr.run import option_block
from humandiff.scorehmr.smplify import SMPLifyOptions
from humandiff.scorehmr.training import pseudo_ground_truth, train_gmm

SECTION = "scorehmr_targets"


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True, type=click.Path())
@click.option("--extract-dir", default="data/extract", show_default=True, type=click.Path())
@click.option("--images", "images_dir", default="data/images", show_default=True, type=click.Path())
@click.option("--out-dir", default="data/scorehmr/targets", show_default=True, type=click.Path())
@click.option("--metrics", "metrics_file", default="reports/metrics/scorehmr_targets.json", show_default=True,
              type=click.Path())
@click.option("--timing-dir", default="reports/metrics/scorehmr_time", show_default=True, type=click.Path())
@run_stage
def main(params_file: str, extract_dir: str, images_dir: str, out_dir: str, metrics_file: str, timing_dir: str) -> None:
    p = stage_params(params_file, SECTION, {"seed": int, "threads": int, "gmm_components": int, "smplify": dict}, complete=True)
    positive(params_file, SECTION, p, "threads", "gmm_components")
    options = option_block(SMPLifyOptions, "fit", p["smplify"], f"{params_file}: parameter '{SECTION}.smplify'")
    body_path = stage_params(params_file, "body", {"model_path": str})["model_path"]
    torch.set_num_threads(p["threads"])
    body_model = load_body_model(body_path)
    train = load_set(extract_dir, images_dir, "train")

    began = time.perf_counter()
    prior = train_gmm(train, p["gmm_components"], p["seed"])
    pose = pseudo_ground_truth(body_model, prior, train, options)
    seconds = time.perf_counter() - began
    start = regression_start(train)
    metrics = {"images": len(train), "smplify": options.to_dict(),
               "pseudo_gt": joint_metrics(body_joints_np(body_model, pose, start["betas"]), train),
               "regression": joint_metrics(body_joints_np(body_model, start["pose"], start["betas"]), train)}
    save_npz(f"{out_dir}/gmm.npz", prior.to_arrays())
    save_npz(f"{out_dir}/pseudo_gt.npz", {"image_id": np.asarray(train.extraction["image_id"], dtype=str),
                                          "pose": pose.numpy().astype(np.float32)})
    save_json(metrics_file, metrics)
    save_json(f"{timing_dir}/targets.json", {"seconds": round(seconds, 1), "images": len(train)})


if __name__ == "__main__":
    main()
