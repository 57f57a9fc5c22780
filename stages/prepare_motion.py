"""Stage prepare_motion: 22-joint motions -> HumanML3D 263-d features, normalisation, splits.

Source ``synthetic`` reads synth_motion's raw clips (and adds left/right mirrored copies with
mirrored captions); source ``humanml3d`` reads a real HumanML3D release folder (new_joints/,
texts/, split files). Both go through the same retarget -> floor -> face +Z -> features path,
and every clip is checked by a round trip through the differentiable ``recover_from_ric``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import click
import numpy as np
import pandas as pd

from humandiff.body.model import load_body_model, rest_joints
from humandiff.io import ArtifactError, concat_ragged, load_npz, load_parquet, save_json, save_npz, save_parquet, split_ragged
from humandiff.motion.captions import mirror_text
from humandiff.motion.hml3d import evaluator_mean_std, feature_mean_std, mirror_joints, offsets_from_rest_joints
from humandiff.motion.prepare import features_for_clips
from humandiff.motion.metrics import foot_skating_ratio
from humandiff.io.stage import positive, run_stage, stage_params

SECTION = "prepare_motion"


def synthetic_clips(raw_dir: Path, p: dict) -> Iterator[dict]:
    """Clips of synth_motion's output with a seeded train/val/test split by source clip."""
    index_file, motion_file = raw_dir / "clips.parquet", raw_dir / "motions.npz"
    index = load_parquet(index_file, ["clip_id", "length", "captions", "actions"])
    arrays = load_npz(motion_file, {"joints": (None, 24, 3), "offsets": (None,)})
    if len(arrays["offsets"]) != len(index) + 1 or arrays["offsets"][-1] != len(arrays["joints"]):
        raise ArtifactError(f"{motion_file}: field 'offsets' does not match {len(index)} clips in {index_file}")
    order = np.random.default_rng(p["split_seed"]).permutation(len(index))
    n_test = int(round(p["test_fraction"] * len(index)))
    n_val = int(round(p["val_fraction"] * len(index)))
    split = np.empty(len(index), dtype=object)
    split[order[:n_test]] = "test"
    split[order[n_test : n_test + n_val]] = "val"
    split[order[n_test + n_val :]] = "train"
    for row, joints, clip_split in zip(index.itertuples(index=False), split_ragged(arrays["joints"], arrays["offsets"]), split):
        captions = [str(c) for c in row.captions]
        if not captions or any(not c.strip() for c in captions):
            raise ArtifactError(f"{index_file}: clip {row.clip_id}: field 'captions' is empty")
        base = {"source_id": row.clip_id, "split": clip_split, "actions": [str(a) for a in row.actions]}
        yield dict(base, clip_id=row.clip_id, joints=joints[:, :22], captions=captions, mirror=False)
        if p["mirror"]:
            yield dict(base, clip_id=f"M{row.clip_id}", joints=mirror_joints(joints[:, :22]),
                       captions=[mirror_text(c) for c in captions], mirror=True)


def humanml3d_clips(root: str) -> Iterator[dict]:
    """Clips of a real HumanML3D release (its own splits and mirrored M-files)."""
    from humandiff.datasets.humanml3d import iter_humanml3d

    for clip in iter_humanml3d(root):
        yield {"clip_id": clip.clip_id, "source_id": clip.source_id, "split": clip.split, "joints": clip.joints,
               "captions": list(clip.captions), "actions": [], "mirror": clip.mirror}


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True, type=click.Path())
@click.option("--raw-dir", default="data/motion/raw", show_default=True, type=click.Path())
@click.option("--out-dir", default="data/motion/hml", show_default=True, type=click.Path())
@click.option("--metrics", "metrics_file", default="reports/metrics/data.json", show_default=True, type=click.Path())
@run_stage
def main(params_file: str, raw_dir: str, out_dir: str, metrics_file: str) -> None:
    p = stage_params(params_file, SECTION, {"source": str, "humanml3d_root": (str, type(None)), "mirror": bool,
                                            "split_seed": int, "val_fraction": float, "test_fraction": float,
                                            "contact_threshold": float, "workers": int})
    positive(params_file, SECTION, p, "contact_threshold", "workers")
    if not (0 <= p["val_fraction"] < 1 and 0 < p["test_fraction"] < 1 and p["val_fraction"] + p["test_fraction"] < 1):
        raise ValueError(f"{params_file}: '{SECTION}.val_fraction' + '{SECTION}.test_fraction' must lie in (0, 1)")
    body_path = stage_params(params_file, "body", {"model_path": str})["model_path"]
    reference = offsets_from_rest_joints(rest_joints(load_body_model(body_path))[:22])

    if p["source"] == "synthetic":
        clips = synthetic_clips(Path(raw_dir), p)
    elif p["source"] == "humanml3d":
        if not p["humanml3d_root"]:
            raise ValueError(f"{params_file}: '{SECTION}.humanml3d_root' must be set when source is humanml3d")
        clips = humanml3d_clips(p["humanml3d_root"])
    else:
        raise ValueError(f"{params_file}: unknown '{SECTION}.source' {p['source']!r} (synthetic | humanml3d)")

    clips = list(clips)
    processed = features_for_clips([c["clip_id"] for c in clips], [c["joints"] for c in clips], reference,
                                   p["contact_threshold"], p["workers"], progress=True)

    rows, features, canonical = [], [], []
    worst_error, skating = 0.0, []
    for clip, (feats, joints, error) in zip(clips, processed):
        worst_error = max(worst_error, error)
        if not clip["mirror"]:
            skating.append(foot_skating_ratio(joints))
        features.append(feats)
        canonical.append(joints)
        rows.append({"clip_id": clip["clip_id"], "source_id": clip["source_id"], "split": clip["split"],
                     "length": len(feats), "captions": clip["captions"], "actions": clip["actions"],
                     "mirror": clip["mirror"]})
    if not rows:
        raise ArtifactError(f"{raw_dir if p['source'] == 'synthetic' else p['humanml3d_root']}: no clips")
    index = pd.DataFrame(rows)
    train = [f for f, s in zip(features, index["split"]) if s == "train"]
    mean, std = feature_mean_std(train)
    eval_mean, eval_std = evaluator_mean_std(mean, std)

    out = Path(out_dir)
    flat, offsets = concat_ragged(features)
    save_npz(out / "features.npz", {"features": flat, "offsets": offsets})
    flat, offsets = concat_ragged(canonical)
    save_npz(out / "joints.npz", {"joints": flat, "offsets": offsets})
    save_npz(out / "mean_std.npz", {"mean": mean, "std": std, "eval_mean": eval_mean, "eval_std": eval_std,
                                    "reference_offsets": reference.astype(np.float32)})
    save_parquet(out / "index.parquet", index)

    originals = index[~index["mirror"]]
    save_json(metrics_file, {
        "source": p["source"],
        "clips": int(len(originals)),
        "clips_with_mirrors": int(len(index)),
        "families": int(len({a for acts in originals["actions"] for a in acts})),
        "min_captions_per_clip": int(index["captions"].map(len).min()),
        "gt_foot_skating_ratio": float(np.mean(skating)) if skating else 0.0,
        "roundtrip_max_error_mm": 1000.0 * worst_error,
        "min_frames": int(index["length"].min()),
        "max_frames": int(index["length"].max()),
        "fps": 20,
        "splits": {k: int(v) for k, v in originals["split"].value_counts().sort_index().items()},
    })


if __name__ == "__main__":
    main()
