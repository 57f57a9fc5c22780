"""HumanML3D's 263-d motion representation: retargeting, canonicalisation, features, recovery.

Joints are the first 22 SMPL joints (order in :data:`HML_JOINT_NAMES`), metres, Y up, 20 fps.
A clip of T frames of joints gives T - 1 feature frames (velocities need the next frame):

====================  =========  ==================================================================
group                 dims       content at frame t
====================  =========  ==================================================================
root_rot_vel          0:1        half the change of the root-frame yaw from t to t+1 (see below)
root_lin_vel          1:3        root displacement t -> t+1, x and z, in the root frame of t+1
root_y                3:4        root height at t
ric                   4:67       joints 1..21 minus the root's x, z, in the root frame of t
rot                   67:193     joints 1..21 local rotations (6D, first two matrix columns)
local_vel             193:259    all 22 joints' displacement t -> t+1 in the root frame of t
contacts              259:263    feet 7, 10 (left) then 8, 11 (right): squared displacement
                                 t -> t+1 (sum over x, y, z, as HumanML3D) below the threshold
====================  =========  ==================================================================

Root convention (chosen so that :func:`recover_from_ric` inverts :func:`joints_to_features`
exactly while keeping HumanML3D's recovery semantics, so published 263-d vectors recover the
same way):

- ``theta_t`` is the root yaw: the body's forward direction is ``(sin theta, 0, cos theta)``,
  forward = up x ((r_hip - l_hip) + (r_shoulder - l_shoulder)) from :data:`FACE_JOINTS`.
  It is measured relative to frame 0, so ``theta_0 = 0`` exactly (the canonical clip faces +Z
  there, and recovery assumes an identity root rotation at frame 0).
- The root frame is ``r_t = R_y(-theta_t)`` (world -> root frame; HumanML3D's ``r_rot``).
- ``feature[t, 0] = wrap(-(theta_{t+1} - theta_t)) / 2``: HumanML3D's half-angle convention.
  Recovery sums ``a_t = sum_{s<t} feature[s, 0]`` and builds the quaternion
  ``(cos a_t, 0, sin a_t, 0)``, a rotation by ``2 a_t = -theta_t`` (mod 2 pi), i.e. ``r_t``.
  HumanML3D takes ``arcsin`` of the increment quaternion's y component, which loses the sign
  when that quaternion has w < 0; here the increment comes from ``atan2`` and is wrapped to
  [-pi, pi) before halving, so the recovered yaw is exact for any turn.
- ``feature[t, 1:3]`` is rotated by ``r_{t+1}``, and recovery un-rotates it with the recovered
  ``r_{t+1}``, then integrates from the origin (the canonical root starts at x = z = 0).

Optional yaw smoothing (``facing_smoothing``, a Gaussian sigma in frames; HumanML3D smooths the
forward vectors with sigma 20 and edge padding) changes which frame "root frame" means, not the
round trip: the smoothed yaw is re-anchored to 0 at frame 0 (HumanML3D does not re-anchor, so
its own round trip is off by a constant rotation).

Skeleton and IK: the reference skeleton is HumanML3D's: axis-aligned rest bone directions
(:data:`HML_RAW_OFFSETS`) times the reference bone lengths (:func:`offsets_from_rest_joints`).
The IK gives the root the yaw rotation and every other joint the smallest rotation taking its
rest bone direction onto the observed bone, expressed in its parent's accumulated frame (a
proper tree; HumanML3D's naive IK restarts each chain from the root rotation and composes with
its inverse, which makes its 6D values depend on the global heading). FK of these rotations with
any bone lengths keeps every bone direction, so retargeting changes lengths only. The 6D values
are not SMPL pose parameters.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Sequence, TypeVar

import numpy as np
import torch

from humandiff.geometry.rotations import (
    matrix_to_quaternion_np,
    matrix_to_rotation_6d_np,
    quaternion_apply_np,
    quaternion_conjugate_np,
    quaternion_from_two_vectors_np,
    quaternion_multiply_np,
    quaternion_to_matrix_np,
)
from humandiff.io.artifacts import ArtifactError

__all__ = [
    "CONTACTS", "FACE_JOINTS", "FEATURE_DIM", "FEATURE_GROUPS", "FOOT_JOINTS_LEFT", "FOOT_JOINTS_RIGHT",
    "FPS", "HML_JOINT_NAMES", "HML_PARENTS", "HML_RAW_OFFSETS", "KINEMATIC_CHAINS", "LOCAL_VEL",
    "MIRROR_PERM", "NUM_JOINTS", "RIC", "ROOT_LIN_VEL", "ROOT_ROT_VEL", "ROOT_Y", "ROT",
    "canonicalize", "denormalize_features", "evaluator_mean_std", "facing_yaw", "feature_mean_std",
    "forward_kinematics", "inverse_kinematics", "joints_to_features", "joints_to_features_batch", "mirror_joints",
    "normalize_features", "offsets_from_rest_joints", "recover_from_ric", "recover_root", "retarget",
]

FPS = 20
NUM_JOINTS = 22
FEATURE_DIM = 263

HML_JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "l_hip", "r_hip", "spine1", "l_knee", "r_knee", "spine2", "l_ankle", "r_ankle", "spine3",
    "l_foot", "r_foot", "neck", "l_collar", "r_collar", "head", "l_shoulder", "r_shoulder", "l_elbow",
    "r_elbow", "l_wrist", "r_wrist",
)
HML_PARENTS: tuple[int, ...] = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)
KINEMATIC_CHAINS: tuple[tuple[int, ...], ...] = (
    (0, 2, 5, 8, 11),
    (0, 1, 4, 7, 10),
    (0, 3, 6, 9, 12, 15),
    (9, 14, 17, 19, 21),
    (9, 13, 16, 18, 20),
)
FOOT_JOINTS_LEFT = (7, 10)
FOOT_JOINTS_RIGHT = (8, 11)
#: r_hip, l_hip, r_shoulder, l_shoulder: the joints that define the facing direction.
FACE_JOINTS = (2, 1, 17, 16)
#: Joint permutation that swaps left and right (an involution).
MIRROR_PERM: tuple[int, ...] = (0, 2, 1, 3, 5, 4, 6, 8, 7, 9, 11, 10, 12, 14, 13, 15, 17, 16, 19, 18, 21, 20)

#: Rest direction of the bone ending at each joint (HumanML3D's reference skeleton; arms down).
HML_RAW_OFFSETS = np.array(
    [
        [0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, -1, 0], [0, 1, 0], [0, -1, 0],
        [0, -1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1], [0, 1, 0], [1, 0, 0], [-1, 0, 0], [0, 0, 1],
        [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0], [0, -1, 0],
    ],
    dtype=np.float64,
)
HML_RAW_OFFSETS.setflags(write=False)

ROOT_ROT_VEL = slice(0, 1)
ROOT_LIN_VEL = slice(1, 3)
ROOT_Y = slice(3, 4)
RIC = slice(4, 67)
ROT = slice(67, 193)
LOCAL_VEL = slice(193, 259)
CONTACTS = slice(259, 263)
#: The 7 feature groups, in storage order (normalisation averages the std inside each).
FEATURE_GROUPS = MappingProxyType(
    {
        "root_rot_vel": ROOT_ROT_VEL,
        "root_lin_vel": ROOT_LIN_VEL,
        "root_y": ROOT_Y,
        "ric": RIC,
        "rot": ROT,
        "local_vel": LOCAL_VEL,
        "contacts": CONTACTS,
    }
)
_FOOT_JOINTS = np.array(FOOT_JOINTS_LEFT + FOOT_JOINTS_RIGHT)
_PARENTS = np.array(HML_PARENTS)


def _tree_levels() -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Non-root joints grouped by depth, with their parents: IK/FK vectorise over a level."""
    depth = [0] * NUM_JOINTS
    for joint in range(1, NUM_JOINTS):
        depth[joint] = depth[HML_PARENTS[joint]] + 1
    levels = []
    for level in range(1, max(depth) + 1):
        joints = np.array([j for j in range(NUM_JOINTS) if depth[j] == level])
        levels.append((joints, _PARENTS[joints]))
    return tuple(levels)


