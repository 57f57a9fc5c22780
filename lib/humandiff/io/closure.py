"""The import closure of a script: every project file it can execute or read as package data.

One rule serves two readers that must agree with each other:

- ``tools/code_deps.py`` writes each stage's code deps in ``dvc.yaml`` from it (and a test fails
  when ``dvc.yaml`` differs), so an edit to any file a stage imports makes ``dvc status`` call the
  stage stale, and an edit to anything else does not;
- the training loops' resume fingerprint (:func:`humandiff.io.digests.code_digest`) hashes the same
  files, so editing the renderer no longer throws away a half-trained prior.

The closure is static (``ast``), not what one process happened to import: every ``import`` and
``from ... import`` anywhere in a file counts, including those inside functions, so a lazy import
is a dependency too. A module's parent packages count (their ``__init__.py`` runs on import).
A non-Python file beside a module counts when the module names it in a string literal (the
paper's quoted numbers, ``dno/paper.yaml``, say). Imports outside the project (torch, numpy) do
not count: pinned installs are not tracked per stage.
"""

from __future__ import annotations

import ast
from pathlib import Path

#: The package whose modules are followed, and the folder that holds it.
PACKAGE = "humandiff"
LIB = Path(__file__).resolve().parents[2]


def _module_file(name: str, lib: Path) -> Path | None:
    """``humandiff.a.b`` -> ``lib/humandiff/a/b.py`` or ``.../b/__init__.py``; None if neither."""
    base = lib.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _package_of(path: Path, lib: Path) -> list[str]:
    """Dotted parts of the package that holds ``path`` (a module or an ``__init__.py``)."""
    parts = list(path.relative_to(lib).with_suffix("").parts)
    return parts[:-1]


def _imported_names(path: Path, lib: Path) -> tuple[set[str], set[str]]:
    """Module names imported by ``path`` (absolute, resolved), and its string literals."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    strings: set[str] = set()
    inside = path.is_relative_to(lib)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level and inside:  # relative import: resolve against the file's package
                package = _package_of(path, lib)
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            elif node.level:
                continue
            else:
                module = node.module or ""
            names.add(module)
            # ``from pkg import sub`` may name a submodule rather than an attribute
            names.update(f"{module}.{alias.name}" for alias in node.names if alias.name != "*")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and len(node.value) < 200:
            strings.add(node.value)
    return names, strings


def import_closure(script: str | Path, lib: str | Path = LIB, package: str = PACKAGE) -> list[Path]:
    """Sorted files of ``package`` under ``lib`` that ``script`` reaches by imports, plus the script.

    Package data: a non-``.py`` file beside a reached module, named there in a string literal.
    """
    lib = Path(lib).resolve()
    script = Path(script).resolve()
    seen: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        if path.suffix != ".py":
            continue
        names, strings = _imported_names(path, lib)
        for name in names:
            if name != package and not name.startswith(package + "."):
                continue
            parts = name.split(".")
            # the module and each parent package (whose __init__ runs first)
            for depth in range(1, len(parts) + 1):
                found = _module_file(".".join(parts[:depth]), lib)
                if found is not None and found not in seen:
                    todo.append(found)
        if path.is_relative_to(lib):
            for text in strings:
                if "/" in text or "\\" in text or text.endswith(".py") or "." not in text:
                    continue
                data = path.parent / text
                if data.is_file() and data not in seen:
                    todo.append(data)
    return sorted(seen)


def relative_closure(script: str | Path, root: str | Path, lib: str | Path = LIB) -> list[str]:
    """:func:`import_closure` as POSIX paths relative to the repository ``root`` (dvc.yaml's form),
    the script first."""
    root, script = Path(root).resolve(), Path(script).resolve()
    files = [path for path in import_closure(script, lib) if path != script]
    return [path.relative_to(root).as_posix() for path in [script, *files]]
