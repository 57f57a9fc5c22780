"""Reader for the published HumanML3D release: motion vectors or joints, captions and splits.

Expected layout under ``root`` (the HumanML3D folder as its scripts leave it)::

    new_joint_vecs/<id>.npy  (T, 263) motion vectors, 20 fps (read when the folder exists)
    new_joints/<id>.npy      (T, 22, 3) joints = recover_from_ric(new_joint_vecs): the same T
    Mean.npy Std.npy         (263,) the release's normalisation (used when present)
    texts/<id>.txt           one caption per line: ``caption#tok/POS tok/POS ...#start#end``
    train.txt val.txt test.txt   one id per line (mirrored ids M<id> included)

Clip selection follows the text-to-motion loaders (Guo et al.'s ``Text2MotionDataset``, used by
MDM, DNO, SoPo and the evaluators), which count a motion's length in rows of its file (vectors and
joints have the same count):

- a listed id whose motion file (or caption file) is missing is skipped and counted ``missing``;
- a file whose length is outside ``[min_length, max_length)`` is skipped with all its captions
  (counted ``too_short`` / ``too_long``);
- captions with span 0/0 (or NaN) describe the whole clip, which is kept if it has at least one;
- a caption with another span ``start#end`` (seconds) becomes its own sub-clip of the rows
  ``[int(start * 20), int(end * 20))`` (clipped to the file), kept when its length is in range.
  Its id is ``<id>_<k>`` with k the caption's 0-based line number among the file's non-blank
  lines (the loaders draw a random letter instead).

:func:`scan_humanml3d` counts what will be kept and dropped from the files' headers alone (the
``--check`` mode of prepare_motion); :func:`iter_humanml3d` reads the kept clips.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from humandiff.io.artifacts import ArtifactError

__all__ = ["CaptionLine", "DROP_REASONS", "HumanML3DClip", "HumanML3DCounts", "SPLITS", "iter_humanml3d", "load_joints",
           "load_release_mean_std", "load_vectors", "read_captions", "read_split_ids", "scan_humanml3d"]

SPLITS = ("train", "val", "test")
_FPS = 20
_NUM_JOINTS = 22
_FEATURE_DIM = 263


@dataclass(frozen=True)
class CaptionLine:
    """One parsed line of a texts/<id>.txt file (span in seconds; 0/0 = the whole clip)."""

    caption: str
    tokens: str
    start: float
    end: float
    line_number: int

    @property
    def whole_clip(self) -> bool:
        return self.start == 0.0 and self.end == 0.0


@dataclass(frozen=True)
class HumanML3DClip:
    """A clip with its captions. ``joints`` (T, 22, 3) float32 are rows [start_frame, end_frame) of the file
    (of ``recover_from_ric(features)`` when read from new_joint_vecs/, whose rows ``features`` (T, 263) holds).

    ``tokens[i]`` is the raw ``word/POS`` string of ``captions[i]``. ``source_id`` is the file id
    (``M<id>`` for mirrored files); ``clip_id`` equals it for whole clips, ``<id>_<k>`` for spans.
    """

    clip_id: str
    split: str
    joints: np.ndarray
    captions: list[str]
    tokens: list[str]
    mirror: bool
    source_id: str
    start_frame: int
    end_frame: int
    features: np.ndarray | None = None


def read_split_ids(root: str | Path, split: str) -> list[str]:
    """Ids listed in ``<root>/<split>.txt`` (blank lines ignored, duplicates rejected)."""
    path = Path(root) / f"{split}.txt"
    if not path.is_file():
        raise ArtifactError(f"{path}: split file not found")
    ids = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    seen: set[str] = set()
    for clip_id in ids:
        if clip_id in seen:
            raise ArtifactError(f"{path}: id '{clip_id}' is listed twice")
        if "/" in clip_id or "\\" in clip_id:
            raise ArtifactError(f"{path}: id '{clip_id}' is not a plain file name")
        seen.add(clip_id)
    return ids


def _parse_seconds(text: str, path: Path, line_number: int, field: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ArtifactError(f"{path}:{line_number}: {field} time '{text}' is not a number") from None
    if math.isnan(value):  # the loaders read NaN spans as 0 (whole clip)
        return 0.0
    if value < 0 or math.isinf(value):
        raise ArtifactError(f"{path}:{line_number}: {field} time {value} must be finite and >= 0")
    return value


def read_captions(path: str | Path) -> list[CaptionLine]:
    """Parse a texts/<id>.txt file; line numbers are 1-based file lines, blank lines skipped."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: caption file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ArtifactError(f"{path}: not UTF-8 text ({exc})") from None
    captions = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        fields = line.split("#")
        if len(fields) < 4:
            raise ArtifactError(
                f"{path}:{line_number}: malformed caption line, expected caption#tokens#start#end: {line[:80]!r}"
            )
        caption = fields[0].strip()
        if not caption:
            raise ArtifactError(f"{path}:{line_number}: empty caption")
        start = _parse_seconds(fields[2], path, line_number, "start")
        end = _parse_seconds(fields[3], path, line_number, "end")
        captions.append(CaptionLine(caption, fields[1].strip(), start, end, line_number))
    if not captions:
        raise ArtifactError(f"{path}: no captions")
    return captions


