"""DNO's evaluation (Sec. 6): content preservation, objective error, MPJPE, realism, FID hook.

Joints are (T, 22, 3) numpy arrays in metres, y up, the floor at y = 0, 20 fps.

Content preservation ratio (Table 1): each frame of a motion gets a binary label from the
action's rule; the ratio is the share of frames whose label is the same before and after the
edit, ``mean_t [label_before(t) == label_after(t)]`` over the T frames (both motions have the same
length). It is 1 when both motions perform the action in exactly the same frames. Rules:

- ``jump``: both feet (joints 10, 11) higher than ``threshold`` (default 0.05 m);
- ``raised_hands``: both wrists (20, 21) above the head (15) (``threshold`` default 0 m, a margin);
- ``crawl``: the head (15) lower than ``threshold`` (the paper's 1.5 m; pass a value suited to the
  skeleton: the embedded corpus stands 1.52 m tall at the head, so it uses 1.0 m).

Objective error: distance between each explicit target and the output's joint at the target's
frame, on the ground plane (x, z) when the target constrains x and z only, else in 3-D; the mean
over a task's targets is its error (the paper's tasks have one target).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import numpy as np

from humandiff.io.artifacts import ArtifactError
from humandiff.motion.metrics import foot_skating_ratio, jitter

if TYPE_CHECKING:
    from humandiff.dno.tasks import ResolvedTask

FEET = (10, 11)
WRISTS = (20, 21)
HEAD = 15
RULE_DEFAULTS: Mapping[str, float] = {"jump": 0.05, "raised_hands": 0.0, "crawl": 1.5}


def _joints(joints: np.ndarray, name: str = "joints") -> np.ndarray:
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim != 3 or joints.shape[1] < 22 or joints.shape[2] != 3:
        raise ArtifactError(f"dno metrics: '{name}' has shape {joints.shape}, expected (T, 22, 3)")
    return joints


def content_labels(joints: np.ndarray, rule: str, threshold: float | None = None) -> np.ndarray:
    """Per-frame action labels (T,) bool of ``joints`` (T, 22, 3) under ``rule`` (see the module doc)."""
    joints = _joints(joints)
    if rule not in RULE_DEFAULTS:
        raise ArtifactError(f"content_labels: parameter 'rule' must be one of {', '.join(RULE_DEFAULTS)}, got {rule!r}")
    level = RULE_DEFAULTS[rule] if threshold is None or math.isnan(threshold) else float(threshold)
    if rule == "jump":
        return joints[:, FEET, 1].min(1) > level
    if rule == "raised_hands":
        return joints[:, WRISTS, 1].min(1) > joints[:, HEAD, 1] + level
    return joints[:, HEAD, 1] < level


def content_preservation(before: np.ndarray, after: np.ndarray, rule: str, threshold: float | None = None) -> float:
    """Share of frames with the same label before and after (both (T, 22, 3)); 1.0 = fully preserved."""
    before, after = _joints(before, "before"), _joints(after, "after")
    if before.shape[0] != after.shape[0]:
        raise ArtifactError(f"content_preservation: 'before' has {before.shape[0]} frames, 'after' {after.shape[0]}")
    return float((content_labels(before, rule, threshold) == content_labels(after, rule, threshold)).mean())


def objective_error(
    joints: np.ndarray, target_joints: Sequence[int], target_frames: Sequence[int], target_points: np.ndarray,
    axes: str = "xz",
) -> float:
    """Mean distance (m) from each target (N, 3) to the output joint at its frame; 2-D for ``axes="xz"``."""
    joints = _joints(joints)
    points = np.asarray(target_points, dtype=np.float64).reshape(-1, 3)
    j, f = np.asarray(target_joints, dtype=np.int64), np.asarray(target_frames, dtype=np.int64)
    if not len(points) == len(j) == len(f) or len(points) == 0:
        raise ArtifactError(f"objective_error: {len(j)} joints, {len(f)} frames and {len(points)} points (need equal, > 0)")
    if axes not in ("xz", "xyz"):
        raise ArtifactError(f"objective_error: parameter 'axes' must be 'xz' or 'xyz', got {axes!r}")
    dims = [0, 2] if axes == "xz" else [0, 1, 2]
    return float(np.linalg.norm(joints[f, j][:, dims] - points[:, dims], axis=-1).mean())


def mpjpe_cm(pred: np.ndarray, truth: np.ndarray, pairs: np.ndarray | None = None) -> float:
    """Mean per-joint position error (cm) in world coordinates (no alignment) between (T, 22, 3) motions.

    ``pairs`` (T, 22) bool restricts it to observed (frame, joint) pairs; None: all joints and frames.
    """
    pred, truth = _joints(pred, "pred"), _joints(truth, "truth")
    if pred.shape != truth.shape:
        raise ArtifactError(f"mpjpe_cm: 'pred' {pred.shape} and 'truth' {truth.shape} differ")
    errors = np.linalg.norm(pred - truth, axis=-1)
    if pairs is not None:
        pairs = np.asarray(pairs, dtype=bool)
        if pairs.shape != errors.shape or not pairs.any():
            raise ArtifactError(f"mpjpe_cm: 'pairs' must be (T, 22) with at least one True, got {pairs.shape}")
        errors = errors[pairs]
    return float(errors.mean() * 100.0)


def obstacle_clearance(joints: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> dict[str, float]:
    """``min_distance`` (m, signed, over frames and joints) to cylinders with centres (K, T, 2) and radii (K,),
    and ``penetration_ratio``: the share of frames with any joint inside an obstacle."""
    joints = _joints(joints)
    centres, radii = np.asarray(centres, dtype=np.float64), np.asarray(radii, dtype=np.float64)
    if centres.ndim != 3 or centres.shape[1:] != (joints.shape[0], 2) or radii.shape != (centres.shape[0],):
        raise ArtifactError(f"obstacle_clearance: centres {centres.shape} / radii {radii.shape} do not fit {joints.shape}")
    if len(radii) == 0:
        return {"min_distance": math.inf, "penetration_ratio": 0.0}
    offsets = joints[None, :, :, [0, 2]] - centres[:, :, None, :]
    sdf = (np.linalg.norm(offsets, axis=-1) - radii[:, None, None]).min(0)  # (T, J)
    return {"min_distance": float(sdf.min()), "penetration_ratio": float((sdf.min(1) < 0).mean())}


def realism(joints: np.ndarray, fps: float = 20.0) -> dict[str, float]:
    """``foot_skating_ratio`` and ``jitter`` in the paper's unit 10^2 m/s^3 of one motion (T, 22, 3)."""
    joints = _joints(joints)
    return {"foot_skating_ratio": foot_skating_ratio(joints), "jitter": jitter(joints, fps) / 100.0}


