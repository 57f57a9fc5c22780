"""Stage synth_motion: generate the procedural motion dataset (the embedded default data).

Writes raw clips (SMPL parameters and the 24 posed joints, world metres, y up, 20 fps) with
captions and action tags, a contact sheet and a video per action family, and generation stats.
"""

from __future__ import annotations

from pathlib import Path

import click

from humandiff.body.model import load_body_model
from humandiff.io import save_json, save_npz, save_parquet
from humandiff.io.stage import positive, run_stage, section_config, stage_params
from humandiff.motion.synth import SynthOptions, clip_arrays, clip_index, family_previews, generate_clips, synth_metrics
from humandiff.motion.video import write_image, write_video

SECTION = "synth_motion"
#: The section holds the fields of SynthOptions and these stage settings.
EXTRA = {"clips": int, "seed": int, "sheet_clips_per_family": int, "workers": int}
#: Fields params.yaml may leave at their defaults.
DEFAULTS = ("transition_seconds", "composition_weights")


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True, type=click.Path())
@click.option("--out-dir", default="data/motion/raw", show_default=True, type=click.Path())
@click.option("--report-dir", default="reports/synth_motion", show_default=True, type=click.Path())
@click.option("--metrics", "metrics_file", default="reports/metrics/synth_motion.json", show_default=True, type=click.Path())
@run_stage
def main(params_file: str, out_dir: str, report_dir: str, metrics_file: str) -> None:
    options, p = section_config(params_file, SECTION, SynthOptions, EXTRA, defaults=DEFAULTS)
    positive(params_file, SECTION, p, "clips", "workers")
    body_path = stage_params(params_file, "body", {"model_path": str})["model_path"]
    load_body_model(body_path)  # fail here, with one clear line, on a missing or bad model
    clips = generate_clips(body_path, options, p["seed"], p["clips"], p["workers"], progress=True)

    save_npz(Path(out_dir) / "motions.npz", clip_arrays(clips))
    save_parquet(Path(out_dir) / "clips.parquet", clip_index(clips, options.fps))
    report = Path(report_dir)
    for family, sheet, shown in family_previews(clips, p["sheet_clips_per_family"]):
        write_image(report / f"{family}.png", sheet)
        write_video(report / f"{family}.mp4", shown.joints, shown.captions[0], options.fps, size=240)
    save_json(metrics_file, synth_metrics(clips, options.fps))


if __name__ == "__main__":
    main()
