"""Stage evaluate_sopo@<run>: one row of SoPo's Tables 1 and 3 by evaluate_t2m's protocol (Guo et al.).

``--run mdm`` scores the prior itself (set 0 is ``sample_mdm``'s artifact); any other run scores its
fine-tuned model (``--model-dir``, default ``data/sopo/<run>``). Same test clips, captions, lengths and sampler settings (seed
included) as ``sample_mdm``'s samples, so every row shares the MDM row's noise; ``sopo_eval.sets.<run>``
sample sets, ``sopo_eval.replications`` replications, batches of 32, 95% intervals
(humandiff.sopo.evaluate over humandiff.eval.t2m_report). The evaluator only, never the reward.
Writes the row (JSON, no timing), set 0's joints for the report's pictures, and the timing apart.
"""

from __future__ import annotations

import time
from pathlib import Path

import click
import numpy as np
import torch

from humandiff.eval.t2m import load_generated, sampler_settings
from humandiff.evaluators.evaluator import load_evaluator
from humandiff.io import concat_ragged, save_json, save_npz
from humandiff.io.stage import run_stage
from humandiff.motion.dataset import load_motion_split
from humandiff.prior.sampler import PriorSampler
from humandiff.prior.samples import joints_of
from humandiff.sopo.evaluate import eval_params, evaluate_model
from humandiff.train.device import resolve_device

SECTION = "sopo_eval"


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True, type=click.Path())
@click.option("--run", "run", required=True, help="mdm (the prior) or a key of sopo.runs")
@click.option("--evaluator", "evaluator_file", default="data/models/evaluator.pt", show_default=True, type=click.Path())
@click.option("--hml-dir", default="data/motion/hml", show_default=True, type=click.Path())
@click.option("--embeddings", "embeddings_file", default="data/motion/text/embeddings.parquet", show_default=True,
              type=click.Path())
@click.option("--samples-dir", default="data/mdm", show_default=True, type=click.Path(),
              help="sample_mdm's samples.npz / samples.parquet")
@click.option("--model-dir", default=None, type=click.Path(), help="model.pt / config.json (default: data/mdm for mdm, "
              "else data/sopo/<run>)")
@click.option("--out-dir", default="data/sopo/eval", show_default=True, type=click.Path())
@click.option("--timing-dir", default="reports/metrics/sopo_time", show_default=True, type=click.Path())
@run_stage
def main(params_file: str, run: str, evaluator_file: str, hml_dir: str, embeddings_file: str, samples_dir: str,
         model_dir: str | None, out_dir: str, timing_dir: str) -> None:
    p = eval_params(params_file, run)
    device = resolve_device(p["device"], f"{params_file}: parameter '{SECTION}.device'")
    torch.set_num_threads(p["threads"])
    model_dir = Path(model_dir or ("data/mdm" if run == "mdm" else f"data/sopo/{run}"))
    samples, first_set = load_generated(Path(samples_dir) / "samples.npz", Path(samples_dir) / "samples.parquet")
    settings = sampler_settings(samples)
    hml = Path(hml_dir)
    sampler = PriorSampler(model_dir / "model.pt", model_dir / "config.json", hml / "mean_std.npz", embeddings_file,
                           settings, p["sample_batch_size"], device=device)
    evaluator = load_evaluator(evaluator_file).to(device)
    test = load_motion_split(hml / "index.parquet", hml / "features.npz", None, "test")
    captions, lengths = [str(c) for c in samples["caption"]], [int(n) for n in samples["length"]]
    started = time.perf_counter()
    result = evaluate_model(evaluator, test, sampler, captions, lengths, settings, p,
                            first_set=first_set if run == "mdm" else None, log=click.echo)
    flat, offsets = concat_ragged([joints_of(m).reshape(len(m), -1).astype(np.float16) for m in result.pop("first_set")])
    save_npz(Path(out_dir) / f"{run}_joints.npz", {"joints": flat, "offsets": offsets}, compressed=True)
    save_json(Path(out_dir) / f"{run}.json", {"run": run, **result, "captions": captions, "lengths": lengths})
    save_json(Path(timing_dir) / f"eval_{run}.json", {"seconds": round(time.perf_counter() - started, 2),
                                                      "sample_sets": p["sample_sets"], "threads": p["threads"]})
    row = result["row"]
    click.echo(f"evaluate_sopo@{run}: top1 {row['top1']:.3f} top3 {row['top3']:.3f} MM-Dist {row['mm_dist']:.3f} "
               f"FID {row['fid']:.3f} miss {result['mm_dist_breakdown']['miss_share']:.3f}")


if __name__ == "__main__":
    main()
