"""ScoreHMR's pictures: meshes over the test images (regression vs ScoreHMR, with a side view) and a
video strip. Meshes are the body model posed with a run's camera-frame pose, betas and camera
translation, rendered through the image's own intrinsics (:func:`humandiff.render.render_mesh`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from humandiff.body.model import posed_body
from humandiff.geometry.rotations import axis_angle_to_matrix_np, matrix_to_axis_angle
from humandiff.imaging.draw import contact_sheet, label
from humandiff.render import Camera, render_mesh
from humandiff.scorehmr.model import pose_to_rotations

#: Mesh colours: the regression's pink, ScoreHMR's green (as the paper's Fig. 3).
COLOURS = {"regression": (0.95, 0.6, 0.75), "scorehmr": (0.45, 0.85, 0.45)}


def camera_vertices(body_model, pose: np.ndarray, betas: np.ndarray, transl: np.ndarray) -> np.ndarray:
    """Camera-frame vertices (B, V, 3) for pose vectors (B, 144), betas (B, L) and translations (B, 3);
    the root rotation is applied as a matrix about the root joint (as the metrics' joints)."""
    pose_t = torch.as_tensor(pose, dtype=torch.float32)
    rotations = pose_to_rotations(pose_t)
    batch = len(pose_t)
    body = matrix_to_axis_angle(rotations[:, 1:]).reshape(batch, -1)
    zeros = torch.zeros(batch, 3)
    with torch.no_grad():
        vertices, joints = posed_body(body_model, zeros, body, torch.as_tensor(betas, dtype=torch.float32), zeros)
        root = joints[:, :1]
        vertices = root + torch.einsum("bij,bvj->bvi", rotations[:, 0], vertices - root)
    return (vertices + torch.as_tensor(transl, dtype=torch.float32)[:, None]).double().numpy()


def _camera(intrinsics: np.ndarray, size: int) -> Camera:
    return Camera.from_arrays(intrinsics, np.array([size, size]), np.eye(3), np.zeros(3))


def overlay(image: np.ndarray, vertices: np.ndarray, faces: np.ndarray, intrinsics: np.ndarray, colour) -> np.ndarray:
    """The mesh (V, 3) drawn over ``image`` (S, S, 3) uint8 RGB, half transparent."""
    size = image.shape[0]
    result = render_mesh(vertices, faces, _camera(intrinsics, size), vertex_colors=np.tile(colour, (len(vertices), 1)),
                         background=image)
    blended = image.astype(np.float32)
    blended[result.mask] = 0.3 * blended[result.mask] + 0.7 * result.image[result.mask]
    return blended.astype(np.uint8)


def side_view(vertices: Sequence[np.ndarray], faces: np.ndarray, intrinsics: np.ndarray, size: int,
              colours: Sequence) -> np.ndarray:
    """Meshes (each (V, 3)) turned 90 degrees about the vertical through their common centre, on white."""
    centre = np.concatenate(vertices).mean(0)
    turn = axis_angle_to_matrix_np(np.array([0.0, np.pi / 2, 0.0]))
    image = np.full((size, size, 3), 255, dtype=np.uint8)
    for verts, colour in zip(vertices, colours):
        turned = (verts - centre) @ turn.T + centre
        result = render_mesh(turned, faces, _camera(intrinsics, size), vertex_colors=np.tile(colour, (len(verts), 1)),
                             background=image)
        image = np.where(result.mask[..., None], (0.5 * image + 0.5 * result.image).astype(np.uint8), image)
    return image


def overlay_sheet(images: np.ndarray, intrinsics: np.ndarray, meshes: dict[str, np.ndarray], faces: np.ndarray,
                  scale: int = 2) -> np.ndarray:
    """One row per image: the image, the regression's mesh, ScoreHMR's mesh, a side view of both.
    ``meshes[name]`` (B, V, 3) for ``regression`` and ``scorehmr``."""
    tiles = []
    for i, image in enumerate(images):
        row = [image.copy()]
        for name in ("regression", "scorehmr"):
            row.append(overlay(image, meshes[name][i], faces, intrinsics[i], COLOURS[name]))
        row.append(side_view([meshes[n][i] for n in ("regression", "scorehmr")], faces, intrinsics[i], image.shape[0],
                             [COLOURS[n] for n in ("regression", "scorehmr")]))
        for tile, text in zip(row, ("image", "regression", "ScoreHMR", "side")):
            tiles.append(label(np.kron(tile, np.ones((scale, scale, 1), dtype=np.uint8)), text))
    return contact_sheet(tiles, 4)


def video_strip(images: np.ndarray, intrinsics: np.ndarray, meshes: dict[str, np.ndarray], faces: np.ndarray,
                scale: int = 2) -> np.ndarray:
    """Frames side by side: the regression's mesh on the top row, ScoreHMR's below."""
    tiles = []
    for name in ("regression", "scorehmr"):
        for i, image in enumerate(images):
            tile = overlay(image, meshes[name][i], faces, intrinsics[i], COLOURS[name])
            tiles.append(label(np.kron(tile, np.ones((scale, scale, 1), dtype=np.uint8)), f"{name} {i}"))
    return contact_sheet(tiles, len(images))
