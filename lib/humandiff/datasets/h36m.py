"""Reader for the preprocessed Human3.6M annotation files SPIN and ProHMR/ScoreHMR use (``.npz``).

Two published layouts, told apart by their keys (N frames, one person each):

SPIN (nkolot/SPIN ``datasets/preprocess/h36m.py``, ``h36m_train.py``, read by ``datasets/base_dataset.py``),
e.g. ``h36m_valid_protocol2.npz``:

- ``imgname (N,)`` str, e.g. ``images/S9_Directions_1.60457274_000001.jpg`` (relative to the H36M root)
- ``center (N, 2)`` box centre, pixels; ``scale (N,)`` box side / 200 (side = 0.9 x the longer side
  of the ground-truth mask's box)
- ``S (N, 24, 4)`` 3D joints, metres, root-centred (pelvis at 0), camera axes, 4th column 1 where
  the joint exists; ``part (N, 24, 3)`` 2D joints, pixels, with visibility (training file)
- optional ``pose (N, 72)`` / ``shape (N, 10)`` SMPL (MoSh fits, not redistributed), ``has_smpl (N,)``,
  ``openpose (N, 25, 3)``, ``gender (N,)``

ProHMR / ScoreHMR (nkolot/ProHMR ``dataset_preprocessing/preprocess_h36m.py``, read by
``prohmr/datasets/image_dataset.py`` and statho/ScoreHMR ``score_hmr/datasets/image_dataset.py``),
e.g. ``h36m_val_p2.npz``:

- ``imgname``, ``center`` as above; ``scale (N,)`` or ``(N, 2)`` the box side in **pixels** (the
  loaders take the max over the last axis, divide by 200, and multiply back by 200 for the crop)
- ``extra_keypoints_2d (N, 19, 3)`` / ``extra_keypoints_3d (N, 19, 4)``: the first 19 joints of the
  SPIN-24 order below; ``body_keypoints_2d (N, 25, 3)`` / ``body_keypoints_3d (N, 25, 4)`` OpenPose
  BODY_25; optional ``body_pose (N, 72)``, ``has_body_pose (N,)``, ``betas (N, 10)``, ``has_betas (N,)``

Joint order of ``part``/``S`` (SPIN-24, from mkocabas/VIBE ``lib/data_utils/kp_utils.py``, entries
25-48 of ``get_spin_joint_names``): :data:`SPIN24_KEYPOINT_NAMES`. Both layouts are returned in it
(the ProHMR layout's 19 joints padded with confidence 0).

Protocol facts confirmed: protocol 2 keeps subjects S9 and S11, camera ``60457274`` only, every 5th
frame (``frame_i % 5 == 0``, image number ``frame_i + 1``), 3D joints root-centred in metres from the
17 H36M joints (SPIN ``h36m.py``; ProHMR ``preprocess_h36m.py`` ``VAL-P2``); protocol 1 keeps all
four cameras. ScoreHMR's H36M evaluation uses 14 joints: SPIN-24 indices 0-12 and 18
(``KEYPOINT_LIST [25..37, 43]`` over 25 OpenPose + 19 extra, statho/ScoreHMR ``score_hmr/configs/datasets.yaml``).
Its multi-view set groups the four cameras' frames of each action (ProHMR ``preprocess_h36m_multiview``).

No camera intrinsics or translation are in either layout (:class:`HMRFrames` gets None for both).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from humandiff.datasets.frames import HMRFrames, number_array
from humandiff.io.artifacts import ArtifactError, load_npz

__all__ = ["EVAL14_INDICES", "H36MSet", "H36M_PROTOCOL2_CAMERA", "SPIN24_KEYPOINT_NAMES", "h36m_frames",
           "load_h36m_npz", "protocol2_mask"]

#: The SPIN-24 joint order of ``part`` and ``S``.
SPIN24_KEYPOINT_NAMES: tuple[str, ...] = (
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "right_wrist",
    "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist", "neck_lsp", "head_top",
    "pelvis_mpii", "thorax_mpii", "spine_h36m", "jaw_h36m", "head_h36m", "nose", "left_eye", "right_eye",
    "left_ear", "right_ear",
)  # fmt: skip
#: The 14 joints ScoreHMR evaluates on (indices into SPIN-24).
EVAL14_INDICES: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 18)
H36M_PROTOCOL2_CAMERA = "60457274"
_IMGNAME = re.compile(r"^S(\d+)_(.+)\.(\d+)_(\d+)\.jpg$")
_PROHMR_KEYS = ("extra_keypoints_2d", "body_keypoints_2d", "extra_keypoints_3d", "body_keypoints_3d",
                "body_pose", "has_body_pose", "betas", "has_betas")


@dataclass(frozen=True)
class H36MSet:
    """A checked H36M annotation file; N frames, float64 unless said.

    ``layout`` ``'spin'`` or ``'prohmr'``; ``image_paths`` N paths relative to the H36M root;
    ``subject (N,)``, ``camera`` (N str), ``action`` (N str), ``frame_number (N,)`` (1-based, as in
    the name) parsed from the image names; ``center (N, 2)`` and ``box_size (N,)`` pixels;
    ``keypoints_2d (N, 24, 3)`` pixels + confidence and ``joints_3d (N, 24, 4)`` root-centred metres
    + confidence, SPIN-24 order (zeros where the file has none); ``pose (N, 72)`` axis-angle
    (radians; the camera frame of the image is assumed, not confirmed) / ``betas (N, 10)`` with
    ``has_smpl (N,)`` bool (False and zeros where absent).
    """

    path: Path
    layout: str
    image_paths: tuple[str, ...]
    subject: np.ndarray
    camera: tuple[str, ...]
    action: tuple[str, ...]
    frame_number: np.ndarray
    center: np.ndarray
    box_size: np.ndarray
    keypoints_2d: np.ndarray
    joints_3d: np.ndarray
    pose: np.ndarray
    betas: np.ndarray
    has_smpl: np.ndarray

    def __len__(self) -> int:
        return len(self.image_paths)


def _names(value: np.ndarray, path: Path) -> tuple[str, ...]:
    if value.ndim != 1 or value.dtype.kind not in "US":
        raise ArtifactError(
            f"{path}: field 'imgname' has shape {value.shape} dtype {value.dtype}, expected (N,) strings"
        )
    return tuple(v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in value.tolist())


def _padded(array: np.ndarray, joints: int = 24) -> np.ndarray:
    out = np.zeros((array.shape[0], joints, array.shape[2]))
    out[:, : array.shape[1]] = array
    return out


def load_h36m_npz(path: str | Path) -> H36MSet:
    """Read a SPIN- or ProHMR-layout H36M ``.npz``; a missing, truncated or pickled (object-array) file,
    a missing key, a wrong shape, a NaN or an image name not of the form ``S<k>_<action>.<camera>_<frame>.jpg``
    raises one ArtifactError line naming the file."""
    path = Path(path)
    raw = load_npz(path, ("imgname", "center", "scale"))
    names = _names(raw["imgname"], path)
    n = len(names)
    if n == 0:
        raise ArtifactError(f"{path}: no frames (field 'imgname' is empty)")
    layout = "prohmr" if any(key in raw for key in _PROHMR_KEYS) else "spin"
    center = number_array(raw["center"], path, "center", (n, 2))
    scale = raw["scale"]
    if layout == "spin":
        box_size = 200.0 * number_array(scale, path, "scale", (n,))
    else:
        box_size = number_array(scale[:, None] if scale.ndim == 1 else scale, path, "scale", (n, None)).max(axis=1)
    if (box_size <= 0).any():
        raise ArtifactError(f"{path}: field 'scale' must be > 0")
    keypoints, joints = np.zeros((n, 24, 3)), np.zeros((n, 24, 4))
    pose, betas, has_smpl = np.zeros((n, 72)), np.zeros((n, 10)), np.zeros(n, dtype=bool)
    if layout == "spin":
        if "part" in raw:
            keypoints = number_array(raw["part"], path, "part", (n, 24, 3))
        if "S" in raw:
            joints = number_array(raw["S"], path, "S", (n, 24, 4))
        if ("pose" in raw) != ("shape" in raw):
            raise ArtifactError(f"{path}: has '{'pose' if 'pose' in raw else 'shape'}' without "
                                f"'{'shape' if 'pose' in raw else 'pose'}'")
        if "pose" in raw:
            pose = number_array(raw["pose"], path, "pose", (n, 72))
            betas = number_array(raw["shape"], path, "shape", (n, 10))
            has_smpl = (number_array(raw["has_smpl"], path, "has_smpl", (n,)) > 0 if "has_smpl" in raw
                        else np.ones(n, dtype=bool))
    else:
        if "extra_keypoints_2d" in raw:
            keypoints = _padded(number_array(raw["extra_keypoints_2d"], path, "extra_keypoints_2d", (n, 19, 3)))
        if "extra_keypoints_3d" in raw:
            joints = _padded(number_array(raw["extra_keypoints_3d"], path, "extra_keypoints_3d", (n, 19, 4)))
        if "body_pose" in raw:
            pose = number_array(raw["body_pose"], path, "body_pose", (n, 72))
            has_smpl = number_array(raw.get("has_body_pose", np.ones(n)), path, "has_body_pose", (n,)) > 0
        if "betas" in raw:
            betas = number_array(raw["betas"], path, "betas", (n, 10))
            if "has_betas" in raw:
                has_smpl &= number_array(raw["has_betas"], path, "has_betas", (n,)) > 0
        elif "body_pose" in raw:
            has_smpl[:] = False  # a pose without a shape is not a body
    confidence = keypoints[..., 2]
    if ((confidence < 0) | (confidence > 1)).any():
        raise ArtifactError(f"{path}: 2D keypoint confidences outside [0, 1]")
    parsed = []
    for index, name in enumerate(names):
        match = _IMGNAME.match(name.replace("\\", "/").rsplit("/", 1)[-1])
        if match is None or name.startswith("/") or ".." in name.split("/"):
            raise ArtifactError(f"{path}: imgname[{index}] {name!r} is not a relative "
                                "S<subject>_<action>.<camera>_<frame>.jpg path")
        parsed.append(match.groups())
    return H36MSet(
        path=path,
        layout=layout,
        image_paths=names,
        subject=np.array([int(p[0]) for p in parsed], dtype=np.int64),
        camera=tuple(p[2] for p in parsed),
        action=tuple(p[1] for p in parsed),
        frame_number=np.array([int(p[3]) for p in parsed], dtype=np.int64),
        center=center,
        box_size=box_size,
        keypoints_2d=keypoints,
        joints_3d=joints,
        pose=pose,
        betas=betas,
        has_smpl=has_smpl,
    )


def protocol2_mask(frames: H36MSet) -> np.ndarray:
    """(N,) bool: the frames protocol 2 keeps (S9 or S11, camera 60457274, image number 1, 6, 11, ...)."""
    camera = np.array([c == H36M_PROTOCOL2_CAMERA for c in frames.camera], dtype=bool)
    return np.isin(frames.subject, (9, 11)) & camera & ((frames.frame_number - 1) % 5 == 0)


def h36m_frames(frames: H36MSet) -> HMRFrames:
    """The common record of every frame (keypoints SPIN-24; no intrinsics and no translation)."""
    n = len(frames)
    return HMRFrames(
        dataset="h36m",
        image_paths=frames.image_paths,
        center=frames.center,
        box_size=frames.box_size,
        pose=frames.pose,
        betas=frames.betas,
        trans=None,
        intrinsics=None,
        keypoints_2d=frames.keypoints_2d,
        keypoint_names=SPIN24_KEYPOINT_NAMES,
        has_smpl=frames.has_smpl,
        sequence=tuple(f"S{s}_{a}.{c}" for s, a, c in zip(frames.subject, frames.action, frames.camera)),
        person=np.zeros(n, dtype=np.int64),
        frame=frames.frame_number - 1,
    )
