"""Stage sopo_calibrate: SoPo's cut-off tau on our reward's scale (humandiff.sopo.calibration).

Draws ``sopo.calibration.K`` samples of the prior (``data/mdm/model.pt``, the online sampler of the
``sopo`` run: its DDIM steps and guidance) for ``sopo.calibration.captions`` training captions,
scores them with the reward model (a training signal only) and maps the paper's tau sweep
0.40-0.60 to quantiles of the group-minimum reward r(x_l, c). Writes the map (read by every
``sopo@<run>``) and its timing apart.
"""

from __future__ import annotations

import time

import click
import torch

from humandiff.io import save_json
from humandiff.io.stage import run_stage
from humandiff.sopo.run import (calibration_payload, calibration_settings, caption_groups, input_options, load_inputs,
                                run_options, sopo_params)
from humandiff.train.device import resolve_device

SECTION = "sopo"


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True, type=click.Path())
@input_options
@click.option("--out", "out_file", default="data/sopo/calibration.json", show_default=True, type=click.Path())
@click.option("--timing", "timing_file", default="reports/metrics/sopo_time/calibrate.json", show_default=True,
              type=click.Path())
@run_stage
def main(params_file: str, model_file: str, config_file: str, reward_file: str, hml_dir: str, embeddings_file: str,
         out_file: str, timing_file: str) -> None:
    p = sopo_params(params_file)
    captions, K, calibration = calibration_settings(params_file, p)
    options = run_options(params_file, p, "sopo")  # the online sampler the runs use
    resolve_device(p["device"], f"{params_file}: parameter '{SECTION}.device'")  # the online sampler runs on the CPU
    torch.set_num_threads(p["threads"])
    inputs = load_inputs(model_file, config_file, reward_file, hml_dir, embeddings_file, p["seed"])
    started = time.perf_counter()
    groups = caption_groups(inputs, captions, K, options.ddim_steps, options.sample_guidance, p["seed"], log=click.echo)
    payload = calibration_payload(groups["rewards"], calibration, K, options.ddim_steps)
    save_json(out_file, payload)
    save_json(timing_file, {"seconds": round(time.perf_counter() - started, 2), "captions": captions, "K": K,
                            "threads": p["threads"]})
    click.echo("sopo_calibrate: " + ", ".join(f"tau {t} -> {v['threshold']:.4f}" for t, v in payload["taus"].items()))


if __name__ == "__main__":
    main()
