"""Stick-figure pictures of motions (OpenCV): contact sheets and short videos a person can check.

A fixed oblique orthographic view (azimuth, elevation) looks at the body; the floor is drawn as
a grid at y = 0, left limbs blue, right limbs red, the spine and head grey.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from humandiff.io import atomic_path

#: Bones of the 22-joint HumanML3D / SMPL skeleton, by kinematic chain.
_CHAINS = {
    "right": [[0, 2, 5, 8, 11], [9, 14, 17, 19, 21]],
    "left": [[0, 1, 4, 7, 10], [9, 13, 16, 18, 20]],
    "centre": [[0, 3, 6, 9, 12, 15]],
}
_COLOURS = {"right": (60, 60, 220), "left": (220, 120, 40), "centre": (70, 70, 70)}  # BGR


def _view_matrix(azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    """(2, 3) orthographic projection: world (x, y, z) -> screen (right, up)."""
    a, e = np.deg2rad(azimuth_deg), np.deg2rad(elevation_deg)
    right = np.array([np.cos(a), 0.0, -np.sin(a)])
    forward = np.array([np.sin(a) * np.cos(e), -np.sin(e), np.cos(a) * np.cos(e)])
    up = np.cross(forward, right)
    return np.stack([right, -up if up[1] < 0 else up])


def project(points: np.ndarray, canvas_shape: Sequence[int], centre: np.ndarray, scale: float,
            azimuth: float = 35.0, elevation: float = 20.0) -> np.ndarray:
    """World points (..., 3) -> pixel coordinates (..., 2) (x right, y down) of :func:`draw_skeleton`'s
    view: ``centre`` lands at the canvas's horizontal middle, 62% down (room above for the body)."""
    H, W = canvas_shape[:2]
    screen = (np.asarray(points, dtype=np.float64) - centre) @ _view_matrix(azimuth, elevation).T
    return np.stack([W / 2 + scale * screen[..., 0], H * 0.62 - scale * screen[..., 1]], -1)


def draw_skeleton(canvas: np.ndarray, joints: np.ndarray, centre: np.ndarray, scale: float,
                  azimuth: float = 35.0, elevation: float = 20.0, grid: bool = True,
                  markers: Sequence[tuple[np.ndarray, tuple[int, int, int]]] = ()) -> np.ndarray:
    """Draw one pose (J >= 22, 3) into ``canvas`` (H, W, 3) uint8 in place; returns it.

    ``centre`` (3,) is the world point drawn at the middle of the canvas, ``scale`` pixels per metre;
    ``markers`` are extra world points (e.g. targets) drawn as filled circles.
    """
    H, W = canvas.shape[:2]

    def to_px(points: np.ndarray) -> np.ndarray:
        return project(points, canvas.shape, centre, scale, azimuth, elevation)

    if grid:
        step = 0.5
        cx, cz = np.round(centre[0] / step) * step, np.round(centre[2] / step) * step
        for k in range(-6, 7):
            for a, b in (
                (np.array([cx + k * step, 0, cz - 3]), np.array([cx + k * step, 0, cz + 3])),
                (np.array([cx - 3, 0, cz + k * step]), np.array([cx + 3, 0, cz + k * step])),
            ):
                p, q = to_px(np.stack([a, b]))
                cv2.line(canvas, tuple(np.round(p).astype(int)), tuple(np.round(q).astype(int)), (215, 215, 215), 1,
                         cv2.LINE_AA)
    px = to_px(joints[:22])
    for side, chains in _CHAINS.items():
        for chain in chains:
            for a, b in zip(chain[:-1], chain[1:]):
                cv2.line(canvas, tuple(np.round(px[a]).astype(int)), tuple(np.round(px[b]).astype(int)),
                         _COLOURS[side], 2, cv2.LINE_AA)
    cv2.circle(canvas, tuple(np.round(px[15]).astype(int)), max(3, int(scale * 0.09)), _COLOURS["centre"], 2, cv2.LINE_AA)
    for point, colour in markers:
        cv2.circle(canvas, tuple(np.round(to_px(np.asarray(point)[None])[0]).astype(int)), 5, colour, -1, cv2.LINE_AA)
    return canvas


