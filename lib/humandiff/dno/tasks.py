"""DNO task specifications: one Parquet row per task, so users add edits without writing code.

A task names its input motion(s), what is observed or targeted, optional obstacles, how the
noise starts and which content rule judges it. Geometry is in metres, y up, 20 fps, in the frame
of the recovered input motion (its root starts at x = z = 0 facing +Z).

Columns (``SCHEMA``; list columns hold one entry per source / target / obstacle):

=====================  ==========  =========================================================================
column                 type        meaning
=====================  ==========  =========================================================================
task_id                str         unique name
family                 str         stage family that runs it: edit | control | refine | ablate
setting                str         table row group: the action (edit), the joint set (refine), the kind ...
kind                   str         one of ``KINDS`` (descriptive; the fields below define the task)
init                   str         ``invert`` (DDIM inversion of the input, editing) | ``noise`` (N(0, I))
init_seed              int         seed of the N(0, I) start (``noise``) and of the guided baseline's x_T
source_kind            list[str]   per source: ``prior`` (generated from a caption) | ``clip`` (corpus clip)
source_ref             list[str]   the caption (prior) or the clip_id (clip)
source_seed            list[int]   the prior's x_T seed (ignored for clips)
source_start           list[int]   first frame used of a clip (0 for prior sources)
source_length          list[int]   frames taken from each source; the motion is their concatenation
transition             int         frames left unobserved around each join of two sources (blending)
observed_joints        list[int]   joints of the (noisy) input observed as targets; empty: none
observed_frames        list[int]   frames at which they are observed; empty: every frame
noise_std              float       Gaussian noise (m, per axis) added to the input joints before observing
noise_seed             int         seed of that noise
target_joints          list[int]   explicit targets: joint index per target
target_frames          list[int]   keyframe per target
target_xyz             list[float] 3 numbers per target: a point or an offset (see target_anchor)
target_axes            str         ``xz`` (ground plane; objective error in 2-D) | ``xyz``
target_anchor          str         ``world`` (absolute) | ``same_joint`` (offset from the input's joint at
                                   that frame) | ``pelvis`` (offset from the input's pelvis at that frame)
obstacle_xz            list[float] 2 numbers per obstacle: centre, or offset from the anchor
obstacle_velocity      list[float] 2 numbers per obstacle: m/s on the ground plane (0, 0 = static)
obstacle_radius        list[float] radius (m) per obstacle (vertical cylinders)
obstacle_anchor_frame  int         -1: world centres; k >= 0: relative to the input's pelvis at frame k,
                                   and a moving obstacle passes that point at frame k
safe_distance          float       tau of Eq. 4 (m)
lambda_obstacle        float       weight of the obstacle term
content_weight         float       factor on DNO's content term (lambda_cont, Eq. 5) for this task: 1 keeps
                                   the options' weight; 0 lets explicit targets move the motion freely
content_rule           str         '' | jump | raised_hands | crawl (content preservation, editing)
content_threshold      float       the rule's height (m); NaN: the rule's default
=====================  ==========  =========================================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from humandiff.io.artifacts import ArtifactError, atomic_path
from humandiff.dno.criteria import JointLoss, MotionCriterion, motion_criterion, obstacle_loss, pose_loss
from humandiff.motion.hml3d import FPS, NUM_JOINTS, facing_yaw

FAMILIES = ("edit", "control", "refine", "ablate")
KINDS = ("pelvis_keyframe", "trajectory", "hand_target", "pose_keyframe", "obstacle_static", "obstacle_moving",
         "inbetween", "blend", "refine", "complete")
INITS = ("invert", "noise")
SOURCE_KINDS = ("prior", "clip")
AXES = ("xz", "xyz")
ANCHORS = ("world", "same_joint", "pelvis")
CONTENT_RULES = ("", "jump", "raised_hands", "crawl")

PELVIS, HEAD, L_WRIST, R_WRIST = 0, 15, 20, 21
#: The paper's observation sets (Sec. 6.2): six = head, two hands, two legs (ankles), pelvis; eight =
#: six + two shoulders; ten = eight + two knees.
JOINT_SETS: Mapping[str, tuple[int, ...]] = {
    "all_joints": tuple(range(NUM_JOINTS)),
    "six_joints": (0, 15, 20, 21, 7, 8),
    "eight_joints": (0, 15, 20, 21, 7, 8, 16, 17),
    "ten_joints": (0, 15, 20, 21, 7, 8, 16, 17, 4, 5),
}

@dataclass(frozen=True)
class Task:
    """One validated row of a task table (see the module doc for the fields)."""

    task_id: str
    family: str
    setting: str
    kind: str
    init: str
    init_seed: int
    source_kind: tuple[str, ...]
    source_ref: tuple[str, ...]
    source_seed: tuple[int, ...]
    source_start: tuple[int, ...]
    source_length: tuple[int, ...]
    transition: int
    observed_joints: tuple[int, ...]
    observed_frames: tuple[int, ...]
    noise_std: float
    noise_seed: int
    target_joints: tuple[int, ...]
    target_frames: tuple[int, ...]
    target_xyz: tuple[float, ...]
    target_axes: str
    target_anchor: str
    obstacle_xz: tuple[float, ...]
    obstacle_velocity: tuple[float, ...]
    obstacle_radius: tuple[float, ...]
    obstacle_anchor_frame: int
    safe_distance: float
    lambda_obstacle: float
    content_weight: float
    content_rule: str
    content_threshold: float

    @property
    def length(self) -> int:
        """Frames of the (concatenated) input motion and of the output."""
        return int(sum(self.source_length))

    @property
    def caption(self) -> str:
        """The first prior source's caption ('' when the input comes from clips)."""
        for kind, ref in zip(self.source_kind, self.source_ref):
            if kind == "prior":
                return ref
        return ""

    def to_row(self) -> dict[str, Any]:
        return {name: list(value) if isinstance(value, tuple) else value for name, value in self.__dict__.items()}


