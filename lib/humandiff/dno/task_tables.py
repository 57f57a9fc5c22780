"""The pipeline's DNO task tables (one per family) from the ``dno_tasks`` settings and the test clips.

- ``edit`` (Table 1): per action one prior-generated input motion and ``edits_per_action``
  pelvis edits (random keyframe in ``keyframes``, random ground-plane target within
  ``+-target_range`` m of the input's pelvis at that frame).
- ``control``: the qualitative tasks (trajectory, hand target, full pose at a keyframe, static
  and moving obstacle on a generated walk; in-betweening and blending of test clips).
- ``refine`` (Table 2): ``refine_clips`` random test clips (first ``refine_max_frames`` frames) x
  the joint sets in ``refine_settings``, ``refine_noise_std`` m of noise on every joint.
- ``ablate`` (Table 3): the first ``ablate_clips`` of the same clips (first ``ablate_max_frames``
  frames), all joints, ``ablate_noise_std`` m (the paper's 1 cm).

The rows are plain task rows (:mod:`humandiff.dno.tasks`); the tables they make can be edited or
extended without code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from humandiff.dno.metrics import content_labels
from humandiff.dno.tasks import JOINT_SETS, EditAction, control_tasks, edit_tasks, refine_tasks
from humandiff.io import ArtifactError
from humandiff.motion.hml3d import recover_from_ric


def parse_actions(entries: list, where: str = "actions") -> list[EditAction]:
    """``actions`` entries {name, caption, rule, threshold (null = the rule's default)} -> EditAction;
    ``where`` names the parameter in one-line errors (e.g. ``params.yaml: parameter 'dno_tasks.actions``)."""
    actions = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not {"name", "caption", "rule"} <= set(entry):
            raise ArtifactError(f"{where}[{index}]' needs name, caption and rule")
        threshold = entry.get("threshold")
        actions.append(EditAction(str(entry["name"]), str(entry["caption"]), str(entry["rule"]),
                                  math.nan if threshold is None else float(threshold)))
    if not actions or len({a.name for a in actions}) != len(actions):
        raise ArtifactError(f"{where}' must list actions with distinct names")
    return actions


@dataclass(frozen=True)
class TaskTableSettings:
    """The ``dno_tasks`` params (see the module doc); ``keyframes`` is (first, last), ``actions``
    the parsed :class:`~humandiff.dno.tasks.EditAction` list."""

    seed: int
    edit_length: int
    edits_per_action: int
    keyframes: tuple[int, int]
    target_range: float
    actions: tuple[EditAction, ...]
    control_caption: str
    control_length: int
    blend_frames: int
    blend_transition: int
    refine_clips: int
    refine_max_frames: int
    refine_noise_std: float
    refine_settings: tuple[str, ...]
    ablate_clips: int
    ablate_max_frames: int
    ablate_noise_std: float

    @classmethod
    def from_params(cls, values: Mapping[str, Any], params_file: str | Path = "params.yaml",
                    section: str = "dno_tasks") -> "TaskTableSettings":
        """Checked settings from a params section whose keys already have their types; errors name
        ``params_file`` and the parameter."""
        where = f"{params_file}: parameter '{section}"
        for key in ("edit_length", "edits_per_action", "control_length", "blend_frames", "refine_clips",
                    "refine_max_frames", "ablate_clips", "ablate_max_frames"):
            if not values[key] > 0:
                raise ArtifactError(f"{where}.{key}' must be > 0, got {values[key]!r}")
        for key in ("target_range", "refine_noise_std", "ablate_noise_std", "blend_transition"):
            if values[key] < 0:
                raise ArtifactError(f"{where}.{key}' must be >= 0, got {values[key]!r}")
        keyframes = values["keyframes"]
        if len(keyframes) != 2 or not all(isinstance(k, int) for k in keyframes):
            raise ArtifactError(f"{where}.keyframes' must be two integers [first, last]")
        unknown = [s for s in values["refine_settings"] if s not in JOINT_SETS]
        if unknown or not values["refine_settings"]:
            raise ArtifactError(f"{where}.refine_settings' must list joint sets among {', '.join(JOINT_SETS)}")
        actions = parse_actions(values["actions"], f"{where}.actions")
        plain = {f.name: values[f.name] for f in fields(cls) if f.name not in ("keyframes", "actions", "refine_settings")}
        return cls(keyframes=tuple(keyframes), actions=tuple(actions), refine_settings=tuple(values["refine_settings"]),
                   **plain)


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


def task_tables(test, settings: TaskTableSettings, where: str = "test split") -> dict[str, list[dict[str, Any]]]:
    """Task rows per family (``edit``, ``control``, ``refine``, ``ablate``) on the test clips ``test``
    (a :class:`~humandiff.motion.dataset.MotionSplit`); ``where`` names it in one-line errors.

    The clips are drawn with ``settings.seed``: refinement and ablation share the first ones, the
    control family takes the next three.
    """
    s = settings
    rng = np.random.default_rng(s.seed)
    order = rng.permutation(len(test))
    clip_ids = [str(test.index.at[int(k), "clip_id"]) for k in order]
    lengths = [int(test.lengths[int(k)]) for k in order]
    needed = max(s.refine_clips, s.ablate_clips)
    if len(order) < needed + 3:
        raise ArtifactError(f"{where}: {len(order)} test clips, the params need {needed + 3}")

    refine_clips = [(c, min(n, s.refine_max_frames)) for c, n in zip(clip_ids[: s.refine_clips], lengths)]
    ablate_clips = [(c, min(n, s.ablate_max_frames)) for c, n in zip(clip_ids[: s.ablate_clips], lengths)]
    spare = list(zip(clip_ids[needed:], lengths[needed:]))
    control_clips = [(spare[0][0], min(spare[0][1], s.control_length))] + [
        (c, min(n, s.blend_frames)) for c, n in spare[1:3]]
    return {
        "edit": edit_tasks(list(s.actions), s.edits_per_action, s.edit_length, s.seed, s.keyframes, s.target_range),
        "control": control_tasks(s.control_caption, s.control_length, s.seed, control_clips,
                                 raised_pose_offsets(test, rng), s.blend_transition),
        "refine": refine_tasks(refine_clips, list(s.refine_settings), s.refine_noise_std, s.seed, "refine"),
        "ablate": refine_tasks(ablate_clips, ["all_joints"], s.ablate_noise_std, s.seed + 1, "ablate"),
    }
