"""Stage sopo_offline_pairs: the MoDiPO-like baseline's preference pairs, drawn once from the reference.

For ``sopo.offline_pairs.captions`` training clips (spread over the set; first caption, leading
crop) draws ``sopo.offline_pairs.K`` motions of the prior (``data/mdm/model.pt``) with the
``dpo_offline`` run's online sampler (DDIM steps, guidance), scores them with the reward model and
keeps the best and the worst as (chosen, rejected) (humandiff.sopo.algorithm.build_offline_pairs).
Writes an NPZ of normalised features and their masks, conditions and rewards; timing apart.
"""

from __future__ import annotations

import time

import click
import torch

from humandiff.io import check_finite, save_json, save_npz
from humandiff.io.stage import run_stage
from humandiff.sopo.run import build_pairs, input_options, load_inputs, pair_settings, run_options, sopo_params

SECTION = "sopo"


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True, type=click.Path())
@input_options
@click.option("--out", "out_file", default="data/sopo/offline_pairs.npz", show_default=True, type=click.Path())
@click.option("--timing", "timing_file", default="reports/metrics/sopo_time/offline_pairs.json", show_default=True,
              type=click.Path())
@run_stage
def main(params_file: str, model_file: str, config_file: str, reward_file: str, hml_dir: str, embeddings_file: str,
         out_file: str, timing_file: str) -> None:
    p = sopo_params(params_file)
    captions, K = pair_settings(params_file, p)
    options = run_options(params_file, p, "dpo_offline")
    torch.set_num_threads(p["threads"])
    inputs = load_inputs(model_file, config_file, reward_file, hml_dir, embeddings_file, p["seed"])
    started = time.perf_counter()
    arrays = build_pairs(inputs, captions, K, options, p["seed"])
    check_finite(out_file, arrays)
    save_npz(out_file, arrays, compressed=True)
    save_json(timing_file, {"seconds": round(time.perf_counter() - started, 2), "captions": captions, "K": K,
                            "threads": p["threads"]})
    click.echo(f"sopo_offline_pairs: {len(arrays['rows'])} pairs, mean reward chosen "
               f"{arrays['chosen_reward'].mean():.4f} / rejected {arrays['rejected_reward'].mean():.4f}")


if __name__ == "__main__":
    main()