#: Parquet type of each :class:`Task` field's annotation.
_ARROW_TYPES = {
    "str": pa.string(), "int": pa.int64(), "float": pa.float64(),
    "tuple[str, ...]": pa.list_(pa.string()), "tuple[int, ...]": pa.list_(pa.int64()),
    "tuple[float, ...]": pa.list_(pa.float64()),
}
#: The task table's columns: the :class:`Task` fields, in their order, with their Parquet types.
SCHEMA = pa.schema([(f.name, _ARROW_TYPES[f.type]) for f in fields(Task)])
COLUMNS = tuple(SCHEMA.names)
_LIST_COLUMNS = {f.name for f in SCHEMA if pa.types.is_list(f.type)}
_INT_COLUMNS = {f.name for f in SCHEMA if f.type == pa.int64()}
_FLOAT_COLUMNS = {f.name for f in SCHEMA if f.type == pa.float64()}


def default_row(**values: Any) -> dict[str, Any]:
    """A task row with neutral defaults for every column not given (no targets, observations or obstacles)."""
    row: dict[str, Any] = {
        "task_id": "", "family": "edit", "setting": "", "kind": "pelvis_keyframe", "init": "invert", "init_seed": 0,
        "source_kind": [], "source_ref": [], "source_seed": [], "source_start": [], "source_length": [],
        "transition": 0, "observed_joints": [], "observed_frames": [], "noise_std": 0.0, "noise_seed": 0,
        "target_joints": [], "target_frames": [], "target_xyz": [], "target_axes": "xyz", "target_anchor": "world",
        "obstacle_xz": [], "obstacle_velocity": [], "obstacle_radius": [], "obstacle_anchor_frame": -1,
        "safe_distance": 0.0, "lambda_obstacle": 1.0, "content_weight": 1.0, "content_rule": "", "content_threshold": math.nan,
    }
    unknown = sorted(set(values) - set(row))
    if unknown:
        raise ArtifactError(f"task row: unknown field(s) {', '.join(unknown)}")
    row.update(values)
    return row


# ------------------------------------------------------------------------------------------- validation