_LEVELS = _tree_levels()


# --------------------------------------------------------------------------- validation


def _check_joints(joints: np.ndarray, name: str = "joints", min_frames: int = 2) -> np.ndarray:
    """Return ``joints`` as float64 (T, 22, 3) or raise ArtifactError naming ``name``."""
    array = np.asarray(joints)
    if not np.issubdtype(array.dtype, np.number):
        raise ArtifactError(f"{name} has dtype {array.dtype}, expected a float array")
    if array.ndim != 3 or array.shape[1:] != (NUM_JOINTS, 3):
        raise ArtifactError(f"{name} has shape {tuple(array.shape)}, expected (T, {NUM_JOINTS}, 3)")
    if array.shape[0] < min_frames:
        raise ArtifactError(f"{name} has {array.shape[0]} frame(s), expected at least {min_frames}")
    if not np.isfinite(array).all():
        raise ArtifactError(f"{name} contains NaN or Inf")
    return array.astype(np.float64)


def _check_offsets(offsets: np.ndarray, name: str = "reference_offsets") -> np.ndarray:
    """Return bone offsets as float64 (22, 3) with nonzero bones, or raise ArtifactError."""
    array = np.asarray(offsets)
    if not np.issubdtype(array.dtype, np.number) or array.shape != (NUM_JOINTS, 3):
        raise ArtifactError(f"{name} has shape {tuple(array.shape)}, expected ({NUM_JOINTS}, 3)")
    if not np.isfinite(array).all():
        raise ArtifactError(f"{name} contains NaN or Inf")
    array = array.astype(np.float64)
    lengths = np.linalg.norm(array[1:], axis=-1)
    if (lengths < 1e-6).any():
        joint = int(np.argmin(lengths)) + 1
        raise ArtifactError(f"{name}: bone of joint {joint} ({HML_JOINT_NAMES[joint]}) has zero length")
    return array


