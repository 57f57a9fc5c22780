"""Rotation representations and their conversions, shared by the whole project.

Conventions (every function follows them):

- Rotation matrices act on column vectors, ``v' = R @ v``; shape ``(..., 3, 3)``.
- Quaternions are ``(w, x, y, z)`` with the Hamilton product; unit norm for rotations; ``(..., 4)``.
- Axis-angle is ``axis * angle`` (radians); ``(..., 3)``.
- 6D is the first two COLUMNS of the matrix, concatenated ``[R[:, 0], R[:, 1]]``; ``(..., 6)``
  (Zhou et al. 2019). Back to a matrix by Gram-Schmidt and a cross product.
- Yaw is the right-handed rotation about +Y. For a body facing +Z with its left side at +X (SMPL,
  HumanML3D), a positive yaw turns the body to its left.

The torch functions take any leading batch dimensions, float32 or float64, and are
differentiable with finite gradients at the identity (small-angle branches avoid 0/0). The
``*_np`` functions take and return numpy arrays: some wrap the torch versions, a few that the
per-clip data pipeline calls many times are written in numpy directly for speed.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

__all__ = [
    "axis_angle_to_matrix",
    "axis_angle_to_quaternion",
    "matrix_from_two_vectors",
    "matrix_to_axis_angle",
    "matrix_to_quaternion",
    "matrix_to_rotation_6d",
    "quaternion_apply",
    "quaternion_conjugate",
    "quaternion_from_two_vectors",
    "quaternion_invert",
    "quaternion_multiply",
    "quaternion_normalize",
    "quaternion_standardize",
    "quaternion_to_axis_angle",
    "quaternion_to_matrix",
    "rotation_6d_to_matrix",
    "skew",
    "yaw_to_matrix",
    "yaw_to_quaternion",
    "axis_angle_to_matrix_np",
    "matrix_from_two_vectors_np",
    "matrix_to_axis_angle_np",
    "matrix_to_quaternion_np",
    "matrix_to_rotation_6d_np",
    "quaternion_apply_np",
    "quaternion_conjugate_np",
    "quaternion_from_two_vectors_np",
    "quaternion_multiply_np",
    "quaternion_to_matrix_np",
    "rotation_6d_to_matrix_np",
    "yaw_to_matrix_np",
]

# Below this squared angle (angle < 1e-4 rad) the series expansions are exact to float64 precision.
_SMALL_ANGLE_SQ = 1e-8
# Below this value of 1 + cos(angle between two vectors) they are treated as exactly opposite.
_ANTIPARALLEL_EPS = 1e-7


def _normalize(v: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Unit vectors along the last axis; (..., D) -> (..., D)."""
    return v / torch.linalg.vector_norm(v, dim=-1, keepdim=True).clamp_min(eps)


def skew(v: torch.Tensor) -> torch.Tensor:
    """Cross-product matrices ``[v]_x`` with ``[v]_x @ u = v x u``: (..., 3) -> (..., 3, 3)."""
    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack(
        [
            torch.stack([zero, -z, y], -1),
            torch.stack([z, zero, -x], -1),
            torch.stack([-y, x, zero], -1),
        ],
        -2,
    )


def _safe_angle(angle_sq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(small mask, angle with small entries replaced by 1) so that sqrt and division stay finite."""
    small = angle_sq < _SMALL_ANGLE_SQ
    return small, torch.sqrt(torch.where(small, torch.ones_like(angle_sq), angle_sq))


# --------------------------------------------------------------------------- axis-angle


def axis_angle_to_matrix(axis_angle: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula: (..., 3) -> (..., 3, 3)."""
    angle_sq = (axis_angle * axis_angle).sum(-1)[..., None, None]
    small, angle = _safe_angle(angle_sq)
    # sin(a)/a, and (1 - cos a)/a^2 written as 2 sin^2(a/2)/a^2 to avoid cancellation in float32.
    sin_over_angle = torch.where(small, 1.0 - angle_sq / 6.0, torch.sin(angle) / angle)
    one_minus_cos_over_sq = torch.where(small, 0.5 - angle_sq / 24.0, 2.0 * (torch.sin(angle / 2.0) / angle) ** 2)
    k = skew(axis_angle)
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)
    return eye + sin_over_angle * k + one_minus_cos_over_sq * (k @ k)


