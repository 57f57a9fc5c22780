"""The per-frame record the ScoreHMR stages consume from a real benchmark, and checked field readers.

:class:`HMRFrames` holds N frames (one person in one image each) column-wise; row i is one frame:

- ``image_paths[i]``   image file relative to the dataset root (str)
- ``center (N, 2)``    person box centre, pixels (x, y) in the full image
- ``box_size (N,)``    side of the square person box, pixels (SPIN's ``scale`` times 200)
- ``pose (N, 72)``     SMPL axis-angle, radians: global orientation (3) then 23 body joints (69),
                       the global orientation in the **camera** frame (zeros where ``has_smpl`` is False)
- ``betas (N, 10)``    SMPL shape
- ``trans (N, 3)``     SMPL translation in the camera frame, metres (None where the source has no camera)
- ``intrinsics (N, 3, 3)`` pixel intrinsics K (None where the source has none)
- ``keypoints_2d (N, J, 3)`` pixels (x, y) and a confidence in [0, 1] (0 = absent), joints in
  the order ``keypoint_names``
- ``has_smpl (N,)``    whether the frame has SMPL ground truth
- ``sequence``, ``person``, ``frame`` (N,) where each row came from (sequence name, person index, frame index)

Camera frame: OpenCV (x right, y down, z forward), as 3DPW's and EMDB's extrinsics use. A world
pose ``(R_w, t_w)`` goes to the camera ``[R | t]`` (world to camera) by
``R_c = R @ R_w`` and ``t_c = R @ (j0 + t_w) + t - j0``, where ``j0`` is the SMPL pelvis of the
person's shape at rest: SMPL rotates the body about its pelvis, not about the origin, so the
translation changes with the shape (:func:`world_to_camera`). Readers take ``rest_pelvis``
(``betas (10,), gender -> (3,)``) from the caller for that reason; :func:`body_model_pelvis`
builds one from a loaded body model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from humandiff.body.model import read_pickle, rest_joints
from humandiff.geometry.rotations import axis_angle_to_matrix_np, matrix_to_axis_angle_np
from humandiff.io.artifacts import ArtifactError

__all__ = ["HMRFrames", "RestPelvis", "body_model_pelvis", "box_from_keypoints", "concat_frames",
           "world_to_camera"]

#: ``rest_pelvis(betas (10,), gender) -> (3,)`` the SMPL pelvis joint at rest for that shape, metres.
RestPelvis = Callable[[np.ndarray, str], np.ndarray]


@dataclass(frozen=True)
class HMRFrames:
    """N frames of one benchmark in the form the ScoreHMR stages read (see the module docstring)."""

    dataset: str
    image_paths: tuple[str, ...]
    center: np.ndarray
    box_size: np.ndarray
    pose: np.ndarray
    betas: np.ndarray
    trans: np.ndarray | None
    intrinsics: np.ndarray | None
    keypoints_2d: np.ndarray
    keypoint_names: tuple[str, ...]
    has_smpl: np.ndarray
    sequence: tuple[str, ...]
    person: np.ndarray
    frame: np.ndarray

    def __post_init__(self) -> None:
        n, j = len(self.image_paths), len(self.keypoint_names)
        what = f"{self.dataset} frames"
        shapes = {"center": (n, 2), "box_size": (n,), "pose": (n, 72), "betas": (n, 10),
                  "keypoints_2d": (n, j, 3), "has_smpl": (n,), "person": (n,), "frame": (n,)}
        if self.trans is not None:
            shapes["trans"] = (n, 3)
        if self.intrinsics is not None:
            shapes["intrinsics"] = (n, 3, 3)
        for name, shape in shapes.items():
            value = getattr(self, name)
            if value.shape != shape:
                raise ArtifactError(f"{what}: '{name}' has shape {value.shape}, expected {shape}")
        if len(self.sequence) != n:
            raise ArtifactError(f"{what}: {len(self.sequence)} sequence names for {n} frames")
        confidence = self.keypoints_2d[..., 2]
        if ((confidence < 0) | (confidence > 1)).any():
            raise ArtifactError(f"{what}: keypoint confidence outside [0, 1]")

    def __len__(self) -> int:
        return len(self.image_paths)

    @property
    def intrinsics_vector(self) -> np.ndarray | None:
        """(N, 4) [f_x, f_y, c_x, c_y] pixels, the form the perception extraction writes (None without a camera)."""
        if self.intrinsics is None:
            return None
        return np.stack([self.intrinsics[:, 0, 0], self.intrinsics[:, 1, 1], self.intrinsics[:, 0, 2],
                         self.intrinsics[:, 1, 2]], axis=1)

    def select(self, mask: np.ndarray) -> HMRFrames:
        """The frames where ``mask`` (N,) bool is True (or at the given indices), in order."""
        index = np.flatnonzero(mask) if np.asarray(mask).dtype == bool else np.asarray(mask, dtype=np.int64)
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        for name in ("center", "box_size", "pose", "betas", "trans", "intrinsics", "keypoints_2d", "has_smpl",
                     "person", "frame"):
            if fields[name] is not None:
                fields[name] = fields[name][index]
        fields["image_paths"] = tuple(self.image_paths[i] for i in index)
        fields["sequence"] = tuple(self.sequence[i] for i in index)
        return HMRFrames(**fields)


def concat_frames(parts: Sequence[HMRFrames]) -> HMRFrames:
    """One :class:`HMRFrames` of several (same dataset and keypoint order, all with or all without camera)."""
    if not parts:
        raise ArtifactError("concat_frames: no frames to join")
    first = parts[0]
    for part in parts[1:]:
        if part.dataset != first.dataset or part.keypoint_names != first.keypoint_names:
            raise ArtifactError(f"concat_frames: cannot join {part.dataset} frames to {first.dataset} frames")
        for name in ("trans", "intrinsics"):
            if (getattr(part, name) is None) != (getattr(first, name) is None):
                raise ArtifactError(f"concat_frames: '{name}' present in some parts only")
    fields: dict[str, Any] = {"dataset": first.dataset, "keypoint_names": first.keypoint_names}
    for name in ("image_paths", "sequence"):
        fields[name] = tuple(item for part in parts for item in getattr(part, name))
    for name in ("center", "box_size", "pose", "betas", "trans", "intrinsics", "keypoints_2d", "has_smpl",
                 "person", "frame"):
        fields[name] = None if getattr(first, name) is None else np.concatenate([getattr(p, name) for p in parts])
    return HMRFrames(**fields)


# --------------------------------------------------------------------------- geometry


def world_to_camera(pose: np.ndarray, trans: np.ndarray, extrinsics: np.ndarray,
                    pelvis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SMPL ``pose (T, 72)`` and ``trans (T, 3)`` in the world to the camera of ``extrinsics (T, 4, 4)``
    (world to camera); ``pelvis (3,)`` the rest pelvis of the shape. Returns camera-frame (pose, trans)."""
    rotation, shift = extrinsics[:, :3, :3], extrinsics[:, :3, 3]
    root = axis_angle_to_matrix_np(pose[:, :3].astype(np.float64))
    camera_pose = pose.astype(np.float64).copy()
    camera_pose[:, :3] = matrix_to_axis_angle_np(rotation @ root)
    pelvis = np.asarray(pelvis, dtype=np.float64)
    camera_trans = np.einsum("tij,tj->ti", rotation, pelvis + trans) + shift - pelvis
    return camera_pose, camera_trans


