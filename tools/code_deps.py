"""Write or check each stage's code deps in dvc.yaml: the import closure of its script.

    python tools/code_deps.py --check   # exit 1 and list the differences (tests/test_code_deps.py)
    python tools/code_deps.py --write   # rewrite the code entries of every deps list in place

A stage's code deps are its script plus every ``lib/humandiff`` file the script reaches by imports
(:mod:`humandiff.io.closure`), listed file by file: a folder dep would rerun the stage after an
edit of a module it never imports, and a hand-kept list misses imports. Data deps (``data/...``,
``reports/...``) are left as they are. ``--write`` edits the text, so comments and YAML anchors
stay; a stage that shares another's deps through an alias (``deps: *dno_deps``) must run the same
script, which ``--check`` verifies.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "lib"))

from humandiff.io.closure import relative_closure  # noqa: E402

SCRIPT = re.compile(r"\bpython3?\s+(stages/\S+\.py)")
CODE_PREFIXES = ("stages/", "lib/")


def _is_code(entry: str) -> bool:
    return entry.startswith(CODE_PREFIXES)


def _definition(stage: dict) -> dict:
    """A stage's own fields: those of its ``do`` block for a ``foreach`` stage."""
    return stage.get("do", stage)


def _stage_script(stage: dict) -> str:
    stage = _definition(stage)
    match = SCRIPT.search(str(stage.get("cmd", "")))
    if match is None:
        raise click.ClickException(f"dvc.yaml: no 'python stages/<name>.py' in cmd {stage.get('cmd')!r}")
    return match.group(1)


def expected_code_deps(dvc_file: Path) -> dict[str, list[str]]:
    """Stage name -> its script's closure (repository-relative), for every stage of ``dvc_file``."""
    stages = yaml.safe_load(dvc_file.read_text())["stages"]
    root = dvc_file.resolve().parent
    return {name: relative_closure(root / _stage_script(stage), root, root / "lib") for name, stage in stages.items()}


def differences(dvc_file: Path) -> list[str]:
    """One line per stage whose declared code deps differ from its closure (empty: all agree)."""
    stages = yaml.safe_load(dvc_file.read_text())["stages"]
    lines = []
    for name, closure in expected_code_deps(dvc_file).items():
        declared = [str(d) for d in _definition(stages[name]).get("deps", []) if isinstance(d, str) and _is_code(d)]
        missing, extra = sorted(set(closure) - set(declared)), sorted(set(declared) - set(closure))
        if missing or extra:
            lines.append(f"{name}: missing {missing}, not imported {extra}")
    return lines


def rewrite(dvc_file: Path) -> str:
    """``dvc_file``'s text with every inline deps list's code entries replaced by the closure."""
    closures = expected_code_deps(dvc_file)
    out: list[str] = []
    stage = None
    lines = dvc_file.read_text().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        header = re.match(r"^  ([A-Za-z0-9_]+):\s*$", line)
        if header:
            stage = header.group(1)
        deps = re.match(r"^(\s+)deps:(\s*&\S+)?\s*$", line)
        out.append(line)
        i += 1
        if not deps or stage not in closures:
            continue
        item_indent = None
        kept: list[str] = []
        while i < len(lines):
            item = re.match(r"^(\s+)- (\S+)\s*$", lines[i])
            if not item or len(item.group(1)) <= len(deps.group(1)) - 1:
                break
            item_indent = item.group(1)
            if not _is_code(item.group(2)):
                kept.append(lines[i])
            i += 1
        indent = item_indent or deps.group(1) + "  "
        out.extend(f"{indent}- {path}" for path in closures[stage])
        out.extend(kept)
    return "\n".join(out) + "\n"


@click.command()
@click.option("--dvc-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=REPO / "dvc.yaml")
@click.option("--write", "mode", flag_value="write", help="Rewrite the code deps in place.")
@click.option("--check", "mode", flag_value="check", default=True, help="Exit 1 if any stage's code deps differ.")
def main(dvc_file: Path, mode: str) -> None:
    """Write or check dvc.yaml's code deps against each stage script's import closure."""
    if mode == "write":
        text = rewrite(dvc_file)
        temporary = dvc_file.with_name(f".{dvc_file.name}.tmp")
        temporary.write_text(text)
        temporary.replace(dvc_file)
    problems = differences(dvc_file)
    for line in problems:
        click.echo(line, err=True)
    if problems:
        raise SystemExit(1)
    click.echo(f"{dvc_file.name}: every stage's code deps equal its import closure")


if __name__ == "__main__":
    main()