def _load_frames(path: str | Path, what: str, trailing: tuple[int, ...]) -> np.ndarray:
    """A .npy of frames (T>0, *trailing) as float32, checked (no pickle, numeric, finite)."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: {what} file not found")
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as exc:  # pickled object arrays, truncated or foreign files
        raise ArtifactError(f"{path}: cannot read as .npy ({type(exc).__name__}: {exc})") from None
    if not np.issubdtype(array.dtype, np.number):
        raise ArtifactError(f"{path}: {what} have dtype {array.dtype}, expected float")
    if array.ndim != 1 + len(trailing) or array.shape[1:] != trailing or array.shape[0] == 0:
        raise ArtifactError(f"{path}: {what} have shape {array.shape}, expected (T>0, {', '.join(map(str, trailing))})")
    if not np.isfinite(array).all():
        raise ArtifactError(f"{path}: {what} contain NaN or Inf")
    return array.astype(np.float32)


def load_joints(path: str | Path) -> np.ndarray:
    """Load a new_joints/<id>.npy file as float32 (T, 22, 3), checked (no pickle, finite, T >= 1)."""
    return _load_frames(path, "joints", (_NUM_JOINTS, 3))


def load_vectors(path: str | Path) -> np.ndarray:
    """Load a new_joint_vecs/<id>.npy file as float32 (T, 263), checked (no pickle, finite, T >= 1)."""
    return _load_frames(path, "vectors", (_FEATURE_DIM,))


def _in_range(motion_length: int, min_length: int, max_length: int) -> bool:
    return min_length <= motion_length < max_length


#: Reasons a listed id is dropped, as counted by :class:`HumanML3DCounts`.
DROP_REASONS = ("missing", "too_short", "too_long")


@dataclass
class HumanML3DCounts:
    """What a read of the release keeps: ids listed in the split files, ids whose files were read
    (``loaded``), dropped ids by reason, and the kept clips (whole clips and spans)."""

    motion_folder: str = "new_joints"
    listed: int = 0
    loaded: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))
    clips: int = 0
    split_ids: dict[str, dict[str, int]] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"motion_folder": self.motion_folder, "listed": self.listed, "loaded": self.loaded,
                "dropped": dict(self.dropped), "clips": self.clips, "splits": {k: dict(v) for k, v in self.split_ids.items()}}

    def summary(self) -> str:
        dropped = ", ".join(f"{reason.replace('_', ' ')} {n}" for reason, n in self.dropped.items())
        return (f"{self.listed} ids listed, {self.loaded} kept, {sum(self.dropped.values())} dropped ({dropped}); "
                f"{self.clips} clips (whole clips and spans) from {self.motion_folder}/")


@dataclass(frozen=True)
class _Entry:
    split: str
    source_id: str
    status: str  # "kept" or a DROP_REASONS entry
    length: int


def _npy_rows(path: Path) -> tuple[int, tuple[int, ...]]:
    """(rows, shape) of a .npy file from its header alone (ArtifactError naming the file when unreadable)."""
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(handle)
    except Exception as exc:
        raise ArtifactError(f"{path}: cannot read as .npy ({type(exc).__name__}: {exc})") from None
    if dtype.hasobject:
        raise ArtifactError(f"{path}: cannot read as .npy (it holds Python objects)")
    if len(shape) == 0:
        raise ArtifactError(f"{path}: holds a scalar, expected an array of frames")
    return int(shape[0]), tuple(int(n) for n in shape)


def _check_folders(root: Path) -> tuple[Path, Path, bool]:
    if not root.is_dir():
        raise ArtifactError(f"{root}: HumanML3D folder not found")
    vecs_dir, joints_dir, texts_dir = root / "new_joint_vecs", root / "new_joints", root / "texts"
    use_vecs = vecs_dir.is_dir()
    for folder in (vecs_dir if use_vecs else joints_dir, texts_dir):
        if not folder.is_dir():
            raise ArtifactError(f"{folder}: folder not found (expected the HumanML3D layout)")
    return (vecs_dir if use_vecs else joints_dir), texts_dir, use_vecs


def _scan(root: Path, splits: Sequence[str], min_length: int, max_length: int) -> tuple[list[_Entry], HumanML3DCounts, bool]:
    motion_dir, texts_dir, use_vecs = _check_folders(root)
    counts = HumanML3DCounts(motion_folder=motion_dir.name)
    entries = []
    for split in splits:
        per_split = {"listed": 0, "kept": 0}
        for source_id in read_split_ids(root, split):
            path = motion_dir / f"{source_id}.npy"
            length = 0
            if not path.is_file() or not (texts_dir / f"{source_id}.txt").is_file():
                status = "missing"
            else:
                length, shape = _npy_rows(path)
                trailing = (_FEATURE_DIM,) if use_vecs else (_NUM_JOINTS, 3)
                if shape[1:] != trailing:
                    what = "vectors" if use_vecs else "joints"
                    raise ArtifactError(f"{path}: {what} have shape {shape}, expected (T>0, {', '.join(map(str, trailing))})")
                status = "too_short" if length < min_length else "too_long" if length >= max_length else "kept"
            entries.append(_Entry(split, source_id, status, length))
            counts.listed += 1
            per_split["listed"] += 1
            if status == "kept":
                counts.loaded += 1
                per_split["kept"] += 1
            else:
                counts.dropped[status] += 1
        counts.split_ids[split] = per_split
    return entries, counts, use_vecs


def scan_humanml3d(root: str | Path, splits: Sequence[str] = SPLITS, min_length: int = 40,
                   max_length: int = 200) -> HumanML3DCounts:
    """Count the ids of the split files that a read would keep and drop (by reason), from the motion
    files' headers alone; writes nothing. ``clips`` stays 0 (spans are known only after reading)."""
    return _scan(Path(root), splits, min_length, max_length)[1]