def box_from_keypoints(keypoints: np.ndarray, factor: float = 1.2) -> tuple[np.ndarray, np.ndarray]:
    """SPIN's person box from 2D keypoints ``(N, J, 3)``: centre of the bounding box of the joints with
    confidence > 0 and side ``factor`` times its longer side (pixels). Frames without any such
    joint get centre NaN and side 0."""
    visible = keypoints[..., 2] > 0
    xy = np.where(visible[..., None], keypoints[..., :2], np.nan)
    any_visible = visible.any(axis=1)
    low = np.full((len(keypoints), 2), np.nan)
    high = np.full((len(keypoints), 2), np.nan)
    low[any_visible] = np.nanmin(xy[any_visible], axis=1)
    high[any_visible] = np.nanmax(xy[any_visible], axis=1)
    size = np.zeros(len(keypoints))
    size[any_visible] = factor * np.max(high[any_visible] - low[any_visible], axis=1)
    return (low + high) / 2, size


def body_model_pelvis(model) -> RestPelvis:
    """A ``rest_pelvis`` from a loaded body model (:func:`humandiff.body.load_body_model`): the pelvis
    joint of its rest shape for the given betas. One model serves every gender, so pass the
    gendered official SMPL model (a loader per gender) where the benchmark's genders matter."""
    def pelvis(betas: np.ndarray, gender: str) -> np.ndarray:
        return rest_joints(model, np.asarray(betas, dtype=np.float64)[: model.num_betas])[0]

    return pelvis


# --------------------------------------------------------------------------- checked fields


def load_pickle_dict(path: Path, what: str) -> dict:
    """A pickled dict through the restricted unpickler (numpy arrays and plain containers only)."""
    payload = read_pickle(path)
    if not isinstance(payload, dict):
        raise ArtifactError(f"{path}: expected a pickled dict ({what}), found {type(payload).__name__}")
    return payload


def field(data: Mapping, key: str, path: Path) -> Any:
    """``data[key]``; ArtifactError naming file and field when absent (``key`` may be ``a.b`` for nested dicts)."""
    value: Any = data
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise ArtifactError(f"{path}: missing field '{key}'")
        value = value[part]
    return value


def number_array(value: Any, path: Path, key: str, shape: tuple[int | None, ...],
                 dtype: type = np.float64) -> np.ndarray:
    """``value`` as a numeric array of ``shape`` (None = any size) in ``dtype``, finite when float."""
    try:
        array = np.asarray(value)
    except Exception as exc:  # ragged lists
        raise ArtifactError(f"{path}: field '{key}' is not an array ({type(exc).__name__})") from None
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ArtifactError(f"{path}: field '{key}' is not a numeric array (dtype {array.dtype})")
    if array.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, array.shape)):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ArtifactError(f"{path}: field '{key}' has shape {tuple(array.shape)}, expected {want}")
    array = array.astype(dtype)
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise ArtifactError(f"{path}: field '{key}' contains NaN or Inf")
    return array


def per_person(value: Any, path: Path, key: str, people: int) -> list:
    """A per-person list field (3DPW: one entry per actor), checked to have ``people`` entries."""
    if not isinstance(value, (list, tuple)) and not (isinstance(value, np.ndarray) and value.ndim >= 1):
        raise ArtifactError(
            f"{path}: field '{key}' is {type(value).__name__}, expected a list with one entry per person"
        )
    if len(value) != people:
        raise ArtifactError(f"{path}: field '{key}' has {len(value)} entries for {people} people")
    return list(value)


def text(value: Any, path: Path, key: str) -> str:
    """A string field (Python 2 ``str`` arrives as latin-1 text, numpy strings are accepted too)."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not isinstance(value, str):
        raise ArtifactError(f"{path}: field '{key}' is {type(value).__name__}, expected a string")
    return value
