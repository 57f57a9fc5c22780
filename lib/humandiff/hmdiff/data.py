"""What HMDiff's stages read: the body's coarse-mesh geometry and one image set's inputs and truth.

Conventions, written once:

- Frame: the camera frame (OpenCV: x right, y down, z forward), metres, **relative to the true
  pelvis** (SMPL joint 0) for the truth and relative to the estimated pelvis for the heatmap poses
  U (:func:`humandiff.hmdiff.dat.input_distribution`): every mesh the model sees or predicts is
  pelvis-relative, as MPVE and MPJPE compare them.
- :class:`Geometry`: the hierarchy of the body model's own mesh (:mod:`humandiff.body.hierarchy`,
  ``sizes`` as ratios or counts; the embedded 1,229-vertex model gives 1229 -> 615 -> 154), the
  coarse joint regressor f (J, V_c) (DAT's f, non-negative, fitted on random posed bodies) and the
  pose-to-mesh map (V_c, J) (the "w/ H_U" ablation). Built in every stage from the body model
  (under a second; deterministic), so no file carries it between stages.
- :class:`ImageSet` (one set, B images, rows in the extraction's order): ``tokens`` (B, T, D)
  float32 spatial tokens, ``heatmaps`` / ``depth_maps`` (B, J, h, w) (xy distributions, metres),
  ``intrinsics`` (B, 4), ``root_depth`` (B,) the regression's pelvis depth, and the truth
  ``vertices`` (B, V, 3), ``joints`` (B, 24, 3), ``coarse`` (B, V_c, 3) (pelvis-relative).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from humandiff.body.hierarchy import MeshHierarchy, body_hierarchy, fit_joint_regressor, fit_pose_to_mesh, random_posed_bodies
from humandiff.body.model import load_body_arrays, load_body_model, posed_body
from humandiff.imaging.shards import load_image_set, load_index
from humandiff.io.artifacts import ArtifactError
from humandiff.perception.extraction import load_extraction

#: The shard fields the truth is built from (camera-frame SMPL parameters).
TRUTH_FIELDS = ("global_orient_cam", "body_pose", "betas", "transl_cam")


@dataclass(frozen=True)
class Geometry:
    """The coarse mesh and its linear maps (see the module doc); tensors float32."""

    hierarchy: MeshHierarchy
    regressor: Tensor      # (J, V_c)
    pose_to_mesh: Tensor   # (V_c, J)
    faces: Tensor          # (F_c, 3) long, the coarse mesh's faces

    @property
    def coarse_vertices(self) -> int:
        return self.hierarchy.sizes[-1]


def build_geometry(body_path: str | Path, sizes: Sequence[float | int], fit_poses: int, seed: int = 0) -> Geometry:
    """The hierarchy of the body model at ``body_path`` with coarse levels ``sizes``, f and the pose-to-mesh
    map fitted on ``fit_poses`` random posed bodies (seeded); one-line errors name the file or parameter."""
    if not isinstance(fit_poses, int) or fit_poses < 8:
        raise ArtifactError(f"hmdiff: parameter 'fit_poses' must be an integer >= 8, got {fit_poses!r}")
    try:
        hierarchy = body_hierarchy(load_body_arrays(body_path), sizes)
    except ArtifactError as exc:
        raise ArtifactError(f"{body_path}: {exc} (parameter 'hmdiff.hierarchy')") from None
    vertices, joints = random_posed_bodies(load_body_model(body_path), fit_poses, seed)
    coarse = hierarchy.down(vertices)
    regressor = fit_joint_regressor(coarse, joints)
    pose_to_mesh = fit_pose_to_mesh(joints, coarse)
    return Geometry(hierarchy, torch.tensor(regressor, dtype=torch.float32), torch.tensor(pose_to_mesh, dtype=torch.float32),
                    torch.as_tensor(hierarchy.level_faces(-1), dtype=torch.long))


@dataclass(frozen=True)
class ImageSet:
    """One image set's inputs and truth (see the module doc)."""

    image_id: np.ndarray
    tokens: Tensor
    heatmaps: Tensor
    depth_maps: Tensor
    intrinsics: Tensor
    root_depth: Tensor
    vertices: Tensor
    joints: Tensor
    coarse: Tensor
    stride: int
    regression: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.image_id)

    def subset(self, rows: np.ndarray) -> "ImageSet":
        take = torch.as_tensor(rows, dtype=torch.long)
        tensors = {name: getattr(self, name)[take] for name in
                   ("tokens", "heatmaps", "depth_maps", "intrinsics", "root_depth", "vertices", "joints", "coarse")}
        return ImageSet(self.image_id[rows], **tensors, stride=self.stride,
                        regression={k: v[rows] for k, v in self.regression.items()})


