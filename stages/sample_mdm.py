"""Stage sample_mdm: generate one motion per test clip with the trained prior (DDIM + CFG, EMA weights).

Each test clip gives its first caption and its length. Writes the motions in HumanML3D feature
space (denormalised) with a Parquet index, stick-figure videos and a contact sheet that puts each
generated motion above the real clip of the same caption, and quick realism figures (foot skating,
jitter) of generated against real motion (:mod:`humandiff.prior.samples`).
"""

from __future__ import annotations

import time
from pathlib import Path

import click
import numpy as np
import torch

from humandiff.eval.t2m import motion_quality
from humandiff.io import check_finite, concat_ragged, save_json, save_npz, save_parquet
from humandiff.io.stage import run_stage
from humandiff.motion.dataset import load_motion_split
from humandiff.prior.sampler import PriorSampler
from humandiff.prior.samples import (
    check_ddim_steps,
    choose_clips,
    samples_table,
    sampling_metrics,
    sampling_params,
    shown,
    write_contact_sheet,
    write_sample_videos,
)
from humandiff.train.device import resolve_device

SECTION = "sample_mdm"


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True, type=click.Path())
@click.option("--hml-dir", default="data/motion/hml", show_default=True, type=click.Path())
@click.option("--embeddings", "embeddings_file", default="data/motion/text/embeddings.parquet", show_default=True, type=click.Path())
@click.option("--model-dir", default="data/mdm", show_default=True, type=click.Path())
@click.option("--out-dir", default="data/mdm", show_default=True, type=click.Path())
@click.option("--report-dir", default="reports/mdm", show_default=True, type=click.Path())
@click.option("--metrics", "metrics_file", default="reports/metrics/sample_mdm.json", show_default=True, type=click.Path())
@run_stage
def main(params_file: str, hml_dir: str, embeddings_file: str, model_dir: str, out_dir: str, report_dir: str,
         metrics_file: str) -> None:
    p = sampling_params(params_file, SECTION)
    device = resolve_device(p["device"], f"{params_file}: parameter '{SECTION}.device'")
    torch.set_num_threads(p["threads"])
    hml = Path(hml_dir)
    settings = {"ddim_steps": p["ddim_steps"], "guidance_scale": p["guidance_scale"], "eta": p["eta"]}
    sampler = PriorSampler(Path(model_dir) / "model.pt", Path(model_dir) / "config.json", hml / "mean_std.npz",
                           embeddings_file, settings, p["batch_size"], device=device)
    check_ddim_steps(params_file, SECTION, p, sampler.config)
    test = load_motion_split(hml / "index.parquet", hml / "features.npz", None, "test")
    chosen = choose_clips(len(test), p["max_clips"])
    captions = [test.captions(int(k))[0] for k in chosen]
    lengths = [int(test.lengths[k]) for k in chosen]

    started = time.perf_counter()
    features = [m.astype(np.float32) for m in sampler(sampler.conditions(captions), lengths, p["seed"])]
    seconds = time.perf_counter() - started
    flat, offsets = concat_ragged(features)
    out = Path(out_dir)
    check_finite(out / "samples.npz", {"features": flat})  # NaN weights or a diverged sampler: write nothing
    save_npz(out / "samples.npz", {"features": flat, "offsets": offsets})
    save_parquet(out / "samples.parquet", samples_table(test, chosen, captions, lengths, p))

    report = Path(report_dir)
    report.mkdir(parents=True, exist_ok=True)
    write_contact_sheet(report / "samples.png", test, chosen, captions, features, shown(len(chosen), p["sheet_rows"]))
    write_sample_videos(report, features, captions, shown(len(chosen), p["videos"]))

    generated, real = motion_quality(features), motion_quality([test.clip(int(k)) for k in chosen])
    save_json(metrics_file, sampling_metrics(len(chosen), p, seconds, generated, real))


if __name__ == "__main__":
    main()
