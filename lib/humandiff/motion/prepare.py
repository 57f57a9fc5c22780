"""Batch conversion of many clips to HumanML3D features, in worker processes, with a round-trip check."""

from __future__ import annotations

import multiprocessing
from contextlib import nullcontext
from typing import Sequence

import numpy as np
import torch

from humandiff.io import ArtifactError

from .hml3d import joints_to_features, joints_to_features_batch, recover_from_ric

_CHUNK = 64


def _process_chunk(task: tuple[list[str], list[np.ndarray], np.ndarray, float]) -> list[tuple[np.ndarray, np.ndarray, float]]:
    clip_ids, joints, reference, threshold = task
    torch.set_num_threads(1)
    try:
        results = joints_to_features_batch(joints, reference, threshold)
    except ArtifactError:
        for clip_id, clip in zip(clip_ids, joints):  # find the culprit to name it
            try:
                joints_to_features(clip, reference, threshold)
            except ArtifactError as exc:
                raise ArtifactError(f"clip {clip_id}: {exc}") from None
        raise
    out = []
    for features, canonical in results:
        with torch.no_grad():
            recovered = recover_from_ric(torch.from_numpy(features).double()).numpy()
        out.append((features, canonical, float(np.abs(recovered - canonical[:-1]).max())))
    return out


def features_for_clips(clip_ids: Sequence[str], joints: Sequence[np.ndarray], reference: np.ndarray,
                       contact_threshold: float, workers: int = 1, progress: bool = False,
                       ) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Per clip (T_i, 22, 3): (features (T_i-1, 263), canonical joints (T_i, 22, 3), round-trip error in m).

    The round-trip error is max |recover_from_ric(features) - canonical[:-1]|. Chunks are independent
    and kept in order, so the result does not depend on ``workers``.
    """
    from tqdm import tqdm

    tasks = [(list(clip_ids[i : i + _CHUNK]), list(joints[i : i + _CHUNK]), reference, contact_threshold)
             for i in range(0, len(joints), _CHUNK)]
    bar = tqdm(total=len(joints), desc="prepare_motion", unit="clip", mininterval=2.0, disable=not progress)
    processed: list[tuple[np.ndarray, np.ndarray, float]] = []
    with multiprocessing.get_context("fork").Pool(workers) if workers > 1 else nullcontext() as pool:
        for chunk in (pool.imap(_process_chunk, tasks) if pool else map(_process_chunk, tasks)):
            processed.extend(chunk)
            bar.update(len(chunk))
    bar.close()
    return processed
