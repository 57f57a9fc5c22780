"""Stage prepare_motion: 22-joint motions -> HumanML3D 263-d features, normalisation, splits.

Source ``synthetic`` reads synth_motion's raw clips (and adds left/right mirrored copies with
mirrored captions); source ``humanml3d`` reads a real HumanML3D release folder (new_joints/,
texts/, split files). Both go through the same retarget -> floor -> face +Z -> features path,
and every clip is checked by a round trip through the differentiable ``recover_from_ric``
(:mod:`humandiff.motion.prepare`). A HumanML3D release with ``new_joint_vecs/`` is read as
published: its vectors and its Mean/Std are used as they are.

``--check`` prints how many ids of the source will be kept and dropped (by reason: missing, too
short, too long) without writing anything; run it before a long run.
"""

from __future__ import annotations

from pathlib import Path

import click

from humandiff.body.model import load_body_model, rest_joints
from humandiff.io import ArtifactError, concat_ragged, save_json, save_npz, save_parquet
from humandiff.io.stage import positive, run_stage, section_config, stage_params
from humandiff.motion.hml3d import offsets_from_rest_joints
from humandiff.motion.prepare import PrepareOptions, prepare_clips, source_corpus

SECTION = "prepare_motion"
#: The section holds the fields of PrepareOptions and these stage settings.
EXTRA = {"workers": int}


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True, type=click.Path())
@click.option("--raw-dir", default="data/motion/raw", show_default=True, type=click.Path())
@click.option("--out-dir", default="data/motion/hml", show_default=True, type=click.Path())
@click.option("--metrics", "metrics_file", default="reports/metrics/data.json", show_default=True, type=click.Path())
@click.option("--check", is_flag=True, help="Print what will be kept and dropped, write nothing.")
@run_stage
def main(params_file: str, raw_dir: str, out_dir: str, metrics_file: str, check: bool) -> None:
    options, p = section_config(params_file, SECTION, PrepareOptions, EXTRA)
    positive(params_file, SECTION, p, "workers")
    if check:
        click.echo(check_source(options, raw_dir))
        return
    body_path = stage_params(params_file, "body", {"model_path": str})["model_path"]
    reference = offsets_from_rest_joints(rest_joints(load_body_model(body_path))[:22])
    corpus = source_corpus(options, raw_dir)
    prepared = prepare_clips(corpus.clips, reference, options.contact_threshold, p["workers"], progress=True,
                             mean_std=corpus.mean_std)
    metrics = prepared.metrics(options.source)
    if corpus.counts is not None:
        metrics["humanml3d"] = corpus.counts.as_dict() | {"mean_std": "release" if corpus.mean_std else "train split"}

    out = Path(out_dir)
    flat, offsets = concat_ragged(prepared.features)
    save_npz(out / "features.npz", {"features": flat, "offsets": offsets})
    flat, offsets = concat_ragged(prepared.joints)
    save_npz(out / "joints.npz", {"joints": flat, "offsets": offsets})
    save_npz(out / "mean_std.npz", prepared.mean_std)
    save_parquet(out / "index.parquet", prepared.index)
    save_json(metrics_file, metrics)


def check_source(options: PrepareOptions, raw_dir: str) -> str:
    """One line per fact: what a run on ``options.source`` will keep and drop (reads headers only)."""
    if options.source == "synthetic":
        from humandiff.io import load_parquet

        clips = load_parquet(Path(raw_dir) / "clips.parquet", ["clip_id"])
        mirrored = f", {2 * len(clips)} with mirrored copies" if options.mirror else ""
        return f"{Path(raw_dir) / 'clips.parquet'}: {len(clips)} synthetic clips kept{mirrored}"
    from humandiff.datasets.humanml3d import load_release_mean_std, scan_humanml3d

    counts = scan_humanml3d(options.humanml3d_root)
    stats = load_release_mean_std(options.humanml3d_root)
    lines = [f"{options.humanml3d_root}: {counts.summary().split('; ')[0]}"]
    lines += [f"  {split}: {n['listed']} listed, {n['kept']} kept" for split, n in counts.split_ids.items()]
    lines.append(f"  motions from {counts.motion_folder}/, normalisation from "
                 + ("the release's Mean.npy/Std.npy" if stats else "the train split"))
    if counts.loaded == 0:
        raise ArtifactError(f"{options.humanml3d_root}: no id would be kept ({counts.summary()})")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