def _as_list(value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _parse_row(row: Mapping[str, Any], where: str) -> Task:
    task_id = row.get("task_id")
    who = f"{where}: task {task_id!r}"

    def fail(field: str, message: str) -> ArtifactError:
        return ArtifactError(f"{who}: field '{field}' {message}")

    values: dict[str, Any] = {}
    for name in COLUMNS:
        value = row[name]
        if name in _LIST_COLUMNS:
            try:
                items = _as_list(value)
            except TypeError:
                raise fail(name, f"must be a list, got {type(value).__name__}") from None
            kind = SCHEMA.field(name).type.value_type
            if kind == pa.string() and not all(isinstance(v, str) for v in items):
                raise fail(name, "must hold strings")
            if kind == pa.int64() and not all(_is_int(v) for v in items):
                raise fail(name, "must hold integers")
            if kind == pa.float64():
                if not all(_is_number(v) for v in items) or not all(math.isfinite(float(v)) for v in items):
                    raise fail(name, "must hold finite numbers")
                items = [float(v) for v in items]
            else:
                items = [int(v) if kind == pa.int64() else v for v in items]
            values[name] = tuple(items)
        elif name in _INT_COLUMNS:
            if not _is_int(value):
                raise fail(name, f"must be an integer, got {value!r}")
            values[name] = int(value)
        elif name in _FLOAT_COLUMNS:
            if not _is_number(value):
                raise fail(name, f"must be a number, got {value!r}")
            values[name] = float(value)
        else:
            if not isinstance(value, str):
                raise fail(name, f"must be a string, got {value!r}")
            values[name] = value
    if not values["task_id"]:
        raise ArtifactError(f"{where}: field 'task_id' is empty")
    for name, allowed in (("family", FAMILIES), ("kind", KINDS), ("init", INITS), ("target_axes", AXES),
                          ("target_anchor", ANCHORS), ("content_rule", CONTENT_RULES)):
        if values[name] not in allowed:
            raise fail(name, f"must be one of {', '.join(repr(a) for a in allowed)}, got {values[name]!r}")

    sources = len(values["source_kind"])
    if sources < 1:
        raise fail("source_kind", "needs at least one source")
    for name in ("source_ref", "source_seed", "source_start", "source_length"):
        if len(values[name]) != sources:
            raise fail(name, f"has {len(values[name])} entries for {sources} source(s)")
    for kind in values["source_kind"]:
        if kind not in SOURCE_KINDS:
            raise fail("source_kind", f"entries must be 'prior' or 'clip', got {kind!r}")
    if any(not ref for ref in values["source_ref"]):
        raise fail("source_ref", "has an empty caption or clip id")
    if any(n < 2 for n in values["source_length"]):
        raise fail("source_length", "entries must be >= 2 frames")
    if any(s < 0 for s in values["source_start"]):
        raise fail("source_start", "entries must be >= 0")
    length = sum(values["source_length"])
    if values["init"] == "invert" and sources != 1:
        raise fail("init", "'invert' needs exactly one source")
    if values["transition"] < 0:
        raise fail("transition", "must be >= 0")

    for name in ("observed_joints", "target_joints"):
        if any(not 0 <= j < NUM_JOINTS for j in values[name]):
            raise fail(name, f"entries must lie in [0, {NUM_JOINTS})")
    for name in ("observed_frames", "target_frames"):
        if any(not 0 <= f < length for f in values[name]):
            raise fail(name, f"entries must lie in [0, {length}) (the motion's frames)")
    targets = len(values["target_joints"])
    if len(values["target_frames"]) != targets:
        raise fail("target_frames", f"has {len(values['target_frames'])} entries for {targets} target joint(s)")
    if len(values["target_xyz"]) != 3 * targets:
        raise fail("target_xyz", f"has {len(values['target_xyz'])} numbers, expected 3 per target ({3 * targets})")
    obstacles = len(values["obstacle_radius"])
    for name in ("obstacle_xz", "obstacle_velocity"):
        if len(values[name]) != 2 * obstacles:
            raise fail(name, f"has {len(values[name])} numbers, expected 2 per obstacle ({2 * obstacles})")
    if any(r <= 0 for r in values["obstacle_radius"]):
        raise fail("obstacle_radius", "entries must be > 0")
    if not -1 <= values["obstacle_anchor_frame"] < length:
        raise fail("obstacle_anchor_frame", f"must be -1 or a frame in [0, {length})")
    for name in ("noise_std", "safe_distance", "lambda_obstacle", "content_weight"):
        if not math.isfinite(values[name]) or values[name] < 0:
            raise fail(name, f"must be a finite number >= 0, got {values[name]}")
    if not (math.isnan(values["content_threshold"]) or math.isfinite(values["content_threshold"])):
        raise fail("content_threshold", "must be finite or NaN")
    if not values["observed_joints"] and not targets and not obstacles:
        raise fail("target_joints", "the task has no observation, target or obstacle to optimise for")
    return Task(**values)


def parse_tasks(frame: pd.DataFrame, where: str = "tasks") -> list[Task]:
    """Validated :class:`Task` rows of a task table; any problem is a one-line :class:`ArtifactError`."""
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ArtifactError(f"{where}: missing column(s) {', '.join(missing)}")
    tasks = [_parse_row(row, where) for row in frame[list(COLUMNS)].to_dict("records")]
    seen: set[str] = set()
    for task in tasks:
        if task.task_id in seen:
            raise ArtifactError(f"{where}: field 'task_id' has the duplicate {task.task_id!r}")
        seen.add(task.task_id)
    return tasks


def tasks_frame(rows: Sequence[Mapping[str, Any]] | Sequence[Task], where: str = "tasks") -> pd.DataFrame:
    """A validated task table from rows (dicts, e.g. from :func:`default_row`, or :class:`Task`)."""
    dicts = [r.to_row() if isinstance(r, Task) else dict(r) for r in rows]
    for index, row in enumerate(dicts):
        missing = [c for c in COLUMNS if c not in row]
        if missing:
            raise ArtifactError(f"{where}: row {index}: missing field(s) {', '.join(missing)}")
    frame = pd.DataFrame(dicts, columns=list(COLUMNS))
    parse_tasks(frame, where)
    return frame


def save_tasks(path: str | Path, frame: pd.DataFrame) -> None:
    """Validate and write a task table to Parquet (fixed schema, so empty list columns keep their type)."""
    tasks = parse_tasks(frame, str(path))
    rows = [t.to_row() for t in tasks]
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    with atomic_path(path, suffix=".parquet") as tmp:
        pq.write_table(table, tmp)


def load_tasks(path: str | Path, family: str | None = None) -> list[Task]:
    """The validated tasks of a Parquet task table, optionally only one ``family``."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: file not found")
    try:
        frame = pq.read_table(path).to_pandas()
    except Exception as exc:
        raise ArtifactError(f"{path}: cannot read as Parquet ({type(exc).__name__}: {exc})") from None
    tasks = parse_tasks(frame, str(path))
    if family is not None:
        if family not in FAMILIES:
            raise ArtifactError(f"load_tasks: parameter 'family' must be one of {', '.join(FAMILIES)}, got {family!r}")
        tasks = [t for t in tasks if t.family == family]
        if not tasks:
            raise ArtifactError(f"{path}: no task of family {family!r}")
    return tasks


# ------------------------------------------------------------------------------------------- generators


@dataclass(frozen=True)
class EditAction:
    """A Table 1 input motion: the action's name, the caption the prior generates it from, its content rule."""

    name: str
    caption: str
    rule: str = ""
    threshold: float = math.nan


def edit_tasks(
    actions: Sequence[EditAction],
    edits_per_action: int,
    length: int,
    seed: int,
    keyframes: tuple[int, int] = (60, 90),
    target_range: float = 2.0,
) -> list[dict[str, Any]]:
    """Table 1: per action one prior-generated input and ``edits_per_action`` pelvis edits.

    Each edit moves the pelvis at a random keyframe in ``keyframes`` (inclusive) to a random
    ground-plane target within ``+-target_range`` m (x and z) of the input's pelvis at that frame.
    """
    if edits_per_action < 1 or length <= keyframes[1] or keyframes[0] < 0 or keyframes[0] > keyframes[1]:
        raise ArtifactError(
            f"edit_tasks: needs edits_per_action >= 1 and 0 <= keyframes {keyframes} < length {length}"
        )
    rng = np.random.default_rng(seed)
    rows = []
    for a, action in enumerate(actions):
        for e in range(edits_per_action):
            frame = int(rng.integers(keyframes[0], keyframes[1] + 1))
            dx, dz = rng.uniform(-target_range, target_range, size=2)
            rows.append(default_row(
                task_id=f"edit/{action.name}/{e:02d}", family="edit", setting=action.name, kind="pelvis_keyframe",
                init="invert", init_seed=seed * 1000 + a * 100 + e,
                source_kind=["prior"], source_ref=[action.caption], source_seed=[seed * 1000 + a], source_start=[0],
                source_length=[length], target_joints=[PELVIS], target_frames=[frame],
                target_xyz=[float(dx), 0.0, float(dz)], target_axes="xz", target_anchor="same_joint",
                content_rule=action.rule, content_threshold=float(action.threshold),
            ))
    return rows


def control_tasks(
    walk_caption: str,
    length: int,
    seed: int,
    clips: Sequence[tuple[str, int]],
    pose_offsets: np.ndarray,
    blend_transition: int = 10,
) -> list[dict[str, Any]]:
    """The qualitative tasks of Sec. 6.1 and App. B, one each, on a prior-generated walk or corpus clips.

    Trajectory (pelvis targets every 10 frames, bent sideways by up to 1 m), hand target (right
    wrist 0.4 m higher and 0.3 m further at mid-clip), full pose at a keyframe (``pose_offsets``
    (22, 3) joint offsets from the pelvis, e.g. a corpus pose), a static obstacle on the walking path
    and one crossing it at 0.8 m/s, in-betweening (all joints at the first and last frame of
    ``clips[0]``) and blending (``clips[1]`` then ``clips[2]``, ``blend_transition`` frames free).
    ``clips`` are (clip_id, frames) with at least 3 entries.
    """
    if len(clips) < 3:
        raise ArtifactError("control_tasks: parameter 'clips' needs 3 corpus clips (in-betweening, blending)")
    pose_offsets = np.asarray(pose_offsets, dtype=np.float64)
    if pose_offsets.shape != (NUM_JOINTS, 3):
        raise ArtifactError(f"control_tasks: parameter 'pose_offsets' has shape {pose_offsets.shape}, expected (22, 3)")
    mid = length // 2
    walk = dict(init="invert", source_kind=["prior"], source_ref=[walk_caption], source_seed=[seed * 1000 + 900],
                source_start=[0], source_length=[length])
    # The content term's gradient has the constant norm lambda_cont while the pose term averages
    # over its targets, so with a dozen targets (or arm joints, which move the loss little) the
    # anchor stops the optimisation short of them (docs/dno.md): the target tasks run without it.
    # The obstacle tasks keep it, since there it is what holds the walk on its path.
    free = dict(content_weight=0.0)
    rows = []
    frames = list(range(0, length, 10))
    bend = [float(np.sin(np.pi * f / (length - 1))) for f in frames]
    rows.append(default_row(task_id="control/trajectory", family="control", setting="trajectory", kind="trajectory",
                            init_seed=seed + 1, target_joints=[PELVIS] * len(frames), target_frames=frames,
                            target_xyz=[v for b in bend for v in (b, 0.0, 0.0)], target_axes="xz",
                            target_anchor="same_joint", **free, **walk))
    rows.append(default_row(task_id="control/hand", family="control", setting="hand_target", kind="hand_target",
                            init_seed=seed + 2, target_joints=[R_WRIST], target_frames=[mid],
                            target_xyz=[0.0, 0.4, 0.3], target_axes="xyz", target_anchor="same_joint", **free, **walk))
    rows.append(default_row(task_id="control/pose", family="control", setting="pose_keyframe", kind="pose_keyframe",
                            init_seed=seed + 3, target_joints=list(range(NUM_JOINTS)), target_frames=[mid] * NUM_JOINTS,
                            target_xyz=pose_offsets.reshape(-1).tolist(), target_axes="xyz", target_anchor="pelvis",
                            **free, **walk))
    rows.append(default_row(task_id="control/obstacle_static", family="control", setting="obstacle_static",
                            kind="obstacle_static", init_seed=seed + 4, obstacle_xz=[0.0, 0.0], obstacle_velocity=[0.0, 0.0],
                            obstacle_radius=[0.3], obstacle_anchor_frame=mid, safe_distance=0.2, **walk))
    rows.append(default_row(task_id="control/obstacle_moving", family="control", setting="obstacle_moving",
                            kind="obstacle_moving", init_seed=seed + 5, obstacle_xz=[0.0, 0.0],
                            obstacle_velocity=[0.8, 0.0], obstacle_radius=[0.3], obstacle_anchor_frame=mid,
                            safe_distance=0.2, **walk))
    clip_id, frames_a = clips[0]
    rows.append(default_row(task_id="control/inbetween", family="control", setting="inbetween", kind="inbetween",
                            init="noise", init_seed=seed + 6, source_kind=["clip"], source_ref=[clip_id],
                            source_seed=[0], source_start=[0], source_length=[frames_a],
                            observed_joints=list(range(NUM_JOINTS)), observed_frames=[0, frames_a - 1]))
    (clip_b, frames_b), (clip_c, frames_c) = clips[1], clips[2]
    rows.append(default_row(task_id="control/blend", family="control", setting="blend", kind="blend", init="noise",
                            init_seed=seed + 7, source_kind=["clip", "clip"], source_ref=[clip_b, clip_c],
                            source_seed=[0, 0], source_start=[0, 0], source_length=[frames_b, frames_c],
                            transition=blend_transition, observed_joints=list(range(NUM_JOINTS))))
    return rows


def refine_tasks(
    clips: Sequence[tuple[str, int]],
    settings: Sequence[str],
    noise_std: float,
    seed: int,
    family: str = "refine",
) -> list[dict[str, Any]]:
    """Table 2 (``family="refine"``, 5 cm) / Table 3 (``"ablate"``, 1 cm): per clip and setting a task
    observing the noisy ``JOINT_SETS[setting]`` at every frame, started from N(0, I).

    The noise of a clip is the same in every setting (one seed per clip). ``clips`` are (clip_id, frames).
    """
    unknown = [s for s in settings if s not in JOINT_SETS]
    if unknown:
        raise ArtifactError(f"refine_tasks: unknown joint set(s) {', '.join(unknown)}; known: {', '.join(JOINT_SETS)}")
    rows = []
    for c, (clip_id, frames) in enumerate(clips):
        for setting in settings:
            rows.append(default_row(
                task_id=f"{family}/{setting}/{clip_id}", family=family, setting=setting,
                kind="refine" if setting == "all_joints" else "complete", init="noise", init_seed=seed * 100000 + c,
                source_kind=["clip"], source_ref=[clip_id], source_seed=[0], source_start=[0], source_length=[int(frames)],
                observed_joints=list(JOINT_SETS[setting]), noise_std=float(noise_std), noise_seed=seed * 100000 + c,
            ))
    return rows


# ------------------------------------------------------------------------------------------- resolution


def align_after(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """``second`` (T2, J, 3) turned about y and moved on the ground so that it starts where and facing
    how ``first`` (T1, J, 3) ends (blending two canonical clips)."""
    turn = float(facing_yaw(first[-1:])[0] - facing_yaw(second[:1])[0])
    c, s = math.cos(turn), math.sin(turn)
    # rotation by `turn` about +y maps the facing (sin a, 0, cos a) to (sin(a + turn), 0, cos(a + turn))
    rotation = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    pivot = second[0, 0] * np.array([1.0, 0.0, 1.0])
    turned = (second - pivot) @ rotation.T
    shift = first[-1, 0] * np.array([1.0, 0.0, 1.0])
    return turned + shift


def concatenate_sources(task: Task, sources: Sequence[np.ndarray]) -> np.ndarray:
    """The task's input joints (T, 22, 3): its sources (each (source_length_i, 22, 3)) placed one after another."""
    if len(sources) != len(task.source_kind):
        raise ArtifactError(f"task {task.task_id!r}: got {len(sources)} source motion(s), expected {len(task.source_kind)}")
    parts = []
    for index, (joints, frames) in enumerate(zip(sources, task.source_length)):
        joints = np.asarray(joints, dtype=np.float64)
        if joints.shape != (frames, NUM_JOINTS, 3):
            raise ArtifactError(
                f"task {task.task_id!r}: source {index} has shape {joints.shape}, expected ({frames}, {NUM_JOINTS}, 3)"
            )
        parts.append(joints if not parts else align_after(parts[-1], joints))
    return np.concatenate(parts, 0)


@dataclass(frozen=True)
class ResolvedTask:
    """A task made concrete on its input motion (all float64 numpy, T frames).

    ``clean`` (T, 22, 3) the input joints (the ground truth of refinement); ``noisy`` (T, 22, 3) the
    input after the task's noise; ``targets`` (T, 22, 3) and ``observed`` (T, 22, 3) bool: the
    observed set of Eq. 3 (observations of ``noisy`` plus the explicit targets, per coordinate);
    ``target_points`` (N, 3), ``target_joints`` (N,), ``target_frames`` (N,) the explicit targets
    in world coordinates (objective error); ``obstacle_centres`` (K, T, 2) and ``obstacle_radii`` (K,).
    """

    task: Task
    clean: np.ndarray
    noisy: np.ndarray
    targets: np.ndarray
    observed: np.ndarray
    target_points: np.ndarray
    target_joints: np.ndarray
    target_frames: np.ndarray
    obstacle_centres: np.ndarray
    obstacle_radii: np.ndarray

    @property
    def axes_mask(self) -> np.ndarray:
        """(3,) bool: which coordinates the explicit targets constrain."""
        return np.array([True, self.task.target_axes == "xyz", True])

    @property
    def observed_pairs(self) -> np.ndarray:
        """(T, 22) bool: the (frame, joint) pairs of the observed set."""
        return self.observed.any(-1)


def resolve_task(task: Task, sources: Sequence[np.ndarray]) -> ResolvedTask:
    """Targets, observations and obstacles of ``task`` on its source motions (each (frames_i, 22, 3))."""
    return resolve_joined(task, concatenate_sources(task, sources))


def resolve_joined(task: Task, clean: np.ndarray) -> ResolvedTask:
    """:func:`resolve_task` on the already concatenated input joints ``clean`` (T, 22, 3)."""
    clean = np.asarray(clean, dtype=np.float64)
    if clean.shape != (task.length, NUM_JOINTS, 3):
        raise ArtifactError(f"task {task.task_id!r}: input joints {clean.shape}, expected ({task.length}, {NUM_JOINTS}, 3)")
    T = clean.shape[0]
    rng = np.random.default_rng(task.noise_seed)
    noise = rng.normal(0.0, task.noise_std, size=clean.shape) if task.noise_std > 0 else np.zeros_like(clean)
    noisy = clean + noise

    targets = np.full(clean.shape, np.nan)
    observed = np.zeros(clean.shape, dtype=bool)
    if task.observed_joints:
        frames = np.asarray(task.observed_frames, dtype=np.int64) if task.observed_frames else np.arange(T)
        keep = np.ones(T, dtype=bool)
        joins = np.cumsum(task.source_length)[:-1]
        for join in joins:  # frames around each join stay free (blending)
            keep[max(0, join - task.transition // 2): min(T, join + (task.transition + 1) // 2)] = False
        frames = frames[keep[frames]]
        joints = np.asarray(task.observed_joints, dtype=np.int64)
        fi, ji = np.meshgrid(frames, joints, indexing="ij")
        observed[fi, ji] = True
        targets[fi, ji] = noisy[fi, ji]

    count = len(task.target_joints)
    joint_idx = np.asarray(task.target_joints, dtype=np.int64)
    frame_idx = np.asarray(task.target_frames, dtype=np.int64)
    values = np.asarray(task.target_xyz, dtype=np.float64).reshape(count, 3)
    if task.target_anchor == "same_joint":
        points = clean[frame_idx, joint_idx] + values
    elif task.target_anchor == "pelvis":
        points = clean[frame_idx, PELVIS] + values
    else:
        points = values.copy()
    axes = np.array([True, task.target_axes == "xyz", True])
    for j, f, p in zip(joint_idx, frame_idx, points):
        targets[f, j, axes] = p[axes]
        observed[f, j] = observed[f, j] | axes

    K = len(task.obstacle_radius)
    centres = np.zeros((K, T, 2))
    if K:
        base = np.asarray(task.obstacle_xz, dtype=np.float64).reshape(K, 2)
        velocity = np.asarray(task.obstacle_velocity, dtype=np.float64).reshape(K, 2)
        anchor = task.obstacle_anchor_frame
        origin = clean[anchor, PELVIS, [0, 2]] if anchor >= 0 else np.zeros(2)
        seconds = (np.arange(T) - max(anchor, 0)) / FPS
        centres = origin + base[:, None, :] + velocity[:, None, :] * seconds[None, :, None]
    return ResolvedTask(task, clean, noisy, targets, observed, points, joint_idx, frame_idx, centres,
                        np.asarray(task.obstacle_radius, dtype=np.float64))


# ------------------------------------------------------------------------------------------- batches


@dataclass(frozen=True)
class TaskBatch:
    """Resolved tasks padded to one length T (float32 tensors, B tasks).

    ``mask`` (B, T) True on real frames, ``lengths`` (B,); ``targets``/``observed`` (B, T, 22, 3)
    (targets 0 where unobserved); ``centres`` (B, K, T, 2) and ``radii`` (B, K) (radius 0 = no
    obstacle in that slot); ``safe_distance`` and ``lambda_obstacle`` (B,).
    """

    tasks: tuple[ResolvedTask, ...]
    lengths: torch.Tensor
    mask: torch.Tensor
    targets: torch.Tensor
    observed: torch.Tensor
    centres: torch.Tensor
    radii: torch.Tensor
    safe_distance: torch.Tensor
    lambda_obstacle: torch.Tensor

    def to(self, device: torch.device | str) -> "TaskBatch":
        """The same batch with every tensor on ``device`` (itself when they are there already)."""
        moved = {f.name: getattr(self, f.name).to(device) for f in fields(self) if isinstance(getattr(self, f.name), torch.Tensor)}
        return replace(self, **moved)

    @property
    def has_pose_terms(self) -> bool:
        return bool(self.observed.any())

    @property
    def has_obstacles(self) -> bool:
        return bool((self.radii > 0).any())


def collate_tasks(resolved: Sequence[ResolvedTask]) -> TaskBatch:
    """Pad resolved tasks of any lengths into one :class:`TaskBatch`."""
    if not resolved:
        raise ArtifactError("collate_tasks: no tasks")
    B = len(resolved)
    T = max(r.clean.shape[0] for r in resolved)
    K = max(1, max(len(r.obstacle_radii) for r in resolved))
    targets = np.zeros((B, T, NUM_JOINTS, 3), np.float32)
    observed = np.zeros((B, T, NUM_JOINTS, 3), np.float32)
    centres = np.zeros((B, K, T, 2), np.float32)
    radii = np.zeros((B, K), np.float32)
    lengths = np.array([r.clean.shape[0] for r in resolved], np.int64)
    for b, r in enumerate(resolved):
        n = lengths[b]
        targets[b, :n] = np.nan_to_num(r.targets)
        observed[b, :n] = r.observed
        k = len(r.obstacle_radii)
        if k:
            centres[b, :k, :n] = r.obstacle_centres
            centres[b, :k, n:] = r.obstacle_centres[:, -1:]  # padded frames: obstacle stays put (masked anyway)
            radii[b, :k] = r.obstacle_radii
    return TaskBatch(
        tasks=tuple(resolved),
        lengths=torch.from_numpy(lengths),
        mask=torch.arange(T)[None, :] < torch.from_numpy(lengths)[:, None],
        targets=torch.from_numpy(targets),
        observed=torch.from_numpy(observed),
        centres=torch.from_numpy(centres),
        radii=torch.from_numpy(radii),
        safe_distance=torch.tensor([r.task.safe_distance for r in resolved], dtype=torch.float32),
        lambda_obstacle=torch.tensor([r.task.lambda_obstacle for r in resolved], dtype=torch.float32),
    )


def task_criterion(batch: TaskBatch, mean: np.ndarray, std: np.ndarray) -> MotionCriterion:
    """The criterion of a batch over normalised features ``x0 (B, T, 263) -> {"pose", "obstacle"}``.

    ``pose``: Eq. 3 over each task's observed set; ``obstacle``: ``lambda_obstacle`` times Eq. 4 (real
    frames only). A term is present when any task of the batch uses it.
    """
    terms: dict[str, tuple[float, JointLoss]] = {}
    if batch.has_pose_terms:
        terms["pose"] = (1.0, lambda joints: pose_loss(joints, batch.targets, batch.observed))
    if batch.has_obstacles:
        terms["obstacle"] = (1.0, lambda joints: batch.lambda_obstacle * obstacle_loss(
            joints, batch.centres, batch.radii, batch.safe_distance, batch.mask))
    if not terms:
        raise ArtifactError("task_criterion: the batch has neither observations, targets nor obstacles")
    return motion_criterion(mean, std, terms)
