"""What every stage script shares: params loading, one-line errors, offline environment."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Callable

import click

from humandiff.io import ArtifactError, load_params


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


def run_stage(main: Callable) -> Callable:
    """Decorator for a click command: offline env; ArtifactError/ValueError -> one line on stderr, exit 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        offline_environment()
        try:
            return main(*args, **kwargs)
        except (ArtifactError, ValueError, FileNotFoundError) as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            click.echo(f"error: {message}", err=True)
            sys.exit(2)

    return wrapper
