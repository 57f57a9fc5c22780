"""Command-line tools under tools/ (argument checks; their runs are covered by the stages they call)."""

from pathlib import Path

import numpy as np
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


def test_prior_fit_needs_one_r_precision_batch(tmp_path: Path):
    result = CliRunner().invoke(_tool("prior_fit"), ["--params", str(REPO / "params.yaml"), "--count", "8"])
    assert result.exit_code != 0 and "--count must be >= 32" in result.output
    assert result.output.strip().count("\n") == 0


def test_prior_fit_names_a_missing_model_in_one_line(tmp_path: Path):
    result = CliRunner().invoke(_tool("prior_fit"), ["--params", str(REPO / "params.yaml"), "--split", "test",
                                                     "--model-dir", str(tmp_path / "none"),
                                                     "--hml-dir", str(tmp_path / "no_corpus")])
    assert result.exit_code != 0 and "none" in result.output and "not found" in result.output
    assert result.output.strip().count("\n") == 0


def test_prior_fit_scores_known_embeddings():
    fit_row = load_script("tools", "prior_fit").fit_row
    text = np.eye(64) * 10.0
    row = fit_row(text, text + 0.01, cutoff=0.1, seed=0)  # every motion next to its own caption
    assert row["top1"] == 1.0 and row["miss_share"] == 0.0 and abs(row["mm_dist"] - 0.08) < 1e-9
    swapped = fit_row(text, text[::-1].copy(), cutoff=0.1, seed=0)  # every motion at another caption
    assert swapped["top3"] < 0.2 and swapped["miss_share"] == 1.0


def test_prior_fit_rows_average_over_sample_sets():
    format_row = load_script("tools", "prior_fit").format_row
    rows = [{"top1": 0.5, "top2": 0.7, "top3": 0.8, "mm_dist": 3.0, "miss_share": 0.30},
            {"top1": 0.7, "top2": 0.9, "top3": 1.0, "mm_dist": 4.0, "miss_share": 0.40}]
    line = format_row("mdm", rows)
    assert "top-1/2/3 0.600 ± 0.141 / 0.800 ± 0.141 / 0.900 ± 0.141" in line
    assert "MM-Dist 3.500 ± 0.707" in line and "35 ± 7%" in line
    assert "±" not in format_row("real", rows[:1]) and "MM-Dist 3.000 " in format_row("real", rows[:1])
    assert "foot skating" not in line
    quality = [{"foot_skating_ratio": 0.05, "jitter": 200.0}, {"foot_skating_ratio": 0.07, "jitter": 240.0}]
    with_quality = format_row("mdm", [row | extra for row, extra in zip(rows, quality)])
    assert with_quality.startswith(line) and with_quality.endswith("foot skating 0.060 ± 0.014  jitter 220 ± 28")


def test_prior_fit_needs_one_sample_set(tmp_path: Path):
    result = CliRunner().invoke(_tool("prior_fit"), ["--params", str(REPO / "params.yaml"), "--sets", "0"])
    assert result.exit_code != 0 and "--sets must be >= 1" in result.output
