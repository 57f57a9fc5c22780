"""The prepared motion corpus: 22-joint clips -> HumanML3D 263-d features, normalisation, splits.

Clips come from synth_motion's raw output (:func:`synthetic_clips`, with a seeded split and
left/right mirrored copies with mirrored captions) or a real HumanML3D release
(:func:`humanml3d_clips`). Both go through the same retarget -> floor -> face +Z -> features path
in worker processes (:func:`features_for_clips`), every clip checked by a round trip through the
differentiable ``recover_from_ric``; :func:`prepare_clips` gathers the index, the mean/std and
the metrics.
"""

from __future__ import annotations

import multiprocessing
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch

from humandiff.io import ArtifactError, load_npz, load_parquet, split_ragged

from .captions import mirror_text
from .hml3d import (
    evaluator_mean_std,
    feature_mean_std,
    joints_to_features,
    joints_to_features_batch,
    mirror_joints,
    recover_from_ric,
)
from .metrics import foot_skating_ratio

#: Where the clips come from (``params.yaml: prepare_motion.source``).
SOURCES = ("synthetic", "humanml3d")

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


# ---------------------------------------------------------------------------------- the corpus


@dataclass(frozen=True)
class PrepareOptions:
    """Source, splits and contact detection of the prepared corpus (``params.yaml: prepare_motion``)."""

    source: str
    humanml3d_root: str | None
    mirror: bool
    split_seed: int
    val_fraction: float
    test_fraction: float
    contact_threshold: float

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ArtifactError(f"prepare options: unknown 'source' {self.source!r} ({' | '.join(SOURCES)})")
        if self.source == "humanml3d" and not self.humanml3d_root:
            raise ArtifactError("prepare options: 'humanml3d_root' must be set when 'source' is humanml3d")
        if not (0 <= self.val_fraction < 1 and 0 < self.test_fraction < 1 and self.val_fraction + self.test_fraction < 1):
            raise ArtifactError("prepare options: 'val_fraction' + 'test_fraction' must lie in (0, 1)")
        if not self.contact_threshold > 0:
            raise ArtifactError(f"prepare options: 'contact_threshold' must be > 0, got {self.contact_threshold!r}")


@dataclass(frozen=True)
class SourceClip:
    """One clip to prepare: world joints (T, 22, 3), its split, captions and action tags."""

    clip_id: str
    source_id: str
    split: str
    joints: np.ndarray
    captions: list[str]
    actions: list[str]
    mirror: bool
    features: np.ndarray | None = None  # published 263-d vectors (HumanML3D's new_joint_vecs), used as they are


def synthetic_clips(raw_dir: str | Path, options: PrepareOptions) -> Iterator[SourceClip]:
    """Clips of synth_motion's output with a seeded train/val/test split by source clip (each
    followed by its mirrored copy ``M<id>`` when ``options.mirror``)."""
    raw_dir = Path(raw_dir)
    index_file, motion_file = raw_dir / "clips.parquet", raw_dir / "motions.npz"
    index = load_parquet(index_file, ["clip_id", "length", "captions", "actions"])
    arrays = load_npz(motion_file, {"joints": (None, 24, 3), "offsets": (None,)})
    if len(arrays["offsets"]) != len(index) + 1 or arrays["offsets"][-1] != len(arrays["joints"]):
        raise ArtifactError(f"{motion_file}: field 'offsets' does not match {len(index)} clips in {index_file}")
    order = np.random.default_rng(options.split_seed).permutation(len(index))
    n_test = int(round(options.test_fraction * len(index)))
    n_val = int(round(options.val_fraction * len(index)))
    split = np.empty(len(index), dtype=object)
    split[order[:n_test]] = "test"
    split[order[n_test : n_test + n_val]] = "val"
    split[order[n_test + n_val :]] = "train"
    for row, joints, clip_split in zip(index.itertuples(index=False), split_ragged(arrays["joints"], arrays["offsets"]), split):
        captions = [str(c) for c in row.captions]
        if not captions or any(not c.strip() for c in captions):
            raise ArtifactError(f"{index_file}: clip {row.clip_id}: field 'captions' is empty")
        actions = [str(a) for a in row.actions]
        yield SourceClip(row.clip_id, row.clip_id, clip_split, joints[:, :22], captions, actions, mirror=False)
        if options.mirror:
            yield SourceClip(f"M{row.clip_id}", row.clip_id, clip_split, mirror_joints(joints[:, :22]),
                             [mirror_text(c) for c in captions], actions, mirror=True)


def humanml3d_clips(root: str | Path, counts=None) -> Iterator[SourceClip]:
    """Clips of a real HumanML3D release (its own splits and mirrored M-files; no action tags), with
    the release's vectors when it has new_joint_vecs/. ``counts``: a HumanML3DCounts to fill."""
    from humandiff.datasets.humanml3d import iter_humanml3d

    for clip in iter_humanml3d(root, counts=counts):
        yield SourceClip(clip.clip_id, clip.source_id, clip.split, clip.joints, list(clip.captions), [], clip.mirror,
                         clip.features)


@dataclass
class SourceCorpus:
    """The clips of a source; for HumanML3D also what was kept and dropped (``counts``, a
    HumanML3DCounts) and the release's Mean/Std (``mean_std``, or None)."""

    clips: list[SourceClip]
    counts: object | None = None
    mean_std: tuple[np.ndarray, np.ndarray] | None = None


