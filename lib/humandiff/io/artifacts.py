"""Artifact readers and writers shared by every stage.

Every writer goes to a temporary file beside the target and renames it when complete, so an
interrupted or failing stage never leaves a half-written artifact. Every reader checks what it
is given and fails with :class:`ArtifactError`, whose one-line message names the file and field.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np
import pandas as pd


class ArtifactError(ValueError):
    """A missing, corrupt or malformed artifact or parameter; the message names file and field."""


@contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``path`` on success only."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600 files; artifacts are ordinary files
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def save_npz(path: str | Path, arrays: Mapping[str, np.ndarray], compressed: bool = False) -> None:
    """Write arrays to ``path`` atomically (no object arrays: they would need pickle to load)."""
    for key, value in arrays.items():
        if np.asarray(value).dtype == object:
            raise ArtifactError(f"{path}: field '{key}' is an object array; refusing to write it")
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as handle:
            (np.savez_compressed if compressed else np.savez)(handle, **{k: np.asarray(v) for k, v in arrays.items()})


def load_npz(
    path: str | Path,
    required: Mapping[str, tuple] | Sequence[str] = (),
    finite: bool = True,
) -> dict[str, np.ndarray]:
    """Load an NPZ without pickle and check it.

    ``required`` maps field -> expected shape, where ``None`` or ``-1`` in a shape matches any size
    (a plain sequence of names only checks presence). Float fields must be finite when ``finite``.
    """
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except Exception as exc:  # zipfile, pickle refusal, truncated file ...
        raise ArtifactError(f"{path}: cannot read as NPZ ({type(exc).__name__}: {exc})") from None
    shapes = required if isinstance(required, Mapping) else {name: None for name in required}
    for key, shape in shapes.items():
        if key not in arrays:
            raise ArtifactError(f"{path}: missing field '{key}'")
        check_shape(arrays[key], shape, f"{path}: field '{key}'")
    if finite:
        for key, value in arrays.items():
            if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
                raise ArtifactError(f"{path}: field '{key}' contains NaN or Inf")
    return arrays


def _non_finite(value) -> tuple[int, int]:
    """(non-finite count, size) of a float numpy array or torch tensor; (0, size) for anything else."""
    if type(value).__module__.startswith("torch"):
        import torch

        if isinstance(value, torch.Tensor) and value.is_floating_point():
            return int((~torch.isfinite(value.detach())).sum()), value.numel()
        return 0, 0
    if isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.floating):
        return int((~np.isfinite(value)).sum()), value.size
    return 0, 0


def _tensors(payload, prefix: str = "") -> Iterator[tuple[str, object]]:
    """(dotted name, value) of every array or tensor in nested dicts, lists and tuples."""
    if isinstance(payload, Mapping):
        for key, value in payload.items():
            yield from _tensors(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(payload, (list, tuple)):
        for n, value in enumerate(payload):
            yield from _tensors(value, f"{prefix}[{n}]")
    else:
        yield prefix, payload


def check_finite(path: str | Path, payload, writing: bool = True) -> None:
    """Raise a one-line ArtifactError naming ``path`` and the field if a float array or tensor in
    ``payload`` (a mapping, possibly nested, of numpy arrays or torch tensors) holds NaN or Inf.

    Stages call it on what a network computed before they write it (``writing``: nothing is
    written then), and on weights they read (``writing=False``).
    """
    for name, value in _tensors(payload):
        bad, size = _non_finite(value)
        if bad:
            if writing:
                raise ArtifactError(f"{path}: refusing to write field '{name}': {bad} of {size} values are NaN or Inf")
            raise ArtifactError(f"{path}: field '{name}' contains NaN or Inf ({bad} of {size} values)")


def check_shape(array: np.ndarray, shape: tuple | None, what: str) -> None:
    """Raise ArtifactError naming ``what`` unless ``array`` has ``shape`` (None/-1 = any size)."""
    if shape is None:
        return
    if array.ndim != len(shape) or any(s not in (None, -1) and s != a for s, a in zip(shape, array.shape)):
        want = "(" + ", ".join("*" if s in (None, -1) else str(s) for s in shape) + ")"
        raise ArtifactError(f"{what} has shape {tuple(array.shape)}, expected {want}")


def save_parquet(path: str | Path, frame: pd.DataFrame) -> None:
    """Write a DataFrame to Parquet atomically (pyarrow, no index)."""
    with atomic_path(path, suffix=".parquet") as tmp:
        frame.to_parquet(tmp, index=False, engine="pyarrow")


def load_parquet(path: str | Path, columns: Sequence[str] = ()) -> pd.DataFrame:
    """Read a Parquet file and check that ``columns`` are present."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: file not found")
    try:
        frame = pd.read_parquet(path, engine="pyarrow")
    except Exception as exc:
        raise ArtifactError(f"{path}: cannot read as Parquet ({type(exc).__name__}: {exc})") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ArtifactError(f"{path}: missing column(s) {', '.join(missing)}")
    return frame


