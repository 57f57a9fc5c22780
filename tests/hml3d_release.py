"""A HumanML3D folder in the release layout, written by tests (no real data needed).

Motions are smooth walks of the reference skeleton; each id's ``new_joint_vecs/<id>.npy`` (T, 263)
comes from :func:`joints_to_features` and its ``new_joints/<id>.npy`` is ``recover_from_ric`` of
those vectors, so both have T rows, as HumanML3D's ``motion_representation`` writes them.
``Mean.npy``/``Std.npy`` are the group-averaged statistics of the train split's vectors.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from humandiff.body.model import load_body_model, rest_joints
from humandiff.motion.hml3d import feature_mean_std, joints_to_features, offsets_from_rest_joints, recover_from_ric

WORDS = ("walks", "strolls", "marches", "wanders", "paces", "steps")
DIRECTIONS = ("forward", "to the left", "to the right", "slowly", "quickly", "in a circle")


@functools.lru_cache(maxsize=1)
def _rest() -> tuple[np.ndarray, np.ndarray]:
    """The embedded body model's rest joints (22, 3) and its HumanML3D reference offsets."""
    rest = rest_joints(load_body_model())[:22].astype(np.float64)
    return rest, offsets_from_rest_joints(rest)


def walk_joints(frames: int, seed: int) -> np.ndarray:
    """(frames, 22, 3) float32: the rest skeleton walking on the floor with swinging feet and hands, y up."""
    rng = np.random.default_rng(seed)
    rest, _ = _rest()
    t = np.arange(frames) / 20.0
    speed, phase, turn = rng.uniform(0.6, 1.4), rng.uniform(0, 2 * np.pi), rng.uniform(-0.4, 0.4)
    swing = 0.15 * np.sin(2 * np.pi * speed * t + phase)
    joints = np.repeat(rest[None], frames, 0)
    for joint, sign in ((7, 1), (10, 1), (8, -1), (11, -1), (20, -1), (21, 1)):  # ankles, feet, wrists
        joints[:, joint, 2] += sign * swing
    heading = turn * t
    cos, sin = np.cos(heading)[:, None], np.sin(heading)[:, None]
    x, z = joints[..., 0].copy(), joints[..., 2].copy()
    joints[..., 0], joints[..., 2] = cos * x + sin * z, -sin * x + cos * z
    distance = np.cumsum(np.full(frames, 0.05 * speed))
    joints[..., 0] += (distance * np.sin(heading))[:, None]
    joints[..., 2] += (distance * np.cos(heading))[:, None]
    joints[..., 1] -= joints[..., 1].min()
    return joints.astype(np.float32)


def release_vectors(frames: int, seed: int) -> np.ndarray:
    """(frames, 263) float32 motion vectors of a walk."""
    features, _ = joints_to_features(walk_joints(frames + 1, seed), _rest()[1], 0.002)
    return features


def write_release(root: Path, lengths: dict[str, int], splits: dict[str, list[str]], texts: dict[str, str] | None = None,
                  mean_std: bool = True, seed: int = 0) -> dict[str, np.ndarray]:
    """Write ``root`` in the release layout: every id of ``lengths`` (vector rows) with its vectors,
    joints and captions (``texts[id]`` or a whole-clip caption), the split files, Mean.npy/Std.npy."""
    texts = texts or {}
    for folder in ("new_joint_vecs", "new_joints", "texts"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    vectors = {}
    for k, (clip_id, frames) in enumerate(lengths.items()):
        vecs = release_vectors(frames, seed + k)
        with torch.no_grad():
            joints = recover_from_ric(torch.from_numpy(vecs).double()).numpy().astype(np.float32)
        np.save(root / "new_joint_vecs" / f"{clip_id}.npy", vecs)
        np.save(root / "new_joints" / f"{clip_id}.npy", joints)
        caption = f"a person {WORDS[k % len(WORDS)]} {DIRECTIONS[(k // len(WORDS)) % len(DIRECTIONS)]}."
        default = f"{caption}#a/DET person/NOUN#0.0#0.0\nsomeone moves {k}#someone/PRON move/VERB#0.0#0.0\n"
        (root / "texts" / f"{clip_id}.txt").write_text(texts.get(clip_id, default))
        vectors[clip_id] = vecs
    for split, ids in splits.items():
        (root / f"{split}.txt").write_text("\n".join(ids) + "\n")
    if mean_std:
        train = [vectors[i] for i in splits.get("train", []) if i in vectors]
        mean, std = feature_mean_std(train)
        np.save(root / "Mean.npy", mean)
        np.save(root / "Std.npy", std)
    return vectors