def axis_angle_to_quaternion(axis_angle: torch.Tensor) -> torch.Tensor:
    """(..., 3) -> unit quaternions (..., 4) with w >= 0 for angles up to pi."""
    angle_sq = (axis_angle * axis_angle).sum(-1, keepdim=True)
    small, angle = _safe_angle(angle_sq)
    w = torch.where(small, 1.0 - angle_sq / 8.0, torch.cos(angle / 2.0))
    sin_half_over_angle = torch.where(small, 0.5 - angle_sq / 48.0, torch.sin(angle / 2.0) / angle)
    return torch.cat([w, axis_angle * sin_half_over_angle], -1)


def quaternion_to_axis_angle(quaternion: torch.Tensor) -> torch.Tensor:
    """(..., 4) -> axis-angle (..., 3) with angle in [0, pi] (q and -q give the same result)."""
    q = quaternion_standardize(quaternion_normalize(quaternion))
    w, xyz = q[..., :1], q[..., 1:]
    sin_half_sq = (xyz * xyz).sum(-1, keepdim=True)
    small, sin_half = _safe_angle(sin_half_sq)
    # angle = 2 atan2(|xyz|, w); near zero angle/|xyz| -> 2/w - 2|xyz|^2/(3 w^3). The series gets
    # w = 1 outside its branch so that a half turn (w = 0) has no inf in the unused branch.
    w_near_one = torch.where(small, w, torch.ones_like(w))
    scale = torch.where(
        small,
        2.0 / w_near_one - 2.0 * sin_half_sq / (3.0 * w_near_one**3),
        2.0 * torch.atan2(sin_half, w) / sin_half,
    )
    return xyz * scale


