"""Stage prepare_motion: 22-joint motions -> HumanML3D 263-d features, normalisation, splits.

Source ``synthetic`` reads synth_motion's raw clips (and adds left/right mirrored copies with
mirrored captions); source ``humanml3d`` reads a real HumanML3D release folder (new_joints/,
texts/, split files). Both go through the same retarget -> floor -> face +Z -> features path,
and every clip is checked by a round trip through the differentiable ``recover_from_ric``
(:mod:`humandiff.motion.prepare`).
"""

from __future__ import annotations

from pathlib import Path

import click

from humandiff.body.model import load_body_model, rest_joints
from humandiff.io import concat_ragged, save_json, save_npz, save_parquet
from humandiff.io.stage import positive, run_stage, section_config, stage_params
from humandiff.motion.hml3d import offsets_from_rest_joints
from humandiff.motion.prepare import PrepareOptions, prepare_clips, source_clips

SECTION = "prepare_motion"
#: The section holds the fields of PrepareOptions and these stage settings.
EXTRA = {"workers": int}


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True, type=click.Path())
@click.option("--raw-dir", default="data/motion/raw", show_default=True, type=click.Path())
@click.option("--out-dir", default="data/motion/hml", show_default=True, type=click.Path())
@click.option("--metrics", "metrics_file", default="reports/metrics/data.json", show_default=True, type=click.Path())
@run_stage
def main(params_file: str, raw_dir: str, out_dir: str, metrics_file: str) -> None:
    options, p = section_config(params_file, SECTION, PrepareOptions, EXTRA)
    positive(params_file, SECTION, p, "workers")
    body_path = stage_params(params_file, "body", {"model_path": str})["model_path"]
    reference = offsets_from_rest_joints(rest_joints(load_body_model(body_path))[:22])
    clips = source_clips(options, raw_dir)
    prepared = prepare_clips(clips, reference, options.contact_threshold, p["workers"], progress=True)

    out = Path(out_dir)
    flat, offsets = concat_ragged(prepared.features)
    save_npz(out / "features.npz", {"features": flat, "offsets": offsets})
    flat, offsets = concat_ragged(prepared.joints)
    save_npz(out / "joints.npz", {"joints": flat, "offsets": offsets})
    save_npz(out / "mean_std.npz", prepared.mean_std)
    save_parquet(out / "index.parquet", prepared.index)
    save_json(metrics_file, prepared.metrics(options.source))


if __name__ == "__main__":
    main()
