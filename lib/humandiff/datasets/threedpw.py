"""Reader for 3DPW as published: ``sequenceFiles/{train,validation,test}/<sequence>.pkl``.

Each file is a Python 2 pickle (read with latin-1 through the restricted unpickler of
:func:`humandiff.body.model.read_pickle`) of a dict; the fields read here, with P people and T image frames:

==================  ==========================================================================
``sequence``        str, the sequence name (also the image folder ``imageFiles/<sequence>/``)
``genders``         list of P str, ``'m'`` or ``'f'``
``betas``           list of P arrays (>= 10,) or (10, 1), SMPL shape; the first 10 are kept
``poses``           list of P (T, 72) SMPL axis-angle, radians, **world** frame, image-aligned
``trans``           list of P (T, 3) SMPL translation, metres, world frame
``jointPositions``  list of P (T, 72) = 24 SMPL joints x (x, y, z), metres, world frame
``poses2d``         list of P (T, 3, 18): rows x, y (pixels) and confidence of 18 keypoints
``campose_valid``   list of P (T,) bool: the camera pose is aligned to the image for this person
``cam_poses``       (T, 4, 4) camera extrinsics per image frame, world to camera
``cam_intrinsics``  (3, 3) K = [[f_x, 0, c_x], [0, f_y, c_y], [0, 0, 1]], pixels
``img_frame_ids``   index array from the 60 Hz recordings to the image frames
``v_template_clothed``  list of P (6890, 3) clothed templates, metres (kept when present)
==================  ==========================================================================

Confirmed from public sources (facts, no code taken):

- the field list and meanings: the 3DPW readme (copy in zhyjiang/mmhuman3d
  ``tools/depth_generate/readme.txt``); the readme says ``gender`` but the files and every loader
  use ``genders`` (nkolot/SPIN ``datasets/preprocess/pw3d.py``).
- the reference loaders read the files with an unrestricted ``pickle.load`` and latin-1 (SPIN
  ``pw3d.py``); this module never does: the same latin-1 decoding goes through the restricted
  unpickler, which refuses any global but numpy's array reconstruction; images are
  ``imageFiles/<sequence>/image_%05d.jpg`` indexed by the frame number of ``poses`` (SPIN ``pw3d.py``,
  mkocabas/VIBE ``lib/data_utils/threedpw_utils.py`` does the same).
- ``poses2d[p]`` is (T, 3, 18) and is transposed to (18, 3) per frame; the person box is the
  bounding box of the keypoints with confidence > 0, side 1.2 x its longer side (SPIN ``pw3d.py``).
- the global orientation goes to the camera as ``R_cam[:3, :3] @ R_world`` with ``cam_poses``, and
  only frames with ``campose_valid`` are used (SPIN ``pw3d.py``): so ``cam_poses`` is world to camera.
- 2D keypoint order, OpenPose COCO-18: the first 14 names (nose, neck, right shoulder ... left ankle)
  from VIBE ``lib/data_utils/kp_utils.py`` (``get_3dpw_joint_names``); the last four (right eye,
  left eye, right ear, left ear) follow the OpenPose COCO-18 convention, not confirmed from a 3DPW source.
- protocol: ScoreHMR evaluates on the ``test`` split only (paper, appendix D), on 14 LSP-style
  joints (statho/ScoreHMR ``score_hmr/configs/datasets.yaml``, ``3DPW-TEST``).

Not confirmed: the length of ``img_frame_ids`` (kept as read, not checked against T).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from humandiff.datasets.frames import (HMRFrames, RestPelvis, box_from_keypoints, concat_frames, field,
                                       load_pickle_dict, number_array, per_person, text, world_to_camera)
from humandiff.io.artifacts import ArtifactError

__all__ = ["THREEDPW_KEYPOINT_NAMES", "THREEDPW_SPLITS", "ThreeDPWSequence", "iter_3dpw", "load_3dpw_sequence",
           "threedpw_frames"]

THREEDPW_SPLITS = ("train", "validation", "test")

#: Order of the 18 keypoints of ``poses2d`` (OpenPose COCO-18).
THREEDPW_KEYPOINT_NAMES: tuple[str, ...] = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
    "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "right_eye", "left_eye", "right_ear", "left_ear",
)  # fmt: skip


@dataclass(frozen=True)
class ThreeDPWSequence:
    """One 3DPW sequence file, checked; P people, T image frames, float64 unless said.

    ``poses (P, T, 72)`` SMPL axis-angle (radians) and ``trans (P, T, 3)`` (metres) in the world
    frame; ``joints_3d (P, T, 24, 3)`` SMPL joints in the world frame (metres); ``betas (P, 10)``;
    ``genders`` P of ``'m'``/``'f'``; ``keypoints_2d (P, T, 18, 3)`` pixels x, y and confidence in
    :data:`THREEDPW_KEYPOINT_NAMES` order; ``campose_valid (P, T)`` bool; ``cam_poses (T, 4, 4)``
    world to camera; ``intrinsics (3, 3)`` pixels; ``img_frame_ids`` int64 as published;
    ``image_paths`` T paths relative to the 3DPW root; ``v_template_clothed (P, V, 3)`` or None.
    """

    path: Path
    split: str
    sequence: str
    genders: tuple[str, ...]
    betas: np.ndarray
    poses: np.ndarray
    trans: np.ndarray
    joints_3d: np.ndarray
    keypoints_2d: np.ndarray
    campose_valid: np.ndarray
    cam_poses: np.ndarray
    intrinsics: np.ndarray
    img_frame_ids: np.ndarray
    image_paths: tuple[str, ...]
    v_template_clothed: np.ndarray | None = None

    @property
    def num_people(self) -> int:
        return len(self.genders)

    @property
    def num_frames(self) -> int:
        return len(self.image_paths)


def _stack(data: dict, key: str, path: Path, people: int, shape: tuple[int | None, ...]) -> np.ndarray:
    entries = per_person(field(data, key, path), path, key, people)
    return np.stack([number_array(entry, path, f"{key}[{p}]", shape) for p, entry in enumerate(entries)])


def load_3dpw_sequence(path: str | Path) -> ThreeDPWSequence:
    """Read one ``sequenceFiles/<split>/<sequence>.pkl``; every problem (missing file, truncated or
    refused pickle, missing field, wrong shape, NaN) raises one ArtifactError line naming the file."""
    path = Path(path)
    data = load_pickle_dict(path, "a 3DPW sequence")
    sequence = text(field(data, "sequence", path), path, "sequence")
    if not sequence or "/" in sequence or "\\" in sequence or sequence.startswith("."):
        raise ArtifactError(f"{path}: field 'sequence' is not a plain folder name: {sequence!r}")
    raw_poses = field(data, "poses", path)
    if not isinstance(raw_poses, (list, tuple)) or not raw_poses:
        raise ArtifactError(f"{path}: field 'poses' is not a non-empty list with one (T, 72) array per person")
    people = len(raw_poses)
    raw_genders = per_person(field(data, "genders", path), path, "genders", people)
    genders = tuple(text(g, path, f"genders[{i}]") for i, g in enumerate(raw_genders))
    for i, gender in enumerate(genders):
        if gender not in ("m", "f"):
            raise ArtifactError(f"{path}: field 'genders[{i}]' is {gender!r}, expected 'm' or 'f'")
    poses = _stack(data, "poses", path, people, (None, 72))
    frames = poses.shape[1]
    trans = _stack(data, "trans", path, people, (frames, 3))
    joints = _stack(data, "jointPositions", path, people, (frames, 72)).reshape(people, frames, 24, 3)
    keypoints = _stack(data, "poses2d", path, people, (frames, 3, 18)).transpose(0, 1, 3, 2)
    valid = _stack(data, "campose_valid", path, people, (frames,)).astype(bool)
    # the readme calls them "10x1": (k,) and (k, 1) arrays are both read as (k,)
    raw_betas = per_person(field(data, "betas", path), path, "betas", people)
    flat = [np.asarray(b)[:, 0] if np.ndim(b) == 2 and np.shape(b)[1] == 1 else b for b in raw_betas]
    betas = np.stack([number_array(b, path, f"betas[{p}]", (None,)) for p, b in enumerate(flat)])
    if betas.shape[1] < 10:
        raise ArtifactError(f"{path}: field 'betas' has {betas.shape[1]} values per person, expected at least 10")
    cam_poses = number_array(field(data, "cam_poses", path), path, "cam_poses", (frames, 4, 4))
    intrinsics = number_array(field(data, "cam_intrinsics", path), path, "cam_intrinsics", (3, 3))
    frame_ids = number_array(field(data, "img_frame_ids", path), path, "img_frame_ids", (None,), np.int64)
    confidence = keypoints[..., 2]
    if ((confidence < 0) | (confidence > 1)).any():
        raise ArtifactError(f"{path}: field 'poses2d' has confidences outside [0, 1]")
    clothed = None
    if "v_template_clothed" in data:
        clothed = _stack(data, "v_template_clothed", path, people, (None, 3))
    return ThreeDPWSequence(
        path=path,
        split=path.parent.name,
        sequence=sequence,
        genders=genders,
        betas=betas[:, :10],
        poses=poses,
        trans=trans,
        joints_3d=joints,
        keypoints_2d=keypoints,
        campose_valid=valid,
        cam_poses=cam_poses,
        intrinsics=intrinsics,
        img_frame_ids=frame_ids,
        image_paths=tuple(f"imageFiles/{sequence}/image_{i:05d}.jpg" for i in range(frames)),
        v_template_clothed=clothed,
    )


def iter_3dpw(root: str | Path, split: str = "test") -> Iterator[ThreeDPWSequence]:
    """Every sequence of ``<root>/sequenceFiles/<split>/*.pkl``, in file-name order."""
    if split not in THREEDPW_SPLITS:
        raise ArtifactError(f"3DPW split '{split}' is not one of {', '.join(THREEDPW_SPLITS)}")
    folder = Path(root) / "sequenceFiles" / split
    if not folder.is_dir():
        raise ArtifactError(f"{folder}: folder not found (expected the 3DPW layout sequenceFiles/{split}/)")
    files = sorted(folder.glob("*.pkl"))
    if not files:
        raise ArtifactError(f"{folder}: no .pkl sequence files")
    for path in files:
        yield load_3dpw_sequence(path)


def threedpw_frames(sequence: ThreeDPWSequence, rest_pelvis: RestPelvis, box_factor: float = 1.2) -> HMRFrames:
    """The frames of every person where ``campose_valid`` holds, in the camera frame (SPIN's 3DPW
    protocol): pose and translation through ``cam_poses`` (:func:`humandiff.datasets.frames.world_to_camera`),
    ``rest_pelvis(betas, gender)`` the shape's rest pelvis, box from the confident keypoints (a frame
    without any confident keypoint keeps centre NaN and side 0; SPIN's script assumes there is none)."""
    parts = []
    for person in range(sequence.num_people):
        keep = np.flatnonzero(sequence.campose_valid[person])
        if keep.size == 0:
            continue
        gender = sequence.genders[person]
        pelvis = np.asarray(rest_pelvis(sequence.betas[person], gender), dtype=np.float64).reshape(3)
        pose, trans = world_to_camera(sequence.poses[person, keep], sequence.trans[person, keep],
                                      sequence.cam_poses[keep], pelvis)
        keypoints = sequence.keypoints_2d[person, keep]
        center, size = box_from_keypoints(keypoints, box_factor)
        parts.append(HMRFrames(
            dataset="3dpw",
            image_paths=tuple(sequence.image_paths[i] for i in keep),
            center=center,
            box_size=size,
            pose=pose,
            betas=np.repeat(sequence.betas[person][None], keep.size, axis=0),
            trans=trans,
            intrinsics=np.repeat(sequence.intrinsics[None], keep.size, axis=0),
            keypoints_2d=keypoints,
            keypoint_names=THREEDPW_KEYPOINT_NAMES,
            has_smpl=np.ones(keep.size, dtype=bool),
            sequence=(sequence.sequence,) * keep.size,
            person=np.full(keep.size, person, dtype=np.int64),
            frame=keep.astype(np.int64),
        ))
    if not parts:
        raise ArtifactError(f"{sequence.path}: no frame with a valid camera pose")
    return concat_frames(parts)