def matrix_to_axis_angle(matrix: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) -> axis-angle (..., 3), angle in [0, pi]; robust near 0 and near pi."""
    return quaternion_to_axis_angle(matrix_to_quaternion(matrix))


# --------------------------------------------------------------------------- quaternions


def quaternion_normalize(quaternion: torch.Tensor) -> torch.Tensor:
    """Unit quaternions: (..., 4) -> (..., 4)."""
    return _normalize(quaternion)


def quaternion_standardize(quaternion: torch.Tensor) -> torch.Tensor:
    """Flip the sign so that w >= 0 (same rotation): (..., 4) -> (..., 4)."""
    return torch.where(quaternion[..., :1] < 0, -quaternion, quaternion)


def quaternion_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product ``a * b`` (apply b, then a): (..., 4), (..., 4) -> (..., 4) (broadcasts)."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        -1,
    )


def quaternion_conjugate(quaternion: torch.Tensor) -> torch.Tensor:
    """(w, -x, -y, -z): the inverse of a unit quaternion; (..., 4) -> (..., 4)."""
    return torch.cat([quaternion[..., :1], -quaternion[..., 1:]], -1)


def quaternion_invert(quaternion: torch.Tensor) -> torch.Tensor:
    """Multiplicative inverse ``conj(q) / |q|^2`` (any nonzero q): (..., 4) -> (..., 4)."""
    return quaternion_conjugate(quaternion) / (quaternion * quaternion).sum(-1, keepdim=True)


def quaternion_apply(quaternion: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    """Rotate vectors by unit quaternions: (..., 4), (..., 3) -> (..., 3) (leading dims broadcast)."""
    w, xyz = quaternion[..., :1], quaternion[..., 1:]
    xyz, vector = torch.broadcast_tensors(xyz, vector)
    twice_cross = 2.0 * torch.linalg.cross(xyz, vector, dim=-1)
    return vector + w * twice_cross + torch.linalg.cross(xyz, twice_cross, dim=-1)


def quaternion_to_matrix(quaternion: torch.Tensor) -> torch.Tensor:
    """(..., 4) -> (..., 3, 3); a non-unit quaternion is normalised implicitly."""
    w, x, y, z = quaternion.unbind(-1)
    two_s = 2.0 / (quaternion * quaternion).sum(-1)
    return torch.stack(
        [
            torch.stack([1 - two_s * (y * y + z * z), two_s * (x * y - z * w), two_s * (x * z + y * w)], -1),
            torch.stack([two_s * (x * y + z * w), 1 - two_s * (x * x + z * z), two_s * (y * z - x * w)], -1),
            torch.stack([two_s * (x * z - y * w), two_s * (y * z + x * w), 1 - two_s * (x * x + y * y)], -1),
        ],
        -2,
    )


def matrix_to_quaternion(matrix: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) -> unit quaternions (..., 4) with w >= 0.

    Each of the four components can be recovered from the diagonal; the largest one is used to
    derive the other three, which keeps the conversion well conditioned for every rotation.
    """
    m = matrix
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    # 4 q_i^2 for i = w, x, y, z.
    four_sq = torch.stack(
        [1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1
    )
    two_abs = torch.sqrt(four_sq.clamp_min(1e-12))  # 2 |q_i|
    # Row i: the quaternion derived from component i, scaled by 2 |q_i| * 2 (divided out below).
    candidates = torch.stack(
        [
            torch.stack([four_sq[..., 0], m21 - m12, m02 - m20, m10 - m01], -1),
            torch.stack([m21 - m12, four_sq[..., 1], m01 + m10, m02 + m20], -1),
            torch.stack([m02 - m20, m01 + m10, four_sq[..., 2], m12 + m21], -1),
            torch.stack([m10 - m01, m02 + m20, m12 + m21, four_sq[..., 3]], -1),
        ],
        -2,
    ) / (2.0 * two_abs[..., None])
    best = four_sq.argmax(-1)
    index = best[..., None, None].expand(*best.shape, 1, 4)
    quaternion = torch.gather(candidates, -2, index).squeeze(-2)
    return quaternion_standardize(quaternion_normalize(quaternion))


def quaternion_from_two_vectors(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Smallest rotation taking the direction of ``source`` to that of ``target``: (..., 3) x2 -> (..., 4).

    For exactly opposite vectors the rotation is by pi about an axis perpendicular to ``source``;
    a zero vector gives the identity.
    """
    u, v = torch.broadcast_tensors(_normalize(source), _normalize(target))
    one_plus_cos = 1.0 + (u * v).sum(-1, keepdim=True)
    quaternion = torch.cat([one_plus_cos, torch.linalg.cross(u, v, dim=-1)], -1)
    # Perpendicular axis for the opposite case: cross with the basis axis least aligned with u.
    basis = torch.eye(3, dtype=u.dtype, device=u.device)[u.abs().argmin(-1)]
    perpendicular = _normalize(torch.linalg.cross(u, basis, dim=-1))
    half_turn = torch.cat([torch.zeros_like(one_plus_cos), perpendicular], -1)
    quaternion = torch.where(one_plus_cos < _ANTIPARALLEL_EPS, half_turn, quaternion)
    return quaternion_normalize(quaternion)


def matrix_from_two_vectors(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Smallest rotation taking ``source`` to ``target`` as a matrix: (..., 3) x2 -> (..., 3, 3)."""
    return quaternion_to_matrix(quaternion_from_two_vectors(source, target))


# --------------------------------------------------------------------------- 6D and yaw


def matrix_to_rotation_6d(matrix: torch.Tensor) -> torch.Tensor:
    """First two columns, concatenated: (..., 3, 3) -> (..., 6)."""
    return torch.cat([matrix[..., :, 0], matrix[..., :, 1]], -1)


def rotation_6d_to_matrix(rotation_6d: torch.Tensor) -> torch.Tensor:
    """Gram-Schmidt on the two columns, third column by a cross product: (..., 6) -> (..., 3, 3)."""
    a1, a2 = rotation_6d[..., :3], rotation_6d[..., 3:]
    b1 = _normalize(a1)
    b2 = _normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1)
    b3 = torch.linalg.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], -1)


