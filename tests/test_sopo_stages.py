"""SoPo's stage logic on tiny in-memory inputs (humandiff.sopo.run / evaluate / report), and the stages
themselves on the smoke preset (slow: the smoke repository of tests/test_pipeline_e2e.py).

The fast tests build a tiny prior, a tiny reward model and a captioned split by hand: the
fine-tuning loop resumes to the same weights as an uninterrupted run, run params and the tau map
refuse bad values with one line naming the parameter, the report's findings and tables.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from humandiff.evaluators.tmr import RewardConfig, RewardModel
from humandiff.io import ArtifactError
from humandiff.motion.dataset import MotionSplit, MotionTextDataset
from humandiff.prior.mdm import MDMConfig, MotionDiffusionModel
from humandiff.sopo.algorithm import RewardScorer
from humandiff.sopo.evaluate import eval_params
from humandiff.sopo.report import changed_captions, findings, relative, report_markdown, row_entry
from humandiff.sopo.run import (SoPoInputs, calibration_payload, fine_tune, run_options, sopo_params, threshold_for)
from humandiff.sopo.calibration import TauCalibration
from humandiff.sopo.options import SoPoOptions

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py
REPO = Path(__file__).resolve().parents[1]
TINY = MDMConfig(latent_dim=32, num_layers=1, num_heads=4, ff_dim=64, dropout=0.0, diffusion_steps=50, frames_per_token=4)


def tiny_inputs(seed: int = 0) -> SoPoInputs:
    rng = np.random.default_rng(seed)
    n, captions = 12, [f"a person does thing {k}" for k in range(12)]
    lengths = rng.integers(8, 20, n)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    index = pd.DataFrame({"clip_id": [f"c{k}" for k in range(n)], "split": "train", "length": lengths,
                          "captions": [np.array([c], dtype=object) for c in captions]})
    embeddings = rng.standard_normal((n, 384)).astype(np.float32)
    split = MotionSplit(index, rng.standard_normal((offsets[-1], 263)).astype(np.float32), offsets, embeddings,
                        tuple(np.array([k]) for k in range(n)))
    torch.manual_seed(seed)
    policy = MotionDiffusionModel(TINY)
    reference = MotionDiffusionModel(TINY)
    reference.load_state_dict(policy.state_dict())
    reference.eval().requires_grad_(False)
    mean, std = np.zeros(263, np.float32), np.ones(263, np.float32)
    reward = RewardModel(RewardConfig(latent_dim=16, layers=1, heads=2, ff_dim=32, dropout=0.0, patch=4), mean, std)
    return SoPoInputs(policy.train(), reference, TINY, RewardScorer(reward, mean, std),
                      MotionTextDataset(split, mean, std, max_frames=16, seed=seed),
                      ({c: k for k, c in enumerate(captions)}, embeddings), "embeddings.parquet", {})


OPTIONS = SoPoOptions(K=2, batch_size=3, steps=4, warmup_steps=1, lr=1e-3, ddim_steps=2)


def test_fine_tuning_resumes_to_the_weights_of_an_uninterrupted_run(tmp_path):
    whole = fine_tune(tiny_inputs(), OPTIONS, 0.5, seed=3, progress=False)
    checkpoint = tmp_path / "state.pt"
    first = fine_tune(tiny_inputs(), OPTIONS, 0.5, seed=3, checkpoint_file=checkpoint, fingerprint={"a": 1},
                      checkpoint_every=1, stop_at=2, progress=False)
    assert first.step == 2 and checkpoint.is_file()
    resumed = fine_tune(tiny_inputs(), OPTIONS, 0.5, seed=3, checkpoint_file=checkpoint, fingerprint={"a": 1},
                        checkpoint_every=1, progress=False)
    assert resumed.resumed_from == 2 and resumed.step == 4 and len(resumed.history) == 4
    for a, b in zip(whole.policy.state_dict().values(), resumed.policy.state_dict().values()):
        assert torch.equal(a, b)
    assert [r["loss"] for r in whole.history] == [r["loss"] for r in resumed.history]
    # another fingerprint (other options or inputs) starts over
    fresh = fine_tune(tiny_inputs(), OPTIONS, 0.5, seed=3, checkpoint_file=checkpoint, fingerprint={"a": 2}, progress=False)
    assert fresh.resumed_from is None


def test_the_reference_stays_frozen_and_the_policy_moves():
    inputs = tiny_inputs()
    before = {k: v.clone() for k, v in inputs.reference.state_dict().items()}
    result = fine_tune(inputs, OPTIONS, 0.99, seed=0, progress=False)
    assert all(torch.equal(before[k], v) for k, v in inputs.reference.state_dict().items())
    assert any(not torch.equal(before[k], v) for k, v in result.policy.state_dict().items())
    assert all(np.isfinite(r["loss"]) for r in result.history)


def _params(tmp_path, **sopo) -> Path:
    params = yaml.safe_load((REPO / "presets/smoke.yaml").read_text())
    params["sopo"].update(sopo)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.mark.parametrize("block, names", [({"variant": "ipo"}, ["'variant'", "sopo.runs.bad"]),
                                          ({"K": 1}, ["'K'", "sopo.runs.bad"]),
                                          ({"tau": 1.5}, ["'tau'", "sopo.runs.bad"]),
                                          ({"gamma": 1}, ["gamma", "sopo.runs.bad"])])
def test_bad_run_blocks_are_one_line_naming_the_run_and_the_parameter(tmp_path, block, names):
    path = _params(tmp_path)
    p = sopo_params(path)
    p["runs"]["bad"] = block
    with pytest.raises(ArtifactError) as error:
        run_options(path, p, "bad")
    assert all(n in str(error.value) for n in names) and "\n" not in str(error.value)
    with pytest.raises(ArtifactError, match="has no run 'nosuch'"):
        run_options(path, p, "nosuch")


def test_every_preset_names_the_runs_of_dvc_yaml_and_their_evaluations():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    runs = stages["sopo"]["matrix"]["run"] + stages["sopo_offline"]["matrix"]["run"]
    rows = list(stages["evaluate_sopo"]["foreach"])
    for preset in ("smoke", "default", "paper"):
        path = REPO / "presets" / f"{preset}.yaml"
        p = sopo_params(path)
        assert sorted(p["runs"]) == sorted(runs), preset
        assert sorted(rows) == sorted(["mdm", *runs])
        for run in runs:
            run_options(path, p, run)
        for row in rows:
            eval_params(path, row)


def test_tau_map_interpolates_and_refuses_taus_outside_the_range_or_the_sweep():
    rewards = np.random.default_rng(0).beta(20, 1.5, size=(64, 4))
    calibration = calibration_payload(rewards, TauCalibration(), 4, 10)
    values = [calibration["taus"][k]["threshold"] for k in sorted(calibration["taus"])]
    assert values == sorted(values) and 0 < values[0] < values[-1] < 1
    assert threshold_for(calibration, 0.45, 4, "c.json", "params.yaml", "sopo") == pytest.approx(values[1])
    with pytest.raises(ArtifactError, match="'sopo.runs.x.tau' must lie inside"):
        threshold_for(calibration, 1.2, 4, "c.json", "params.yaml", "x")
    with pytest.raises(ArtifactError, match="outside the calibrated sweep"):
        threshold_for(calibration, 0.3, 4, "c.json", "params.yaml", "x")


def _record(shift: float, ci: float = 0.001, misses: float = 0.3) -> dict:
    row = {"top1": 0.4 + shift, "top2": 0.6 + shift, "top3": 0.7 + shift, "mm_dist": 3.0 - shift, "diversity": 9.0,
           "fid": 0.5 - shift}
    row |= {f"{k}_ci": ci for k in list(row)}
    breakdown = {"miss_share": misses, "miss_share_single_action": misses, "miss_share_multi_action": misses,
                 "miss_share_by_actions": {"1": misses, "2": None, "3+": None}, "generated_median": 2.0,
                 "generated_mean": 3.0 - shift, "miss_mean": 6.0, "real_cutoff": 4.0, "real_median": 1.5}
    return {"row": row, "real": dict(row, diversity=9.5), "mm_dist_breakdown": breakdown,
            "protocol": {"sample_sets": 1, "replications": 5}, "captions": ["a", "b", "c"],
            "set0_distances": [5.0, 2.0, 3.0]}


def test_findings_and_report_from_rows():
    records = {"mdm": _record(0.0), "sopo": _record(0.05, misses=0.2), "dpo_offline": _record(0.02),
               "tau_040": _record(0.06), "tau_050": _record(0.04), "tau_055": _record(0.03), "tau_060": _record(0.02)}
    entries = {k: row_entry(v) for k, v in records.items()}
    found = findings(entries, records["mdm"]["real"])
    assert found["sopo_top1_up_beyond_ci"] and found["sopo_mm_dist_down_beyond_ci"] and found["sopo_fewer_misses"]
    assert found["sopo_r_precision_at_least_dpo"] and found["sopo_mm_dist_at_most_dpo"]
    assert found["tau_smaller_favours_alignment"] and found["tau_larger_favours_fid_diversity"] is False
    assert relative(0.45, 0.40, 1) == pytest.approx(12.5) and relative(2.7, 3.0, -1) == pytest.approx(10.0)
    calibration = calibration_payload(np.random.default_rng(0).beta(20, 1.5, size=(16, 4)), TauCalibration(), 4, 10)
    runs = {"sopo": {"options": SoPoOptions().to_dict(), "threshold": 0.9, "steps": 4, "dpo_share": 0.3,
                     "reward_samples_first": 0.9, "reward_samples_last": 0.92}}
    text = report_markdown(records, entries, runs, calibration, found, [("a", "sopo/changed_00.png")])
    assert "## Table 1" in text and "## Table 3" in text and "(paper)" in text and "Where MM-Dist comes from" in text
    assert "+ SoPo" in text and "+ DPO (MoDiPO-like" in text and "paper tau" in text
    sopo = dict(records["sopo"], set0_distances=[3.0, 2.0, 3.0])
    assert changed_captions(records["mdm"], sopo, 1) == [0]  # MDM's miss (5.0 > 4.0) that SoPo brought under the cut-off


@pytest.mark.slow
def test_sopo_stages_on_the_smoke_repository(smoke_repo):
    """The smoke run's SoPo outputs: every row's metrics with intervals, the findings, the curves."""
    metrics = json.loads((smoke_repo / "reports/metrics/sopo.json").read_text())
    assert set(metrics["rows"]) >= {"mdm", "sopo", "dpo_offline", "dsopo", "usopo", "sopo_no_vu", "k2", "tau_040"}
    for entry in metrics["rows"].values():
        for key in ("top1", "top2", "top3", "mm_dist", "fid", "diversity"):
            assert np.isfinite(entry[key]) and f"{key}_ci" in entry
        assert 0 <= entry["miss_share"] <= 1
    assert {"sopo_top1_up_beyond_ci", "sopo_mm_dist_down_beyond_ci", "tau_smaller_favours_alignment"} <= set(metrics["findings"])
    assert len(metrics["tau_mapping"]) == 5
    for run in ("sopo", "dpo_offline"):
        assert (smoke_repo / f"reports/plots/sopo/{run}_loss.csv").is_file()
        assert (smoke_repo / f"reports/plots/sopo/{run}_reward.csv").is_file()
    text = (smoke_repo / "reports/sopo.md").read_text()
    assert "## Table 1" in text and "## Table 3" in text and "The tau mapping" in text
    assert any(p.suffix == ".mp4" for p in (smoke_repo / "reports/sopo").iterdir())


@pytest.mark.slow
def test_sopo_stage_runs_unchanged_under_torchrun(smoke_repo, tmp_path):
    """``sopo@sopo``'s command under torchrun with 2 CPU ranks (gloo): rank 0 writes the model, the
    curves and the record; each rank takes half the batch (the run's own outputs go to ``tmp_path``)."""
    import os
    import shlex
    import subprocess
    import sys

    lock = yaml.safe_load((smoke_repo / "dvc.lock").read_text())["stages"]
    words = shlex.split(lock["sopo@sopo"]["cmd"])
    for flag in ("--out-dir", "--checkpoint-dir", "--plots-dir", "--timing-dir"):
        words[words.index(flag) + 1] = str(tmp_path / flag.strip("-"))
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "lib"), OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    # "--": the stage's --run would read as an abbreviation of torchrun's --run-path
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "--", *words[1:]]
    result = subprocess.run(command, cwd=smoke_repo, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((tmp_path / "out-dir/sopo/train.json").read_text())
    steps = yaml.safe_load((smoke_repo / "params.yaml").read_text())["sopo"]["options"]["steps"]
    assert record["steps"] == steps and (tmp_path / "out-dir/sopo/model.pt").is_file()
    assert json.loads((tmp_path / "timing-dir/sopo.json").read_text())["world_size"] == 2
    assert (tmp_path / "plots-dir/sopo_loss.csv").is_file()
