"""Motion quality metrics on joint positions (metres, y up), as DNO and the text-to-motion papers use.

All functions take (T, J, 3) arrays (or (B, T, J, 3) where stated) in HumanML3D/SMPL joint order.
"""

from __future__ import annotations

import numpy as np

#: SMPL/HumanML3D foot (ball) joints, used by the foot skating ratio.
FOOT_JOINTS = (10, 11)


def foot_skating_ratio(joints: np.ndarray, height: float = 0.05, displacement: float = 0.025) -> float:
    """Share of frame transitions in which a foot skates.

    A foot skates between frames t and t+1 when its joint (10 or 11) is below ``height`` metres in
    both frames and moves more than ``displacement`` metres horizontally (DNO's definition with its
    thresholds; FACTS.md section 5). Heights are measured from y = 0, so pass floor-aligned joints.

    Args:
        joints: (T, J, 3) with J >= 12.
    Returns:
        ratio in [0, 1] over the T - 1 transitions (either foot skating counts the transition once).
    """
    feet = joints[:, FOOT_JOINTS]  # (T, 2, 3)
    low = (feet[1:, :, 1] < height) & (feet[:-1, :, 1] < height)
    moved = np.linalg.norm(feet[1:, :, [0, 2]] - feet[:-1, :, [0, 2]], axis=-1) > displacement
    skating = (low & moved).any(axis=1)
    return float(skating.mean()) if skating.size else 0.0


def jitter(joints: np.ndarray, fps: float = 20.0) -> float:
    """Mean magnitude of the third time difference of joint positions times fps^3 (m/s^3).

    DNO reports it in units of 10^2 m/s^3: divide by 100 for its tables.
    """
    if joints.shape[0] < 4:
        return 0.0
    jerk = np.diff(joints, n=3, axis=0) * fps**3
    return float(np.linalg.norm(jerk, axis=-1).mean())


def lowest_height(joints: np.ndarray) -> float:
    """The lowest y over all frames and joints (m): negative means something sank into the floor."""
    return float(joints[..., 1].min())