def summary(values: Sequence[float]) -> dict[str, float]:
    """``mean`` and ``median`` of finite values (NaN when there are none)."""
    array = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if array.size == 0:
        return {"mean": math.nan, "median": math.nan}
    return {"mean": float(array.mean()), "median": float(np.median(array))}


def fid_scorer(evaluator_file: str | Path, reference: Sequence[np.ndarray]) -> Callable[[Sequence[np.ndarray]], float] | None:
    """FID against ``reference`` raw 263-d feature clips (T_i, 263) under the trained text-to-motion
    evaluator, as a function of generated clips; None while the evaluator file does not exist (the
    hook stays open). The evaluator is imported lazily, loaded once and embeds the reference once.
    """
    path = Path(evaluator_file)
    if not path.is_file():
        return None
    if len(reference) < 2:
        raise ArtifactError(f"fid_scorer: needs >= 2 reference clips, got {len(reference)}")
    from humandiff.eval.t2m import fid
    from humandiff.evaluators.evaluator import load_evaluator

    evaluator = load_evaluator(path)
    reference_embeddings = evaluator.embed_motions(list(reference))

    def score(clips: Sequence[np.ndarray]) -> float:
        if len(clips) < 2:
            raise ArtifactError(f"fid_scorer: needs >= 2 generated clips, got {len(clips)}")
        return fid(evaluator.embed_motions(list(clips)), reference_embeddings)

    return score


def task_metrics(resolved: "ResolvedTask", joints: np.ndarray) -> dict[str, float]:
    """Every metric that applies to a task's output joints (T, 22, 3); NaN for the others.

    ``objective_error_m`` (explicit targets), ``content_preservation`` (a content rule; against the
    input), ``mpjpe_observed_cm`` / ``mpjpe_all_cm`` (observations; against the clean input),
    ``min_obstacle_distance_m`` / ``penetration_ratio`` (obstacles), ``foot_skating_ratio`` and
    ``jitter`` (10^2 m/s^3) always.
    """
    task = resolved.task
    joints = _joints(joints)
    if joints.shape != resolved.clean.shape:
        raise ArtifactError(f"task {task.task_id!r}: output joints {joints.shape}, expected {resolved.clean.shape}")
    out = {name: math.nan for name in ("objective_error_m", "content_preservation", "mpjpe_observed_cm",
                                        "mpjpe_all_cm", "min_obstacle_distance_m", "penetration_ratio")}
    if len(resolved.target_joints):
        out["objective_error_m"] = objective_error(joints, resolved.target_joints, resolved.target_frames,
                                                   resolved.target_points, task.target_axes)
    if task.content_rule:
        out["content_preservation"] = content_preservation(resolved.clean, joints, task.content_rule, task.content_threshold)
    if task.observed_joints:
        observed = np.zeros(resolved.observed_pairs.shape, dtype=bool)
        frames = task.observed_frames or range(joints.shape[0])
        observed[np.ix_(list(frames), list(task.observed_joints))] = True
        observed &= resolved.observed_pairs  # transitions excluded
        out["mpjpe_observed_cm"] = mpjpe_cm(joints, resolved.clean, observed)
        out["mpjpe_all_cm"] = mpjpe_cm(joints, resolved.clean)
    if len(resolved.obstacle_radii):
        clearance = obstacle_clearance(joints, resolved.obstacle_centres, resolved.obstacle_radii)
        out["min_obstacle_distance_m"] = clearance["min_distance"]
        out["penetration_ratio"] = clearance["penetration_ratio"]
    out.update(realism(joints))
    return out
