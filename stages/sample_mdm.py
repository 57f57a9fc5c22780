"""Stage sample_mdm: generate one motion per test clip with the trained prior (DDIM + CFG, EMA weights).

Each test clip gives its first caption and its length. Writes the motions in HumanML3D feature
space (denormalised) with a Parquet index, stick-figure videos and a contact sheet that puts each
generated motion above the real clip of the same caption, and quick realism figures (foot skating,
jitter) of generated against real motion.
"""

from __future__ import annotations

import time
from pathlib import Path

import click
import numpy as np
import pandas as pd
import torch

from humandiff.motion.dataset import load_motion_split
from humandiff.eval.t2m import motion_quality
from humandiff.io import concat_ragged, save_json, save_npz, save_parquet
from humandiff.prior.sampler import PriorSampler
from humandiff.motion.hml3d import recover_from_ric
from humandiff.motion.video import contact_sheet_row, write_image, write_video
from humandiff.io.stage import positive, run_stage, stage_params
from humandiff.train.device import resolve_device

SECTION = "sample_mdm"
PARAMS = {"seed": int, "threads": int, "ddim_steps": int, "guidance_scale": float, "eta": float, "batch_size": int,
          "max_clips": int, "videos": int, "sheet_rows": int}


def joints_of(features: np.ndarray) -> np.ndarray:
    """Joint positions (T, 22, 3) of denormalised features (T, 263)."""
    with torch.no_grad():
        return recover_from_ric(torch.from_numpy(features).double()).numpy()


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
    p = stage_params(params_file, SECTION, PARAMS)
    positive(params_file, SECTION, p, "threads", "ddim_steps", "batch_size")
    for key in ("max_clips", "videos", "sheet_rows", "eta"):
        if p[key] < 0:
            raise ValueError(f"{params_file}: parameter '{SECTION}.{key}' must be >= 0, got {p[key]!r}")
    device = resolve_device(p.get("device", "cpu"), f"{params_file}: parameter '{SECTION}.device'")
    torch.set_num_threads(p["threads"])
    hml = Path(hml_dir)
    settings = {"ddim_steps": p["ddim_steps"], "guidance_scale": p["guidance_scale"], "eta": p["eta"]}
    sampler = PriorSampler(Path(model_dir) / "model.pt", Path(model_dir) / "config.json", hml / "mean_std.npz",
                           embeddings_file, settings, p["batch_size"], device=device)
    if p["ddim_steps"] > sampler.config.diffusion_steps:
        raise ValueError(f"{params_file}: parameter '{SECTION}.ddim_steps' must be <= the model's "
                         f"{sampler.config.diffusion_steps} diffusion steps")
    test = load_motion_split(hml / "index.parquet", hml / "features.npz", None, "test")
    count = len(test) if p["max_clips"] == 0 else min(p["max_clips"], len(test))
    # spread a limited selection over the whole test split rather than its first rows
    chosen = np.unique(np.linspace(0, len(test) - 1, count).round().astype(int))
    captions = [test.captions(int(k))[0] for k in chosen]
    lengths = [int(test.lengths[k]) for k in chosen]

    started = time.perf_counter()
    features = [m.astype(np.float32) for m in sampler(sampler.conditions(captions), lengths, p["seed"])]
    seconds = time.perf_counter() - started
    flat, offsets = concat_ragged(features)
    out = Path(out_dir)
    save_npz(out / "samples.npz", {"features": flat, "offsets": offsets})
    save_parquet(out / "samples.parquet", pd.DataFrame({
        "clip_id": [str(test.index.at[int(k), "clip_id"]) for k in chosen],
        "caption": captions,
        "length": np.asarray(lengths, dtype=np.int64),
        # how they were drawn, so that evaluate_t2m can draw more sets of the same kind
        "seed": np.full(len(chosen), p["seed"], dtype=np.int64),
        "ddim_steps": np.full(len(chosen), p["ddim_steps"], dtype=np.int64),
        "guidance_scale": np.full(len(chosen), p["guidance_scale"], dtype=np.float64),
        "eta": np.full(len(chosen), p["eta"], dtype=np.float64),
    }))

    report = Path(report_dir)
    report.mkdir(parents=True, exist_ok=True)
    shown = np.unique(np.linspace(0, len(chosen) - 1, min(p["sheet_rows"], len(chosen))).round().astype(int)) if p["sheet_rows"] else []
    rows = []
    for j in shown:
        rows.append(contact_sheet_row(joints_of(features[j]), f"generated: {captions[j]}"))
        rows.append(contact_sheet_row(joints_of(test.clip(int(chosen[j]))), f"real {test.index.at[int(chosen[j]), 'clip_id']}: {captions[j]}"))
    if rows:
        width = max(r.shape[1] for r in rows)
        rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
        write_image(report / "samples.png", np.concatenate(rows, 0))
    videos = np.unique(np.linspace(0, len(chosen) - 1, min(p["videos"], len(chosen))).round().astype(int)) if p["videos"] else []
    for n, j in enumerate(videos):
        write_video(report / f"sample_{n:02d}.mp4", joints_of(features[j]), captions[j])

    generated, real = motion_quality(features), motion_quality([test.clip(int(k)) for k in chosen])
    save_json(metrics_file, {
        "clips": len(chosen),
        "ddim_steps": p["ddim_steps"],
        "guidance_scale": p["guidance_scale"],
        "seconds": round(seconds, 1),
        "samples_per_second": round(len(chosen) / seconds, 3),
        "generated": generated,
        "real": real,
        "jitter_ratio": generated["jitter"] / max(real["jitter"], 1e-9),
    })


if __name__ == "__main__":
    main()
