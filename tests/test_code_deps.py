"""Code deps that cannot drift: dvc.yaml lists exactly each stage script's import closure."""

from __future__ import annotations

import functools
import json
import re
import shutil
import sys
from pathlib import Path

import yaml

from humandiff.io.closure import import_closure, relative_closure
from humandiff.io.digests import code_digest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

import code_deps  # noqa: E402


def test_dvc_yaml_code_deps_equal_each_stage_scripts_import_closure():
    assert code_deps.differences(REPO / "dvc.yaml") == []


def test_no_stage_declares_a_folder_of_code():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        for dep in stage.get("do", stage)["deps"]:
            if dep.startswith(("lib/", "stages/")):
                assert (REPO / dep).is_file(), f"{name}: {dep}"


def _package(tmp_path: Path) -> Path:
    """lib/humandiff with a lazy import, a relative import, package data and an unrelated module."""
    pkg = tmp_path / "lib" / "humandiff"
    for folder in ("a", "b", "c"):
        (pkg / folder).mkdir(parents=True)
        (pkg / folder / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "a" / "top.py").write_text("import numpy\nfrom .helper import x\n\ndef f():\n    from humandiff.b import lazy\n")
    (pkg / "a" / "helper.py").write_text("x = 1\nNUMBERS = 'numbers.yaml'\n")
    (pkg / "a" / "numbers.yaml").write_text("a: 1\n")
    (pkg / "a" / "unused.yaml").write_text("b: 2\n")
    (pkg / "b" / "lazy.py").write_text("y = 2\n")
    (pkg / "c" / "renderer.py").write_text("z = 3\n")
    script = tmp_path / "stages" / "s.py"
    script.parent.mkdir()
    script.write_text("from humandiff.a.top import f\n")
    return script


def test_closure_follows_lazy_and_relative_imports_parent_packages_and_named_data(tmp_path: Path):
    script = _package(tmp_path)
    names = relative_closure(script, tmp_path, lib=tmp_path / "lib")
    assert names == ["stages/s.py", "lib/humandiff/__init__.py", "lib/humandiff/a/__init__.py",
                     "lib/humandiff/a/helper.py", "lib/humandiff/a/numbers.yaml", "lib/humandiff/a/top.py",
                     "lib/humandiff/b/__init__.py", "lib/humandiff/b/lazy.py"]


def test_resume_fingerprint_hashes_the_closure_only(tmp_path: Path):
    """Editing a module the stage never imports keeps its checkpoint; editing an imported one does not."""
    script, lib = _package(tmp_path), tmp_path / "lib"
    before = code_digest(script, lib)
    (lib / "humandiff/c/renderer.py").write_text("z = 4\n")
    assert code_digest(script, lib) == before
    (lib / "humandiff/b/lazy.py").write_text("y = 3\n")
    assert code_digest(script, lib) != before
    (lib / "humandiff/b/lazy.py").write_text("y = 2\n")
    assert code_digest(script, lib) == before


def test_write_mode_restores_a_drifted_dvc_yaml(tmp_path: Path):
    text = (REPO / "dvc.yaml").read_text()
    drifted = text.replace("      - lib/humandiff/body/model.py\n", "", 1).replace(
        "      - stages/render.py\n", "      - stages/render.py\n      - lib/humandiff/render\n", 1)
    copy = tmp_path / "dvc.yaml"
    copy.write_text(drifted)
    for name in ("stages", "lib"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    assert code_deps.differences(copy)
    copy.write_text(code_deps.rewrite(copy))
    assert code_deps.differences(copy) == []
    assert yaml.safe_load(copy.read_text()) == yaml.safe_load(text)


def test_every_stage_script_is_in_its_own_closure():
    for script in sorted((REPO / "stages").glob("*.py")):
        assert script.resolve() in import_closure(script)


@functools.lru_cache(maxsize=1)  # opening DVC's index takes seconds; the tests only read it
def _resolved_stages() -> dict:
    """Every stage of dvc.yaml with foreach/matrix expanded: name -> (deps, metrics, params)."""
    from dvc.repo import Repo

    with Repo(str(REPO)) as repo:
        stages = {}
        for stage in repo.index.stages:
            deps = [d.def_path for d in stage.deps if not hasattr(d, "params")]
            params = [key for d in stage.deps if hasattr(d, "params") for key in d.params]
            metrics = [o.def_path for o in stage.outs if o.metric or o.plot]
            stages[stage.addressing] = (deps, metrics, params)
    return stages


TIMING_KEY = re.compile(r"seconds|_per_s\b|per_second|fps|elapsed|wall|_time\b|duration", re.IGNORECASE)


def _keys(path: Path) -> list[str]:
    """Every key of a JSON file (nested) or the header of a CSV file."""
    if path.suffix == ".csv":
        return path.read_text().splitlines()[0].split(",") if path.stat().st_size else []
    if path.suffix != ".json":
        return []
    keys, stack = [], [json.loads(path.read_text())]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            keys += list(value)
            stack += list(value.values())
        elif isinstance(value, list):
            stack += value
    return keys


def test_no_stage_depends_on_a_file_that_holds_wall_clock_figures():
    # Timings change on every run; a stage reading one would rerun, and all that follows, after a
    # byte-identical upstream rerun. Timings live in metrics files; a stage may read a metrics
    # file only if none of its keys is a timing (checked on the committed files).
    stages = _resolved_stages()
    metrics = {path for _, paths, _ in stages.values() for path in paths}
    assert any("dno_time" in path for path in metrics)
    timed = {m for m in metrics if (REPO / m).is_file() and any(TIMING_KEY.search(k) for k in _keys(REPO / m))}
    assert {"reports/metrics/render.json", "reports/metrics/dno_time/edit_dno.json"} <= timed
    for name, (deps, _, _) in stages.items():
        for dep in deps:
            inside = [m for m in metrics if m == dep or m.startswith(dep.rstrip("/") + "/")]
            assert not [m for m in inside if m in timed or not (REPO / m).is_file()], \
                f"{name} depends on {dep}, which holds timings {inside}"
    for path in (REPO / "data").glob("dno/*/*.json"):  # the run summaries report_dno reads, where present
        assert not [k for k in _keys(path) if TIMING_KEY.search(k)], path


def test_each_guided_run_depends_on_the_scales_its_tasks_read_only():
    params = {name: keys for name, (_, _, keys) in _resolved_stages().items()}
    assert "dno.guided.scale_edit" in params["dno_guided@edit-guided"]
    assert "dno.guided.scale_refine" not in params["dno_guided@edit-guided"]
    assert "dno.guided.scale_edit" not in params["dno_guided@refine-guided"]
    assert {"dno.guided.scale_edit", "dno.guided.scale_refine"} <= set(params["dno_guided@control-guided"])
    assert "dno.guided" not in params["dno_guided@control-guided"]
