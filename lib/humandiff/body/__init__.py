"""Body models: SMPL-format models through smplx (the embedded CC0 model or the official SMPL)."""

from humandiff.body.model import (
    DEFAULT_BODY_MODEL,
    LANDMARK_NAMES,
    SMPL_JOINT_NAMES,
    SMPL_PARENTS,
    load_body_arrays,
    load_body_model,
    posed_body,
    posed_joints,
    rest_joints,
)

__all__ = [
    "DEFAULT_BODY_MODEL",
    "LANDMARK_NAMES",
    "SMPL_JOINT_NAMES",
    "SMPL_PARENTS",
    "load_body_arrays",
    "load_body_model",
    "posed_body",
    "posed_joints",
    "rest_joints",
]
