"""What every stage script shares: params loading, one-line errors, offline environment."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import sys
import time
import types
import typing
from pathlib import Path
from typing import Any, Callable, Collection

import click

from humandiff.io import ArtifactError, atomic_path, load_params

#: Each stage's wall time, keyed by DVC stage name, under the repository root (``DVC_ROOT``).
PIPELINE_TIMES = Path("reports/metrics/pipeline.json")


def offline_environment() -> None:
    """No network at run time: hub clients offline, DVC analytics off."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")


def _section(params_file: str | Path, section: str) -> dict:
    values = load_params(params_file, section)
    if not isinstance(values, dict):
        raise ArtifactError(f"{params_file}: section '{section}' must be a mapping")
    return values


def _checked(params_file: str | Path, section: str, key: str, value: Any, kind: type | tuple[type, ...]) -> Any:
    """``value`` of ``section.key`` if it is of ``kind`` (an int is taken for a float, as a float); else a one-line error."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = "/".join("null" if k is type(None) else k.__name__ for k in kinds)
        raise ArtifactError(f"{params_file}: parameter '{section}.{key}' must be {names}, got {value!r}")
    return value


def stage_params(params_file: str | Path, section: str, required: dict[str, type], *, complete: bool = False,
                 known: Collection[str] = ()) -> dict:
    """The ``section`` of params.yaml, with each required key present and of the right type.

    ``complete``: the section holds the ``required`` and ``known`` keys and nothing else (an unknown
    key, a typo, is a one-line error listing the allowed ones). Leave it off for a section that
    several stages share, each reading some of its keys, unless ``known`` names them all.
    """
    values = _section(params_file, section)
    if complete:
        allowed = set(required) | set(known)
        unknown = sorted(set(values) - allowed)
        if unknown:
            raise ArtifactError(f"{params_file}: unknown parameter(s) {', '.join(f'{section}.{k}' for k in unknown)} "
                                f"(allowed: {', '.join(sorted(allowed))})")
    for key, kind in required.items():
        if key not in values:
            raise ArtifactError(f"{params_file}: missing parameter '{section}.{key}'")
        values[key] = _checked(params_file, section, key, values[key], kind)
    return values


def _param_types(hint: Any) -> tuple[type, ...]:
    """The YAML value types a config field's annotation accepts (``int``, ``float | None``, ``tuple[int, ...]``)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return tuple(kind for arg in typing.get_args(hint) for kind in _param_types(arg))
    if hint is None or hint is type(None):
        return (type(None),)
    if origin is typing.Literal:
        return tuple(dict.fromkeys(type(arg) for arg in typing.get_args(hint)))
    if origin in (list, tuple) or hint in (list, tuple):
        return (list,)
    if origin is dict or hint is dict:
        return (dict,)
    if hint in (int, float, str, bool):
        return (hint,)
    raise TypeError(f"section_config: a config field of type {hint!r} has no params.yaml counterpart")


def _config_fields(config: type) -> dict[str, tuple[tuple[type, ...], bool]]:
    """Field name -> (accepted YAML types, has a default) of a config dataclass."""
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"section_config: {config!r} is not a dataclass")
    hints = typing.get_type_hints(config)
    return {f.name: (_param_types(hints[f.name]),
                     f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING)
            for f in dataclasses.fields(config) if f.init}


def section_config(params_file: str | Path, section: str, config: type | tuple[type, ...],
                   extra: dict[str, type | tuple[type, ...]] | None = None, *,
                   defaults: Collection[str] = ()) -> tuple[Any, dict]:
    """The config dataclass(es) built from the ``section`` of params.yaml, checked against their fields.

    ``config`` is a dataclass, or a tuple of dataclasses sharing the section (a key that names a
    field of several goes to each). The section holds their fields and the ``extra`` keys (stage
    settings such as ``threads``, with their types as for :func:`stage_params`), nothing else. Each
    key is required except the fields named in ``defaults``, which the section may leave at the
    class default. A value's type is the field's annotation (an int is taken for a float).

    Returns the config (a tuple of configs, in ``config``'s order, for a tuple) and the section's
    checked values. An unknown, missing or mistyped key, and an error of a config's own checks, is
    one line naming ``params_file`` and ``section.key``.
    """
    classes = config if isinstance(config, tuple) else (config,)
    accepted: dict[str, tuple[tuple[type, ...], bool]] = {}
    for cls in classes:
        for name, (kinds, has_default) in _config_fields(cls).items():
            previous = accepted.get(name)
            accepted[name] = (kinds if previous is None else tuple(k for k in previous[0] if k in kinds),
                              has_default and (previous is None or previous[1]))
    for name, kind in (extra or {}).items():
        if name in accepted:
            raise TypeError(f"section_config: extra key {name!r} is a config field")
        accepted[name] = (kind if isinstance(kind, tuple) else (kind,), False)
    for name in defaults:
        if name not in accepted or not accepted[name][1] or name in (extra or {}):
            raise TypeError(f"section_config: {name!r} in defaults is not a config field with a default")

    values = _section(params_file, section)
    unknown = sorted(set(values) - set(accepted))
    if unknown:
        raise ArtifactError(f"{params_file}: unknown parameter(s) {', '.join(f'{section}.{k}' for k in unknown)} "
                            f"(allowed: {', '.join(sorted(accepted))})")
    for name, (kinds, _) in accepted.items():
        if name not in values:
            if name in defaults:
                continue
            raise ArtifactError(f"{params_file}: missing parameter '{section}.{name}'")
        values[name] = _checked(params_file, section, name, values[name], kinds)

    built = []
    for cls in classes:
        names = _config_fields(cls)
        try:
            built.append(cls(**{name: values[name] for name in names if name in values}))
        except ArtifactError as exc:
            raise ArtifactError(f"{params_file}: {_qualified(str(exc), section, names)}") from None
    return (tuple(built) if isinstance(config, tuple) else built[0]), values


