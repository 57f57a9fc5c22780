"""The ``sample_mdm`` stage's pieces: its params, the test clips it draws for, the samples table,
the contact sheet and videos, and the metrics JSON.

Each chosen test clip gives its first caption and its length; a limited selection is spread over
the whole test split rather than its first rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from humandiff.io.stage import positive, stage_params
from humandiff.motion.dataset import MotionSplit
from humandiff.motion.hml3d import recover_from_ric
from humandiff.motion.video import contact_sheet_row, write_image, write_video
from humandiff.prior.mdm import MDMConfig

#: The sample_mdm section: its keys and their types.
SAMPLE_PARAMS = {"seed": int, "threads": int, "device": str, "ddim_steps": int, "guidance_scale": float, "eta": float,
                 "batch_size": int, "max_clips": int, "videos": int, "sheet_rows": int}


def sampling_params(params_file: str | Path, section: str) -> dict:
    """The checked ``section`` of ``params_file`` (one-line errors naming ``section.key``)."""
    p = stage_params(params_file, section, SAMPLE_PARAMS, complete=True)
    positive(params_file, section, p, "threads", "ddim_steps", "batch_size")
    for key in ("max_clips", "videos", "sheet_rows", "eta"):
        if p[key] < 0:
            raise ValueError(f"{params_file}: parameter '{section}.{key}' must be >= 0, got {p[key]!r}")
    return p


def check_ddim_steps(params_file: str | Path, section: str, p: dict, config: MDMConfig) -> None:
    """DDIM cannot take more steps than the model has diffusion steps."""
    if p["ddim_steps"] > config.diffusion_steps:
        raise ValueError(f"{params_file}: parameter '{section}.ddim_steps' must be <= the model's "
                         f"{config.diffusion_steps} diffusion steps")


def spread(count: int, total: int) -> np.ndarray:
    """``count`` indices spread evenly over ``range(total)`` (sorted, without repeats)."""
    return np.unique(np.linspace(0, total - 1, count).round().astype(int))


def choose_clips(clips: int, max_clips: int) -> np.ndarray:
    """The test clips to draw for: all of ``clips`` (``max_clips`` 0), else ``max_clips`` spread over them."""
    return spread(clips if max_clips == 0 else min(max_clips, clips), clips)


def shown(chosen: int, limit: int) -> np.ndarray | list:
    """Up to ``limit`` of the ``chosen`` samples, spread over them (none for ``limit`` 0)."""
    return spread(min(limit, chosen), chosen) if limit else []


def joints_of(features: np.ndarray) -> np.ndarray:
    """Joint positions (T, 22, 3) of denormalised features (T, 263)."""
    with torch.no_grad():
        return recover_from_ric(torch.from_numpy(features).double()).numpy()


def samples_table(test: MotionSplit, chosen: np.ndarray, captions: Sequence[str], lengths: Sequence[int],
                  p: dict) -> pd.DataFrame:
    """One row per sample: its test clip, caption, length and how it was drawn (seed, DDIM steps,
    guidance, eta), so that evaluate_t2m can draw more sets of the same kind."""
    return pd.DataFrame({
        "clip_id": [str(test.index.at[int(k), "clip_id"]) for k in chosen],
        "caption": list(captions),
        "length": np.asarray(lengths, dtype=np.int64),
        "seed": np.full(len(chosen), p["seed"], dtype=np.int64),
        "ddim_steps": np.full(len(chosen), p["ddim_steps"], dtype=np.int64),
        "guidance_scale": np.full(len(chosen), p["guidance_scale"], dtype=np.float64),
        "eta": np.full(len(chosen), p["eta"], dtype=np.float64),
    })


def write_contact_sheet(path: str | Path, test: MotionSplit, chosen: np.ndarray, captions: Sequence[str],
                        features: Sequence[np.ndarray], rows: Sequence[int]) -> bool:
    """Each of the samples ``rows`` above the real clip of the same caption, as one image at ``path``;
    False (nothing written) for no rows."""
    strips = []
    for j in rows:
        strips.append(contact_sheet_row(joints_of(features[j]), f"generated: {captions[j]}"))
        strips.append(contact_sheet_row(joints_of(test.clip(int(chosen[j]))),
                                        f"real {test.index.at[int(chosen[j]), 'clip_id']}: {captions[j]}"))
    if not strips:
        return False
    width = max(r.shape[1] for r in strips)
    strips = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in strips]
    write_image(path, np.concatenate(strips, 0))
    return True


def write_sample_videos(report_dir: str | Path, features: Sequence[np.ndarray], captions: Sequence[str],
                        videos: Sequence[int]) -> list[Path]:
    """A stick-figure video ``sample_NN.mp4`` in ``report_dir`` for each of the samples ``videos``."""
    written = []
    for n, j in enumerate(videos):
        written.append(Path(report_dir) / f"sample_{n:02d}.mp4")
        write_video(written[-1], joints_of(features[j]), captions[j])
    return written


def sampling_metrics(clips: int, p: dict, seconds: float, generated: dict, real: dict) -> dict:
    """sample_mdm's metrics JSON: the sampler settings, the speed and the motion quality of the
    generated against the real clips."""
    return {
        "clips": clips,
        "ddim_steps": p["ddim_steps"],
        "guidance_scale": p["guidance_scale"],
        "seconds": round(seconds, 1),
        "samples_per_second": round(clips / seconds, 3),
        "generated": generated,
        "real": real,
        "jitter_ratio": generated["jitter"] / max(real["jitter"], 1e-9),
    }
