"""What the ScoreHMR stages read: one image set's extraction beside its ground truth, and the metrics.

:func:`load_set` pairs ``data/extract/<set>.npz`` (the perception network's keypoints,
confidences, features and regression; :mod:`humandiff.perception.extraction`) with the set's
rendered ground truth (camera-frame SMPL parameters and joints; :mod:`humandiff.imaging.shards`)
and checks what the methods rely on: the same images in the same order, finite keypoints,
confidences in [0, 1], and for the multi-view set at least 2 views per person. Every error is one
line naming the file.

Units: a *unit* is what the methods treat together: one image (``test``, ``train``), one
multi-view instant (its views) or one video sequence (its frames). ``groups`` (N,) numbers the
rows' units; ``max_units`` keeps the first units (the default preset's budget).

Protocol of :func:`joint_metrics` (written into the report): the body model's 24 SMPL joints,
posed with the method's pose and the regression's betas (shape is not refined), against the
ground-truth body model joints of the rendered person (``joints_cam``, the same body model posed
with the true pose and betas). PA-MPJPE: Procrustes (similarity) alignment on the evaluated
joints, either the 14 LSP-style joints (:data:`humandiff.eval.mesh.SMPL_TO_LSP14`, the 3DPW
protocol; SMPL's own joints stand in for the LSP joints that the real benchmarks regress from the
vertices with the H36M regressor) or all 24 (EMDB protocol). MPJPE: both skeletons translated so
that the pelvis (joint 0) is at the origin, 24 joints. Acceleration error (video): second finite
differences of the pelvis-aligned 24 joints, per sequence, mean norm of their difference, times
fps^2 (mm/s^2), averaged over sequences weighted by their frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from humandiff.eval.mesh import SMPL_TO_LSP14, acceleration_error, mpjpe, pa_mpjpe
from humandiff.imaging.shards import load_image_set, load_index
from humandiff.io.artifacts import ArtifactError
from humandiff.perception.extraction import load_extraction
from humandiff.perception.model import smpl_joints_from_rotations
from humandiff.scorehmr.losses import Keypoints
from humandiff.scorehmr.model import axis_angle_to_pose, pose_to_rotations, rotations_to_pose

#: The image set each setting runs on.
SETTING_SETS = {"fit": "test", "multiview": "multiview", "video": "video"}
#: Image features the denoiser can be conditioned on (Table 1's feature sources).
FEATURE_SOURCES = ("pooled", "regression")
#: Ground-truth fields read from the shards.
TRUTH_FIELDS = ("global_orient_cam", "body_pose", "betas", "joints_cam", "joints_2d", "visible", "in_image", "bbox")
#: Extraction fields the methods read and their shapes (-1: any size; the first is the image count).
EXTRACTION_SHAPES = {"intrinsics": (-1, 4), "keypoints": (-1, 24, 2), "confidence": (-1, 24), "feature": (-1, -1),
                     "pose_6d": (-1, 24, 6), "betas": (-1, -1), "cam": (-1, 3), "transl": (-1, 3)}
#: The per-setting metric names (mm); video adds ``accel_error``.
METRIC_NAMES = ("pa_mpjpe_lsp14_mm", "pa_mpjpe_mm", "mpjpe_mm")


@dataclass
class SetData:
    """One image set, rows in index order. ``extraction``: the extraction's arrays; ``truth``:
    TRUTH_FIELDS; ``rows``: the index rows; ``groups`` (N,) int64 unit numbers; ``path``: the extraction file."""

    name: str
    extraction: dict[str, np.ndarray]
    truth: dict[str, np.ndarray]
    rows: pd.DataFrame
    groups: np.ndarray
    path: Path

    def __len__(self) -> int:
        return len(self.groups)

    @property
    def image_size(self) -> int:
        return int(self.extraction["image_size"])

    def subset(self, keep: np.ndarray) -> "SetData":
        """The rows ``keep`` selects: a (N,) bool mask or row numbers (repeats allowed)."""
        keep = np.flatnonzero(keep) if np.asarray(keep).dtype == bool else np.asarray(keep, dtype=np.int64)
        count = len(self)
        cut = {k: (v[keep] if v.ndim and len(v) == count else v) for k, v in self.extraction.items()}
        return SetData(self.name, cut, {k: v[keep] for k, v in self.truth.items()},
                       self.rows.iloc[keep].reset_index(drop=True), self.groups[keep], self.path)


def load_set(extract_dir: str | Path, images_dir: str | Path, set_name: str, max_units: int = 0) -> SetData:
    """Read and check one set (see the module doc); ``max_units`` > 0 keeps the first units."""
    path = Path(extract_dir) / f"{set_name}.npz"
    if not path.is_file():
        raise ArtifactError(f"{path}: no extraction of set '{set_name}' (run the extract stage with it in 'extract.sets')")
    extraction = load_extraction(path, decode=False)
    extraction = {k: v for k, v in extraction.items() if not k.startswith(("heatmaps", "depth_maps"))}
    rows, truth = load_image_set(images_dir, set_name, TRUTH_FIELDS, index=load_index(images_dir))
    if list(rows["image_id"]) != [str(i) for i in extraction["image_id"]]:
        raise ArtifactError(f"{path}: its image ids differ from the set '{set_name}' in {Path(images_dir) / 'index.parquet'} "
                            "(rerun the extract stage)")
    count = len(extraction["image_id"])
    for name, shape in EXTRACTION_SHAPES.items():
        got = extraction[name].shape
        if len(got) != len(shape) or any(want not in (-1, have) for want, have in zip((count, *shape[1:]), got)):
            raise ArtifactError(f"{path}: field '{name}' has shape {got}, expected {(count, *shape[1:])} (-1: any)")
    keypoints, confidence = extraction["keypoints"], extraction["confidence"]
    if not np.isfinite(keypoints).all():
        raise ArtifactError(f"{path}: field 'keypoints' holds NaN or infinite values")
    if not np.isfinite(confidence).all() or confidence.min() < 0 or confidence.max() > 1:
        raise ArtifactError(f"{path}: field 'confidence' must lie in [0, 1]")
    for name in ("feature", "pose_6d", "betas", "transl", "cam"):
        if not np.isfinite(extraction[name]).all():
            raise ArtifactError(f"{path}: field '{name}' holds NaN or infinite values")
    if set_name in ("multiview", "video"):
        groups = rows["sequence"].to_numpy().astype(np.int64)
        if set_name == "video" and not (rows.sort_values(["sequence", "frame"], kind="stable").index == rows.index).all():
            raise ArtifactError(f"{Path(images_dir) / 'index.parquet'}: video frames are not in sequence and time order")
    else:
        groups = np.arange(len(rows), dtype=np.int64)
    data = SetData(set_name, extraction, truth, rows, groups, path)
    if max_units > 0:
        data = data.subset(np.isin(groups, pd.unique(groups)[:max_units]))
    if set_name == "multiview":
        views = np.unique(data.groups, return_counts=True)[1]
        if (views < 2).any():
            raise ArtifactError(f"{path}: {int((views < 2).sum())} multi-view instant(s) with a view count of 1; "
                                "the multi-view setting needs >= 2 views per person (render.multiview_views)")
    return data


def features(data: SetData, source: str) -> np.ndarray:
    """The denoiser's condition (N, d): ``pooled`` the backbone's pooled feature; ``regression`` the
    regression head's output (6D pose, betas, weak-perspective camera), its "pose feature"."""
    if source == "pooled":
        return data.extraction["feature"].astype(np.float32)
    if source == "regression":
        x = data.extraction
        return np.concatenate([x["pose_6d"].reshape(len(data), -1), x["betas"], x["cam"]], 1).astype(np.float32)
    raise ArtifactError(f"scorehmr: unknown feature source {source!r} (known: {', '.join(FEATURE_SOURCES)})")


