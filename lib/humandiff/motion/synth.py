"""Procedural human motion in the scale and form of HumanML3D (the embedded default dataset).

A clip is 1-3 actions from :mod:`actions` joined by smooth transitions. Their anatomical angles
become SMPL joint rotations (:mod:`poses`), the body model poses them with the clip's body shape,
and the root translation is derived from whatever touches the floor (feet, knees, hands): a
planted contact point does not move, so the body walks, turns and crawls by pushing against the
floor, and feet do not skate. Airborne frames follow a ballistic arc.
"""

from __future__ import annotations

import multiprocessing
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch

from .actions import FAMILIES, ActionTrack, sample_action
from .captions import make_captions
from humandiff.geometry.rotations import matrix_to_axis_angle_np
from humandiff.io import ArtifactError, concat_ragged

from .metrics import foot_skating_ratio, jitter
from .poses import DOF_INDEX, dofs_to_smpl_rotations

GRAVITY = 9.81
#: SMPL joints that can carry the body: ankles, feet (balls), knees, wrists, hands.
CONTACT_JOINTS = (7, 8, 10, 11, 4, 5, 20, 21, 22, 23)
#: Distance from those joints to the skin that touches the floor, for joints without a sole (m).
_KNEE_PAD, _WRIST_PAD, _HAND_PAD = 0.055, 0.035, 0.02
#: Contact detection: points within this height of the lowest one bear weight (m).
_CONTACT_BAND, _CONTACT_SOFTNESS = 0.02, 0.005


@dataclass(frozen=True)
class SynthOptions:
    """Sizes and variation of the generated set (``params.yaml: synth_motion``)."""

    fps: float = 20.0
    min_frames: int = 40
    max_frames: int = 196
    transition_seconds: float = 0.4
    composition_weights: tuple[float, float, float] = (0.55, 0.3, 0.15)
    shape_std: float = 1.0
    captions_per_clip: int = 3

    def __post_init__(self) -> None:
        for name in ("fps", "min_frames", "captions_per_clip"):
            if not getattr(self, name) > 0:
                raise ArtifactError(f"synth options: '{name}' must be > 0, got {getattr(self, name)!r}")
        if self.max_frames < self.min_frames:
            raise ArtifactError(f"synth options: 'max_frames' must be >= 'min_frames', got {self.max_frames!r}")


@dataclass
class SynthClip:
    """One generated clip. Shapes: joints (T, 24, 3) world metres, y up; global_orient (T, 3),
    body_pose (T, 69) axis-angle; transl (T, 3) the SMPL translation; betas (10,)."""

    joints: np.ndarray
    global_orient: np.ndarray
    body_pose: np.ndarray
    transl: np.ndarray
    betas: np.ndarray
    actions: list[str]
    captions: list[str]

    @property
    def length(self) -> int:
        return self.joints.shape[0]


def _blend(a: np.ndarray, b: np.ndarray, frames: int) -> np.ndarray:
    """Eased interpolation from pose a to pose b (both (D,)), ``frames`` frames strictly between."""
    u = (np.arange(1, frames + 1) / (frames + 1))[:, None]
    ease = 0.5 - 0.5 * np.cos(np.pi * u)
    return a + ease * (b - a)


def plan_actions(rng: np.random.Generator, options: SynthOptions) -> list[ActionTrack]:
    """Sample 1-3 actions whose joined length (with transitions) fits [min_frames, max_frames]."""
    fps = options.fps
    gap = int(round(options.transition_seconds * fps))
    names = list(FAMILIES)
    for _ in range(100):
        count = int(rng.choice([1, 2, 3], p=np.asarray(options.composition_weights) / sum(options.composition_weights)))
        picks: list[str] = []
        while len(picks) < count:
            name = names[int(rng.integers(len(names)))]
            if not picks or picks[-1] != name:
                picks.append(name)
        budget = options.max_frames / fps - gap / fps * (count - 1)
        tracks = []
        for name in picks:
            locomotion = FAMILIES[name][1]
            seconds = rng.uniform(2.0, max(2.2, min(6.0, budget / count + 1.0))) if locomotion else None
            tracks.append(sample_action(name, rng, fps, seconds))
        total = sum(t.length for t in tracks) + gap * (count - 1)
        if options.min_frames <= total <= options.max_frames:
            return tracks
        if total < options.min_frames and count == 1 and FAMILIES[picks[0]][1]:
            continue
    raise RuntimeError("could not fit actions into the clip length bounds; widen min_frames/max_frames")


