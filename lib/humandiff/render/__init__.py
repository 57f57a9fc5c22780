"""Rendering posed bodies into training images: cameras, a numpy rasteriser, procedural scenes.

Conventions: world y up; OpenCV cameras (x right, y down, z forward); integer pixel
coordinates are pixel centres. See :mod:`humandiff.render.camera`.
"""

from humandiff.render.camera import Camera, CameraBatch, project_points_torch
from humandiff.render.raster import (
    DirectionalLight,
    Fragments,
    RenderResult,
    face_normals,
    interpolate,
    rasterize,
    render_mesh,
    vertex_normals,
)
from humandiff.render.scene import (
    SMPL_PARENTS,
    SceneOptions,
    face_parts,
    framing_camera,
    joint_visibility,
    mannequin,
    project_joints,
    render_person,
)

__all__ = [
    "Camera",
    "CameraBatch",
    "DirectionalLight",
    "Fragments",
    "RenderResult",
    "SMPL_PARENTS",
    "SceneOptions",
    "face_normals",
    "face_parts",
    "framing_camera",
    "interpolate",
    "joint_visibility",
    "mannequin",
    "project_joints",
    "project_points_torch",
    "rasterize",
    "render_mesh",
    "render_person",
    "vertex_normals",
]
