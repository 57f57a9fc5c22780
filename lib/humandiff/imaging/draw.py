"""Drawing 2D keypoints on images and tiling them into contact sheets (OpenCV, RGB uint8)."""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from humandiff.body.model import SMPL_PARENTS
from humandiff.io.artifacts import ArtifactError

_LEFT, _RIGHT, _CENTRE = (60, 200, 255), (255, 120, 60), (240, 240, 240)  # RGB
_LEFT_JOINTS = {1, 4, 7, 10, 13, 16, 18, 20, 22}
_RIGHT_JOINTS = {2, 5, 8, 11, 14, 17, 19, 21, 23}


def _side_colour(joint: int) -> tuple[int, int, int]:
    return _LEFT if joint in _LEFT_JOINTS else _RIGHT if joint in _RIGHT_JOINTS else _CENTRE


def draw_keypoints(image: np.ndarray, keypoints: np.ndarray, visible: np.ndarray | None = None, scale: int = 2,
                   parents: Sequence[int] = SMPL_PARENTS) -> np.ndarray:
    """A copy of ``image`` (H, W, 3) RGB uint8 enlarged ``scale`` times with the skeleton of
    ``keypoints`` (J, 2) pixels drawn on it: bones coloured by side (the body's left blue, right
    orange), visible joints as filled dots, hidden ones as rings (``visible`` (J,) bool)."""
    image = np.asarray(image)
    keypoints = np.asarray(keypoints, dtype=np.float64)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ArtifactError(f"draw_keypoints: 'image' must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    if keypoints.ndim != 2 or keypoints.shape[1] != 2 or len(keypoints) != len(parents):
        raise ArtifactError(f"draw_keypoints: 'keypoints' must be ({len(parents)}, 2), got {keypoints.shape}")
    visible = np.ones(len(keypoints), bool) if visible is None else np.asarray(visible, dtype=bool)
    canvas = cv2.resize(image, (image.shape[1] * scale, image.shape[0] * scale), interpolation=cv2.INTER_NEAREST)
    # Pixel centres at integers: a point u lands at (u + 0.5) * scale - 0.5 on the enlarged image.
    points = (keypoints + 0.5) * scale - 0.5
    finite = np.isfinite(points).all(1)
    shift = 4  # sub-pixel drawing with 4 fractional bits
    fixed = np.round(np.nan_to_num(points) * (1 << shift)).astype(np.int64)
    for joint, parent in enumerate(parents):
        if parent >= 0 and finite[joint] and finite[parent]:
            cv2.line(canvas, tuple(int(v) for v in fixed[parent]), tuple(int(v) for v in fixed[joint]),
                     _side_colour(joint), max(scale // 2, 1), cv2.LINE_AA, shift)
    for joint in range(len(keypoints)):
        if finite[joint]:
            centre = tuple(int(v) for v in fixed[joint])
            radius = (scale + 1) << shift
            cv2.circle(canvas, centre, radius, _side_colour(joint), -1 if visible[joint] else 1, cv2.LINE_AA, shift)
    return canvas


def label(tile: np.ndarray, text: str) -> np.ndarray:
    """``tile`` (H, W, 3) with ``text`` in a dark band along its top edge (in place, returned)."""
    cv2.rectangle(tile, (0, 0), (tile.shape[1], 14), (0, 0, 0), -1)
    cv2.putText(tile, text, (3, 11), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def contact_sheet(tiles: Sequence[np.ndarray], columns: int, gap: int = 4) -> np.ndarray:
    """Tiles of one size (H, W, 3) in a grid of ``columns`` columns on a white canvas, RGB uint8."""
    if not tiles:
        raise ArtifactError("contact_sheet: no tile given")
    height, width = tiles[0].shape[:2]
    if any(t.shape[:2] != (height, width) for t in tiles):
        raise ArtifactError("contact_sheet: tiles differ in size")
    rows = -(-len(tiles) // columns)
    sheet = np.full((rows * (height + gap) + gap, columns * (width + gap) + gap, 3), 255, dtype=np.uint8)
    for number, tile in enumerate(tiles):
        r, c = divmod(number, columns)
        y, x = gap + r * (height + gap), gap + c * (width + gap)
        sheet[y : y + height, x : x + width] = tile
    return sheet
