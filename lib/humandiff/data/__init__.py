"""Datasets over the pipeline's prepared artifacts (motion features, captions, embeddings)."""

from humandiff.data.motion_dataset import (
    CROP_UNIT,
    MotionSplit,
    MotionTextDataset,
    collate_motion,
    crop_length,
    load_embeddings,
    load_mean_std,
    load_motion_split,
    padding_mask,
)

__all__ = [
    "CROP_UNIT",
    "MotionSplit",
    "MotionTextDataset",
    "collate_motion",
    "crop_length",
    "load_embeddings",
    "load_mean_std",
    "load_motion_split",
    "padding_mask",
]