def regression_start(data: SetData) -> dict[str, torch.Tensor]:
    """The regression's estimate: ``pose`` (N, 144), ``betas`` (N, L), ``camera`` (N, 3) (its SMPL translation)."""
    x = data.extraction
    pose = torch.from_numpy(x["pose_6d"].astype(np.float32))
    # renormalise through rotations, so the start is a valid pose vector (Gram-Schmidt columns)
    rotations = pose_to_rotations(pose.reshape(len(data), -1))
    return {"pose": rotations_to_pose(rotations), "betas": torch.from_numpy(x["betas"].astype(np.float32)),
            "camera": torch.from_numpy(x["transl"].astype(np.float32))}


def truth_pose(data: SetData) -> torch.Tensor:
    """The ground-truth camera-frame pose vectors (N, 144)."""
    return axis_angle_to_pose(torch.from_numpy(data.truth["global_orient_cam"]), torch.from_numpy(data.truth["body_pose"]))


def detected_keypoints(data: SetData) -> Keypoints:
    """The network's keypoints and confidences as the guidance and SMPLify see them."""
    x = data.extraction
    return Keypoints(torch.from_numpy(x["keypoints"].astype(np.float32)), torch.from_numpy(x["confidence"].astype(np.float32)),
                     torch.from_numpy(x["intrinsics"].astype(np.float32)), float(data.image_size))


