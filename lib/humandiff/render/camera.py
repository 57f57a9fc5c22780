"""Pinhole cameras: intrinsics, world->camera extrinsics and projection (numpy and torch).

Conventions (used by every module of ``humandiff.render``):

- World frame: y up (SMPL / HumanML3D convention), a body stands on y = 0 facing +z.
- Camera frame: OpenCV, x right, y DOWN, z FORWARD (the viewing direction). A camera that
  looks at a body with the world's up direction appearing upwards in the image therefore
  has its camera y axis along world -y: ``look_at`` builds this flip into ``R``.
- Extrinsics map world to camera: ``p_cam = R @ p_world + t``; the camera centre in the
  world is ``-R.T @ t``.
- Pixels: ``u = fx * x / z + cx`` (column), ``v = fy * y / z + cy`` (row). The centre of
  pixel (row i, column j) is at continuous coordinate (u, v) = (j, i): integer coordinates
  are pixel CENTRES (OpenCV drawing/remap convention), the image spans [-0.5, W - 0.5] x
  [-0.5, H - 0.5], and the default principal point is the image centre ((W-1)/2, (H-1)/2).
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Sequence

import numpy as np
import torch

from humandiff.io.artifacts import ArtifactError

WORLD_UP = np.array([0.0, 1.0, 0.0])


def _as_vector3(value: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.shape != (3,) or not np.isfinite(array).all():
        raise ArtifactError(f"camera: parameter '{name}' must be 3 finite numbers, got shape {array.shape}")
    return array


@dataclass(frozen=True, eq=False)
class Camera:
    """A pinhole camera (OpenCV convention, see the module docstring).

    ``R`` (3, 3) and ``t`` (3,) map world points to camera coordinates; ``width`` and
    ``height`` are the image size in pixels.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    R: np.ndarray
    t: np.ndarray

    def __post_init__(self) -> None:
        for name in ("fx", "fy", "cx", "cy"):
            value = float(getattr(self, name))
            if not np.isfinite(value):
                raise ArtifactError(f"camera: parameter '{name}' must be finite, got {value}")
            object.__setattr__(self, name, value)
        if self.fx <= 0 or self.fy <= 0:
            raise ArtifactError(f"camera: focal lengths must be positive, got fx={self.fx}, fy={self.fy}")
        for name in ("width", "height"):
            value = getattr(self, name)
            if int(value) != value or int(value) <= 0:
                raise ArtifactError(f"camera: parameter '{name}' must be a positive integer, got {value}")
            object.__setattr__(self, name, int(value))
        rotation = np.asarray(self.R, dtype=np.float64)
        if rotation.shape != (3, 3) or not np.isfinite(rotation).all():
            raise ArtifactError(f"camera: parameter 'R' must be a finite (3, 3) matrix, got shape {rotation.shape}")
        if not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-5) or np.linalg.det(rotation) < 0:
            raise ArtifactError("camera: parameter 'R' is not a rotation matrix (orthonormal, det +1)")
        rotation = rotation.copy()
        rotation.setflags(write=False)
        translation = _as_vector3(self.t, "t").copy()
        translation.setflags(write=False)
        object.__setattr__(self, "R", rotation)
        object.__setattr__(self, "t", translation)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def look_at(
        cls,
        eye: Sequence[float] | np.ndarray,
        target: Sequence[float] | np.ndarray,
        up: Sequence[float] | np.ndarray = (0.0, 1.0, 0.0),
        focal_length: float = 300.0,
        width: int = 256,
        height: int = 256,
        cx: float | None = None,
        cy: float | None = None,
    ) -> Camera:
        """A camera at ``eye`` whose optical axis passes through ``target``.

        ``up`` (world) appears as image-up, i.e. along camera -y. Square pixels
        (fx = fy = ``focal_length``); the principal point defaults to the image centre.
        """
        eye_w = _as_vector3(eye, "eye")
        target_w = _as_vector3(target, "target")
        up_w = _as_vector3(up, "up")
        forward = target_w - eye_w
        if np.linalg.norm(forward) < 1e-9:
            raise ArtifactError("camera: 'eye' and 'target' coincide in look_at")
        forward /= np.linalg.norm(forward)
        right = np.cross(forward, up_w)
        if np.linalg.norm(right) < 1e-6 * max(np.linalg.norm(up_w), 1e-12):
            raise ArtifactError("camera: 'up' is parallel to the viewing direction in look_at")
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)  # right x down = forward: a right-handed camera frame
        rotation = np.stack([right, down, forward])
        return cls(
            fx=focal_length,
            fy=focal_length,
            cx=(width - 1) / 2.0 if cx is None else cx,
            cy=(height - 1) / 2.0 if cy is None else cy,
            width=width,
            height=height,
            R=rotation,
            t=-rotation @ eye_w,
        )

    @classmethod
    def orbit(
        cls,
        distance: float,
        elevation_deg: float,
        azimuth_deg: float,
        focal_length: float,
        width: int,
        height: int,
        target: Sequence[float] | np.ndarray = (0.0, 0.0, 0.0),
    ) -> Camera:
        """A camera on a sphere around ``target`` looking at it, world y up.

        Azimuth 0 puts the camera on the target's +z side (it sees the front of a body that
        faces +z); positive azimuth turns it counter-clockwise seen from above (towards +x).
        Positive elevation lifts it above the target, looking down; |elevation| < 90.
        """
        if not distance > 0:
            raise ArtifactError(f"camera: orbit 'distance' must be positive, got {distance}")
        if not abs(elevation_deg) < 90.0:
            raise ArtifactError(f"camera: orbit 'elevation_deg' must lie in (-90, 90), got {elevation_deg}")
        elevation, azimuth = np.deg2rad(elevation_deg), np.deg2rad(azimuth_deg)
        offset = distance * np.array(
            [np.cos(elevation) * np.sin(azimuth), np.sin(elevation), np.cos(elevation) * np.cos(azimuth)]
        )
        target_w = _as_vector3(target, "target")
        return cls.look_at(target_w + offset, target_w, WORLD_UP, focal_length, width, height)

    @classmethod
    def from_arrays(cls, intrinsics: np.ndarray, size: np.ndarray, R: np.ndarray, t: np.ndarray) -> Camera:
        """Inverse of :meth:`to_arrays`: intrinsics (4,) [fx, fy, cx, cy], size (2,) [W, H], R (3, 3), t (3,)."""
        intrinsics = np.asarray(intrinsics, dtype=np.float64)
        size = np.asarray(size)
        if intrinsics.shape != (4,) or size.shape != (2,):
            raise ArtifactError(
                f"camera: from_arrays needs intrinsics (4,) and size (2,), got {intrinsics.shape} and {size.shape}"
            )
        fx, fy, cx, cy = (float(x) for x in intrinsics)
        return cls(fx, fy, cx, cy, int(size[0]), int(size[1]), R, t)

    # ------------------------------------------------------------------ accessors
    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays for an NPZ: intrinsics (4,), size (2,) int32 [W, H], R (3, 3), t (3,)."""
        return {
            "intrinsics": np.array([self.fx, self.fy, self.cx, self.cy]),
            "size": np.array([self.width, self.height], dtype=np.int32),
            "R": np.array(self.R),
            "t": np.array(self.t),
        }

    def intrinsics_matrix(self) -> np.ndarray:
        """K (3, 3): [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def center(self) -> np.ndarray:
        """Camera centre in world coordinates (3,)."""
        return -self.R.T @ self.t

    def scaled(self, factor: float) -> Camera:
        """The same view on an image resized by ``factor`` (pixel-centre convention kept)."""
        if not factor > 0:
            raise ArtifactError(f"camera: scale 'factor' must be positive, got {factor}")
        width, height = round(self.width * factor), round(self.height * factor)
        # Pixel centres sit at integers, so the image edge -0.5 maps to -0.5: c' = (c + 0.5) s - 0.5.
        return Camera(
            self.fx * factor,
            self.fy * factor,
            (self.cx + 0.5) * factor - 0.5,
            (self.cy + 0.5) * factor - 0.5,
            width,
            height,
            self.R,
            self.t,
        )

    # ------------------------------------------------------------------ projection
    def world_to_camera(self, points: np.ndarray) -> np.ndarray:
        """World points (..., 3) -> camera coordinates (..., 3)."""
        points = _check_points(points)
        return points @ self.R.T + self.t

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points (..., 3) -> (pixels (..., 2) [u, v], depth (...) = camera z).

        Points with depth <= 0 lie behind the camera; their pixels are NaN.
        """
        return project_camera_points(self.world_to_camera(points), self.fx, self.fy, self.cx, self.cy)

    def project_torch(self, points: torch.Tensor, min_depth: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Differentiable :meth:`project` for a tensor (..., 3); see :func:`project_points_torch`."""
        kwargs = {"dtype": points.dtype, "device": points.device}
        return project_points_torch(
            points,
            torch.as_tensor(self.intrinsics_matrix(), **kwargs),
            torch.as_tensor(np.array(self.R), **kwargs),
            torch.as_tensor(np.array(self.t), **kwargs),
            min_depth=min_depth,
        )


def _check_points(points: np.ndarray) -> np.ndarray:
    points = np.asarray(points)
    if points.ndim < 1 or points.shape[-1] != 3:
        raise ArtifactError(f"camera: 'points' must have shape (..., 3), got {points.shape}")
    return points.astype(np.float64, copy=False)


def project_camera_points(
    points_camera: np.ndarray, fx: float, fy: float, cx: float, cy: float
) -> tuple[np.ndarray, np.ndarray]:
    """Camera-space points (..., 3) -> (pixels (..., 2), depth (...)); NaN pixels behind the camera."""
    depth = points_camera[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        inverse_depth = np.where(depth > 0, 1.0 / depth, np.nan)
    pixels = np.stack(
        [fx * points_camera[..., 0] * inverse_depth + cx, fy * points_camera[..., 1] * inverse_depth + cy], axis=-1
    )
    return pixels, depth


def project_points_torch(
    points: torch.Tensor,
    K: torch.Tensor,
    R: torch.Tensor,
    t: torch.Tensor,
    min_depth: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Differentiable projection of world points, batched over cameras by broadcasting.

    points (..., N, 3), K (..., 3, 3), R (..., 3, 3), t (..., 3) -> pixels (..., N, 2),
    depth (..., N). Gradients flow to every input (ScoreHMR optimises ``t``). Set
    ``min_depth`` to clamp the depth used for the division, which keeps gradients finite
    when an optimiser pushes points towards the camera plane (the returned depth is unclamped).
    """
    if points.shape[-1] != 3 or K.shape[-2:] != (3, 3) or R.shape[-2:] != (3, 3) or t.shape[-1] != 3:
        raise ArtifactError(
            f"camera: project_points_torch needs points (..., 3), K (..., 3, 3), R (..., 3, 3), t (..., 3); "
            f"got {tuple(points.shape)}, {tuple(K.shape)}, {tuple(R.shape)}, {tuple(t.shape)}"
        )
    points_camera = torch.matmul(points, R.transpose(-1, -2)) + t.unsqueeze(-2)
    depth = points_camera[..., 2]
    divisor = depth if min_depth is None else depth.clamp(min=min_depth)
    xy = points_camera[..., :2] / divisor.unsqueeze(-1)
    focal = torch.stack([K[..., 0, 0], K[..., 1, 1]], dim=-1).unsqueeze(-2)
    principal = torch.stack([K[..., 0, 2], K[..., 1, 2]], dim=-1).unsqueeze(-2)
    # K[0, 1] (skew) is zero for every camera built here but honoured for user-supplied K.
    skew = K[..., 0, 1].unsqueeze(-1)
    u = focal[..., 0] * xy[..., 0] + skew * xy[..., 1] + principal[..., 0]
    v = focal[..., 1] * xy[..., 1] + principal[..., 1]
    return torch.stack([u, v], dim=-1), depth


@dataclass(frozen=True, eq=False)
class CameraBatch:
    """C cameras stacked for batch projection: K (C, 3, 3), R (C, 3, 3), t (C, 3), size (C, 2) [W, H]."""

    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    size: np.ndarray

    def __post_init__(self) -> None:
        count = len(self.K)
        shapes = {"K": (count, 3, 3), "R": (count, 3, 3), "t": (count, 3), "size": (count, 2)}
        for name, shape in shapes.items():
            if np.shape(getattr(self, name)) != shape:
                raise ArtifactError(
                    f"camera batch: field '{name}' has shape {np.shape(getattr(self, name))}, expected {shape}"
                )

    @classmethod
    def stack(cls, cameras: Sequence[Camera]) -> CameraBatch:
        """Stack a non-empty sequence of cameras."""
        if len(cameras) == 0:
            raise ArtifactError("camera batch: 'cameras' is empty")
        return cls(
            K=np.stack([c.intrinsics_matrix() for c in cameras]),
            R=np.stack([np.array(c.R) for c in cameras]),
            t=np.stack([np.array(c.t) for c in cameras]),
            size=np.array([[c.width, c.height] for c in cameras], dtype=np.int32),
        )

    @classmethod
    def from_arrays(cls, intrinsics: np.ndarray, size: np.ndarray, R: np.ndarray, t: np.ndarray) -> CameraBatch:
        """Inverse of :meth:`to_arrays`: intrinsics (C, 4) [fx, fy, cx, cy], size (C, 2), R (C, 3, 3), t (C, 3)."""
        intrinsics = np.asarray(intrinsics, dtype=np.float64)
        if intrinsics.ndim != 2 or intrinsics.shape[1] != 4:
            raise ArtifactError(f"camera batch: 'intrinsics' must have shape (C, 4), got {intrinsics.shape}")
        if not len(intrinsics) == len(size) == len(R) == len(t):
            raise ArtifactError("camera batch: 'intrinsics', 'size', 'R' and 't' differ in length")
        return cls.stack([Camera.from_arrays(k, s, r, tt) for k, s, r, tt in zip(intrinsics, size, R, t, strict=True)])

    def __len__(self) -> int:
        return len(self.K)

    def __getitem__(self, index: int) -> Camera:
        K = self.K[index]
        return Camera(
            K[0, 0],
            K[1, 1],
            K[0, 2],
            K[1, 2],
            int(self.size[index, 0]),
            int(self.size[index, 1]),
            self.R[index],
            self.t[index],
        )

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Points (N, 3) shared by all cameras, or (C, N, 3) one set per camera ->
        pixels (C, N, 2), depth (C, N); NaN pixels behind a camera."""
        points = _check_points(points)
        if points.ndim == 2:
            points = np.broadcast_to(points, (len(self), *points.shape))
        if points.ndim != 3 or points.shape[0] != len(self):
            raise ArtifactError(f"camera batch: 'points' must be (N, 3) or ({len(self)}, N, 3), got {points.shape}")
        points_camera = np.einsum("cij,cnj->cni", self.R, points) + self.t[:, None, :]
        depth = points_camera[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            inverse_depth = np.where(depth > 0, 1.0 / depth, np.nan)
        xy = points_camera[..., :2] * inverse_depth[..., None]
        u = self.K[:, None, 0, 0] * xy[..., 0] + self.K[:, None, 0, 1] * xy[..., 1] + self.K[:, None, 0, 2]
        v = self.K[:, None, 1, 1] * xy[..., 1] + self.K[:, None, 1, 2]
        return np.stack([u, v], axis=-1), depth

    def project_torch(self, points: torch.Tensor, min_depth: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Differentiable :meth:`project`: points (N, 3) or (C, N, 3) -> (C, N, 2), (C, N)."""
        kwargs = {"dtype": points.dtype, "device": points.device}
        return project_points_torch(
            points,
            torch.as_tensor(self.K, **kwargs),
            torch.as_tensor(np.array(self.R), **kwargs),
            torch.as_tensor(np.array(self.t), **kwargs),
            min_depth=min_depth,
        )

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays for an NPZ: intrinsics (C, 4) [fx, fy, cx, cy], size (C, 2), R (C, 3, 3), t (C, 3)."""
        intrinsics = np.stack([self.K[:, 0, 0], self.K[:, 1, 1], self.K[:, 0, 2], self.K[:, 1, 2]], axis=-1)
        return {
            "intrinsics": intrinsics,
            "size": np.array(self.size, dtype=np.int32),
            "R": np.array(self.R),
            "t": np.array(self.t),
        }