def _transition_stance(before: ActionTrack, after: ActionTrack) -> int | None:
    """Which foot (0 left, 1 right) stays planted while the body moves from one action to the next."""
    for row in (before.stance[-1], after.stance[0]):
        if np.isfinite(row).all() and row.any():
            if row.all():  # double support: keep the foot the next action also stands on
                nxt = after.stance[0]
                return int(np.argmax(nxt)) if np.isfinite(nxt).all() and nxt.sum() == 1 else 0
            return int(np.argmax(row))
    return None


def join_actions(tracks: list[ActionTrack], transition_frames: int) -> dict[str, np.ndarray]:
    """Concatenate action tracks with eased transitions: dofs (T, D), yaw_rate (T,), flight (T,),
    flight_velocity (T, 2), stance (T, 2).

    Where a gait meets another action, the transition is a step: one foot stays planted and the
    other lifts (knee, hip and ankle bump) while the pose changes, instead of sliding across.
    """
    parts: dict[str, list[np.ndarray]] = {"dofs": [], "yaw_rate": [], "flight": [], "flight_velocity": [], "stance": []}
    for k, track in enumerate(tracks):
        if k > 0:
            blend = _blend(tracks[k - 1].dofs[-1], track.dofs[0], transition_frames)
            stance = np.full((transition_frames, 2), np.nan)
            planted = _transition_stance(tracks[k - 1], track)
            if planted is not None:
                free = "r" if planted == 0 else "l"
                lift = np.sin(np.pi * (np.arange(1, transition_frames + 1) / (transition_frames + 1)))
                for name, amount in (("knee", 40.0), ("hip_flex", 20.0), ("ankle", 30.0)):
                    blend[:, DOF_INDEX[f"{name}_{free}"]] += np.deg2rad(amount) * lift
                stance[:] = np.eye(2)[planted]
            parts["dofs"].append(blend)
            parts["yaw_rate"].append(np.zeros(transition_frames))
            parts["flight"].append(np.zeros(transition_frames, dtype=bool))
            parts["flight_velocity"].append(np.full((transition_frames, 2), np.nan))
            parts["stance"].append(stance)
        parts["dofs"].append(track.dofs)
        parts["yaw_rate"].append(track.yaw_rate)
        parts["flight"].append(track.flight)
        parts["flight_velocity"].append(track.flight_velocity)
        parts["stance"].append(track.stance)
    return {key: np.concatenate(value, axis=0) for key, value in parts.items()}


def contact_pads(rest_joints: np.ndarray, rest_vertices: np.ndarray) -> np.ndarray:
    """Height of each contact joint above the skin that meets the floor (C,), from a T-pose body.

    Ankles and feet: their height above the sole in the rest pose; knees, wrists and hands get
    fixed pads (the rest pose does not show their contact surfaces).
    """
    sole = rest_vertices[:, 1].min()
    pads = []
    for joint in CONTACT_JOINTS:
        if joint in (7, 8, 10, 11):
            pads.append(rest_joints[joint, 1] - sole)
        elif joint in (4, 5):
            pads.append(_KNEE_PAD)
        elif joint in (20, 21):
            pads.append(_WRIST_PAD)
        else:
            pads.append(_HAND_PAD)
    return np.asarray(pads)