def truth_keypoints(data: SetData) -> Keypoints:
    """The ground-truth 2D joints, confidence 1 where visible and in the image (pseudo-GT fitting's input)."""
    conf = (data.truth["visible"] & data.truth["in_image"]).astype(np.float32)
    return Keypoints(torch.from_numpy(data.truth["joints_2d"].astype(np.float32)), torch.from_numpy(conf),
                     torch.from_numpy(data.extraction["intrinsics"].astype(np.float32)), float(data.image_size))


def body_joints_np(body_model, pose: torch.Tensor, betas: torch.Tensor, chunk: int = 1024) -> np.ndarray:
    """Body model joints (N, 24, 3) metres at the origin for pose vectors (N, 144) and betas (N, L)."""
    out = []
    with torch.no_grad():
        for start in range(0, len(pose), chunk):
            rot = pose_to_rotations(pose[start:start + chunk].float())
            out.append(smpl_joints_from_rotations(body_model, rot, betas[start:start + chunk].float()).double().numpy())
    return np.concatenate(out) if out else np.zeros((0, 24, 3))


def joint_metrics(pred: np.ndarray, data: SetData, fps: float | None = None) -> dict[str, Any]:
    """Means in mm (see the module doc's protocol) of predicted joints (N, 24, 3) against the set's truth;
    ``fps`` given (video): also ``accel_error`` (mm/s^2) and ``accel_error_mm_per_frame2``."""
    gt = data.truth["joints_cam"].astype(np.float64)
    out: dict[str, Any] = {
        "pa_mpjpe_lsp14_mm": round(float(pa_mpjpe(pred, gt, SMPL_TO_LSP14).mean() * 1000), 2),
        "pa_mpjpe_mm": round(float(pa_mpjpe(pred, gt).mean() * 1000), 2),
        "mpjpe_mm": round(float(mpjpe(pred, gt).mean() * 1000), 2),
        "images": int(len(gt)),
    }
    if fps is not None:
        frames, total = 0, 0.0
        for group in pd.unique(data.groups):
            keep = data.groups == group
            if keep.sum() < 3:
                continue
            p, g = pred[keep] - pred[keep][:, :1], gt[keep] - gt[keep][:, :1]
            total += acceleration_error(p, g) * 1000 * (keep.sum() - 2)
            frames += int(keep.sum()) - 2
        per_frame2 = total / max(frames, 1)
        out["accel_error_mm_per_frame2"] = round(per_frame2, 3)
        out["accel_error"] = round(per_frame2 * fps**2, 1)
    return out
