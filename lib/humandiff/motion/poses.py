"""Named degrees of freedom (DOFs) of the human body and their mapping to SMPL joint rotations.

Actions are authored as curves over a small set of anatomical angles (hip flexion, knee
flexion, shoulder abduction ...) because such curves can be blended linearly, mirrored by
swapping sides, and read by a person. :func:`dofs_to_smpl_rotations` turns them into the 24
local joint rotations of SMPL's kinematic tree (T-pose rest, y up, body facing +z, left +x).

Sign conventions (all angles in radians, positive means):
  hip_flex: thigh forward/up; hip_abd: leg outward; hip_rot: toes outward; knee: shin back;
  ankle: toes up; spine_flex: bend forward; spine_side: bend to the body's left; spine_twist:
  shoulders turn left; sh_abd: arm raised sideways (0 = arm down, pi/2 = T-pose); sh_horiz:
  arm swung forward in the horizontal plane; sh_flex: arm swung forward in the sagittal plane;
  elbow: forearm folds; collar: shoulder shrug; root_pitch: whole body tips forward.
"""

from __future__ import annotations

import numpy as np

SIDES = ("l", "r")
_SIDED = (
    "hip_flex", "hip_abd", "hip_rot", "knee", "ankle",
    "collar", "sh_abd", "sh_horiz", "sh_flex", "sh_twist", "elbow", "wrist",
)
_CENTRAL = ("root_pitch", "root_roll", "spine_flex", "spine_side", "spine_twist", "neck_flex", "head_flex", "head_turn")
#: Every DOF name, in storage order.
DOF_NAMES: tuple[str, ...] = _CENTRAL + tuple(f"{name}_{side}" for side in SIDES for name in _SIDED)
DOF_INDEX = {name: i for i, name in enumerate(DOF_NAMES)}
NUM_DOFS = len(DOF_NAMES)
#: Central DOFs whose sign flips under a left/right mirror (rotations about y or z).
_MIRROR_NEGATED = ("root_roll", "spine_side", "spine_twist", "head_turn")

_DEG = np.pi / 180.0

#: A relaxed standing pose: arms hang slightly away from the body, elbows soft.
STAND: dict[str, float] = {
    "sh_abd_l": 8 * _DEG, "sh_abd_r": 8 * _DEG,
    "elbow_l": 12 * _DEG, "elbow_r": 12 * _DEG,
    "knee_l": 3 * _DEG, "knee_r": 3 * _DEG,
    "hip_flex_l": 2 * _DEG, "hip_flex_r": 2 * _DEG,
}


def pose_vector(values: dict[str, float] | None = None, base: dict[str, float] | None = STAND) -> np.ndarray:
    """A DOF vector (NUM_DOFS,) from ``base`` overridden by ``values`` (names from DOF_NAMES)."""
    vector = np.zeros(NUM_DOFS)
    for source in (base or {}), (values or {}):
        for name, value in source.items():
            vector[DOF_INDEX[name]] = value
    return vector


def mirror_dofs(dofs: np.ndarray) -> np.ndarray:
    """Swap left and right DOFs and negate the central ones about y/z: (..., NUM_DOFS)."""
    out = dofs.copy()
    for name in _SIDED:
        out[..., DOF_INDEX[f"{name}_l"]] = dofs[..., DOF_INDEX[f"{name}_r"]]
        out[..., DOF_INDEX[f"{name}_r"]] = dofs[..., DOF_INDEX[f"{name}_l"]]
    for name in _MIRROR_NEGATED:
        out[..., DOF_INDEX[name]] = -dofs[..., DOF_INDEX[name]]
    return out


def _rot_x(a: np.ndarray) -> np.ndarray:
    c, s, z, o = np.cos(a), np.sin(a), np.zeros_like(a), np.ones_like(a)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1), np.stack([z, s, c], -1)], -2)


def _rot_y(a: np.ndarray) -> np.ndarray:
    c, s, z, o = np.cos(a), np.sin(a), np.zeros_like(a), np.ones_like(a)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2)


def _rot_z(a: np.ndarray) -> np.ndarray:
    c, s, z, o = np.cos(a), np.sin(a), np.zeros_like(a), np.ones_like(a)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)


def dofs_to_smpl_rotations(dofs: np.ndarray, heading: np.ndarray) -> np.ndarray:
    """Local rotation matrices of SMPL's 24 joints.

    Args:
        dofs: (T, NUM_DOFS) angles in radians.
        heading: (T,) yaw of the body about +y (0 = facing +z).
    Returns:
        (T, 24, 3, 3) rotations; joint 0 is the global orientation.
    """
    d = {name: dofs[:, i] for name, i in DOF_INDEX.items()}
    T = dofs.shape[0]
    R = np.tile(np.eye(3), (T, 24, 1, 1))
    R[:, 0] = _rot_y(heading) @ _rot_x(d["root_pitch"]) @ _rot_z(d["root_roll"])
    spine = _rot_x(d["spine_flex"] / 3) @ _rot_z(-d["spine_side"] / 3) @ _rot_y(d["spine_twist"] / 3)
    R[:, 3] = R[:, 6] = R[:, 9] = spine
    R[:, 12] = _rot_x(d["neck_flex"])
    R[:, 15] = _rot_x(d["head_flex"]) @ _rot_y(d["head_turn"])
    # Mirror-image joints: the right side uses the same formulas with y/z rotations negated.
    for side, sign, hip, knee, ankle, collar, shoulder, elbow, wrist in (
        ("l", 1.0, 1, 4, 7, 13, 16, 18, 20),
        ("r", -1.0, 2, 5, 8, 14, 17, 19, 21),
    ):
        g = lambda name: d[f"{name}_{side}"]  # noqa: E731
        R[:, hip] = _rot_x(-g("hip_flex")) @ _rot_z(sign * g("hip_abd")) @ _rot_y(sign * g("hip_rot"))
        R[:, knee] = _rot_x(g("knee"))
        R[:, ankle] = _rot_x(-g("ankle"))
        R[:, collar] = _rot_z(sign * g("collar"))
        R[:, shoulder] = (
            _rot_x(-g("sh_flex"))
            @ _rot_y(-sign * g("sh_horiz"))
            @ _rot_z(-sign * (np.pi / 2 - g("sh_abd")))
            @ _rot_x(g("sh_twist"))  # a mirror keeps rotations about x
        )
        R[:, elbow] = _rot_y(-sign * g("elbow"))
        R[:, wrist] = _rot_z(-sign * g("wrist"))
    return R
