"""Stage sopo@<run>: fine-tune the MDM prior with SoPo (Algorithm 1) or a DPO baseline; the reward is the only signal.

``--run`` names a block of ``sopo.runs`` (its variant and overrides of ``sopo.options``). The policy
starts from ``data/mdm/model.pt``, the reference is a frozen copy; tau becomes our threshold by
``sopo_calibrate``'s map; ``dpo_offline`` trains on ``sopo_offline_pairs``'s pairs (``--pairs``).
Resumable (``--checkpoint``: a rerun with the same inputs and options continues), a progress bar,
runs under torchrun (DDP over the policy; rank 0 writes). Writes the model and its config, the
loss and reward curves (a DVC plot), a run record, and the timing apart.
"""

from __future__ import annotations

import time
from pathlib import Path

import click
import torch

from humandiff.io import load_npz, save_json
from humandiff.io.digests import code_digest
from humandiff.io.stage import run_stage
from humandiff.prior.mdm import save_mdm
from humandiff.sopo.run import (LOSS_COLUMNS, REWARD_COLUMNS, curve_rows, fine_tune, input_options, load_inputs,
                                offline_pairs, read_calibration, run_options, run_record, sopo_params, threshold_for)
from humandiff.train.device import resolve_device
from humandiff.train.loop import init_distributed, shutdown_distributed, write_loss_curve

SECTION = "sopo"


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True, type=click.Path())
@click.option("--run", "run", required=True, help="a key of sopo.runs")
@input_options
@click.option("--calibration", "calibration_file", default="data/sopo/calibration.json", show_default=True, type=click.Path())
@click.option("--pairs", "pairs_file", default=None, type=click.Path(), help="offline pairs (variant dpo_offline)")
@click.option("--out-dir", default="data/sopo", show_default=True, type=click.Path())
@click.option("--checkpoint-dir", default="data/sopo_checkpoint", show_default=True, type=click.Path())
@click.option("--plots-dir", default="reports/plots/sopo", show_default=True, type=click.Path())
@click.option("--timing-dir", default="reports/metrics/sopo_time", show_default=True, type=click.Path())
@click.option("--stop-at", type=int, default=None, help="end this process at that step (as an interruption would)")
@run_stage
def main(params_file: str, run: str, model_file: str, config_file: str, reward_file: str, hml_dir: str,
         embeddings_file: str, calibration_file: str, pairs_file: str | None, out_dir: str, checkpoint_dir: str,
         plots_dir: str, timing_dir: str, stop_at: int | None) -> None:
    p = sopo_params(params_file)
    options = run_options(params_file, p, run)
    if (options.pair_source == "offline") != (pairs_file is not None):
        raise click.UsageError(f"run '{run}' (variant {options.variant}): --pairs is for variant dpo_offline only, and needed there")
    calibration = read_calibration(calibration_file)
    threshold = threshold_for(calibration, options.tau, options.K, calibration_file, params_file, run)
    device = resolve_device(p["device"], f"{params_file}: parameter '{SECTION}.device'")
    torch.set_num_threads(p["threads"])
    info = init_distributed(device)
    inputs = load_inputs(model_file, config_file, reward_file, hml_dir, embeddings_file, p["seed"])
    pairs = offline_pairs(load_npz(pairs_file, ("chosen", "rejected", "mask", "text_emb", "chosen_reward",
                                                "rejected_reward"))) if pairs_file else None
    fingerprint = {"options": options.to_dict(), "threshold": threshold, "seed": p["seed"], "inputs": inputs.digests,
                   "code": code_digest(__file__)}  # a code change trains anew (a finished checkpoint is no resume)
    started = time.perf_counter()
    result = fine_tune(inputs, options, threshold, p["seed"], pairs=pairs, fingerprint=fingerprint,
                       checkpoint_file=Path(checkpoint_dir) / run / "state.pt", checkpoint_every=p["checkpoint_every"],
                       stop_at=stop_at, rank=info.rank, world_size=info.world_size, desc=f"sopo@{run}")
    if info.is_main and result.step >= options.steps:
        out = Path(out_dir) / run
        save_mdm(out / "model.pt", out / "config.json", result.policy.state_dict(), inputs.config)
        for name, columns in (("loss", LOSS_COLUMNS), ("reward", REWARD_COLUMNS)):
            write_loss_curve(Path(plots_dir) / f"{run}_{name}.csv", curve_rows(result.history), columns)
        save_json(out / "train.json", run_record(run, options, threshold, calibration, result))
        save_json(Path(timing_dir) / f"{run}.json", {"seconds": round(result.seconds, 2), "steps": result.step,
                                                     "stage_seconds": round(time.perf_counter() - started, 2),
                                                     "resumed_from": result.resumed_from, "threads": p["threads"],
                                                     "world_size": info.world_size})
    shutdown_distributed()


if __name__ == "__main__":
    main()
