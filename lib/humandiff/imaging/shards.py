"""Image sets on disk: compressed NPZ shards plus one Parquet index.

Layout of an image-set folder (``data/images`` by default)::

    index.parquet              one row per image (INDEX_COLUMNS, see below)
    <set>/<set>_<k:04d>.npz    shard k of a set: the fields of SHARD_FIELDS, N rows each

Index columns: ``image_id`` (str, unique), ``set`` (train | val | test | multiview | video),
``clip_id`` (the motion clip), ``frame`` (frame in the clip), ``view`` (camera of a multi-view
instant, 0 elsewhere), ``sequence`` (multi-view instant or video sequence number, -1 for single
images), ``shard`` (path of the shard relative to the folder), ``row`` (row in the shard), plus
descriptive columns (``fps`` of the motion, ``background``, ``colouring``, ``occluded``,
``camera_mode``, ``orbit_deg_per_s``).

Shard fields (N = images in the shard, S = image size, J = 24): see :data:`SHARD_FIELDS`. World
frame: y up. Camera: OpenCV (x right, y down, z forward), ``p_cam = R p_world + t``; pixels
follow the pixel-centre convention of :mod:`humandiff.render.camera`. ``global_orient_cam`` and
``transl_cam`` are the same body as SMPL parameters in the camera frame: posing the body model
with them (and the same body_pose, betas) gives ``joints_cam``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from humandiff.io.artifacts import ArtifactError, load_npz, load_parquet, save_npz

NUM_JOINTS = 24

#: field -> (shape after the leading N; None = any size, dtype)
SHARD_FIELDS: dict[str, tuple[tuple[int | None, ...], np.dtype]] = {
    "image": ((None, None, 3), np.dtype(np.uint8)),            # (N, S, S, 3) RGB
    "global_orient": ((3,), np.dtype(np.float32)),             # world-frame SMPL, axis-angle
    "body_pose": ((69,), np.dtype(np.float32)),
    "betas": ((None,), np.dtype(np.float32)),                  # (N, 10)
    "transl": ((3,), np.dtype(np.float32)),
    "global_orient_cam": ((3,), np.dtype(np.float32)),         # camera-frame SMPL root rotation
    "transl_cam": ((3,), np.dtype(np.float32)),                # camera-frame SMPL translation
    "intrinsics": ((4,), np.dtype(np.float64)),                # fx, fy, cx, cy (pixels)
    "R": ((3, 3), np.dtype(np.float64)),                       # world -> camera rotation
    "t": ((3,), np.dtype(np.float64)),                         # world -> camera translation
    "joints_3d": ((NUM_JOINTS, 3), np.dtype(np.float32)),      # world metres
    "joints_cam": ((NUM_JOINTS, 3), np.dtype(np.float32)),     # camera metres
    "joints_2d": ((NUM_JOINTS, 2), np.dtype(np.float32)),      # pixels (u, v)
    "visible": ((NUM_JOINTS,), np.dtype(bool)),                # in image, not hidden by body or occluder
    "in_image": ((NUM_JOINTS,), np.dtype(bool)),
    "bbox": ((4,), np.dtype(np.float32)),                      # x0, y0, x1, y1 of the full silhouette, pixels
}

INDEX_COLUMNS = ("image_id", "set", "clip_id", "frame", "view", "sequence", "shard", "row")
SET_NAMES = ("train", "val", "test", "multiview", "video")


def check_shard_arrays(arrays: Mapping[str, np.ndarray], what: str) -> int:
    """Raise ArtifactError naming ``what`` and the field unless ``arrays`` hold every shard field with
    the right trailing shape and dtype and one common length; return that length N."""
    count = None
    for name, (shape, dtype) in SHARD_FIELDS.items():
        if name not in arrays:
            raise ArtifactError(f"{what}: missing field '{name}'")
        value = np.asarray(arrays[name])
        if value.dtype != dtype:
            raise ArtifactError(f"{what}: field '{name}' has dtype {value.dtype}, expected {dtype}")
        if value.ndim != 1 + len(shape) or any(s is not None and s != a for s, a in zip(shape, value.shape[1:])):
            want = "(N, " + ", ".join("*" if s is None else str(s) for s in shape) + ")"
            raise ArtifactError(f"{what}: field '{name}' has shape {value.shape}, expected {want}")
        if count is None:
            count = len(value)
        elif len(value) != count:
            raise ArtifactError(f"{what}: field '{name}' has {len(value)} rows, field 'image' has {count}")
        if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            raise ArtifactError(f"{what}: field '{name}' contains NaN or Inf")
    return int(count or 0)


def write_shard(path: str | Path, arrays: Mapping[str, np.ndarray]) -> int:
    """Check and write one compressed shard atomically; returns its row count."""
    count = check_shard_arrays(arrays, str(path))
    save_npz(path, {name: np.asarray(arrays[name]) for name in SHARD_FIELDS}, compressed=True)
    return count


def read_shard(path: str | Path, fields: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Load and check one shard; ``fields`` restricts what is returned (all by default)."""
    arrays = load_npz(path)
    check_shard_arrays(arrays, str(path))
    if fields is None:
        return arrays
    unknown = [f for f in fields if f not in SHARD_FIELDS]
    if unknown:
        raise ArtifactError(f"{path}: unknown field(s) {unknown}; shard fields are {list(SHARD_FIELDS)}")
    return {name: arrays[name] for name in fields}


