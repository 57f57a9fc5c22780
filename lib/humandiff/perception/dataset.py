"""Rendered image sets as training batches for the perception network."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from humandiff.geometry.rotations import axis_angle_to_matrix
from humandiff.io.artifacts import ArtifactError

#: The shard fields the perception network trains and is evaluated on.
TRAINING_FIELDS = ("image", "joints_2d", "visible", "in_image", "joints_cam", "global_orient_cam", "body_pose",
                   "betas", "intrinsics", "bbox")


class PerceptionDataset:
    """An image set held in memory. Items are indices; :meth:`collate` gathers a batch:
    images (B, 3, S, S) float in [0, 1] (channels-last memory), joints_2d (B, 24, 2), visible and
    in_image (B, 24) bool, joints_cam (B, 24, 3), rotations_cam (B, 24, 3, 3) (camera-frame root
    rotation, then the 23 body joints), betas (B, 10), intrinsics (B, 4), bbox (B, 4)."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        missing = [name for name in TRAINING_FIELDS if name not in arrays]
        if missing:
            raise ArtifactError(f"PerceptionDataset: missing field(s) {missing}")
        images = arrays["image"]
        if images.ndim != 4 or images.shape[1] != images.shape[2] or images.shape[3] != 3 or images.dtype != np.uint8:
            raise ArtifactError(f"PerceptionDataset: field 'image' must be (N, S, S, 3) uint8, got {images.shape} {images.dtype}")
        count = len(images)
        self.images = torch.from_numpy(np.ascontiguousarray(images))
        axis_angle = np.concatenate([arrays["global_orient_cam"][:, None], arrays["body_pose"].reshape(count, 23, 3)], 1)
        self.targets: dict[str, Tensor] = {
            "joints_2d": torch.as_tensor(arrays["joints_2d"], dtype=torch.float32),
            "visible": torch.as_tensor(arrays["visible"], dtype=torch.bool),
            "in_image": torch.as_tensor(arrays["in_image"], dtype=torch.bool),
            "joints_cam": torch.as_tensor(arrays["joints_cam"], dtype=torch.float32),
            "rotations_cam": axis_angle_to_matrix(torch.as_tensor(axis_angle, dtype=torch.float32)),
            "betas": torch.as_tensor(arrays["betas"], dtype=torch.float32),
            "intrinsics": torch.as_tensor(arrays["intrinsics"], dtype=torch.float32),
            "bbox": torch.as_tensor(arrays["bbox"], dtype=torch.float32),
        }
        for name, value in self.targets.items():
            if len(value) != count:
                raise ArtifactError(f"PerceptionDataset: field '{name}' has {len(value)} rows, field 'image' has {count}")

    @property
    def image_size(self) -> int:
        return int(self.images.shape[1])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> int:
        return int(index)

    def collate(self, indices: Sequence[int]) -> dict[str, Tensor]:
        picks = torch.as_tensor(list(indices), dtype=torch.long)
        batch = {name: value[picks] for name, value in self.targets.items()}
        batch["images"] = images_to_tensor(self.images[picks])
        return batch


def images_to_tensor(images: Tensor | np.ndarray) -> Tensor:
    """uint8 images (B, S, S, 3) -> float (B, 3, S, S) in [0, 1], channels-last memory (faster convolutions on CPU)."""
    images = torch.as_tensor(images)
    return images.permute(0, 3, 1, 2).float().div_(255.0).contiguous(memory_format=torch.channels_last)


def colour_jitter(images: Tensor, generator: torch.Generator, strength: float = 0.2) -> Tensor:
    """Random per-image brightness, contrast and per-channel gains of relative size ``strength``:
    (B, 3, S, S) in [0, 1] -> the same shape, clipped to [0, 1]. Geometry is untouched, so the
    labels stay valid."""
    if strength == 0:
        return images
    batch = images.shape[0]

    def uniform(*shape: int) -> Tensor:  # drawn on the generator's device, used on the images'
        return 1.0 + strength * (2.0 * torch.rand(*shape, generator=generator).to(images.device) - 1.0)

    gains = uniform(batch, 1, 1, 1) * uniform(batch, 3, 1, 1) ** 0.5
    contrast = uniform(batch, 1, 1, 1)
    mean = images.mean((1, 2, 3), keepdim=True)
    return ((images - mean) * contrast + mean).mul(gains).clamp_(0.0, 1.0)
