"""Stage scorehmr_ablation: Table 1's ablation, one small denoiser per feature source and pose target.

``--feature pooled | regression`` (the backbone's pooled feature or the regression head's output)
x ``--target gt | pseudo`` (exact ground truth or scorehmr_targets' SMPLify fits): trains a
denoiser with the ``scorehmr_ablation`` loop settings, then refines the fit setting from the
regression with the ``scorehmr`` section's fit options. Writes ``<out-dir>/<feature>-<target>.json``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click
import torch

from humandiff.body.model import load_body_model
from humandiff.io import file_digest, save_json
from humandiff.io.stage import positive, run_stage, section_config, stage_params
from humandiff.scorehmr.data import load_set
from humandiff.scorehmr.run import SECTION_KEYS, run_method, run_record, run_settings
from humandiff.scorehmr.training import DenoiserSettings, fit_denoiser, training_pairs
from humandiff.train.loop import LoopConfig

SECTION = "scorehmr_ablation"
DEFAULTS = ("feature", "target", "min_lr_ratio", "ema_warmup", "log_every", "bf16", "length_buckets", "grad_clip",
            "warmup_steps")


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True, type=click.Path())
@click.option("--feature", required=True, help="pooled | regression")
@click.option("--target", required=True, help="gt | pseudo")
@click.option("--extract-dir", default="data/extract", show_default=True, type=click.Path())
@click.option("--images", "images_dir", default="data/images", show_default=True, type=click.Path())
@click.option("--targets", "pseudo_file", default="data/scorehmr/targets/pseudo_gt.npz", show_default=True, type=click.Path())
@click.option("--checkpoint-dir", default="data/scorehmr_ablation_checkpoint", show_default=True, type=click.Path())
@click.option("--out-dir", default="data/scorehmr/ablation", show_default=True, type=click.Path())
@click.option("--timing-dir", default="reports/metrics/scorehmr_time", show_default=True, type=click.Path())
@run_stage
def main(params_file: str, feature: str, target: str, extract_dir: str, images_dir: str, pseudo_file: str,
         checkpoint_dir: str, out_dir: str, timing_dir: str) -> None:
    (loop, settings), p = section_config(params_file, SECTION, (LoopConfig, DenoiserSettings), {"threads": int},
                                         defaults=DEFAULTS)
    positive(params_file, SECTION, p, "threads")
    if "feature" in p or "target" in p:
        raise ValueError(f"{params_file}: parameters '{SECTION}.feature' and '.target' come from the stage's matrix")
    settings = dataclasses.replace(settings, feature=feature, target=target)
    run = run_settings(stage_params(params_file, "scorehmr", SECTION_KEYS, complete=True), "fit", "scorehmr", "", params_file)
    body_path = stage_params(params_file, "body", {"model_path": str})["model_path"]
    torch.set_num_threads(p["threads"])
    body_model = load_body_model(body_path)
    train = load_set(extract_dir, images_dir, "train")
    test = load_set(extract_dir, images_dir, "test", run.max_units)
    fingerprint = {"extraction": file_digest(Path(extract_dir) / "train.npz"),
                   "targets": file_digest(pseudo_file) if target == "pseudo" else None}
    result = fit_denoiser(training_pairs(train, settings, pseudo_file), settings, loop,
                          checkpoint_file=Path(checkpoint_dir) / f"{feature}-{target}.pt", fingerprint=fingerprint,
                          desc=f"{SECTION}@{feature}-{target}", device="cpu")
    output = run_method(run, test, body_model, denoiser=result.ema.cpu().eval(), feature=feature, progress=True)
    record, timing = run_record(run, test, body_model, output)[1:]
    save_json(Path(out_dir) / f"{feature}-{target}.json",
              record | {"feature": feature, "target": target, "steps": result.step,
                        "final_loss": round(result.history[-1]["loss"], 4)})
    save_json(Path(timing_dir) / f"ablation_{feature}-{target}.json",
              timing | {"train_seconds": round(result.total_seconds, 1)})


if __name__ == "__main__":
    main()
