"""Command-line tools under tools/ (argument checks; their runs are covered by the stages they call)."""

from pathlib import Path

import yaml
from click.testing import CliRunner
from script_loader import load_script

REPO = Path(__file__).resolve().parents[1]


def _tool(name: str):
    return load_script("tools", name).main


def test_guided_scale_tuning_refuses_the_reported_edits(tmp_path: Path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = CliRunner().invoke(_tool("tune_guided_scale"), ["--params", str(tmp_path / "params.yaml"),
                                                             "--task-seed", str(params["dno_tasks"]["seed"])])
    assert result.exit_code != 0 and "--task-seed must differ from dno_tasks.seed" in result.output


def test_guided_scale_tuning_rejects_bad_scales_in_one_line(tmp_path: Path):
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    result = CliRunner().invoke(_tool("tune_guided_scale"), ["--params", str(tmp_path / "params.yaml"),
                                                             "--scales", "20,abc"])
    assert result.exit_code != 0 and "--scales must be comma-separated numbers" in result.output
    assert result.output.strip().count("\n") == 0
