"""Stage synth_motion: generate the procedural motion dataset (the embedded default data).

Writes raw clips (SMPL parameters and the 24 posed joints, world metres, y up, 20 fps) with
captions and action tags, a contact sheet and a video per action family, and generation stats.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import click
import numpy as np
import pandas as pd

from humandiff.body.model import load_body_model
from humandiff.io import concat_ragged, save_json, save_npz, save_parquet
from humandiff.motion.metrics import foot_skating_ratio, jitter
from humandiff.motion.synth import SynthOptions, generate_clips
from humandiff.motion.video import contact_sheet_row, write_image, write_video
from humandiff.io.stage import positive, run_stage, stage_params

SECTION = "synth_motion"

@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True, type=click.Path())
@click.option("--out-dir", default="data/motion/raw", show_default=True, type=click.Path())
@click.option("--report-dir", default="reports/synth_motion", show_default=True, type=click.Path())
@click.option("--metrics", "metrics_file", default="reports/metrics/synth_motion.json", show_default=True, type=click.Path())
@run_stage
def main(params_file: str, out_dir: str, report_dir: str, metrics_file: str) -> None:
    p = stage_params(params_file, SECTION, {"clips": int, "seed": int, "fps": (int, float), "min_frames": int,
                                            "max_frames": int, "captions_per_clip": int, "shape_std": float,
                                            "sheet_clips_per_family": int, "workers": int})
    positive(params_file, SECTION, p, "clips", "fps", "min_frames", "captions_per_clip", "workers")
    if p["max_frames"] < p["min_frames"]:
        raise ValueError(f"{params_file}: '{SECTION}.max_frames' must be >= '{SECTION}.min_frames'")
    body_path = stage_params(params_file, "body", {"model_path": str})["model_path"]
    options = SynthOptions(fps=float(p["fps"]), min_frames=p["min_frames"], max_frames=p["max_frames"],
                           shape_std=p["shape_std"], captions_per_clip=p["captions_per_clip"])
    load_body_model(body_path)  # fail here, with one clear line, on a missing or bad model
    clips = generate_clips(body_path, options, p["seed"], p["clips"], p["workers"], progress=True)
    rows = [{"clip_id": f"{index:06d}", "length": clip.length, "fps": options.fps, "actions": clip.actions,
             "captions": clip.captions} for index, clip in enumerate(clips)]

    arrays = {}
    for name in ("joints", "global_orient", "body_pose", "transl"):
        arrays[name], offsets = concat_ragged([getattr(c, name) for c in clips])
    arrays["offsets"] = offsets
    arrays["betas"] = np.stack([c.betas for c in clips])
    save_npz(Path(out_dir) / "motions.npz", arrays)
    save_parquet(Path(out_dir) / "clips.parquet", pd.DataFrame(rows))

    by_family: dict[str, list[int]] = defaultdict(list)
    for i, clip in enumerate(clips):
        for family in set(clip.actions):
            by_family[family].append(i)
    report = Path(report_dir)
    for family, members in sorted(by_family.items()):
        solo = [i for i in members if clips[i].actions == [family]] or members
        shown = solo[: p["sheet_clips_per_family"]]
        sheet = np.concatenate([contact_sheet_row(clips[i].joints, f"#{i:06d}: {clips[i].captions[0]}", panel_size=128) for i in shown], 0)
        write_image(report / f"{family}.png", sheet)
        write_video(report / f"{family}.mp4", clips[shown[0]].joints, clips[shown[0]].captions[0], options.fps, size=240)

    skating = [foot_skating_ratio(c.joints - np.array([0.0, c.joints[..., 1].min(), 0.0], np.float32)) for c in clips]
    save_json(metrics_file, {
        "clips": len(clips),
        "families": len(by_family),
        "clips_per_family": {k: len(v) for k, v in sorted(by_family.items())},
        "min_frames": int(min(c.length for c in clips)),
        "max_frames": int(max(c.length for c in clips)),
        "mean_frames": float(np.mean([c.length for c in clips])),
        "min_captions_per_clip": int(min(len(c.captions) for c in clips)),
        "foot_skating_ratio": float(np.mean(skating)),
        "lowest_joint_height_m": float(min(c.joints[..., 1].min() for c in clips)),
        "jitter_m_s3": float(np.mean([jitter(c.joints[:, :22], options.fps) for c in clips])),
    })


if __name__ == "__main__":
    main()