def plant_root(local_joints: np.ndarray, pads: np.ndarray, heading: np.ndarray, flight: np.ndarray,
               flight_velocity: np.ndarray, fps: float, stance: np.ndarray | None = None) -> np.ndarray:
    """Root translation (T, 3) that keeps bearing contact points still and the body on the floor.

    Args:
        local_joints: (T, 24, 3) joints posed with translation zero (orientation included).
        pads: (C,) contact pad heights for CONTACT_JOINTS.
        heading: (T,) body yaw, to turn body-frame flight velocities into the world.
        flight: (T,) True on airborne frames.
        flight_velocity: (T, 2) body-frame (forward, left) velocity in m/s on airborne frames,
            NaN to keep the velocity the body had when it left the floor.
        stance: (T, 2) weight borne by the (left, right) foot where a gait knows it, NaN elsewhere
            (there the lowest contact points bear the weight).
    """
    T = local_joints.shape[0]
    points = local_joints[:, CONTACT_JOINTS]  # (T, C, 3)
    height = points[..., 1] - pads  # (T, C) skin height when the root is at y = 0
    lowest = height.min(axis=1)
    above = height - lowest[:, None]
    weight = np.exp(-above / _CONTACT_SOFTNESS) * (above < _CONTACT_BAND)
    if stance is not None:
        known = np.isfinite(stance).all(axis=1)
        scheduled = np.zeros_like(weight)
        for side, joints in enumerate(((7, 10), (8, 11))):
            cols = [CONTACT_JOINTS.index(j) for j in joints]
            # Within a foot, whichever of heel (ankle) and ball is lower carries the weight.
            rel = height[:, cols] - height[:, cols].min(axis=1, keepdims=True)
            share = np.exp(-rel / _CONTACT_SOFTNESS)
            scheduled[:, cols] = np.nan_to_num(stance[:, side : side + 1]) * share / share.sum(axis=1, keepdims=True)
        weight = np.where(known[:, None], scheduled, weight)
    pair = np.minimum(weight[1:], weight[:-1])
    airborne = flight[1:] | flight[:-1]
    pair[airborne] = 0.0
    shift = points[1:, :, [0, 2]] - points[:-1, :, [0, 2]]
    total = pair.sum(axis=1)
    step = -(pair[..., None] * shift).sum(axis=1) / np.maximum(total, 1e-12)[:, None]
    forward = np.stack([np.sin(heading), np.cos(heading)], -1)
    left = np.stack([np.cos(heading), -np.sin(heading)], -1)
    for t in range(T - 1):
        if total[t] > 1e-9:
            continue
        velocity = flight_velocity[t + 1]
        if np.isfinite(velocity).all():
            step[t] = (velocity[0] * forward[t + 1] + velocity[1] * left[t + 1]) / fps
        else:
            step[t] = step[t - 1] if t > 0 else 0.0
    root_xz = np.concatenate([np.zeros((1, 2)), np.cumsum(step, axis=0)])

    # On the floor the lowest contact touches y = 0; in the air the root follows a parabola
    # between its take-off and landing heights, never letting a contact dip under the floor.
    ground_y = -lowest
    root_y = ground_y.copy()
    t = 0
    while t < T:
        if not flight[t]:
            t += 1
            continue
        start = t
        while t < T and flight[t]:
            t += 1
        before, after = max(start - 1, 0), min(t, T - 1)
        duration = (after - before) / fps
        s = (np.arange(start, t) - before) / fps
        base = ground_y[before] + (ground_y[after] - ground_y[before]) * s / max(duration, 1e-9)
        root_y[start:t] = np.maximum(base + 0.5 * GRAVITY * s * (duration - s), ground_y[start:t])
    return np.stack([root_xz[:, 0], root_y, root_xz[:, 1]], axis=-1)


