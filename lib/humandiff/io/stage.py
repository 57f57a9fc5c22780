"""What every stage script shares: params loading, one-line errors, offline environment."""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable

import click

from humandiff.io import ArtifactError, atomic_path, load_params

#: Each stage's wall time, keyed by DVC stage name, under the repository root (``DVC_ROOT``).
PIPELINE_TIMES = Path("reports/metrics/pipeline.json")


def offline_environment() -> None:
    """No network at run time: hub clients offline, DVC analytics off."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")


def stage_params(params_file: str | Path, section: str, required: dict[str, type]) -> dict:
    """The ``section`` of params.yaml, with each required key present and of the right type."""
    values = load_params(params_file, section)
    if not isinstance(values, dict):
        raise ArtifactError(f"{params_file}: section '{section}' must be a mapping")
    for key, kind in required.items():
        if key not in values:
            raise ArtifactError(f"{params_file}: missing parameter '{section}.{key}'")
        value = values[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
            values[key] = value
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            names = "/".join(k.__name__ for k in kinds)
            raise ArtifactError(f"{params_file}: parameter '{section}.{key}' must be {names}, got {value!r}")
    return values


def positive(params_file: str | Path, section: str, values: dict, *keys: str) -> None:
    """Raise a one-line error unless each of ``keys`` is > 0."""
    for key in keys:
        if not values[key] > 0:
            raise ArtifactError(f"{params_file}: parameter '{section}.{key}' must be > 0, got {values[key]!r}")


def record_stage_time(stage: str, seconds: float, root: str | Path) -> None:
    """Set ``stage``'s wall time in ``root``/reports/metrics/pipeline.json (atomically).

    The file is a metric of the whole pipeline (top-level ``metrics`` in dvc.yaml), not an output
    of any stage, so no stage depends on a wall-clock figure and a rerun changes no stage's hash.
    """
    path = Path(root) / PIPELINE_TIMES
    try:
        times = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):  # a damaged file is rebuilt, not fatal
        times = {}
    if not isinstance(times, dict):
        times = {}
    times[stage] = {"seconds": round(seconds, 1)}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(dict(sorted(times.items())), indent=2) + "\n")


def run_stage(main: Callable) -> Callable:
    """Decorator for a click command: offline env; ArtifactError/ValueError -> one line on stderr, exit 2.

    Under ``dvc repro`` (which sets ``DVC_STAGE`` and ``DVC_ROOT``) a successful run records its
    wall time with :func:`record_stage_time`.
    """

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        offline_environment()
        start = time.perf_counter()
        try:
            result = main(*args, **kwargs)
        except (ArtifactError, ValueError, FileNotFoundError) as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            click.echo(f"error: {message}", err=True)
            sys.exit(2)
        stage, root = os.environ.get("DVC_STAGE"), os.environ.get("DVC_ROOT")
        if stage and root:
            record_stage_time(stage, time.perf_counter() - start, root)
        return result

    return wrapper