def save_json(path: str | Path, payload: object) -> None:
    """Write JSON atomically (sorted keys, 2-space indent, trailing newline)."""
    with atomic_path(path, suffix=".json") as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def split_ragged(flat: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    """Split a concatenated array (N_total, ...) by ``offsets`` (K+1,) into K clips."""
    return [flat[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]


def concat_ragged(clips: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate clips (T_i, ...) along time; return (flat (sum T_i, ...), offsets (K+1,) int64)."""
    lengths = np.array([len(c) for c in clips], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    flat = np.concatenate(clips, axis=0) if clips else np.zeros((0,), dtype=np.float32)
    return flat, offsets


def load_params(path: str | Path, section: str) -> dict:
    """Read one stage's section of ``params.yaml`` (a stage reads only its own section)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: params file not found")
    try:
        params = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ArtifactError(f"{path}: not valid YAML ({exc})") from None
    if section not in params:
        raise ArtifactError(f"{path}: missing section '{section}'")
    return params[section]


def save_torch(path: str | Path, payload) -> None:
    """``torch.save`` ``payload`` to ``path`` atomically, byte for byte the same for the same tensors.

    The save goes through an open file handle: given a path, ``torch.save`` names the archive
    inside the file after it, and the temporary path of the atomic write is random. A NaN or Inf
    in a float tensor of ``payload`` is an error (:func:`check_finite`) and nothing is written.
    """
    import torch

    check_finite(path, payload)  # a diverged network is an error, not an artifact
    with atomic_path(path, suffix=".pt") as tmp, open(tmp, "wb") as handle:
        torch.save(payload, handle)


def load_torch(path: str | Path):
    """What :func:`save_torch` wrote, read with ``weights_only=True``; ArtifactError naming the file otherwise."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ArtifactError(f"{path}: cannot read as a torch checkpoint ({type(exc).__name__})") from None


def save_checkpoint(path: str | Path, config: dict, state_dict: dict, extra: dict | None = None) -> None:
    """{"config": dict, "state_dict": tensors, "extra": dict} written atomically by :func:`save_torch`."""
    save_torch(path, {"config": config, "state_dict": state_dict, "extra": dict(extra or {})})


def read_checkpoint(path: str | Path) -> dict:
    """{"config", "state_dict", "extra"} saved by :func:`save_checkpoint` ("extra" {} when absent)."""
    payload = load_torch(path)
    if not isinstance(payload, dict) or "config" not in payload or "state_dict" not in payload:
        raise ArtifactError(f"{path}: missing field 'config' or 'state_dict'")
    return {"config": dict(payload["config"]), "state_dict": payload["state_dict"],
            "extra": dict(payload.get("extra", {}))}


def load_checkpoint(path: str | Path) -> tuple[dict, dict]:
    """(config, state_dict) saved by :func:`save_checkpoint`, read with ``weights_only=True``."""
    payload = read_checkpoint(path)
    return payload["config"], payload["state_dict"]


def restore_state(model, state_dict: dict, path: str | Path):
    """Load ``state_dict`` into ``model`` (returned in eval mode); a mismatch or NaN/Inf weights name the file."""
    check_finite(path, {"state_dict": state_dict}, writing=False)
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as exc:
        raise ArtifactError(f"{path}: field 'state_dict' does not fit the config ({str(exc).splitlines()[0]})") from None
    return model.eval()
