"""Command-line tools under tools/ (argument checks; their runs are covered by the stages they call)."""

import importlib.util
from pathlib import Path

import yaml
from click.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_guided_scale_tuning_refuses_the_reported_edits(tmp_path: Path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = CliRunner().invoke(_tool("tune_guided_scale"), ["--params", str(tmp_path / "params.yaml"),
                                                             "--task-seed", str(params["dno_tasks"]["seed"])])
    assert result.exit_code != 0 and "--task-seed must differ from dno_tasks.seed" in result.output