def yaw_to_matrix(angle: torch.Tensor) -> torch.Tensor:
    """Rotation about +Y: (...,) -> (..., 3, 3)."""
    c, s = torch.cos(angle), torch.sin(angle)
    zero, one = torch.zeros_like(angle), torch.ones_like(angle)
    return torch.stack(
        [torch.stack([c, zero, s], -1), torch.stack([zero, one, zero], -1), torch.stack([-s, zero, c], -1)], -2
    )


def yaw_to_quaternion(angle: torch.Tensor) -> torch.Tensor:
    """Rotation about +Y: (...,) -> (..., 4)."""
    half = angle / 2.0
    zero = torch.zeros_like(angle)
    return torch.stack([torch.cos(half), zero, torch.sin(half), zero], -1)


# --------------------------------------------------------------------------- numpy


def _via_torch(function: Callable[..., torch.Tensor], *arrays: np.ndarray) -> np.ndarray:
    """Call a torch conversion on numpy arrays (float32 stays float32, anything else float64)."""
    tensors = []
    for array in arrays:
        array = np.asarray(array)
        if array.dtype != np.float32:
            array = array.astype(np.float64)
        tensors.append(torch.from_numpy(np.ascontiguousarray(array)))
    with torch.no_grad():
        return function(*tensors).numpy()


def axis_angle_to_matrix_np(axis_angle: np.ndarray) -> np.ndarray:
    """numpy :func:`axis_angle_to_matrix`: (..., 3) -> (..., 3, 3)."""
    return _via_torch(axis_angle_to_matrix, axis_angle)


def matrix_to_axis_angle_np(matrix: np.ndarray) -> np.ndarray:
    """numpy :func:`matrix_to_axis_angle`: (..., 3, 3) -> (..., 3)."""
    return _via_torch(matrix_to_axis_angle, matrix)


def matrix_to_quaternion_np(matrix: np.ndarray) -> np.ndarray:
    """numpy :func:`matrix_to_quaternion`: (..., 3, 3) -> (..., 4)."""
    return _via_torch(matrix_to_quaternion, matrix)


def rotation_6d_to_matrix_np(rotation_6d: np.ndarray) -> np.ndarray:
    """numpy :func:`rotation_6d_to_matrix`: (..., 6) -> (..., 3, 3)."""
    return _via_torch(rotation_6d_to_matrix, rotation_6d)


def matrix_to_rotation_6d_np(matrix: np.ndarray) -> np.ndarray:
    """numpy :func:`matrix_to_rotation_6d`: (..., 3, 3) -> (..., 6)."""
    matrix = np.asarray(matrix)
    return np.concatenate([matrix[..., :, 0], matrix[..., :, 1]], -1)


def yaw_to_matrix_np(angle: np.ndarray) -> np.ndarray:
    """numpy :func:`yaw_to_matrix`: (...,) -> (..., 3, 3) float64."""
    angle = np.asarray(angle, dtype=np.float64)
    c, s = np.cos(angle), np.sin(angle)
    matrix = np.zeros(angle.shape + (3, 3))
    matrix[..., 0, 0] = c
    matrix[..., 0, 2] = s
    matrix[..., 1, 1] = 1.0
    matrix[..., 2, 0] = -s
    matrix[..., 2, 2] = c
    return matrix


