"""Reader for the published HumanML3D release: joints, captions and splits.

Expected layout under ``root`` (the HumanML3D folder as its scripts leave it)::

    new_joints/<id>.npy     (T, 22, 3) joint positions, 20 fps; mirrored copies are M<id>.npy
    texts/<id>.txt          one caption per line: ``caption#tok/POS tok/POS ...#start#end``
    train.txt val.txt test.txt   one id per line (mirrored ids included)

Clip selection follows the text-to-motion loaders (Guo et al.'s ``Text2MotionDataset``, used by
MDM, DNO, SoPo and the evaluators), which count motion length in frames of the 263-d vectors,
one fewer than joint frames:

- a file whose full length is outside ``[min_length, max_length)`` is skipped with all its
  captions;
- captions with span 0/0 (or NaN) describe the whole clip, which is kept if it has at least one;
- a caption with another span ``start#end`` (seconds) becomes its own sub-clip of the vectors
  ``[int(start * 20), int(end * 20))``, i.e. joints ``[a, min(b + 1, T))``, kept when its length
  is in range. Its id is ``<id>_<k>`` with k the caption's 0-based line number among the
  file's non-blank lines (the loaders draw a random letter instead).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from humandiff.io.artifacts import ArtifactError

__all__ = ["CaptionLine", "HumanML3DClip", "SPLITS", "iter_humanml3d", "load_joints", "read_captions", "read_split_ids"]

SPLITS = ("train", "val", "test")
_FPS = 20
_NUM_JOINTS = 22


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
    """A clip with its captions. ``joints`` (T, 22, 3) float32 are frames [start_frame, end_frame) of the file.

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


def load_joints(path: str | Path) -> np.ndarray:
    """Load a new_joints/<id>.npy file as float32 (T, 22, 3), checked (no pickle, finite, T >= 1)."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: joints file not found")
    try:
        joints = np.load(path, allow_pickle=False)
    except Exception as exc:  # pickled object arrays, truncated or foreign files
        raise ArtifactError(f"{path}: cannot read as .npy ({type(exc).__name__}: {exc})") from None
    if not np.issubdtype(joints.dtype, np.number):
        raise ArtifactError(f"{path}: joints have dtype {joints.dtype}, expected float")
    if joints.ndim != 3 or joints.shape[1:] != (_NUM_JOINTS, 3) or joints.shape[0] == 0:
        raise ArtifactError(f"{path}: joints have shape {joints.shape}, expected (T>0, {_NUM_JOINTS}, 3)")
    if not np.isfinite(joints).all():
        raise ArtifactError(f"{path}: joints contain NaN or Inf")
    return joints.astype(np.float32)


def _in_range(motion_length: int, min_length: int, max_length: int) -> bool:
    return min_length <= motion_length < max_length


def iter_humanml3d(
    root: str | Path,
    splits: Sequence[str] = SPLITS,
    min_length: int = 40,
    max_length: int = 200,
) -> Iterator[HumanML3DClip]:
    """Yield every kept clip of the given splits, in split-file order (whole clip first, then spans).

    ``min_length``/``max_length`` bound the motion length in 263-d frames (joint frames - 1),
    as the loaders do. Raises ArtifactError naming the file for a missing folder or file, a
    malformed caption line, an empty caption, a wrong joint shape or a NaN.
    """
    root = Path(root)
    if not root.is_dir():
        raise ArtifactError(f"{root}: HumanML3D folder not found")
    joints_dir, texts_dir = root / "new_joints", root / "texts"
    for folder in (joints_dir, texts_dir):
        if not folder.is_dir():
            raise ArtifactError(f"{folder}: folder not found (expected the HumanML3D layout)")
    for split in splits:
        for source_id in read_split_ids(root, split):
            joints = load_joints(joints_dir / f"{source_id}.npy")
            frames = len(joints)
            if not _in_range(frames - 1, min_length, max_length):
                continue  # as the loaders, before reading the captions of a discarded file
            captions = read_captions(texts_dir / f"{source_id}.txt")
            mirror = source_id.startswith("M")
            whole = [line for line in captions if line.whole_clip]
            if whole:
                yield HumanML3DClip(
                    clip_id=source_id,
                    split=split,
                    joints=joints,
                    captions=[line.caption for line in whole],
                    tokens=[line.tokens for line in whole],
                    mirror=mirror,
                    source_id=source_id,
                    start_frame=0,
                    end_frame=frames,
                )
            for index, line in enumerate(captions):
                if line.whole_clip:
                    continue
                first = int(line.start * _FPS)
                last_vector = int(line.end * _FPS)  # exclusive, in 263-d frames
                end_frame = min(last_vector + 1, frames)
                if not _in_range(end_frame - 1 - first, min_length, max_length):
                    continue
                yield HumanML3DClip(
                    clip_id=f"{source_id}_{index}",
                    split=split,
                    joints=joints[first:end_frame],
                    captions=[line.caption],
                    tokens=[line.tokens],
                    mirror=mirror,
                    source_id=source_id,
                    start_frame=first,
                    end_frame=end_frame,
                )
