"""Stage scorehmr (and its baselines): one method on one setting, scored against the ground truth.

``--setting fit | multiview | video`` picks the image set (test, multiview, video) and the guidance
(``scorehmr.losses.<setting>``); ``--method regression | smplify | scorehmr`` the method
(humandiff.scorehmr.run); ``--variant`` applies ``scorehmr.sweep.<variant>`` to the fit options
(the supplementary's tau and DDIM-step sweeps). Writes ``<out-dir>/<setting>/<run>.npz`` (pose,
betas, camera per image; the per-iteration loss history) and ``<run>.json`` (metrics in mm,
timing, options). Runs on the CPU.
"""

from __future__ import annotations

import click
import torch

from humandiff.body.model import load_body_model
from humandiff.io import check_finite, load_npz, save_json, save_npz
from humandiff.io.stage import positive, run_stage, stage_params
from humandiff.scorehmr.data import load_set
from humandiff.scorehmr.run import SECTION_KEYS, run_method, run_record, run_settings, set_for
from humandiff.scorehmr.smplify import GaussianMixture
from humandiff.scorehmr.training import load_denoiser

SECTION = "scorehmr"


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True, type=click.Path())
@click.option("--setting", required=True, help="fit | multiview | video")
@click.option("--method", required=True, help="regression | smplify | scorehmr")
@click.option("--variant", default="", show_default=True, help="a key of scorehmr.sweep (fit options override)")
@click.option("--extract-dir", default="data/extract", show_default=True, type=click.Path())
@click.option("--images", "images_dir", default="data/images", show_default=True, type=click.Path())
@click.option("--model", "model_file", default="data/scorehmr/model.pt", show_default=True, type=click.Path())
@click.option("--prior", "prior_file", default="data/scorehmr/targets/gmm.npz", show_default=True, type=click.Path())
@click.option("--out-dir", default="data/scorehmr", show_default=True, type=click.Path())
@click.option("--timing-dir", default="reports/metrics/scorehmr_time", show_default=True, type=click.Path())
@run_stage
def main(params_file: str, setting: str, method: str, variant: str, extract_dir: str, images_dir: str, model_file: str,
         prior_file: str, out_dir: str, timing_dir: str) -> None:
    p = stage_params(params_file, SECTION, SECTION_KEYS, complete=True)
    positive(params_file, SECTION, p, "threads")
    settings = run_settings(p, setting, method, variant, params_file)
    body_path = stage_params(params_file, "body", {"model_path": str})["model_path"]
    torch.set_num_threads(p["threads"])
    torch.manual_seed(p["seed"])
    body_model = load_body_model(body_path)
    data = load_set(extract_dir, images_dir, set_for(setting), settings.max_units)
    denoiser, extra, prior = None, {}, None
    if method == "scorehmr":
        denoiser, extra = load_denoiser(model_file)
    if method == "smplify":
        prior = GaussianMixture.from_arrays(load_npz(prior_file, ("weights", "means", "covariances")))

    output = run_method(settings, data, body_model, denoiser=denoiser, feature=extra.get("feature", "pooled"),
                        prior=prior, progress=True)
    arrays, record, timing = run_record(settings, data, body_model, output)
    path = f"{out_dir}/{setting}/{settings.run_name}"
    check_finite(f"{path}.npz", arrays)
    save_npz(f"{path}.npz", arrays)
    save_json(f"{path}.json", record | {"model": {k: extra[k] for k in ("feature", "target") if k in extra}})
    save_json(f"{timing_dir}/{setting}_{settings.run_name}.json", timing | {"threads": p["threads"]})


if __name__ == "__main__":
    main()
