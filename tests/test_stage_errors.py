"""Every stage error is one line naming the file or parameter: run_stage, the checks stages share."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from humandiff.io import ArtifactError, check_finite, restore_state, save_npz, save_parquet, save_torch
from humandiff.io.stage import DEBUG_ENV, run_stage, stage_params

SECTION = "train_toy"  # run_stage reads the SECTION of a stage's module


def _command(exc: BaseException, bar: bool = False):
    @click.command()
    @click.option("--params", "params_file", default="params.yaml")
    @run_stage
    def main(params_file: str) -> None:
        if bar:
            from tqdm import tqdm

            progress = tqdm(total=10, desc="toy")
            progress.update(3)
        raise exc

    return main


def _invoke(command, monkeypatch, debug: str = ""):
    monkeypatch.setenv(DEBUG_ENV, debug)
    return CliRunner().invoke(command, ["--params", "p.yaml"])


def _one_line(result) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_diverging_loss_is_one_line_naming_the_learning_rate(monkeypatch):
    line = _one_line(_invoke(_command(FloatingPointError("train: loss became nan at step 3")), monkeypatch))
    assert "loss became nan at step 3" in line and "'train_toy.lr'" in line and "p.yaml" in line


def test_opencv_error_is_one_line(monkeypatch):
    cv2 = pytest.importorskip("cv2")
    try:
        cv2.line(np.zeros((4, 4, 3), np.uint8), (float("nan"), 0), (1, 1), (255, 0, 0))
    except cv2.error as exc:
        error = exc
    line = _one_line(_invoke(_command(error), monkeypatch))
    assert "error" in line and "train_toy" in line and DEBUG_ENV in line


@pytest.mark.parametrize("exc", [RuntimeError("CUDA out of memory.\nmore"), KeyError("betas"), TypeError("bad")])
def test_any_other_error_is_one_line_naming_the_stage(monkeypatch, exc):
    line = _one_line(_invoke(_command(exc), monkeypatch))
    assert type(exc).__name__ in line and "'train_toy' of p.yaml" in line


def test_debug_environment_variable_shows_the_traceback(monkeypatch):
    result = _invoke(_command(FloatingPointError("boom")), monkeypatch, debug="1")
    assert isinstance(result.exception, FloatingPointError)  # re-raised: Python prints the traceback
    result = _invoke(_command(ArtifactError("x.npz: file not found")), monkeypatch, debug="1")
    assert isinstance(result.exception, ArtifactError)


def test_progress_bars_are_closed_before_the_error_line(monkeypatch):
    from tqdm import tqdm

    result = _invoke(_command(ArtifactError("shard.npz: field 'images' has shape (1,)"), bar=True), monkeypatch)
    assert result.stderr.splitlines()[-1] == "error: shard.npz: field 'images' has shape (1,)"
    assert "toy" in result.stderr.split("error: ")[0]  # the bar was drawn, then ended its line
    assert len(tqdm._instances) == 0


def test_click_usage_errors_stay_clicks(monkeypatch):
    result = _invoke(_command(click.BadParameter("nope")), monkeypatch)
    assert result.exit_code == 2 and "nope" in result.output and "error: " not in result.stderr.splitlines()[-1][:7]


def test_complete_sections_refuse_unknown_keys(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("toy:\n  seed: 1\n  sede: 2\n")
    assert stage_params(params, "toy", {"seed": int}) == {"seed": 1, "sede": 2}  # a shared section
    with pytest.raises(ArtifactError, match=r"params.yaml: unknown parameter\(s\) toy.sede \(allowed: seed\)"):
        stage_params(params, "toy", {"seed": int}, complete=True)
    assert stage_params(params, "toy", {"seed": int}, complete=True, known=("sede",))["sede"] == 2


def test_non_finite_outputs_are_refused_and_nothing_is_written(tmp_path):
    features = np.zeros((4, 263), np.float32)
    check_finite(tmp_path / "samples.npz", {"features": features})
    features[2, 5] = np.nan
    with pytest.raises(ArtifactError, match=r"samples.npz: refusing to write field 'features': 1 of 1052 values"):
        check_finite(tmp_path / "samples.npz", {"features": features})
    with pytest.raises(ArtifactError, match=r"model.pt: refusing to write field 'state_dict.w'"):
        save_torch(tmp_path / "model.pt", {"state_dict": {"w": torch.tensor([1.0, float("inf")])}, "step": 3})
    assert list(tmp_path.iterdir()) == []


def test_weights_with_nan_are_refused_on_load(tmp_path):
    model = torch.nn.Linear(2, 2)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["weight"][0, 0] = float("nan")
    with pytest.raises(ArtifactError, match=r"m.pt: field 'state_dict.weight' contains NaN or Inf \(1 of 4 values\)"):
        restore_state(model, state, tmp_path / "m.pt")


def test_prior_with_nan_weights_is_refused_naming_the_file(tmp_path):
    from humandiff.prior.mdm import MDMConfig, MotionDiffusionModel, load_mdm, save_mdm

    config = MDMConfig(latent_dim=16, ff_dim=32, num_layers=1, num_heads=2)
    state = MotionDiffusionModel(config).state_dict()
    save_mdm(tmp_path / "model.pt", tmp_path / "config.json", state, config)
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    next(v for v in state.values() if v.is_floating_point() and v.numel()).view(-1)[0] = float("nan")
    torch.save(state, tmp_path / "model.pt")
    with pytest.raises(ArtifactError, match=r"model.pt: field 'state_dict\.[\w.]+' contains NaN or Inf"):
        load_mdm(tmp_path / "model.pt", tmp_path / "config.json")


def _motion_files(tmp_path: Path, captions: list[list[str]]) -> tuple[Path, Path]:
    splits = ["train", "train", "val", "test"][: len(captions)]
    index = pd.DataFrame({"clip_id": [f"{k:06d}" for k in range(len(captions))], "split": splits,
                          "length": [4] * len(captions), "captions": captions})
    save_parquet(tmp_path / "index.parquet", index)
    save_npz(tmp_path / "features.npz", {"features": np.zeros((4 * len(captions), 263), np.float32),
                                         "offsets": np.arange(0, 4 * len(captions) + 1, 4, dtype=np.int64)})
    return tmp_path / "index.parquet", tmp_path / "features.npz"


@pytest.mark.parametrize("bad", [[], [""], ["a man walks", "  "]])
@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_an_empty_caption_is_refused_in_every_split_whichever_is_loaded(tmp_path, bad, split):
    from humandiff.motion.dataset import load_motion_split

    captions = [["a man walks"], ["a man runs"], ["a man jumps"], ["a man sits"]]
    captions[{"train": 1, "val": 2, "test": 3}[split]] = bad
    index, features = _motion_files(tmp_path, captions)
    for loaded in ("train", "val", "test"):
        with pytest.raises(ArtifactError, match=rf"index.parquet: clip \d+ \({split} split\): field 'captions'"):
            load_motion_split(index, features, None, loaded)


def test_dno_option_errors_name_the_params_file_and_block():
    from humandiff.dno.run import dno_options

    with pytest.raises(ArtifactError, match=r"^p.yaml: parameter 'dno.edit.steps' must be a positive integer"):
        dno_options({"edit": {"steps": -1}}, False, params_file="p.yaml")
    with pytest.raises(ArtifactError, match=r"^p.yaml: unknown parameter\(s\) in 'dno.refine': stepz"):
        dno_options({"refine": {"stepz": 3}}, False, params_file="p.yaml")
    with pytest.raises(ArtifactError, match=r"^p.yaml: parameter 'dno.ablations.few.steps' must be"):
        dno_options({"refine": {}}, False, {"steps": 0}, params_file="p.yaml", variant="few")
    with pytest.raises(ArtifactError, match=r"^DNOOptions: parameter 'steps'"):  # the library alone: as before
        dno_options({"edit": {"steps": -1}}, False)


def test_body_model_and_motions_must_agree_on_betas(tmp_path):
    from humandiff.body.model import load_body_model
    from humandiff.imaging.build import check_betas

    body = load_body_model()
    check_betas("motions.npz", {"betas": np.zeros((3, body.num_betas))}, body, "anny.npz")
    with pytest.raises(ArtifactError, match=r"^motions.npz: field 'betas' has 11 shape coefficients per clip, "
                                            r"the body model anny.npz takes 10"):
        check_betas("motions.npz", {"betas": np.zeros((3, 11))}, body, "anny.npz")


def test_report_needs_every_run_and_its_files(tmp_path):
    from humandiff.dno.report import REQUIRED_RUNS, check_run_files

    tasks = tmp_path / "tasks"
    with pytest.raises(ArtifactError, match="no task table"):
        check_run_files(tmp_path, tasks)
    tasks.mkdir()
    for family in ("edit", "ablate"):
        (tasks / f"{family}.parquet").write_bytes(b"")
        for run in REQUIRED_RUNS[family]:
            for name in (f"{run}.parquet", f"{run}.npz", f"{run}.json", f"{run}_history.npz"):
                (tmp_path / family).mkdir(exist_ok=True)
                (tmp_path / family / name).write_bytes(b"")
    check_run_files(tmp_path, tasks)
    (tmp_path / "edit" / "dno_history.npz").unlink()
    with pytest.raises(ArtifactError, match=r"edit/dno_history.npz: file not found \(an output of the run of dno.parquet\)"):
        check_run_files(tmp_path, tasks)
    (tmp_path / "edit" / "dno_history.npz").write_bytes(b"")
    (tmp_path / "ablate" / "input.parquet").unlink()
    with pytest.raises(ArtifactError, match=r"ablate/input.parquet: file not found \(the ablate tasks' input run"):
        check_run_files(tmp_path, tasks)


def test_small_val_split_reports_r_precision_on_what_there_is():
    from humandiff.evaluators.evaluator import EvaluatorHistory, evaluator_summary, val_batch

    history = EvaluatorHistory()
    history.val_loss, history.val_top3, history.val_mm_dist, history.best_epoch = [1.5], [0.7], [3.0], 1
    line = evaluator_summary(history, 24)
    assert "nan" not in line and "chance 0.125" in line and "in one batch of all 24 val clips" in line
    assert "val top-3 0.700 (chance 0.094)" in evaluator_summary(history, 40) and "batch" not in evaluator_summary(history, 40)
    assert (val_batch(24), val_batch(32), val_batch(500)) == (24, 32, 32)