def _qualified(message: str, section: str, names: Collection[str]) -> str:
    """A config's error with its quoted field names (before ", got") written as ``'section.name'``."""
    head, got, tail = message.partition(", got ")
    head = re.sub(r"'(\w+)'", lambda m: f"'{section}.{m[1]}'" if m[1] in names else m[0], head)
    return f"{head}{got}{tail}".splitlines()[0]


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


#: Set to 1 to see the full traceback of a stage's error (a stage prints one line by default).
DEBUG_ENV = "HUMANDIFF_DEBUG"


def close_progress_bars() -> None:
    """Close every open tqdm bar, so that an error is printed on a line of its own and no bar is redrawn after it."""
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return
    for bar in list(getattr(tqdm, "_instances", ())):
        try:
            bar.close()
        except Exception:  # a bar half torn down by the error: nothing more to clear
            pass


def error_line(exc: BaseException, section: str | None = None, params_file: str | None = None) -> str:
    """The one line a stage prints for ``exc``: its first line, named where the error itself does not.

    An :class:`ArtifactError`, ``ValueError`` or ``FileNotFoundError`` already names the file or
    parameter; any other error (a diverging loss, an OpenCV or torch error) gets its type and the
    stage's params section, and a diverging loss the learning rate to look at.
    """
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    if isinstance(exc, cv2_error_types()):
        # OpenCV: "OpenCV(4.x) /src/...cpp:123: error: (-215) ... in function 'line'" then ">  - Can't parse ..."
        lines = [line.strip(" >-") for line in text.splitlines() if line.strip(" >-")]
        first = "; ".join(lines[:3]) if lines else ""
    if isinstance(exc, (ValueError, FileNotFoundError)) and not isinstance(exc, FloatingPointError):
        return first or type(exc).__name__
    where = f" (stage section '{section}' of {params_file})" if section and params_file else (
        f" (stage section '{section}')" if section else "")
    if isinstance(exc, FloatingPointError):
        hint = f"lower '{section}.lr' in {params_file} or check the inputs" if section and params_file else \
            "lower the learning rate or check the inputs"
        return f"{first or 'non-finite value'} (the training diverged: {hint})"
    return f"{type(exc).__name__}: {first or 'no message'}{where}; set {DEBUG_ENV}=1 for the traceback"


def cv2_error_types() -> tuple[type, ...]:
    """OpenCV's exception type when cv2 is already imported (never imports it)."""
    cv2 = sys.modules.get("cv2")
    error = getattr(cv2, "error", None)
    return (error,) if isinstance(error, type) else ()


def run_stage(main: Callable) -> Callable:
    """Decorator for a click command: offline env; any error -> one line ``error: ...`` on stderr, exit 2.

    The line names the file or parameter where the error does (see :func:`error_line`); open progress
    bars are closed first so it starts a fresh line. ``HUMANDIFF_DEBUG=1`` re-raises instead, with the
    full traceback. Under ``dvc repro`` (which sets ``DVC_STAGE`` and ``DVC_ROOT``) a successful run
    records its wall time with :func:`record_stage_time`.
    """

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        offline_environment()
        start = time.perf_counter()
        try:
            result = main(*args, **kwargs)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise  # click's own usage errors and exits, printed by click
        except Exception as exc:  # SystemExit and KeyboardInterrupt pass through
            close_progress_bars()
            if os.environ.get(DEBUG_ENV, "").strip() not in ("", "0"):
                raise
            section = getattr(main, "__globals__", {}).get("SECTION")  # the stage script's params section
            sys.stdout.flush()
            click.echo(f"error: {error_line(exc, section, kwargs.get('params_file'))}", err=True)
            sys.exit(2)
        stage, root = os.environ.get("DVC_STAGE"), os.environ.get("DVC_ROOT")
        if stage and root:
            record_stage_time(stage, time.perf_counter() - start, root)
        return result

    return wrapper