def _put_text(canvas: np.ndarray, text: str, origin: tuple[int, int], size: float = 0.45) -> None:
    cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, size, (20, 20, 20), 1, cv2.LINE_AA)


def _wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if len(line) + len(word) + 1 > width and line:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + ([line] if line else [])


def contact_sheet_row(joints: np.ndarray, caption: str, panels: int = 8, panel_size: int = 160) -> np.ndarray:
    """A strip of ``panels`` poses evenly spread over the clip (T, J, 3), each centred on its root,
    plus a top view of the root path; the caption above. Returns (H, W, 3) uint8."""
    T = joints.shape[0]
    frames = np.linspace(0, T - 1, panels).round().astype(int)
    header = 22 * len(_wrap(caption, panels * panel_size // 8)) + 6
    strip = np.full((header + panel_size, (panels + 1) * panel_size, 3), 255, np.uint8)
    for k, line in enumerate(_wrap(caption, panels * panel_size // 8)):
        _put_text(strip, line, (6, 18 + 22 * k))
    scale = panel_size / 2.4
    for i, frame in enumerate(frames):
        panel = strip[header:, i * panel_size : (i + 1) * panel_size]
        centre = np.array([joints[frame, 0, 0], 0.85, joints[frame, 0, 2]])
        draw_skeleton(panel, joints[frame], centre, scale)
        _put_text(panel, f"t={frame / 20:.1f}s", (4, panel_size - 6), 0.35)
    # Top view of the pelvis path (x right, z up on screen), start marked green.
    panel = strip[header:, panels * panel_size :]
    path = joints[:, 0, [0, 2]]
    lo, hi = path.min(0), path.max(0)
    span = max(float((hi - lo).max()), 1.0)
    pix = (path - (lo + hi) / 2) / span * (panel_size * 0.8)
    pts = np.stack([panel_size / 2 + pix[:, 0], panel_size / 2 - pix[:, 1]], -1).round().astype(np.int32)
    cv2.polylines(panel, [pts], False, (90, 90, 90), 1, cv2.LINE_AA)
    cv2.circle(panel, tuple(pts[0]), 4, (40, 170, 40), -1)
    _put_text(panel, f"top view {span:.1f} m", (4, panel_size - 6), 0.35)
    cv2.rectangle(strip, (0, 0), (strip.shape[1] - 1, strip.shape[0] - 1), (180, 180, 180), 1)
    return strip


def write_image(path: str | Path, image: np.ndarray) -> None:
    """Write a PNG atomically."""
    with atomic_path(path, suffix=".png") as tmp:
        if not cv2.imwrite(str(tmp), image):
            raise OSError(f"{path}: OpenCV could not write the image")


def write_video(path: str | Path, joints: np.ndarray, caption: str, fps: float = 20.0, size: int = 320,
                markers: Sequence[tuple[np.ndarray, tuple[int, int, int]]] = ()) -> None:
    """An MP4 (mp4v) of the clip (T, J, 3) with a camera that follows the pelvis and the caption."""
    lines = _wrap(caption, size // 8)
    with atomic_path(path, suffix=".mp4") as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size, size))
        if not writer.isOpened():
            raise OSError(f"{path}: OpenCV could not open a video writer")
        try:
            for frame in range(joints.shape[0]):
                canvas = np.full((size, size, 3), 255, np.uint8)
                centre = np.array([joints[frame, 0, 0], 0.85, joints[frame, 0, 2]])
                draw_skeleton(canvas, joints[frame], centre, size / 2.6, markers=markers)
                for k, line in enumerate(lines):
                    _put_text(canvas, line, (6, 16 + 18 * k), 0.42)
                writer.write(canvas)
        finally:
            writer.release()