def load_index(root: str | Path) -> pd.DataFrame:
    """The index of an image-set folder, checked for its columns and unique image ids."""
    path = Path(root) / "index.parquet"
    index = load_parquet(path, INDEX_COLUMNS)
    if index["image_id"].duplicated().any():
        raise ArtifactError(f"{path}: field 'image_id' has duplicates, e.g. {index['image_id'][index['image_id'].duplicated()].iloc[0]}")
    unknown = sorted(set(index["set"]) - set(SET_NAMES))
    if unknown:
        raise ArtifactError(f"{path}: field 'set' has unknown value(s) {unknown}")
    return index


def load_image_set(root: str | Path, set_name: str, fields: Sequence[str] | None = None,
                   index: pd.DataFrame | None = None) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """All images of one set, in index order: (the set's index rows, {field: (N, ...)})."""
    root = Path(root)
    index = load_index(root) if index is None else index
    rows = index[index["set"] == set_name].reset_index(drop=True)
    if rows.empty:
        raise ArtifactError(f"{root / 'index.parquet'}: no image of set '{set_name}'")
    names = list(SHARD_FIELDS) if fields is None else list(fields)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for shard, group in rows.groupby("shard", sort=False):
        arrays = read_shard(root / shard, names)
        positions = group["row"].to_numpy()
        count = len(arrays[names[0]]) if names else 0
        if positions.size and (positions.min() < 0 or positions.max() >= count):
            raise ArtifactError(f"{root / shard}: index field 'row' points past the shard's {count} rows")
        for name in names:
            parts[name].append(arrays[name][positions])
    # groupby keeps the first-seen order of shards; put rows back in index order
    order = np.concatenate([group.index.to_numpy() for _, group in rows.groupby("shard", sort=False)])
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return rows, {name: np.concatenate(parts[name])[inverse] for name in names}


@contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``path``; on success it replaces ``path`` whole, on
    failure it is removed, so a folder of several files is never left half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the result is an ordinary folder
    try:
        yield tmp
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


class ShardWriter:
    """Collects rendered records per set and writes a shard every ``shard_size`` images.

    ``add(set_name, clip_id, sequence, record)`` takes a record of :func:`humandiff.imaging.render_unit`
    (the SHARD_FIELDS arrays plus frame, view and descriptive fields); ``close()`` writes what is
    left and returns the index (one row per image, in the order added).
    """

    def __init__(self, root: str | Path, shard_size: int) -> None:
        if not (isinstance(shard_size, int) and shard_size >= 1):
            raise ArtifactError(f"shards: 'shard_size' must be a positive integer, got {shard_size!r}")
        self.root = Path(root)
        self.shard_size = shard_size
        self._pending: dict[str, list[dict]] = {}
        self._shard_count: dict[str, int] = {}
        self._written: dict[str, int] = {}
        self._rows: list[dict] = []

    def add(self, set_name: str, clip_id: str, sequence: int, record: Mapping[str, object]) -> None:
        if set_name not in SET_NAMES:
            raise ArtifactError(f"shards: unknown set '{set_name}', expected one of {SET_NAMES}")
        pending = self._pending.setdefault(set_name, [])
        pending.append(dict(record, clip_id=clip_id, sequence=sequence))
        if len(pending) >= self.shard_size:
            self._flush(set_name)

    def _flush(self, set_name: str) -> None:
        pending = self._pending.get(set_name, [])
        if not pending:
            return
        number = self._shard_count.get(set_name, 0)
        relative = f"{set_name}/{set_name}_{number:04d}.npz"
        write_shard(self.root / relative, {name: np.stack([r[name] for r in pending]) for name in SHARD_FIELDS})
        start = self._written.get(set_name, 0)
        for row_number, record in enumerate(pending):
            self._rows.append({
                "image_id": f"{set_name}_{start + row_number:06d}", "set": set_name, "clip_id": str(record["clip_id"]),
                "frame": int(record["frame"]), "view": int(record.get("view", 0)), "sequence": int(record["sequence"]),
                "shard": relative, "row": row_number,
                **{key: record[key] for key in ("fps", "background", "colouring", "occluded", "camera_mode",
                                                "orbit_deg_per_s") if key in record},
            })
        self._shard_count[set_name] = number + 1
        self._written[set_name] = start + len(pending)
        self._pending[set_name] = []

    def close(self) -> pd.DataFrame:
        for set_name in list(self._pending):
            self._flush(set_name)
        index = pd.DataFrame(self._rows)
        if index.empty:
            raise ArtifactError("shards: no image was written")
        order = {name: code for code, name in enumerate(SET_NAMES)}
        index = index.sort_values("set", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)
        return index
