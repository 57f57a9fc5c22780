"""The repository's click scripts (``stages/``, ``tools/``) loaded as modules, for the tests."""

import importlib.util
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def load_script(folder: str, name: str) -> ModuleType:
    """The module of ``REPO/folder/name.py``, executed fresh."""
    spec = importlib.util.spec_from_file_location(f"{folder}_{name}", REPO / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stage_command(name: str):
    """The click command ``main`` of ``stages/<name>.py``."""
    return load_script("stages", name).main
