"""The ``train_mdm`` parameters the prior benchmarks build their model from.

Read from ``--params`` (params.yaml by default); a file without a ``train_mdm`` section falls
back to the default preset, so the benchmarks never carry a copy of its sizes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import yaml

DEFAULT_PRESET = Path(__file__).resolve().parents[1] / "presets" / "default.yaml"


def train_mdm_params(params_file: str | Path) -> dict[str, Any]:
    """The ``train_mdm`` section of ``params_file``, or of the default preset when that file has none."""
    for path in (Path(params_file), DEFAULT_PRESET):
        if path.is_file():
            section = (yaml.safe_load(path.read_text()) or {}).get("train_mdm")
            if section:
                return dict(section)
    raise click.ClickException(f"{params_file}: no train_mdm section (and {DEFAULT_PRESET} has none)")