def _dot_np(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dot product along the last axis; einsum is ~3x faster than (a * b).sum(-1) on short axes."""
    return np.einsum("...i,...i->...", a, b)


def _cross_np(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cross product along the last axis, written out (faster than np.cross on small arrays)."""
    ax, ay, az = a[..., 0], a[..., 1], a[..., 2]
    bx, by, bz = b[..., 0], b[..., 1], b[..., 2]
    return np.stack([ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx], -1)


def quaternion_multiply_np(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """numpy :func:`quaternion_multiply`: (..., 4), (..., 4) -> (..., 4) (broadcasts)."""
    aw, ax, ay, az = a[..., 0], a[..., 1], a[..., 2], a[..., 3]
    bw, bx, by, bz = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return np.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        -1,
    )


def quaternion_conjugate_np(quaternion: np.ndarray) -> np.ndarray:
    """numpy :func:`quaternion_conjugate`: (..., 4) -> (..., 4)."""
    return quaternion * np.array([1.0, -1.0, -1.0, -1.0])


def quaternion_apply_np(quaternion: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """numpy :func:`quaternion_apply` (unit quaternions): (..., 4), (..., 3) -> (..., 3) (broadcasts)."""
    w, xyz = quaternion[..., :1], quaternion[..., 1:]
    twice_cross = 2.0 * _cross_np(xyz, vector)
    return vector + w * twice_cross + _cross_np(xyz, twice_cross)


def quaternion_from_two_vectors_np(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """numpy :func:`quaternion_from_two_vectors`: (..., 3) x2 -> unit (..., 4) float64 (broadcasts).

    ``(|u||v| + u.v, u x v)`` normalised; exactly opposite vectors give a half turn about an axis
    perpendicular to ``source``; a zero vector gives the identity.
    """
    u = np.asarray(source, dtype=np.float64)
    v = np.asarray(target, dtype=np.float64)
    u, v = np.broadcast_arrays(u, v)
    norms = np.sqrt(_dot_np(u, u) * _dot_np(v, v))
    w = norms + _dot_np(u, v)
    quaternion = np.concatenate([w[..., None], _cross_np(u, v)], -1)
    # A zero vector has no direction: the identity, as the torch version gives.
    quaternion[norms == 0] = (1.0, 0.0, 0.0, 0.0)
    opposite = (w <= _ANTIPARALLEL_EPS * norms) & (norms > 0)
    if np.any(opposite):
        u_opposite = u[opposite]
        basis = np.eye(3)[np.abs(u_opposite).argmin(-1)]
        quaternion[opposite] = np.concatenate([np.zeros((len(u_opposite), 1)), _cross_np(u_opposite, basis)], -1)
    return quaternion / np.maximum(np.sqrt(_dot_np(quaternion, quaternion)), 1e-300)[..., None]


def quaternion_to_matrix_np(quaternion: np.ndarray) -> np.ndarray:
    """numpy :func:`quaternion_to_matrix`: (..., 4) -> (..., 3, 3) float64."""
    q = np.asarray(quaternion, dtype=np.float64)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    two_s = 2.0 / _dot_np(q, q)
    matrix = np.empty(q.shape[:-1] + (3, 3))
    matrix[..., 0, 0] = 1 - two_s * (y * y + z * z)
    matrix[..., 0, 1] = two_s * (x * y - z * w)
    matrix[..., 0, 2] = two_s * (x * z + y * w)
    matrix[..., 1, 0] = two_s * (x * y + z * w)
    matrix[..., 1, 1] = 1 - two_s * (x * x + z * z)
    matrix[..., 1, 2] = two_s * (y * z - x * w)
    matrix[..., 2, 0] = two_s * (x * z - y * w)
    matrix[..., 2, 1] = two_s * (y * z + x * w)
    matrix[..., 2, 2] = 1 - two_s * (x * x + y * y)
    return matrix


def matrix_from_two_vectors_np(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """numpy :func:`matrix_from_two_vectors`: (..., 3) x2 -> (..., 3, 3) float64."""
    return quaternion_to_matrix_np(quaternion_from_two_vectors_np(source, target))