# --------------------------------------------------------------------------- skeleton


def offsets_from_rest_joints(rest_joints: np.ndarray) -> np.ndarray:
    """Reference bone offsets (22, 3): HumanML3D's rest directions times the rest bone lengths.

    ``rest_joints`` (22, 3) are a body model's rest (T-pose) joints; only their bone lengths are
    used. Row 0 (the root) is zero.
    """
    rest = _check_joints(np.asarray(rest_joints)[None], name="rest_joints", min_frames=1)[0]
    lengths = np.linalg.norm(rest[1:] - rest[_PARENTS[1:]], axis=-1)
    offsets = np.zeros((NUM_JOINTS, 3))
    offsets[1:] = HML_RAW_OFFSETS[1:] * lengths[:, None]
    return _check_offsets(offsets, name="rest_joints bone offsets")


def mirror_joints(joints: np.ndarray) -> np.ndarray:
    """Left/right mirror as HumanML3D's M*.npy: negate x and swap sides; (..., 22, 3) -> same."""
    array = np.asarray(joints)
    if array.ndim < 2 or array.shape[-2:] != (NUM_JOINTS, 3):
        raise ArtifactError(f"joints has shape {tuple(array.shape)}, expected (..., {NUM_JOINTS}, 3)")
    mirrored = array[..., list(MIRROR_PERM), :].copy()
    mirrored[..., 0] *= -1
    return mirrored


def _forward_xz(joints: np.ndarray) -> np.ndarray:
    """Unit horizontal forward direction (N, 2) as (x, z), from hips and shoulders; (N, 22, 3) input."""
    r_hip, l_hip, r_shoulder, l_shoulder = FACE_JOINTS
    across = (joints[:, r_hip] - joints[:, l_hip]) + (joints[:, r_shoulder] - joints[:, l_shoulder])
    # forward = up x across = (across_z, 0, -across_x)
    forward = np.stack([across[:, 2], -across[:, 0]], -1)
    return forward / np.maximum(np.hypot(forward[:, :1], forward[:, 1:]), 1e-12)


def facing_yaw(joints: np.ndarray) -> np.ndarray:
    """Yaw theta (T,) of each frame's facing direction ``(sin theta, 0, cos theta)``; joints (T, 22, 3)."""
    forward = _forward_xz(_check_joints(joints, min_frames=1))
    return np.arctan2(forward[:, 0], forward[:, 1])