class SynthGenerator:
    """Generates clips with a body model (an ``smplx.SMPL``; its 24-joint output is used)."""

    def __init__(self, body_model, options: SynthOptions = SynthOptions()):
        self.body = body_model
        self.options = options

    @torch.no_grad()
    def _pose(self, rotations_aa: np.ndarray, betas: np.ndarray) -> np.ndarray:
        from humandiff.body.model import posed_joints

        T = rotations_aa.shape[0]
        aa = torch.as_tensor(rotations_aa, dtype=torch.float32)
        joints = posed_joints(
            self.body,
            global_orient=aa[:, 0],
            body_pose=aa[:, 1:].reshape(T, 69),
            betas=torch.as_tensor(betas, dtype=torch.float32)[None],
            transl=torch.zeros(T, 3),
        )
        return joints.numpy().astype(np.float64)

    @torch.no_grad()
    def _rest(self, betas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from humandiff.body.model import posed_body

        zeros = torch.zeros(1, 3)
        vertices, joints = posed_body(self.body, global_orient=zeros, body_pose=torch.zeros(1, 69),
                                      betas=torch.as_tensor(betas, dtype=torch.float32)[None], transl=zeros)
        return joints[0].numpy().astype(np.float64), vertices[0].numpy().astype(np.float64)

    def generate(self, rng: np.random.Generator) -> SynthClip:
        """One clip: plan actions, pose the body, plant the root, write captions."""
        o = self.options
        tracks = plan_actions(rng, o)
        joined = join_actions(tracks, int(round(o.transition_seconds * o.fps)))
        heading = rng.uniform(-np.pi, np.pi) + np.concatenate([[0.0], np.cumsum(joined["yaw_rate"][:-1])])
        rotations = dofs_to_smpl_rotations(joined["dofs"], heading)  # (T, 24, 3, 3)
        rotations_aa = matrix_to_axis_angle_np(rotations)  # (T, 24, 3)
        betas = np.clip(rng.normal(0.0, o.shape_std, size=int(self.body.num_betas)), -2.5, 2.5)
        local = self._pose(rotations_aa, betas)
        rest_joints, rest_vertices = self._rest(betas)
        root = plant_root(local, contact_pads(rest_joints, rest_vertices), heading, joined["flight"],
                          joined["flight_velocity"], o.fps, joined["stance"])
        captions = make_captions([t.phrase.simple for t in tracks], [t.phrase.progressive for t in tracks], rng,
                                 o.captions_per_clip)
        return SynthClip(
            joints=(local + root[:, None, :]).astype(np.float32),
            global_orient=rotations_aa[:, 0].astype(np.float32),
            body_pose=rotations_aa[:, 1:].reshape(-1, 69).astype(np.float32),
            # smplx adds transl after posing around the model's own pelvis position.
            transl=root.astype(np.float32),
            betas=betas.astype(np.float32),
            actions=[t.family for t in tracks],
            captions=captions,
        )


_WORKER_GENERATOR: SynthGenerator | None = None


def _init_worker(body_path: str, options: SynthOptions) -> None:
    global _WORKER_GENERATOR  # one generator (and body model) per worker process, built once
    torch.set_num_threads(1)
    from humandiff.body.model import load_body_model

    _WORKER_GENERATOR = SynthGenerator(load_body_model(body_path), options)


def _generate_indexed(task: tuple[int, int]) -> SynthClip:
    seed, index = task
    return _WORKER_GENERATOR.generate(np.random.default_rng([seed, index]))


def generate_clips(body_path: str, options: SynthOptions, seed: int, count: int, workers: int = 1,
                   progress: bool = False) -> list[SynthClip]:
    """``count`` clips; clip i depends only on (seed, i), so the result is the same for any ``workers``."""
    from tqdm import tqdm

    tasks = [(seed, index) for index in range(count)]
    with multiprocessing.get_context("fork").Pool(workers, _init_worker, (body_path, options)) as pool:
        results = pool.imap(_generate_indexed, tasks, chunksize=8)
        return list(tqdm(results, total=count, desc="synth_motion", unit="clip", mininterval=2.0, disable=not progress))


# ---------------------------------------------------------------------------------- the dataset on disk


def clip_index(clips: Sequence[SynthClip], fps: float) -> pd.DataFrame:
    """clips.parquet: one row per clip (clip_id ``000000``..., length, fps, actions, captions)."""
    return pd.DataFrame([{"clip_id": f"{index:06d}", "length": clip.length, "fps": fps, "actions": clip.actions,
                          "captions": clip.captions} for index, clip in enumerate(clips)])


def clip_arrays(clips: Sequence[SynthClip]) -> dict[str, np.ndarray]:
    """motions.npz: the clips' frames concatenated (joints, global_orient, body_pose, transl), their
    ``offsets`` (K+1,) and ``betas`` (K, 10)."""
    arrays = {}
    for name in ("joints", "global_orient", "body_pose", "transl"):
        arrays[name], offsets = concat_ragged([getattr(c, name) for c in clips])
    arrays["offsets"] = offsets
    arrays["betas"] = np.stack([c.betas for c in clips])
    return arrays


def clips_by_family(clips: Sequence[SynthClip]) -> dict[str, list[int]]:
    """Action family -> the numbers of the clips that hold it, families sorted by name."""
    by_family: dict[str, list[int]] = defaultdict(list)
    for i, clip in enumerate(clips):
        for family in set(clip.actions):
            by_family[family].append(i)
    return dict(sorted(by_family.items()))


def family_previews(clips: Sequence[SynthClip], per_family: int) -> Iterator[tuple[str, np.ndarray, SynthClip]]:
    """Per action family: a contact sheet (BGR) of up to ``per_family`` of its clips (those doing
    only that action first), and the first of them, for a video."""
    from .video import contact_sheet_row

    for family, members in clips_by_family(clips).items():
        solo = [i for i in members if clips[i].actions == [family]] or members
        shown = solo[:per_family]
        sheet = np.concatenate([contact_sheet_row(clips[i].joints, f"#{i:06d}: {clips[i].captions[0]}", panel_size=128)
                                for i in shown], 0)
        yield family, sheet, clips[shown[0]]


def synth_metrics(clips: Sequence[SynthClip], fps: float) -> dict:
    """Generation stats: counts per family, lengths, captions, foot skating (on the floor), lowest joint, jitter."""
    by_family = clips_by_family(clips)
    skating = [foot_skating_ratio(c.joints - np.array([0.0, c.joints[..., 1].min(), 0.0], np.float32)) for c in clips]
    return {
        "clips": len(clips),
        "families": len(by_family),
        "clips_per_family": {k: len(v) for k, v in by_family.items()},
        "min_frames": int(min(c.length for c in clips)),
        "max_frames": int(max(c.length for c in clips)),
        "mean_frames": float(np.mean([c.length for c in clips])),
        "min_captions_per_clip": int(min(len(c.captions) for c in clips)),
        "foot_skating_ratio": float(np.mean(skating)),
        "lowest_joint_height_m": float(min(c.joints[..., 1].min() for c in clips)),
        "jitter_m_s3": float(np.mean([jitter(c.joints[:, :22], fps) for c in clips])),
    }
