"""Stage dno_tasks: write DNO's task specifications (one Parquet table per family) from params.

- ``edit.parquet`` (Table 1): per action one prior-generated input motion and ``edits_per_action``
  pelvis edits (random keyframe in ``keyframes``, random ground-plane target within
  ``+-target_range`` m of the input's pelvis at that frame).
- ``control.parquet``: the qualitative tasks (trajectory, hand target, full pose at a keyframe,
  static and moving obstacle on a generated walk; in-betweening and blending of test clips).
- ``refine.parquet`` (Table 2): ``refine_clips`` random test clips (first ``refine_max_frames``
  frames) x the joint sets in ``refine_settings``, ``refine_noise_std`` m of noise on every joint.
- ``ablate.parquet`` (Table 3): the first ``ablate_clips`` of the same clips (first
  ``ablate_max_frames`` frames), all joints, ``ablate_noise_std`` m (the paper's 1 cm).

The tables are plain data (see ``humandiff.dno.tasks``): edit them, or append rows, to run new
tasks without code.
"""

from __future__ import annotations

import math
from pathlib import Path

import click
import numpy as np
import torch

from humandiff.motion.dataset import load_motion_split
from humandiff.dno.metrics import content_labels
from humandiff.io import ArtifactError
from humandiff.dno.tasks import JOINT_SETS, EditAction, control_tasks, edit_tasks, refine_tasks, save_tasks, tasks_frame
from humandiff.motion.hml3d import recover_from_ric
from humandiff.io.stage import positive, run_stage, stage_params

SECTION = "dno_tasks"
PARAMS = {
    "seed": int, "edit_length": int, "edits_per_action": int, "keyframes": list, "target_range": float,
    "actions": list, "control_caption": str, "control_length": int, "blend_frames": int, "blend_transition": int,
    "refine_clips": int, "refine_max_frames": int, "refine_noise_std": float, "refine_settings": list,
    "ablate_clips": int, "ablate_max_frames": int, "ablate_noise_std": float,
}


def parse_actions(params_file: str, entries: list) -> list[EditAction]:
    """``actions`` entries {name, caption, rule, threshold (null = the rule's default)} -> EditAction."""
    actions = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not {"name", "caption", "rule"} <= set(entry):
            raise ArtifactError(f"{params_file}: parameter '{SECTION}.actions[{index}]' needs name, caption and rule")
        threshold = entry.get("threshold")
        actions.append(EditAction(str(entry["name"]), str(entry["caption"]), str(entry["rule"]),
                                  math.nan if threshold is None else float(threshold)))
    if not actions or len({a.name for a in actions}) != len(actions):
        raise ArtifactError(f"{params_file}: parameter '{SECTION}.actions' must list actions with distinct names")
    return actions


def raised_pose_offsets(split, rng: np.random.Generator) -> np.ndarray:
    """Joint offsets from the pelvis (22, 3) of a test pose with both hands above the head (the
    pose-keyframe target); the highest-handed frame of a random clip that has one, else a random frame."""
    order = rng.permutation(len(split))
    for k in order:
        joints = recover_from_ric(torch.from_numpy(split.clip(int(k))).double()).numpy()
        raised = content_labels(joints, "raised_hands")
        if raised.any():
            frame = int(np.argmax(joints[:, [20, 21], 1].min(1) - joints[:, 15, 1]))
            return joints[frame] - joints[frame, 0]
    joints = recover_from_ric(torch.from_numpy(split.clip(int(order[0]))).double()).numpy()
    return joints[len(joints) // 2] - joints[len(joints) // 2, 0]


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True, type=click.Path())
@click.option("--hml-dir", default="data/motion/hml", show_default=True, type=click.Path())
@click.option("--out-dir", default="data/dno/tasks", show_default=True, type=click.Path())
@run_stage
def main(params_file: str, hml_dir: str, out_dir: str) -> None:
    p = stage_params(params_file, SECTION, PARAMS)
    positive(params_file, SECTION, p, "edit_length", "edits_per_action", "control_length", "blend_frames",
             "refine_clips", "refine_max_frames", "ablate_clips", "ablate_max_frames")
    for key in ("target_range", "refine_noise_std", "ablate_noise_std", "blend_transition"):
        if p[key] < 0:
            raise ArtifactError(f"{params_file}: parameter '{SECTION}.{key}' must be >= 0, got {p[key]!r}")
    if len(p["keyframes"]) != 2 or not all(isinstance(k, int) for k in p["keyframes"]):
        raise ArtifactError(f"{params_file}: parameter '{SECTION}.keyframes' must be two integers [first, last]")
    unknown = [s for s in p["refine_settings"] if s not in JOINT_SETS]
    if unknown or not p["refine_settings"]:
        raise ArtifactError(f"{params_file}: parameter '{SECTION}.refine_settings' must list joint sets among {', '.join(JOINT_SETS)}")
    actions = parse_actions(params_file, p["actions"])
    hml = Path(hml_dir)
    test = load_motion_split(hml / "index.parquet", hml / "features.npz", None, "test")
    rng = np.random.default_rng(p["seed"])
    order = rng.permutation(len(test))
    clip_ids = [str(test.index.at[int(k), "clip_id"]) for k in order]
    lengths = [int(test.lengths[int(k)]) for k in order]
    needed = max(p["refine_clips"], p["ablate_clips"])
    if len(order) < needed + 3:
        raise ArtifactError(f"{hml / 'index.parquet'}: {len(order)} test clips, the params need {needed + 3}")

    refine_clips = [(c, min(n, p["refine_max_frames"])) for c, n in zip(clip_ids[: p["refine_clips"]], lengths)]
    ablate_clips = [(c, min(n, p["ablate_max_frames"])) for c, n in zip(clip_ids[: p["ablate_clips"]], lengths)]
    spare = list(zip(clip_ids[needed:], lengths[needed:]))
    control_clips = [(spare[0][0], min(spare[0][1], p["control_length"]))] + [
        (c, min(n, p["blend_frames"])) for c, n in spare[1:3]]

    out = Path(out_dir)
    tables = {
        "edit": edit_tasks(actions, p["edits_per_action"], p["edit_length"], p["seed"], tuple(p["keyframes"]),
                           p["target_range"]),
        "control": control_tasks(p["control_caption"], p["control_length"], p["seed"], control_clips,
                                 raised_pose_offsets(test, rng), p["blend_transition"]),
        "refine": refine_tasks(refine_clips, p["refine_settings"], p["refine_noise_std"], p["seed"], "refine"),
        "ablate": refine_tasks(ablate_clips, ["all_joints"], p["ablate_noise_std"], p["seed"] + 1, "ablate"),
    }
    for family, rows in tables.items():
        path = out / f"{family}.parquet"
        save_tasks(path, tasks_frame(rows, str(path)))
        click.echo(f"{path}: {len(rows)} tasks")


if __name__ == "__main__":
    main()