def true_meshes(body_model, truth: dict[str, np.ndarray], chunk: int = 256) -> tuple[Tensor, Tensor]:
    """Pelvis-relative camera-frame vertices (B, V, 3) and joints (B, 24, 3) of the shards' SMPL parameters."""
    with torch.no_grad():
        vertices, joints = posed_body(body_model, torch.as_tensor(truth["global_orient_cam"]),
                                      torch.as_tensor(truth["body_pose"]), torch.as_tensor(truth["betas"]),
                                      torch.as_tensor(truth["transl_cam"]), chunk_size=chunk)
    root = joints[:, :1]
    return (vertices - root).float(), (joints - root).float()


def load_set(images_dir: str | Path, extract_dir: str | Path, set_name: str, body_model, geometry: Geometry,
             limit: int = 0) -> ImageSet:
    """The first ``limit`` (0: all) images of ``set_name``: the extraction's arrays and the truth (see the module doc)."""
    path = Path(extract_dir) / f"{set_name}.npz"
    arrays = load_extraction(path)
    index = load_index(images_dir)
    rows, truth = load_image_set(images_dir, set_name, TRUTH_FIELDS, index=index)
    if not np.array_equal(rows["image_id"].to_numpy().astype(str), arrays["image_id"]):
        raise ArtifactError(f"{path}: field 'image_id' does not list the images of set '{set_name}' in "
                            f"{Path(images_dir) / 'index.parquet'} (rerun extract)")
    count = len(rows) if limit <= 0 else min(limit, len(rows))
    if count == 0:
        raise ArtifactError(f"{path}: set '{set_name}' has no images")
    vertices, joints = true_meshes(body_model, {k: v[:count] for k, v in truth.items()})
    if vertices.shape[1] != geometry.hierarchy.sizes[0]:
        raise ArtifactError(f"{path}: the body model has {vertices.shape[1]} vertices, the hierarchy "
                            f"{geometry.hierarchy.sizes[0]}")
    root_depth = arrays["joints_cam"][:count, 0, 2]
    if not (np.isfinite(root_depth).all() and (root_depth > 0).all()):
        raise ArtifactError(f"{path}: field 'joints_cam' puts a pelvis behind the camera")
    return ImageSet(
        image_id=arrays["image_id"][:count],
        tokens=torch.as_tensor(arrays["tokens"][:count].astype(np.float32)),
        heatmaps=torch.as_tensor(arrays["heatmaps"][:count]),
        depth_maps=torch.as_tensor(arrays["depth_maps"][:count]),
        intrinsics=torch.as_tensor(arrays["intrinsics"][:count], dtype=torch.float32),
        root_depth=torch.as_tensor(root_depth, dtype=torch.float32),
        vertices=vertices, joints=joints,
        coarse=torch.as_tensor(geometry.hierarchy.down(vertices.double()), dtype=torch.float32),
        stride=int(arrays["heatmap_stride"]),
        regression={name: arrays[name][:count] for name in ("global_orient", "body_pose", "betas", "transl", "joints_cam")},
    )
