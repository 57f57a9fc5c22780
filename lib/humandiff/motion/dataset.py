"""Text-motion pairs of the prepared HumanML3D-format corpus for training generative models.

Reads ``index.parquet`` (one row per clip), ``features.npz`` (``features`` (N_frames, 263) with
``offsets`` (K+1,)), ``embeddings.parquet`` (caption -> 384-d sentence embedding) and
``mean_std.npz``. :class:`MotionTextDataset` yields one training pair per clip as HumanML3D
loaders do: a random caption of the clip, a random crop whose length is a multiple of 4 frames
(one unit shorter a third of the time), normalised features. :func:`collate_motion` pads a list
of pairs to the batch's longest crop and returns the padding mask.

Randomness: item ``i`` in epoch ``e`` draws from ``numpy.random.default_rng((seed, e, i))``, so
a pair depends only on (seed, epoch, index): the same under any batching, worker or rank layout,
and reproducible after a resume.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import Dataset

from humandiff.io.artifacts import ArtifactError, load_npz, load_parquet

FEATURE_DIM = 263
TEXT_DIM = 384
#: HumanML3D's crop unit (frames): crops and generated lengths are multiples of it.
CROP_UNIT = 4
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class MotionSplit:
    """The clips of one or more splits, in index order.

    ``index`` holds their index.parquet rows (reset to 0..K-1); ``features`` (N, 263) float32 are
    their frames concatenated, clip ``k`` being ``features[offsets[k]:offsets[k+1]]``;
    ``embeddings`` (C, 384) float32 holds one row per distinct caption (``None`` when no embedding
    file was read) and ``caption_rows[k]`` (n_k,) the rows of clip ``k``'s captions in it.
    """

    index: pd.DataFrame
    features: np.ndarray
    offsets: np.ndarray
    embeddings: np.ndarray | None
    caption_rows: tuple[np.ndarray, ...]

    def __len__(self) -> int:
        return len(self.index)

    @property
    def lengths(self) -> np.ndarray:
        """Frames per clip (K,) int64."""
        return np.diff(self.offsets)

    def clip(self, k: int) -> np.ndarray:
        """Features (T_k, 263) of clip ``k`` (a view)."""
        return self.features[self.offsets[k] : self.offsets[k + 1]]

    def captions(self, k: int) -> list[str]:
        """Captions of clip ``k``."""
        return [str(c) for c in self.index.at[k, "captions"]]


def load_mean_std(path: str | Path, kind: str = "model") -> tuple[np.ndarray, np.ndarray]:
    """``(mean, std)`` (263,) float32 from ``mean_std.npz``; ``kind`` "model" or "eval" (evaluator's)."""
    keys = {"model": ("mean", "std"), "eval": ("eval_mean", "eval_std")}
    if kind not in keys:
        raise ArtifactError(f"load_mean_std: parameter 'kind' must be 'model' or 'eval', got {kind!r}")
    mean_key, std_key = keys[kind]
    arrays = load_npz(path, {mean_key: (FEATURE_DIM,), std_key: (FEATURE_DIM,)})
    mean, std = arrays[mean_key].astype(np.float32), arrays[std_key].astype(np.float32)
    if not (std > 0).all():
        raise ArtifactError(f"{path}: field '{std_key}' has non-positive entries")
    return mean, std


def load_embeddings(path: str | Path) -> tuple[dict[str, int], np.ndarray]:
    """Caption -> row map and embeddings (C, 384) float32 from ``embeddings.parquet``."""
    table = load_parquet(path, ["caption", "embedding"])
    if len(table) == 0:
        raise ArtifactError(f"{path}: no captions")
    try:
        matrix = np.stack([np.asarray(e, dtype=np.float32) for e in table["embedding"]])
    except ValueError:
        raise ArtifactError(f"{path}: field 'embedding' rows have different sizes") from None
    if matrix.shape[1] != TEXT_DIM:
        raise ArtifactError(f"{path}: field 'embedding' has {matrix.shape[1]} dims, expected {TEXT_DIM}")
    if not np.isfinite(matrix).all():
        raise ArtifactError(f"{path}: field 'embedding' contains NaN or Inf")
    rows = {str(c): i for i, c in enumerate(table["caption"])}
    if len(rows) != len(table):
        raise ArtifactError(f"{path}: field 'caption' has duplicates")
    return rows, matrix


def check_captions(index, index_file: str | Path) -> None:
    """Every clip of ``index`` (all splits) has at least one caption and no blank one; else a one-line
    error naming ``index_file``, the clip and its split."""
    for clip_id, split, caps in zip(index["clip_id"], index["split"], index["captions"]):
        if caps is None or len(caps) == 0:
            raise ArtifactError(f"{index_file}: clip {clip_id} ({split} split): field 'captions' is empty")
        if any(not isinstance(c, str) or not c.strip() for c in caps):
            raise ArtifactError(f"{index_file}: clip {clip_id} ({split} split): field 'captions' holds an empty caption")


def load_motion_split(
    index_file: str | Path,
    features_file: str | Path,
    embeddings_file: str | Path | None,
    splits: str | Sequence[str] = "train",
) -> MotionSplit:
    """The clips of ``splits`` ("train", "val", "test" or several) with their features and captions.

    Every caption of a selected clip must have an embedding when ``embeddings_file`` is given. One
    rule for every split: a clip of any split with no caption or an empty caption is an error
    naming ``index_file``, whichever split is loaded (:func:`check_captions`).
    """
    wanted = (splits,) if isinstance(splits, str) else tuple(splits)
    bad = [s for s in wanted if s not in SPLITS]
    if bad or not wanted:
        raise ArtifactError(f"load_motion_split: parameter 'splits' must be among {SPLITS}, got {splits!r}")
    index = load_parquet(index_file, ["clip_id", "split", "length", "captions"])
    check_captions(index, index_file)
    arrays = load_npz(features_file, {"features": (None, FEATURE_DIM), "offsets": (None,)})
    features, offsets = arrays["features"], arrays["offsets"].astype(np.int64)
    if len(offsets) != len(index) + 1 or offsets[0] != 0 or offsets[-1] != len(features) or (np.diff(offsets) < 1).any():
        raise ArtifactError(f"{features_file}: field 'offsets' does not match {len(index)} clips of {index_file}")
    if not np.array_equal(np.diff(offsets), index["length"].to_numpy()):
        raise ArtifactError(f"{index_file}: field 'length' disagrees with the offsets of {features_file}")

    keep = np.flatnonzero(index["split"].isin(wanted).to_numpy())
    if len(keep) == 0:
        raise ArtifactError(f"{index_file}: no clip in split(s) {', '.join(wanted)}")
    lengths = np.diff(offsets)[keep]
    frames = np.concatenate([np.arange(offsets[k], offsets[k + 1]) for k in keep])
    sub_features = np.ascontiguousarray(features[frames], dtype=np.float32)
    sub_offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    sub_index = index.iloc[keep].reset_index(drop=True)

    embeddings, caption_rows = None, ()
    if embeddings_file is not None:
        rows, embeddings = load_embeddings(embeddings_file)
        found = []
        for k, caps in enumerate(sub_index["captions"]):
            missing = [c for c in caps if str(c) not in rows]
            if missing:
                raise ArtifactError(f"{embeddings_file}: no embedding for caption {missing[0]!r} of clip {sub_index.at[k, 'clip_id']}")
            found.append(np.array([rows[str(c)] for c in caps], dtype=np.int64))
        caption_rows = tuple(found)
    return MotionSplit(sub_index, sub_features, sub_offsets, embeddings, caption_rows)


def crop_length(length: int, max_frames: int, rng: np.random.Generator, unit: int = CROP_UNIT) -> int:
    """HumanML3D's training crop length for a clip of ``length`` frames.

    The length rounded down to a multiple of ``unit``, one unit shorter with probability 1/3
    (when that leaves at least one unit), capped at ``max_frames`` rounded down to the unit.
    """
    units = length // unit
    if units < 1:
        raise ArtifactError(f"crop_length: clip of {length} frames is shorter than one unit of {unit}")
    if units > 1 and rng.integers(3) == 2:
        units -= 1
    return min(units, max_frames // unit) * unit


class MotionTextDataset(Dataset):
    """Training pairs: item ``i`` is clip ``i`` with a random caption and a random crop.

    Returns a dict: ``motion`` (T, 263) float32 normalised with ``(mean, std)`` (the generative
    models' or the evaluator's, see :func:`load_mean_std`); ``length`` int (= T); ``text_emb``
    (384,) float32 (only when the split was loaded with embeddings); ``caption`` str; ``clip``
    int (row in the split).
    ``random=False`` gives the first caption and the leading crop of ``length // unit * unit``
    frames capped at ``max_frames`` (for validation). Call :meth:`set_epoch` each epoch.
    """

    def __init__(self, data: MotionSplit, mean: np.ndarray, std: np.ndarray, *, max_frames: int = 196,
                 seed: int = 0, random: bool = True, unit: int = CROP_UNIT) -> None:
        if max_frames < unit:
            raise ArtifactError(f"MotionTextDataset: parameter 'max_frames' must be >= {unit}, got {max_frames}")
        mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
        if mean.shape != (FEATURE_DIM,) or std.shape != (FEATURE_DIM,) or not (std > 0).all():
            raise ArtifactError(f"MotionTextDataset: mean/std must be ({FEATURE_DIM},) with std > 0")
        self.data, self.mean, self.std = data, mean, std
        self.max_frames, self.seed, self.random, self.unit = int(max_frames), int(seed), bool(random), int(unit)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose crops and captions items draw (as DistributedSampler.set_epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.data)

    def crop_lengths(self) -> np.ndarray:
        """Upper bound (K,) of each item's crop length (for length-bucketed batching)."""
        return np.minimum(self.data.lengths // self.unit * self.unit, self.max_frames // self.unit * self.unit)

    def __getitem__(self, i: int) -> dict:
        clip = self.data.clip(i)
        captions = self.data.captions(i)
        if self.random:
            rng = np.random.default_rng((self.seed, self.epoch, int(i)))
            choice = int(rng.integers(len(captions)))
            frames = crop_length(len(clip), self.max_frames, rng, self.unit)
            start = int(rng.integers(len(clip) - frames + 1))
        else:
            choice, start = 0, 0
            frames = min(len(clip) // self.unit, self.max_frames // self.unit) * self.unit
        motion = (clip[start : start + frames] - self.mean) / self.std
        item = {
            "motion": torch.from_numpy(np.ascontiguousarray(motion, dtype=np.float32)),
            "length": frames,
            "caption": captions[choice],
            "clip": int(i),
        }
        if self.data.embeddings is not None:
            item["text_emb"] = torch.from_numpy(self.data.embeddings[self.data.caption_rows[i][choice]].copy())
        return item


def collate_motion(items: Sequence[dict]) -> dict:
    """Stack items into a batch padded to the longest: ``motion`` (B, T_max, 263) zero-padded,
    ``mask`` (B, T_max) bool (True = real frame), ``lengths`` (B,) long, ``text_emb`` (B, 384)
    (when the items carry it), ``captions`` list[str], ``clips`` (B,) long."""
    if not items:
        raise ArtifactError("collate_motion: empty batch")
    lengths = torch.tensor([int(item["length"]) for item in items], dtype=torch.long)
    t_max = int(lengths.max())
    motion = torch.zeros(len(items), t_max, items[0]["motion"].shape[-1], dtype=torch.float32)
    for b, item in enumerate(items):
        motion[b, : lengths[b]] = item["motion"]
    batch = {
        "motion": motion,
        "mask": torch.arange(t_max)[None, :] < lengths[:, None],
        "lengths": lengths,
        "captions": [item["caption"] for item in items],
        "clips": torch.tensor([int(item["clip"]) for item in items], dtype=torch.long),
    }
    if all("text_emb" in item for item in items):
        batch["text_emb"] = torch.stack([item["text_emb"] for item in items])
    return batch


def padding_mask(lengths: Tensor, t_max: int | None = None) -> Tensor:
    """Bool mask (B, T_max) that is True on the first ``lengths[b]`` frames of row ``b``."""
    lengths = torch.as_tensor(lengths, dtype=torch.long)
    t_max = int(lengths.max()) if t_max is None else int(t_max)
    return torch.arange(t_max, device=lengths.device)[None, :] < lengths[:, None]