def source_corpus(options: PrepareOptions, raw_dir: str | Path) -> SourceCorpus:
    """The clips of ``options.source`` (raw clips under ``raw_dir``, or ``options.humanml3d_root``);
    an ArtifactError naming the folder when it holds none."""
    if options.source == "synthetic":
        corpus, where = SourceCorpus(list(synthetic_clips(raw_dir, options))), raw_dir
    else:
        from humandiff.datasets.humanml3d import HumanML3DCounts, load_release_mean_std

        counts = HumanML3DCounts()
        clips = list(humanml3d_clips(options.humanml3d_root, counts))
        corpus, where = SourceCorpus(clips, counts, load_release_mean_std(options.humanml3d_root)), options.humanml3d_root
    if not corpus.clips:
        raise ArtifactError(f"{where}: no clips")
    return corpus


def source_clips(options: PrepareOptions, raw_dir: str | Path) -> list[SourceClip]:
    """The clips of ``options.source`` (see :func:`source_corpus`)."""
    return source_corpus(options, raw_dir).clips


@dataclass
class PreparedMotion:
    """The prepared corpus: ``index`` (one row per clip: clip_id, source_id, split, length, captions,
    actions, mirror), per clip its features (T_i-1, 263) and canonical joints (T_i, 22, 3) (published
    vectors: both T_i frames, the joints their ``recover_from_ric``), the
    normalisation (mean_std.npz's arrays), the worst round-trip error (m) and the foot skating ratio
    of each original (not mirrored) clip."""

    index: pd.DataFrame
    features: list[np.ndarray]
    joints: list[np.ndarray]
    mean_std: dict[str, np.ndarray]
    roundtrip_error: float
    skating: list[float]

    def metrics(self, source: str) -> dict:
        """reports/metrics/data.json: counts (originals; with mirrors), families, captions, skating,
        round-trip error, lengths and the split sizes of the originals."""
        index = self.index
        originals = index[~index["mirror"]]
        return {
            "source": source,
            "clips": int(len(originals)),
            "clips_with_mirrors": int(len(index)),
            "families": int(len({a for acts in originals["actions"] for a in acts})),
            "min_captions_per_clip": int(index["captions"].map(len).min()),
            "gt_foot_skating_ratio": float(np.mean(self.skating)) if self.skating else 0.0,
            "roundtrip_max_error_mm": 1000.0 * self.roundtrip_error,
            "min_frames": int(index["length"].min()),
            "max_frames": int(index["length"].max()),
            "fps": 20,
            "splits": {k: int(v) for k, v in originals["split"].value_counts().sort_index().items()},
        }


def _published(clips: Sequence[SourceClip]) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """(features, joints, 0.0) of clips that carry their published vectors: the vectors as they are and
    their ``recover_from_ric`` (the same frame count, as HumanML3D's new_joints)."""
    out = []
    for clip in clips:
        features = np.asarray(clip.features, dtype=np.float32)
        if features.ndim != 2 or features.shape[1] != 263 or len(features) == 0 or not np.isfinite(features).all():
            raise ArtifactError(f"clip {clip.clip_id}: vectors have shape {features.shape} or hold NaN/Inf, expected finite (T>0, 263)")
        out.append((features, np.asarray(clip.joints, dtype=np.float32), 0.0))
    return out


def prepare_clips(clips: Sequence[SourceClip], reference: np.ndarray, contact_threshold: float, workers: int = 1,
                  progress: bool = False, mean_std: tuple[np.ndarray, np.ndarray] | None = None) -> PreparedMotion:
    """Features, canonical joints and the index of ``clips`` (:func:`features_for_clips`, or a clip's
    published ``features`` as they are), with the mean/std of the train split's features (or the
    given ``mean_std``, e.g. the release's Mean/Std) and the evaluator's (``reference_offsets``:
    ``reference`` (22, 3) as float32)."""
    if any(c.features is not None for c in clips):
        if not all(c.features is not None for c in clips):
            raise ArtifactError("prepare: either every clip or none carries published vectors")
        processed = _published(clips)
    else:
        processed = features_for_clips([c.clip_id for c in clips], [c.joints for c in clips], reference,
                                       contact_threshold, workers, progress=progress)
    rows, features, canonical = [], [], []
    worst_error, skating = 0.0, []
    for clip, (feats, joints, error) in zip(clips, processed):
        worst_error = max(worst_error, error)
        if not clip.mirror:
            skating.append(foot_skating_ratio(joints))
        features.append(feats)
        canonical.append(joints)
        rows.append({"clip_id": clip.clip_id, "source_id": clip.source_id, "split": clip.split,
                     "length": len(feats), "captions": clip.captions, "actions": clip.actions, "mirror": clip.mirror})
    index = pd.DataFrame(rows)
    if mean_std is None:
        mean, std = feature_mean_std([f for f, s in zip(features, index["split"]) if s == "train"])
    else:
        mean, std = (np.asarray(a, dtype=np.float32) for a in mean_std)
    eval_mean, eval_std = evaluator_mean_std(mean, std)
    mean_std = {"mean": mean, "std": std, "eval_mean": eval_mean, "eval_std": eval_std,
                "reference_offsets": reference.astype(np.float32)}
    return PreparedMotion(index, features, canonical, mean_std, worst_error, skating)