def _gaussian_smooth(values: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian filter along axis 0 with edge padding, truncated at 4 sigma; (T, C) -> (T, C)."""
    radius = int(4.0 * sigma + 0.5)
    taps = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (taps / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(values, ((radius, radius), (0, 0)), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * radius + 1, axis=0)  # (T, C, taps)
    return windows @ kernel


# Chunks of this many clips keep the working arrays cache-sized (measured fastest at 16-32).
_CLIPS_PER_CHUNK = 32

# Clips are processed concatenated along time, (N, 22, 3) with N = sum of the clip lengths, so
# that the per-frame work (IK, FK, features) costs a handful of numpy calls for a whole batch.
# ``starts`` (K,) holds each clip's first frame and ``lengths`` (K,) its number of frames.


def _per_frame(per_clip: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Repeat a per-clip value (K, ...) over each clip's frames -> (N, ...)."""
    return np.repeat(per_clip, lengths, axis=0)


def _root_yaw(joints: np.ndarray, starts: np.ndarray, lengths: np.ndarray, facing_smoothing: float) -> np.ndarray:
    """Root yaw (N,) relative to each clip's first frame (exactly 0 there), optionally smoothed."""
    forward = _forward_xz(joints)
    if facing_smoothing > 0:
        forward = np.concatenate(
            [_gaussian_smooth(forward[s : s + n], facing_smoothing) for s, n in zip(starts, lengths)]
        )
    yaw = np.arctan2(forward[:, 0], forward[:, 1])
    return yaw - _per_frame(yaw[starts], lengths)


def _inverse_kinematics_quat(joints: np.ndarray, offsets: np.ndarray, root_yaw: np.ndarray) -> np.ndarray:
    """Local rotations as unit quaternions, joint-major (22, N, 4), of checked float64 joints (N, 22, 3).

    Joint-major so that gathering a level's parents copies contiguous blocks (much faster than
    fancy-indexing the middle axis of a frame-major array).
    """
    by_joint = np.ascontiguousarray(joints.transpose(1, 0, 2))  # (22, N, 3)
    bones = by_joint - by_joint[_PARENTS.clip(min=0)]
    local = np.empty((NUM_JOINTS,) + root_yaw.shape + (4,))
    world = np.empty_like(local)
    half = root_yaw / 2.0
    zeros = np.zeros_like(half)
    local[0] = world[0] = np.stack([np.cos(half), zeros, np.sin(half), zeros], -1)
    for level, parents in _LEVELS:
        parent_world = world[parents]
        bone_in_parent = quaternion_apply_np(quaternion_conjugate_np(parent_world), bones[level])
        rotation = quaternion_from_two_vectors_np(offsets[level, None, :], bone_in_parent)
        local[level] = rotation
        world[level] = quaternion_multiply_np(parent_world, rotation)
    return local


def _forward_kinematics_quat(local: np.ndarray, root: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Joint positions (N, 22, 3) from joint-major local unit quaternions (22, N, 4), root (N, 3), offsets (22, 3)."""
    world = np.empty_like(local)
    positions = np.empty(local.shape[:2] + (3,))
    world[0] = local[0]
    positions[0] = root
    for level, parents in _LEVELS:
        world[level] = quaternion_multiply_np(world[parents], local[level])
        positions[level] = positions[parents] + quaternion_apply_np(world[level], offsets[level, None, :])
    return positions.transpose(1, 0, 2)


def inverse_kinematics(
    joints: np.ndarray, reference_offsets: np.ndarray, root_yaw: np.ndarray | None = None
) -> np.ndarray:
    """Per-joint rotations (T, 22, 3, 3) that pose the reference skeleton along ``joints`` (T, 22, 3).

    Entry 0 is the root's global rotation, the yaw ``R_y(root_yaw)`` (default: the facing yaw
    of each frame). Entry j > 0 is the smallest rotation, in the parent's accumulated frame,
    that takes the rest direction of bone j (``reference_offsets[j]``) onto the observed bone.
    """
    joints = _check_joints(joints)
    offsets = _check_offsets(reference_offsets)
    root_yaw = facing_yaw(joints) if root_yaw is None else np.asarray(root_yaw, dtype=np.float64)
    if root_yaw.shape != joints.shape[:1] or not np.isfinite(root_yaw).all():
        raise ArtifactError(f"root_yaw has shape {root_yaw.shape} or non-finite values, expected ({joints.shape[0]},)")
    return quaternion_to_matrix_np(_inverse_kinematics_quat(joints, offsets, root_yaw).transpose(1, 0, 2))


def forward_kinematics(
    local_rotations: np.ndarray, root_positions: np.ndarray, reference_offsets: np.ndarray
) -> np.ndarray:
    """Joint positions (T, 22, 3) from rotations (T, 22, 3, 3) as :func:`inverse_kinematics` makes them.

    ``root_positions`` (T, 3); joint j = parent + (accumulated rotation of j) @ offsets[j].
    """
    rotations = np.asarray(local_rotations, dtype=np.float64)
    root = np.asarray(root_positions, dtype=np.float64)
    offsets = _check_offsets(reference_offsets)
    if rotations.ndim != 4 or rotations.shape[1:] != (NUM_JOINTS, 3, 3):
        raise ArtifactError(f"local_rotations has shape {rotations.shape}, expected (T, {NUM_JOINTS}, 3, 3)")
    if root.shape != (rotations.shape[0], 3):
        raise ArtifactError(f"root_positions has shape {root.shape}, expected ({rotations.shape[0]}, 3)")
    return _forward_kinematics_quat(matrix_to_quaternion_np(rotations.transpose(1, 0, 2, 3)), root, offsets)


def _leg_length(bone_lengths: np.ndarray) -> np.ndarray:
    """Mean of the two legs' thigh + shin lengths from per-joint bone lengths (..., 22) -> (...)."""
    return bone_lengths[..., [4, 7, 5, 8]].sum(-1) / 2.0


def _retarget_frames(joints: np.ndarray, starts: np.ndarray, lengths: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """:func:`retarget` on concatenated clips (N, 22, 3) -> (N, 22, 3)."""
    bone_lengths = np.zeros(joints.shape[:2])
    bones = joints[:, 1:] - joints[:, _PARENTS[1:]]
    bone_lengths[:, 1:] = np.sqrt(np.einsum("...i,...i->...", bones, bones))
    source_leg = _leg_length(np.add.reduceat(bone_lengths, starts, axis=0) / lengths[:, None])
    if (source_leg < 1e-6).any():
        raise ArtifactError(f"clip {int(np.argmin(source_leg))}: the legs have zero length; cannot retarget")
    scale = _leg_length(np.linalg.norm(offsets, axis=-1)) / source_leg
    rotations = _inverse_kinematics_quat(joints, offsets, np.arctan2(*_forward_xz(joints).T))
    return _forward_kinematics_quat(rotations, joints[:, 0] * _per_frame(scale, lengths)[:, None], offsets)


def retarget(joints: np.ndarray, reference_offsets: np.ndarray) -> np.ndarray:
    """Re-pose the reference skeleton along ``joints`` (T, 22, 3) -> (T, 22, 3), float64.

    As HumanML3D's uniform skeleton: IK to per-joint rotations (root orientation from the face
    joints), FK with the reference bone offsets, root translation scaled by the ratio of leg
    lengths (reference / source). Every bone keeps its direction and takes the reference length.
    Deviations: both legs are averaged (HumanML3D uses the right leg) and source bone lengths
    are averaged over frames (HumanML3D uses frame 0), so the result is mirror-symmetric and
    robust to noisy frames.
    """
    joints = _check_joints(joints)
    offsets = _check_offsets(reference_offsets)
    return _retarget_frames(joints, np.array([0]), np.array([len(joints)]), offsets)


def _rotate_yaw(vectors: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rotate (N, ..., 3) vectors about +Y by per-frame angles (N,)."""
    shape = (-1,) + (1,) * (vectors.ndim - 2)
    c, s = np.cos(angle).reshape(shape), np.sin(angle).reshape(shape)
    x, y, z = vectors[..., 0], vectors[..., 1], vectors[..., 2]
    return np.stack([c * x + s * z, y, c * z - s * x], -1)


def _canonicalize_frames(joints: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """:func:`canonicalize` on concatenated clips (N, 22, 3) -> (N, 22, 3)."""
    out = joints.copy()
    floor = np.minimum.reduceat(out[..., 1].min(1), starts)
    out[..., 1] -= _per_frame(floor, lengths)[:, None]
    origin = _per_frame(out[starts, 0], lengths)
    out[..., 0] -= origin[:, None, 0]
    out[..., 2] -= origin[:, None, 2]
    first_forward = _forward_xz(out[starts])
    yaw0 = np.arctan2(first_forward[:, 0], first_forward[:, 1])
    return _rotate_yaw(out, -_per_frame(yaw0, lengths))


def canonicalize(joints: np.ndarray) -> np.ndarray:
    """Put a clip (T, 22, 3) on the floor (min y = 0), root x, z at the origin and facing +Z at frame 0.

    Returns float64 (T, 22, 3). Facing is from :data:`FACE_JOINTS` at frame 0.
    """
    joints = _check_joints(joints, min_frames=1)
    return _canonicalize_frames(joints, np.array([0]), np.array([len(joints)]))


def _features_frames(
    canonical: np.ndarray,
    starts: np.ndarray,
    lengths: np.ndarray,
    offsets: np.ndarray,
    contact_threshold: float,
    facing_smoothing: float,
) -> np.ndarray:
    """263-d features (N - K, 263) of concatenated canonical clips: every frame but each clip's last."""
    yaw = _root_yaw(canonical, starts, lengths, facing_smoothing)
    rotations = _inverse_kinematics_quat(canonical, offsets, yaw)
    to_root = -yaw  # angle of r_t = R_y(-theta_t), world -> root frame

    has_next = np.ones(len(canonical), dtype=bool)
    has_next[starts + lengths - 1] = False
    now = np.flatnonzero(has_next)
    following = now + 1

    root = canonical[:, 0]
    turn = np.mod(to_root[following] - to_root[now] + np.pi, 2.0 * np.pi) - np.pi
    root_lin_vel = _rotate_yaw(root[following] - root[now], to_root[following])[:, [0, 2]]

    relative = canonical[now, 1:].copy()
    relative[..., 0] -= root[now, None, 0]
    relative[..., 2] -= root[now, None, 2]
    ric = _rotate_yaw(relative, to_root[now])
    rot6d = matrix_to_rotation_6d_np(quaternion_to_matrix_np(rotations[1:, now])).transpose(1, 0, 2)
    displacement = canonical[following] - canonical[now]
    local_vel = _rotate_yaw(displacement, to_root[now])
    foot_displacement = displacement[:, _FOOT_JOINTS]
    contacts = np.einsum("...i,...i->...", foot_displacement, foot_displacement) < contact_threshold

    count = len(now)
    return np.concatenate(
        [
            (turn / 2.0)[:, None],
            root_lin_vel,
            root[now, 1:2],
            ric.reshape(count, -1),
            rot6d.reshape(count, -1),
            local_vel.reshape(count, -1),
            contacts.astype(np.float64),
        ],
        -1,
    )


def _check_feature_options(contact_threshold: float, facing_smoothing: float) -> None:
    if not np.isfinite(contact_threshold) or contact_threshold <= 0:
        raise ArtifactError(f"contact_threshold={contact_threshold} must be a positive number")
    if not np.isfinite(facing_smoothing) or facing_smoothing < 0:
        raise ArtifactError(f"facing_smoothing={facing_smoothing} must be >= 0")


def _clips_to_features(
    clips: list[np.ndarray], offsets: np.ndarray, contact_threshold: float, facing_smoothing: float
) -> list[tuple[np.ndarray, np.ndarray]]:
    lengths = np.array([len(clip) for clip in clips])
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    joints = np.concatenate(clips, 0)
    canonical = _canonicalize_frames(_retarget_frames(joints, starts, lengths, offsets), starts, lengths)
    features = _features_frames(canonical, starts, lengths, offsets, contact_threshold, facing_smoothing)
    feature_splits = np.cumsum(lengths - 1)[:-1]
    joint_splits = np.cumsum(lengths)[:-1]
    return [
        (clip_features.astype(np.float32), clip_joints.astype(np.float32))
        for clip_features, clip_joints in zip(
            np.split(features, feature_splits), np.split(canonical, joint_splits)
        )
    ]


def joints_to_features(
    joints: np.ndarray,
    reference_offsets: np.ndarray,
    contact_threshold: float = 0.002,
    *,
    facing_smoothing: float = 20.0,
) -> tuple[np.ndarray, np.ndarray]:
    """HumanML3D features of a clip: joints (T, 22, 3), T >= 2 -> (features (T-1, 263), canonical (T, 22, 3)).

    Retargets to ``reference_offsets`` (22, 3), canonicalises, then builds the 263 dims as in
    the module docstring. ``contact_threshold`` is in m^2 per frame; ``facing_smoothing`` is the
    Gaussian sigma (frames) of the root yaw (0 = raw per-frame facing; HumanML3D uses 20).
    Both outputs are float32; :func:`recover_from_ric` on the features gives canonical[:-1].
    For many clips, :func:`joints_to_features_batch` gives the same result much faster.
    """
    _check_feature_options(contact_threshold, facing_smoothing)
    clip = _check_joints(joints)
    return _clips_to_features([clip], _check_offsets(reference_offsets), contact_threshold, facing_smoothing)[0]


def joints_to_features_batch(
    clips: Sequence[np.ndarray],
    reference_offsets: np.ndarray,
    contact_threshold: float = 0.002,
    *,
    facing_smoothing: float = 20.0,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`joints_to_features` of every clip (T_i, 22, 3), vectorised over all their frames.

    Returns one (features (T_i-1, 263), canonical (T_i, 22, 3)) pair per clip, identical to the
    single-clip results. A bad clip raises ArtifactError naming its position, ``clips[i]``.
    """
    _check_feature_options(contact_threshold, facing_smoothing)
    offsets = _check_offsets(reference_offsets)
    checked = [_check_joints(clip, name=f"clips[{index}]") for index, clip in enumerate(clips)]
    results: list[tuple[np.ndarray, np.ndarray]] = []
    for first in range(0, len(checked), _CLIPS_PER_CHUNK):
        chunk = checked[first : first + _CLIPS_PER_CHUNK]
        results.extend(_clips_to_features(chunk, offsets, contact_threshold, facing_smoothing))
    return results


# --------------------------------------------------------------------------- recovery (torch)


def _check_features(features: torch.Tensor, joints_num: int) -> None:
    if not isinstance(features, torch.Tensor):
        raise ArtifactError(f"features is a {type(features).__name__}, expected a torch.Tensor")
    needed = 4 + (joints_num - 1) * 3
    if features.ndim < 2 or features.shape[-1] < needed:
        raise ArtifactError(f"features has shape {tuple(features.shape)}, expected (..., T, >= {needed})")


def recover_root(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Root rotation and position from features (..., T, 263) -> ((..., T, 4), (..., T, 3)).

    The rotation is the root-frame quaternion ``r_t`` (world -> root frame, HumanML3D's
    ``r_rot``): ``(cos a_t, 0, sin a_t, 0)`` with ``a_t`` the sum of ``features[:t, 0]``. The
    position integrates ``features[t, 1:3]`` un-rotated by ``r_{t+1}`` from x = z = 0 and takes
    y from ``features[t, 3]``. Differentiable; no in-place operations.
    """
    angle, position = _root_angle_position(features)
    zeros = torch.zeros_like(angle)
    return torch.stack([torch.cos(angle), zeros, torch.sin(angle), zeros], -1), position


def _root_angle_position(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The half-angles ``a_t`` (..., T) of :func:`recover_root`'s rotations and its positions (..., T, 3)."""
    _check_features(features, 1)
    rot_vel = features[..., 0]
    angle = torch.cat([torch.zeros_like(rot_vel[..., :1]), torch.cumsum(rot_vel[..., :-1], -1)], -1)
    step_x, step_z = _unrotate_xz(angle[..., 1:], features[..., :-1, 1], features[..., :-1, 2])
    zero = torch.zeros_like(features[..., :1, 0])
    path_x = torch.cat([zero, torch.cumsum(step_x, -1)], -1)
    path_z = torch.cat([zero, torch.cumsum(step_z, -1)], -1)
    return angle, torch.stack([path_x, features[..., 3], path_z], -1)


def _unrotate_xz(angle: torch.Tensor, x: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The x, z parts of vectors rotated by the conjugate of ``(cos a, 0, sin a, 0)``, i.e. by
    ``-2a`` about y (``angle`` broadcasts against ``x``, ``z``); y is unchanged.

    Equal to :func:`humandiff.geometry.rotations.quaternion_apply` with that quaternion, but in the
    closed form of a rotation about one axis: the recovered root rotation is always about y, and the
    generic product's two cross products were a tenth of a training step of the prior (its
    geometric losses).
    """
    cos, sin = torch.cos(2.0 * angle), torch.sin(2.0 * angle)
    return cos * x - sin * z, sin * x + cos * z


def recover_from_ric(features: torch.Tensor, joints_num: int = NUM_JOINTS) -> torch.Tensor:
    """Joint positions (..., T, joints_num, 3) from features (..., T, 263); differentiable.

    The ric positions are un-rotated by the recovered root-frame rotation, the root's x, z are
    added back, and the root is put first (HumanML3D's ``recover_from_ric``).
    """
    _check_features(features, joints_num)
    angle, root = _root_angle_position(features)
    ric = features[..., 4 : 4 + (joints_num - 1) * 3]
    ric = ric.reshape(*ric.shape[:-1], joints_num - 1, 3)
    world_x, world_z = _unrotate_xz(angle[..., None], ric[..., 0], ric[..., 2])
    world = torch.stack([world_x + root[..., None, 0], ric[..., 1], world_z + root[..., None, 2]], -1)
    return torch.cat([root[..., None, :], world], -2)


# --------------------------------------------------------------------------- normalisation


def feature_mean_std(features_list: Sequence[np.ndarray], min_std: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """Mean (263,) and std (263,) over all frames of clips (T_i, 263), as float32.

    The std is averaged inside each of the 7 :data:`FEATURE_GROUPS` (as HumanML3D's Mean/Std)
    and floored at ``min_std`` so that constant groups cannot divide by zero.
    """
    if len(features_list) == 0:
        raise ArtifactError("features_list is empty; cannot compute mean/std")
    for index, clip in enumerate(features_list):
        clip = np.asarray(clip)
        if clip.ndim != 2 or clip.shape[1] != FEATURE_DIM or clip.shape[0] == 0:
            raise ArtifactError(f"features_list[{index}] has shape {clip.shape}, expected (T>0, {FEATURE_DIM})")
        if not np.isfinite(clip).all():
            raise ArtifactError(f"features_list[{index}] contains NaN or Inf")
    stacked = np.concatenate([np.asarray(clip, dtype=np.float64) for clip in features_list], 0)
    mean = stacked.mean(0)
    std = stacked.std(0)
    for group in FEATURE_GROUPS.values():
        std[group] = std[group].mean()
    return mean.astype(np.float32), np.maximum(std, min_std).astype(np.float32)


def evaluator_mean_std(mean: np.ndarray, std: np.ndarray, feat_bias: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
    """The evaluator's variant of (mean, std) (263,): root (0:4) and contacts (259:263) std / feat_bias.

    As Guo et al.'s T2M loader: those groups weigh ``feat_bias`` times more after normalising.
    """
    mean = np.asarray(mean, dtype=np.float32)
    std = np.asarray(std, dtype=np.float32)
    if mean.shape != (FEATURE_DIM,) or std.shape != (FEATURE_DIM,):
        raise ArtifactError(f"mean/std have shapes {mean.shape}/{std.shape}, expected ({FEATURE_DIM},)")
    if not feat_bias > 0:
        raise ArtifactError(f"feat_bias={feat_bias} must be positive")
    std = std.copy()
    std[0:4] /= feat_bias
    std[CONTACTS] /= feat_bias
    return mean.copy(), std


_Array = TypeVar("_Array", np.ndarray, torch.Tensor)


def _like(stat: np.ndarray, features: _Array) -> np.ndarray | torch.Tensor:
    if isinstance(features, torch.Tensor):
        return torch.as_tensor(np.asarray(stat), dtype=features.dtype, device=features.device)
    return np.asarray(stat, dtype=features.dtype if np.issubdtype(features.dtype, np.floating) else np.float32)


def normalize_features(features: _Array, mean: np.ndarray, std: np.ndarray) -> _Array:
    """(features - mean) / std for numpy arrays or torch tensors (..., 263)."""
    return (features - _like(mean, features)) / _like(std, features)


def denormalize_features(features: _Array, mean: np.ndarray, std: np.ndarray) -> _Array:
    """features * std + mean, the inverse of :func:`normalize_features`; (..., 263)."""
    return features * _like(std, features) + _like(mean, features)
