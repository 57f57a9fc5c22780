"""The perception network's outputs per image, as written by the ``extract`` stage.

One compressed NPZ per image set (``data/extract/<set>.npz``), rows in the order of the set's
rows in the image index (``image_id`` says which). Fields (N images, J = 24 SMPL joints,
h = w = image size / 4, T tokens of D channels, C pooled channels):

- ``image_id`` (N,) str; ``intrinsics`` (N, 4) [fx, fy, cx, cy], the calibration the regression used;
- ``keypoints`` (N, J, 2) float32 image pixels (refined sub-pixel heatmap peaks), ``confidence``
  (N, J) float32 in [0, 1] (see :func:`humandiff.perception.model.peak_confidence`);
- ``heatmaps_q`` (N, J, h, w) uint8 and ``heatmaps_max`` (N, J) float32: the xy softmax
  distributions quantised per map, p = q / 255 * max (:func:`dequantise_heatmaps` renormalises);
- ``depth_maps_cm`` (N, J, h, w) int8: the depth maps in centimetres relative to the pelvis,
  clipped to +-127 cm, kept where ``heatmaps_q`` > 0 (0 elsewhere: cells without quantised
  probability mass); ``depth`` (N, J) float32 metres, their expectation under the xy distribution;
- ``feature`` (N, C) float32 pooled image feature; ``tokens`` (N, T, D) float16 spatial tokens;
- the regression, camera frame: ``pose_6d`` (N, 24, 6), ``global_orient`` (N, 3), ``body_pose``
  (N, 69) axis-angle, ``betas`` (N, L), ``cam`` (N, 3) weak perspective (s, tx, ty), ``transl``
  (N, 3) SMPL translation, ``joints_cam`` (N, 24, 3) its joints, all float32;
- ``heatmap_stride`` () int64 and ``image_size`` () int64.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from humandiff.io.artifacts import ArtifactError, load_npz, save_npz

EXTRACTION_FIELDS = ("image_id", "intrinsics", "keypoints", "confidence", "heatmaps_q", "heatmaps_max", "depth_maps_cm",
                     "depth", "feature", "tokens", "pose_6d", "global_orient", "body_pose", "betas", "cam", "transl",
                     "joints_cam", "heatmap_stride", "image_size")


def quantise_heatmaps(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (N, J, h, w) -> (uint8 maps scaled to each map's maximum, maxima (N, J) float32)."""
    maxima = heatmaps.max(axis=(-2, -1)).astype(np.float32)
    scaled = heatmaps / np.maximum(maxima, 1e-12)[..., None, None]
    return np.round(scaled * 255.0).astype(np.uint8), maxima


def dequantise_heatmaps(quantised: np.ndarray, maxima: np.ndarray) -> np.ndarray:
    """Inverse of :func:`quantise_heatmaps`, renormalised so each map sums to 1: (N, J, h, w) float32."""
    maps = quantised.astype(np.float32) / 255.0 * maxima[..., None, None]
    return maps / np.maximum(maps.sum(axis=(-2, -1), keepdims=True), 1e-12)


def pack_predictions(predictions: dict[str, np.ndarray], image_ids: np.ndarray, intrinsics: np.ndarray,
                     heatmap_stride: int, image_size: int) -> dict[str, np.ndarray]:
    """The arrays of :func:`humandiff.perception.model.predict` in the stored layout (see the module doc)."""
    count = len(image_ids)
    if any(len(v) != count for v in predictions.values()) or len(intrinsics) != count:
        raise ArtifactError(f"extraction: predictions, image ids ({count}) and intrinsics differ in length")
    heatmaps_q, heatmaps_max = quantise_heatmaps(predictions["heatmaps"])
    return {
        "image_id": np.asarray(image_ids, dtype=str),
        "intrinsics": np.asarray(intrinsics, dtype=np.float64),
        "keypoints": predictions["keypoints"].astype(np.float32),
        "confidence": predictions["confidence"].astype(np.float32),
        "heatmaps_q": heatmaps_q,
        "heatmaps_max": heatmaps_max,
        # Depth only where the xy distribution has quantised mass: those are the only cells a sample
        # of the pose distribution can land on, and the zeros elsewhere compress to nothing.
        "depth_maps_cm": np.where(heatmaps_q > 0, np.clip(np.round(predictions["depth_maps"] * 100.0), -127, 127),
                                  0).astype(np.int8),
        "depth": predictions["depth"].astype(np.float32),
        "feature": predictions["feature"].astype(np.float32),
        "tokens": predictions["tokens"].astype(np.float16),
        **{name: predictions[name].astype(np.float32)
           for name in ("pose_6d", "global_orient", "body_pose", "betas", "cam", "transl", "joints_cam")},
        "heatmap_stride": np.array(heatmap_stride, dtype=np.int64),
        "image_size": np.array(image_size, dtype=np.int64),
    }


def save_extraction(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    missing = [name for name in EXTRACTION_FIELDS if name not in arrays]
    if missing:
        raise ArtifactError(f"{path}: missing field(s) {missing}")
    save_npz(path, arrays, compressed=True)


def load_extraction(path: str | Path, decode: bool = True) -> dict[str, np.ndarray]:
    """Read an extraction file and check it; with ``decode`` also add ``heatmaps`` (N, J, h, w) float32
    distributions and ``depth_maps`` (N, J, h, w) float32 metres."""
    arrays = load_npz(path, {"image_id": (-1,), "keypoints": (-1, -1, 2), "confidence": (-1, -1),
                             "heatmaps_q": (-1, -1, -1, -1), "heatmaps_max": (-1, -1), "depth_maps_cm": (-1, -1, -1, -1),
                             "feature": (-1, -1), "tokens": (-1, -1, -1), "pose_6d": (-1, 24, 6), "betas": (-1, -1),
                             "transl": (-1, 3)})
    missing = [name for name in EXTRACTION_FIELDS if name not in arrays]
    if missing:
        raise ArtifactError(f"{path}: missing field(s) {missing}")
    count = len(arrays["image_id"])
    for name in EXTRACTION_FIELDS:
        if arrays[name].ndim and len(arrays[name]) != count:
            raise ArtifactError(f"{path}: field '{name}' has {len(arrays[name])} rows, field 'image_id' has {count}")
    if decode:
        arrays["heatmaps"] = dequantise_heatmaps(arrays["heatmaps_q"], arrays["heatmaps_max"])
        arrays["depth_maps"] = arrays["depth_maps_cm"].astype(np.float32) / 100.0
    return arrays
