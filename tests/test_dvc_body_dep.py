"""The body model file the params name is a DVC dependency of every stage that reads it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _stage_deps(root: Path) -> dict[str, tuple[list[str], list[str]]]:
    """Stage name -> (deps, params) of dvc.yaml as DVC renders it (templating resolved)."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        out = {}
        for stage in repo.index.stages:
            params = [key for dep in stage.deps if hasattr(dep, "params") for key in (dep.params or [])]
            deps = [dep.def_path for dep in stage.deps if not hasattr(dep, "params")]
            out[stage.name] = (deps, params)
        return out


def test_dvc_yaml_names_the_body_model_through_params():
    text = (REPO / "dvc.yaml").read_text()
    assert "data/body/anny_smpl_neutral.npz" not in text
    stages = yaml.safe_load(text)["stages"]
    readers = [name for name, stage in stages.items() if "body.model_path" in stage.get("params", [])]
    assert {"synth_motion", "prepare_motion", "render"} <= set(readers)
    for name in readers:
        assert "${body.model_path}" in stages[name]["deps"], name


def test_a_users_body_model_file_is_a_dependency_of_every_body_reading_stage(tmp_path: Path):
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy2(REPO / name, tmp_path / name)
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    subprocess.run([str(BIN / "dvc"), "init", "--no-scm", "-q"], cwd=tmp_path, check=True, env=env)
    default = _stage_deps(tmp_path)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["body"]["model_path"] = "data/body/SMPL_NEUTRAL.pkl"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    user = _stage_deps(tmp_path)
    readers = [name for name, (_, keys) in user.items() if "body.model_path" in keys]
    assert {"synth_motion", "prepare_motion", "render", "train_perception", "extract"} <= set(readers)
    for name in readers:
        assert "data/body/SMPL_NEUTRAL.pkl" in user[name][0], name
        assert "data/body/anny_smpl_neutral.npz" not in user[name][0], name
        assert "data/body/anny_smpl_neutral.npz" in default[name][0], name
    for name, (deps, _) in user.items():  # no other stage gains it
        if name not in readers:
            assert "data/body/SMPL_NEUTRAL.pkl" not in deps, name
