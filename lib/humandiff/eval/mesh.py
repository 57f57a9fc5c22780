"""Mesh-recovery metrics: MPJPE, PA-MPJPE (Procrustes), MPVE, PCK and acceleration error.

Conventions (those of the HMR literature that ScoreHMR and HMDiff report against):

- Inputs are numpy arrays or torch tensors (converted to float64 numpy); joints (B, J, 3) in
  metres, results in the input's unit unless a function says otherwise (multiply by 1000 for mm).
- MPJPE is root-aligned: both skeletons are translated so that their root joint (SMPL's pelvis,
  joint 0, by default) is at the origin; ``root=None`` compares raw positions.
- PA-MPJPE aligns the prediction to the ground truth with the similarity transform (scale,
  rotation, translation) that minimises the squared error (Umeyama's closed form, reflections
  excluded), then measures the mean joint distance.
- PCK counts 2D keypoints within ``alpha`` times a per-image reference size (e.g. the larger side
  of the person's bounding box) of the ground truth, over the joints a mask selects.
- Acceleration error: the mean norm of the difference between the second finite differences of
  predicted and ground-truth joints; per frame^2 without ``fps``, per s^2 with it (ScoreHMR
  reports mm/s^2 on EMDB).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from humandiff.io.artifacts import ArtifactError

#: SMPL joints of the 14 LSP-style joints (r/l ankle, knee, hip, wrist, elbow, shoulder; neck; head)
#: that 3DPW protocols evaluate; SMPL's own joints stand in for the regressed LSP ones.
SMPL_TO_LSP14: tuple[int, ...] = (8, 5, 2, 1, 4, 7, 21, 19, 17, 16, 18, 20, 12, 15)


def _as_array(value, name: str, last: int | None = None, ndim: int | None = None) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    array = np.asarray(value, dtype=np.float64)
    if ndim is not None and array.ndim != ndim:
        raise ArtifactError(f"mesh metrics: '{name}' must have {ndim} dimensions, got shape {array.shape}")
    if last is not None and (array.ndim == 0 or array.shape[-1] != last):
        raise ArtifactError(f"mesh metrics: '{name}' must have a last dimension of {last}, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ArtifactError(f"mesh metrics: '{name}' contains NaN or Inf")
    return array


def _pair(pred, gt, last: int, ndim: int = 3) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = _as_array(pred, "pred", last, ndim), _as_array(gt, "gt", last, ndim)
    if pred.shape != gt.shape:
        raise ArtifactError(f"mesh metrics: 'pred' {pred.shape} and 'gt' {gt.shape} differ in shape")
    if pred.shape[-2] == 0:
        raise ArtifactError("mesh metrics: no joint to compare")
    return pred, gt


def _select(pred: np.ndarray, gt: np.ndarray, joints: Sequence[int] | None) -> tuple[np.ndarray, np.ndarray]:
    if joints is None:
        return pred, gt
    joints = np.asarray(joints, dtype=np.int64)
    if joints.size == 0 or joints.min() < -pred.shape[-2] or joints.max() >= pred.shape[-2]:
        raise ArtifactError(f"mesh metrics: 'joints' must index the {pred.shape[-2]} joints, got {joints.tolist()}")
    return pred[..., joints, :], gt[..., joints, :]


def mpjpe(pred, gt, root: int | None = 0, joints: Sequence[int] | None = None) -> np.ndarray:
    """Root-aligned mean per-joint position error per sample: pred, gt (B, J, 3) -> (B,).

    ``root`` is aligned before ``joints`` selects the evaluated subset (the root need not be in it)."""
    pred, gt = _pair(pred, gt, 3)
    if root is not None:
        if not -pred.shape[1] <= root < pred.shape[1]:
            raise ArtifactError(f"mesh metrics: 'root' {root} is not one of the {pred.shape[1]} joints")
        pred = pred - pred[:, root : root + 1]
        gt = gt - gt[:, root : root + 1]
    pred, gt = _select(pred, gt, joints)
    return np.linalg.norm(pred - gt, axis=-1).mean(-1)


def procrustes_align(pred, gt) -> np.ndarray:
    """``pred`` (B, N, 3) moved by the similarity transform s R p + t that best fits ``gt`` (B, N, 3)
    in the least-squares sense (Umeyama 1991, det R = +1)."""
    pred, gt = _pair(pred, gt, 3)
    mu_pred, mu_gt = pred.mean(1, keepdims=True), gt.mean(1, keepdims=True)
    centred_pred, centred_gt = pred - mu_pred, gt - mu_gt
    variance = (centred_pred**2).sum((1, 2))
    covariance = np.einsum("bni,bnj->bij", centred_gt, centred_pred)  # sum of gt p^T
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.sign(np.linalg.det(u @ vt))
    correction = np.ones_like(singular)
    correction[:, -1] = np.where(sign == 0, 1.0, sign)
    rotation = u @ (correction[:, :, None] * vt)
    scale = (singular * correction).sum(-1) / np.maximum(variance, 1e-12)
    aligned = scale[:, None, None] * np.einsum("bij,bnj->bni", rotation, centred_pred)
    return aligned + mu_gt


def pa_mpjpe(pred, gt, joints: Sequence[int] | None = None) -> np.ndarray:
    """Procrustes-aligned MPJPE per sample: (B, J, 3) -> (B,). The alignment uses the evaluated joints."""
    pred, gt = _pair(pred, gt, 3)
    pred, gt = _select(pred, gt, joints)
    return np.linalg.norm(procrustes_align(pred, gt) - gt, axis=-1).mean(-1)


def mpve(pred_vertices, gt_vertices, pred_root=None, gt_root=None) -> np.ndarray:
    """Mean per-vertex error per sample: (B, V, 3) -> (B,), after subtracting each mesh's root
    position (B, 3) when given (the usual pelvis alignment)."""
    pred, gt = _pair(pred_vertices, gt_vertices, 3)
    if (pred_root is None) != (gt_root is None):
        raise ArtifactError("mesh metrics: give both 'pred_root' and 'gt_root' or neither")
    if pred_root is not None:
        pred = pred - _as_array(pred_root, "pred_root", 3, 2)[:, None]
        gt = gt - _as_array(gt_root, "gt_root", 3, 2)[:, None]
    return np.linalg.norm(pred - gt, axis=-1).mean(-1)


def pck(pred_2d, gt_2d, reference_size, alpha: float, mask=None) -> tuple[float, int, int]:
    """Percentage of correct keypoints: pred_2d, gt_2d (B, J, 2) pixels, reference_size (B,) pixels,
    mask (B, J) bool (True = evaluated; all by default) -> (fraction, correct, evaluated).

    A keypoint is correct when its distance to the ground truth is at most ``alpha * reference_size``.
    """
    pred, gt = _pair(pred_2d, gt_2d, 2)
    size = _as_array(reference_size, "reference_size", ndim=1)
    if len(size) != len(pred) or not (size > 0).all():
        raise ArtifactError(f"mesh metrics: 'reference_size' must hold {len(pred)} positive sizes, got shape {size.shape}")
    if not alpha > 0:
        raise ArtifactError(f"mesh metrics: 'alpha' must be > 0, got {alpha}")
    selected = np.ones(pred.shape[:2], dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if selected.shape != pred.shape[:2]:
        raise ArtifactError(f"mesh metrics: 'mask' must have shape {pred.shape[:2]}, got {selected.shape}")
    distance = np.linalg.norm(pred - gt, axis=-1)
    correct = (distance <= alpha * size[:, None]) & selected
    evaluated = int(selected.sum())
    if evaluated == 0:
        raise ArtifactError("mesh metrics: the mask selects no keypoint")
    return float(correct.sum() / evaluated), int(correct.sum()), evaluated


def acceleration_error(pred, gt, fps: float | None = None, joints: Sequence[int] | None = None) -> float:
    """Mean acceleration error of a sequence: pred, gt (T, J, 3) with T >= 3 -> a scalar, per frame^2
    without ``fps`` or per s^2 with it (the input's length unit)."""
    pred, gt = _pair(pred, gt, 3)
    if len(pred) < 3:
        raise ArtifactError(f"mesh metrics: acceleration needs at least 3 frames, got {len(pred)}")
    pred, gt = _select(pred, gt, joints)
    accel_pred = pred[2:] - 2 * pred[1:-1] + pred[:-2]
    accel_gt = gt[2:] - 2 * gt[1:-1] + gt[:-2]
    error = np.linalg.norm(accel_pred - accel_gt, axis=-1).mean()
    if fps is not None:
        if not fps > 0:
            raise ArtifactError(f"mesh metrics: 'fps' must be > 0, got {fps}")
        error *= fps**2
    return float(error)


def bbox_size(bbox) -> np.ndarray:
    """The larger side of boxes (B, 4) [x0, y0, x1, y1] -> (B,): PCK's usual reference size."""
    boxes = _as_array(bbox, "bbox", 4, 2)
    return np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
