"""Reader for EMDB as published: ``<root>/P<k>/<sequence>/P<k>_<sequence>_data.pkl`` with the images
in ``<root>/P<k>/<sequence>/images/%05d.jpg`` (numbered from 0).

Each ``*_data.pkl`` is a pickle (read through the restricted unpickler,
:func:`humandiff.body.model.read_pickle`) of a dict with T = ``n_frames``:

====================  ===========================================================================
``gender``            ``"female"``, ``"male"`` or ``"neutral"``
``name``              ``<subject>_<sequence>``, e.g. ``P8_69_outdoor_cartwheel``
``emdb1``, ``emdb2``  bool: part of EMDB 1 (RGB pose baselines) / EMDB 2 (global trajectories)
``n_frames``          int, T
``good_frames_mask``  (T,) bool; False where the person is out of view or fully occluded
``camera``            dict: ``intrinsics`` (3, 3) pixels, ``extrinsics`` (T, 4, 4) world to camera,
                      ``width``, ``height`` (int, pixels)
``smpl``              dict: ``poses_root`` (T, 3), ``poses_body`` (T, 69) axis-angle (radians),
                      ``trans`` (T, 3) metres, ``betas`` (10,); **world** frame
``kp2d``              (T, 24, 2) the SMPL joints projected into the camera, pixels (no confidence)
``bboxes``            dict: ``bboxes`` (T, 4) as (x_min, y_min, x_max, y_max) pixels,
                      ``invalid_idxs`` the frames whose box is invalid
====================  ===========================================================================

Confirmed from public sources (facts, no code taken):

- the layout and every field above: eth-ait/emdb ``dataset.md``; a box is invalid where
  ``good_frames_mask`` is False or it has no area (same file).
- ``camera.extrinsics`` is world to camera: the official evaluation passes it on as ``world2cam``
  and evaluates only the frames of ``good_frames_mask`` (eth-ait/emdb ``evaluation_engine.py``);
  the ground truth pose there is ``concat(poses_root, poses_body)`` (72) with ``betas`` repeated.
- ``kp2d`` holds the 24 SMPL joints in SMPL order (eth-ait/emdb ``visualize.py`` draws it with the
  SMPL skeleton); here each gets confidence 1.
- protocol: ScoreHMR evaluates on EMDB 1 (the sequences whose ``emdb1`` is True), PA-MPJPE on the
  24 SMPL joints (paper section 4 and appendix D).

Not confirmed: whether ``n_frames`` and the other integers are Python ints or numpy scalars in the
release (both are accepted); the box factor used for EMDB crops by HMR methods (1.2 as for 3DPW here).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from humandiff.body.model import SMPL_JOINT_NAMES
from humandiff.datasets.frames import (HMRFrames, RestPelvis, field, load_pickle_dict, number_array, text,
                                       world_to_camera)
from humandiff.io.artifacts import ArtifactError

__all__ = ["EMDBSequence", "EMDB_KEYPOINT_NAMES", "emdb_frames", "iter_emdb", "load_emdb_sequence"]

#: Order of the 24 keypoints of ``kp2d``: the SMPL joints.
EMDB_KEYPOINT_NAMES: tuple[str, ...] = SMPL_JOINT_NAMES
_GENDERS = ("female", "male", "neutral")


@dataclass(frozen=True)
class EMDBSequence:
    """One EMDB ``*_data.pkl``, checked; T frames, float64 unless said.

    ``poses (T, 72)`` SMPL axis-angle (radians, root first) and ``trans (T, 3)`` (metres) in the
    world frame; ``betas (10,)``; ``intrinsics (3, 3)`` pixels; ``extrinsics (T, 4, 4)`` world to
    camera; ``width``/``height`` pixels; ``keypoints_2d (T, 24, 3)`` the projected SMPL joints
    (pixels) with confidence 1; ``bboxes (T, 4)`` x_min, y_min, x_max, y_max pixels; ``bbox_valid (T,)``
    and ``good_frames (T,)`` bool; ``image_paths`` T paths relative to the EMDB root.
    """

    path: Path
    name: str
    subject: str
    gender: str
    emdb1: bool
    emdb2: bool
    poses: np.ndarray
    betas: np.ndarray
    trans: np.ndarray
    intrinsics: np.ndarray
    extrinsics: np.ndarray
    width: int
    height: int
    keypoints_2d: np.ndarray
    bboxes: np.ndarray
    bbox_valid: np.ndarray
    good_frames: np.ndarray
    image_paths: tuple[str, ...]

    @property
    def num_frames(self) -> int:
        return len(self.image_paths)


def _integer(value, path: Path, key: str) -> int:
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ArtifactError(f"{path}: field '{key}' is {type(value).__name__}, expected an integer")
    return int(value)


def _flag(value, path: Path, key: str) -> bool:
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if not isinstance(value, (bool, np.bool_)):
        raise ArtifactError(f"{path}: field '{key}' is {type(value).__name__}, expected a bool")
    return bool(value)


def load_emdb_sequence(path: str | Path) -> EMDBSequence:
    """Read one ``P<k>/<sequence>/P<k>_<sequence>_data.pkl``; every problem (missing file, truncated or
    refused pickle, missing field, wrong shape, NaN) raises one ArtifactError line naming the file."""
    path = Path(path)
    data = load_pickle_dict(path, "an EMDB sequence")
    frames = _integer(field(data, "n_frames", path), path, "n_frames")
    if frames < 1:
        raise ArtifactError(f"{path}: field 'n_frames' is {frames}, expected at least 1")
    gender = text(field(data, "gender", path), path, "gender")
    if gender not in _GENDERS:
        raise ArtifactError(f"{path}: field 'gender' is {gender!r}, expected one of {', '.join(_GENDERS)}")
    name = text(field(data, "name", path), path, "name")
    subject = name.split("_", 1)[0]
    root = number_array(field(data, "smpl.poses_root", path), path, "smpl.poses_root", (frames, 3))
    body = number_array(field(data, "smpl.poses_body", path), path, "smpl.poses_body", (frames, 69))
    trans = number_array(field(data, "smpl.trans", path), path, "smpl.trans", (frames, 3))
    betas = number_array(field(data, "smpl.betas", path), path, "smpl.betas", (None,)).reshape(-1)
    if betas.shape != (10,):
        raise ArtifactError(f"{path}: field 'smpl.betas' has {betas.size} values, expected 10")
    intrinsics = number_array(field(data, "camera.intrinsics", path), path, "camera.intrinsics", (3, 3))
    extrinsics = number_array(field(data, "camera.extrinsics", path), path, "camera.extrinsics", (frames, 4, 4))
    width = _integer(field(data, "camera.width", path), path, "camera.width")
    height = _integer(field(data, "camera.height", path), path, "camera.height")
    kp2d = number_array(field(data, "kp2d", path), path, "kp2d", (frames, 24, 2))
    good = number_array(field(data, "good_frames_mask", path), path, "good_frames_mask", (frames,), bool)
    boxes = number_array(field(data, "bboxes.bboxes", path), path, "bboxes.bboxes", (frames, 4))
    invalid = number_array(field(data, "bboxes.invalid_idxs", path), path, "bboxes.invalid_idxs", (None,), np.int64)
    if ((invalid < 0) | (invalid >= frames)).any():
        raise ArtifactError(f"{path}: field 'bboxes.invalid_idxs' indexes frames outside [0, {frames})")
    bbox_valid = np.ones(frames, dtype=bool)
    bbox_valid[invalid] = False
    bbox_valid &= good & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    folder = f"{path.parent.parent.name}/{path.parent.name}"
    return EMDBSequence(
        path=path,
        name=name,
        subject=subject,
        gender=gender,
        emdb1=_flag(field(data, "emdb1", path), path, "emdb1"),
        emdb2=_flag(field(data, "emdb2", path), path, "emdb2"),
        poses=np.concatenate([root, body], axis=1),
        betas=betas,
        trans=trans,
        intrinsics=intrinsics,
        extrinsics=extrinsics,
        width=width,
        height=height,
        keypoints_2d=np.concatenate([kp2d, np.ones((frames, 24, 1))], axis=2),
        bboxes=boxes,
        bbox_valid=bbox_valid,
        good_frames=good,
        image_paths=tuple(f"{folder}/images/{i:05d}.jpg" for i in range(frames)),
    )


def iter_emdb(root: str | Path, subset: int | None = 1) -> Iterator[EMDBSequence]:
    """The sequences of ``<root>/P*/*/*_data.pkl`` (path order) that belong to EMDB ``subset``
    (1 or 2; None for all)."""
    if subset not in (1, 2, None):
        raise ArtifactError(f"EMDB subset {subset!r} is not 1, 2 or None")
    root = Path(root)
    if not root.is_dir():
        raise ArtifactError(f"{root}: EMDB folder not found")
    files = sorted(root.glob("P*/*/*_data.pkl"))
    if not files:
        raise ArtifactError(f"{root}: no P*/<sequence>/*_data.pkl files (expected the EMDB layout)")
    for path in files:
        sequence = load_emdb_sequence(path)
        if subset is None or (sequence.emdb1 if subset == 1 else sequence.emdb2):
            yield sequence


def emdb_frames(sequence: EMDBSequence, rest_pelvis: RestPelvis, box_factor: float = 1.2) -> HMRFrames:
    """The good frames (``good_frames_mask`` and a valid box) in the camera frame: pose and translation
    through the world-to-camera extrinsics, ``rest_pelvis(betas, gender)`` the shape's rest pelvis,
    box centre from ``bboxes`` and side ``box_factor`` times its longer side."""
    keep = np.flatnonzero(sequence.good_frames & sequence.bbox_valid)
    if keep.size == 0:
        raise ArtifactError(f"{sequence.path}: no good frame with a valid box")
    pelvis = np.asarray(rest_pelvis(sequence.betas, sequence.gender), dtype=np.float64).reshape(3)
    pose, trans = world_to_camera(sequence.poses[keep], sequence.trans[keep], sequence.extrinsics[keep], pelvis)
    boxes = sequence.bboxes[keep]
    return HMRFrames(
        dataset="emdb",
        image_paths=tuple(sequence.image_paths[i] for i in keep),
        center=(boxes[:, :2] + boxes[:, 2:]) / 2,
        box_size=box_factor * np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]),
        pose=pose,
        betas=np.repeat(sequence.betas[None], keep.size, axis=0),
        trans=trans,
        intrinsics=np.repeat(sequence.intrinsics[None], keep.size, axis=0),
        keypoints_2d=sequence.keypoints_2d[keep],
        keypoint_names=EMDB_KEYPOINT_NAMES,
        has_smpl=np.ones(keep.size, dtype=bool),
        sequence=(sequence.name,) * keep.size,
        person=np.zeros(keep.size, dtype=np.int64),
        frame=keep.astype(np.int64),
    )