def load_release_mean_std(root: str | Path) -> tuple[np.ndarray, np.ndarray] | None:
    """The release's ``Mean.npy``/``Std.npy`` (263,) float32, or None when neither file is there."""
    root = Path(root)
    paths = [root / "Mean.npy", root / "Std.npy"]
    present = [p.is_file() for p in paths]
    if not any(present):
        return None
    if not all(present):
        raise ArtifactError(f"{paths[present.index(False)]}: file not found (the release ships Mean.npy with Std.npy)")
    stats = []
    for path in paths:
        try:
            array = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise ArtifactError(f"{path}: cannot read as .npy ({type(exc).__name__}: {exc})") from None
        if array.shape != (_FEATURE_DIM,) or not np.issubdtype(array.dtype, np.number):
            raise ArtifactError(f"{path}: has shape {array.shape} dtype {array.dtype}, expected ({_FEATURE_DIM},) float")
        if not np.isfinite(array).all():
            raise ArtifactError(f"{path}: contains NaN or Inf")
        stats.append(array.astype(np.float32))
    if not (stats[1] > 0).all():
        raise ArtifactError(f"{paths[1]}: every std must be > 0")
    return stats[0], stats[1]


def iter_humanml3d(
    root: str | Path,
    splits: Sequence[str] = SPLITS,
    min_length: int = 40,
    max_length: int = 200,
    counts: HumanML3DCounts | None = None,
) -> Iterator[HumanML3DClip]:
    """Yield every kept clip of the given splits, in split-file order (whole clip first, then spans).

    Motions come from ``new_joint_vecs/`` when the folder exists (``clip.features`` holds the
    release's vectors, ``clip.joints`` their ``recover_from_ric``), else from ``new_joints/``
    (``clip.features`` None). ``min_length``/``max_length`` bound the length in file rows, as the
    loaders do. Listed ids without a motion or caption file are skipped; pass ``counts`` (a fresh
    :class:`HumanML3DCounts`) to learn how many were listed, loaded and dropped by reason. Raises
    ArtifactError naming the file for a missing folder or split file, a malformed caption line, an
    empty caption, a wrong shape or a NaN.
    """
    root = Path(root)
    entries, scanned, use_vecs = _scan(root, splits, min_length, max_length)
    if counts is not None:
        for name in ("motion_folder", "listed", "loaded", "dropped", "split_ids"):
            setattr(counts, name, getattr(scanned, name))
    motion_dir, texts_dir = root / ("new_joint_vecs" if use_vecs else "new_joints"), root / "texts"
    for entry in entries:
        if entry.status != "kept":
            continue
        source_id, split = entry.source_id, entry.split
        if use_vecs:
            vectors = load_vectors(motion_dir / f"{source_id}.npy")
            joints = None
        else:
            vectors, joints = None, load_joints(motion_dir / f"{source_id}.npy")
        frames = len(vectors if use_vecs else joints)
        captions = read_captions(texts_dir / f"{source_id}.txt")
        mirror = source_id.startswith("M")
        crops = []
        whole = [line for line in captions if line.whole_clip]
        if whole:
            crops.append((source_id, 0, frames, whole))
        for index, line in enumerate(captions):
            if line.whole_clip:
                continue
            first, end_frame = int(line.start * _FPS), min(int(line.end * _FPS), frames)
            if _in_range(end_frame - first, min_length, max_length):
                crops.append((f"{source_id}_{index}", first, end_frame, [line]))
        for clip_id, first, end_frame, lines in crops:
            if use_vecs:
                features = vectors[first:end_frame]
                clip_joints = _recover_joints(features)
            else:
                features, clip_joints = None, joints[first:end_frame]
            if counts is not None:
                counts.clips += 1
            yield HumanML3DClip(
                clip_id=clip_id,
                split=split,
                joints=clip_joints,
                captions=[line.caption for line in lines],
                tokens=[line.tokens for line in lines],
                mirror=mirror,
                source_id=source_id,
                start_frame=first,
                end_frame=end_frame,
                features=features,
            )


def _recover_joints(features: np.ndarray) -> np.ndarray:
    import torch

    from humandiff.motion.hml3d import recover_from_ric

    with torch.no_grad():
        return recover_from_ric(torch.from_numpy(features).double()).numpy().astype(np.float32)
