"""End-to-end: `dvc repro` of the smoke preset in a temporary copy of the repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", DVC_NO_ANALYTICS="1",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH=str(REPO / "lib"))
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=1500)


def copy_work_tree(work: Path) -> None:
    """Copy the working tree's tracked and new files (no reports, no dvc.lock) to ``work``."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()
    for name in files:
        source = REPO / name
        if source.is_file() and not name.startswith(("reports/", "dvc.lock")):
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, work / name)


def build_smoke_repo(work: Path) -> Path:
    """A copy of the working tree (tracked and new files, no outputs) at ``work`` with the smoke preset,
    reproduced (the session's ``smoke_repo`` fixture, tests/conftest.py)."""
    copy_work_tree(work)
    shutil.copy2(work / "presets/smoke.yaml", work / "params.yaml")
    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    result = _run([str(BIN / "dvc"), "repro"], work)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return work


@pytest.mark.slow
def test_smoke_pipeline_produces_checked_artifacts(smoke_repo: Path):
    metrics = json.loads((smoke_repo / "reports/metrics/data.json").read_text())
    smoke = yaml.safe_load((smoke_repo / "params.yaml").read_text())
    assert metrics["clips"] == smoke["synth_motion"]["clips"]
    assert metrics["families"] >= 14
    assert metrics["min_captions_per_clip"] >= 3
    assert metrics["gt_foot_skating_ratio"] <= 0.02
    assert metrics["roundtrip_max_error_mm"] < 1.0
    assert 40 <= metrics["min_frames"] <= metrics["max_frames"] <= 196
    assert metrics["fps"] == 20

    index = pd.read_parquet(smoke_repo / "data/motion/hml/index.parquet")
    assert len(index) == 2 * metrics["clips"]  # mirrored copies
    assert set(index["split"]) == {"train", "val", "test"}
    # A clip and its mirror share a split so that no test motion leaks into training.
    assert index.groupby("source_id")["split"].nunique().max() == 1
    with np.load(smoke_repo / "data/motion/hml/features.npz", allow_pickle=False) as data:
        features, offsets = data["features"], data["offsets"]
    assert features.shape == (offsets[-1], 263) and np.isfinite(features).all()
    assert np.array_equal(np.diff(offsets), index["length"].to_numpy())

    text = pd.read_parquet(smoke_repo / "data/motion/text/embeddings.parquet")
    captions = {c for caps in index["captions"] for c in caps}
    assert set(text["caption"]) == captions
    norms = np.linalg.norm(np.stack(text["embedding"].to_numpy()), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-4)
    assert any((smoke_repo / "reports/synth_motion").glob("*.png"))


@pytest.mark.slow
def test_smoke_pipeline_writes_every_papers_metrics(smoke_repo: Path):
    """The downstream stages ran and their metrics files carry the fields the reports promise."""
    t2m = json.loads((smoke_repo / "reports/metrics/t2m.json").read_text())
    for row in ("real", "mdm"):
        for name in ("top1", "top2", "top3", "mm_dist", "fid", "diversity"):
            assert np.isfinite(t2m[row][name]) and np.isfinite(t2m[row][f"{name}_ci"])
        assert 0.0 <= t2m[row]["foot_skating_ratio"] <= 1.0 and t2m[row]["jitter"] > 0
    assert np.isfinite(t2m["mdm"]["multimodality"])
    assert (smoke_repo / "reports/t2m.md").read_text().count("|") > 20

    perception = json.loads((smoke_repo / "reports/metrics/perception.json").read_text())
    smoke = yaml.safe_load((smoke_repo / "params.yaml").read_text())
    assert perception["test_images"] == smoke["render"]["test_images"]
    for name in ("pck_0.05", "pck_0.1"):
        assert 0.0 <= perception[name] <= 1.0
    assert perception["pck_0.05"] <= perception["pck_0.1"]
    assert perception["regression_mpjpe_mm"] > 0 and perception["regression_pa_mpjpe_mm"] > 0
    assert perception["extract_images_per_s"] > 0
    assert any((smoke_repo / "data/extract").iterdir())

    dno = json.loads((smoke_repo / "reports/metrics/dno.json").read_text())
    for action in (a["name"] for a in smoke["dno_tasks"]["actions"]):
        for method in ("input", "guided", "dno"):
            cell = dno["edit"][action][method]
            assert {"content_preservation", "objective_error_m", "foot_skating_ratio", "jitter"} <= set(cell)
    for setting in smoke["dno_tasks"]["refine_settings"]:
        for method in ("noisy", "guided", "dno"):
            assert {"mpjpe_cm", "fid", "foot_skating_ratio", "jitter"} <= set(dno["refine"][setting][method])
    assert {f"dno_{variant}" for variant in smoke["dno"]["ablations"]} | {"input", "dno"} <= set(dno["ablate"])
    assert (smoke_repo / "reports/dno.md").is_file()

    scorehmr = json.loads((smoke_repo / "reports/metrics/scorehmr.json").read_text())
    names = {"pa_mpjpe_lsp14_mm", "pa_mpjpe_mm", "mpjpe_mm"}
    for method in ("regression", "smplify", "scorehmr"):
        assert names <= set(scorehmr["fit"]["regression"][method])
        assert names <= set(scorehmr["multiview"][method])
        assert names | {"accel_error"} <= set(scorehmr["video"][method])
        assert all(np.isfinite(v) and v > 0 for v in scorehmr["video"][method].values())
    assert set(scorehmr["ablation"]) == {f"{f}-{t}" for f in ("pooled", "regression") for t in ("gt", "pseudo")}
    assert set(scorehmr["sweep"]) == set(smoke["scorehmr"]["sweep"])
    assert all(isinstance(v, bool) for k, v in scorehmr["findings"].items() if k != "text")
    assert "## Protocol" in (smoke_repo / "reports/scorehmr.md").read_text()
    assert {p.name for p in (smoke_repo / "reports/scorehmr").glob("*.png")} == {"fit.png", "video.png"}


@pytest.mark.slow
def test_smoke_pipeline_records_every_stages_wall_time(smoke_repo: Path):
    times = json.loads((smoke_repo / "reports/metrics/pipeline.json").read_text())
    stages = set(yaml.safe_load((smoke_repo / "dvc.lock").read_text())["stages"])
    assert set(times) == stages
    assert all(entry["seconds"] >= 0 for entry in times.values())


@pytest.mark.slow
def test_unchanged_tree_does_nothing_and_a_param_reruns_only_its_stages(smoke_repo: Path):
    again = _run([str(BIN / "dvc"), "repro"], smoke_repo)
    assert again.returncode == 0 and "Running stage" not in again.stdout, again.stdout
    params = yaml.safe_load((smoke_repo / "params.yaml").read_text())
    params["encode_text"]["batch_size"] = 64
    (smoke_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = _run([str(BIN / "dvc"), "status", "--json"], smoke_repo)
    changed = set(json.loads(status.stdout))
    assert changed == {"encode_text"}, status.stdout
    # one DNO ablation variant's parameters rerun that variant only
    params["dno"]["ablations"]["ddim_5"]["ddim_steps"] = 4
    (smoke_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = _run([str(BIN / "dvc"), "status", "--json"], smoke_repo)
    assert set(json.loads(status.stdout)) == {"encode_text", "dno_ablation@ddim_5"}, status.stdout
    # tuning the guided baseline's edit scale reruns the guided runs whose tasks read it, not DNO
    params["dno"]["guided"]["scale_edit"] = 2 * float(params["dno"]["guided"]["scale_edit"])
    (smoke_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = _run([str(BIN / "dvc"), "status", "--json"], smoke_repo)
    guided = {f"dno_guided@{family}-guided" for family in ("edit", "control")}
    assert set(json.loads(status.stdout)) == {"encode_text", "dno_ablation@ddim_5"} | guided, status.stdout
    # DNO's edit options rerun the families whose tasks start by inversion (edit, control), not refinement
    params["dno"]["edit"]["steps"] = int(params["dno"]["edit"]["steps"]) + 1
    (smoke_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = _run([str(BIN / "dvc"), "status", "--json"], smoke_repo)
    edit = {"dno@edit-dno", "dno@control-dno"}
    assert set(json.loads(status.stdout)) == {"encode_text", "dno_ablation@ddim_5"} | guided | edit, status.stdout
    # a ScoreHMR baseline's options rerun that baseline only; the method's fit options its runs, sweeps and Table 1
    params["scorehmr"]["smplify"]["video"] = {"steps": 3}
    (smoke_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = _run([str(BIN / "dvc"), "status", "--json"], smoke_repo)
    before = {"encode_text", "dno_ablation@ddim_5"} | guided | edit
    assert set(json.loads(status.stdout)) == before | {"scorehmr_smplify@video"}, status.stdout


@pytest.mark.slow
def test_smoke_pipeline_writes_hmdiff_tables_and_one_run_reruns_alone(smoke_repo: Path):
    """HMDiff (issue 28): a row per table entry with the promised fields, the pictures, no timing in the
    rows the report reads; tuning one run's params reruns that run and the report only."""
    hmdiff = json.loads((smoke_repo / "reports/metrics/hmdiff.json").read_text())
    for row in ("table1/hmdiff", "table1/regression_head", "table3/baseline_a", "table3/baseline_b", "table4/no_dat_pose",
                "table4/no_dat_both", "table5/start_from_pose", "table5/direct_l2", "table5/single_pose",
                "table5/no_activation"):
        assert {"mpve_mm", "mpjpe_mm", "pa_mpjpe_mm", "steps", "fps"} <= set(hmdiff["rows"][row]), row
    assert len(hmdiff["findings"]) == 9
    assert all((smoke_repo / "reports/hmdiff" / name).is_file() for name in ("meshes.png", "samples.png", "ratio.png"))
    assert "Table 4" in (smoke_repo / "reports/hmdiff.md").read_text()
    row = json.loads((smoke_repo / "data/hmdiff/eval/hmdiff.json").read_text())
    assert "seconds" not in row and "fps" not in row
    assert json.loads((smoke_repo / "reports/metrics/hmdiff_speed/hmdiff.json").read_text())["fps"] > 0
    before = set(json.loads(_run([str(BIN / "dvc"), "status", "--json"], smoke_repo).stdout))
    original = (smoke_repo / "params.yaml").read_text()
    try:
        params = yaml.safe_load(original)
        params["hmdiff"]["runs"]["direct_l2"]["options"] = {"gamma": 0.001}
        (smoke_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        status = _run([str(BIN / "dvc"), "status", "--json"], smoke_repo)
        changed = set(json.loads(status.stdout)) - before
        assert "eval_hmdiff@direct_l2" in changed and changed <= {"eval_hmdiff@direct_l2", "report_hmdiff"}, status.stdout
    finally:
        (smoke_repo / "params.yaml").write_text(original)


def _changed(repo: Path) -> set[str]:
    status = _run([str(BIN / "dvc"), "status", "--json"], repo)
    assert status.returncode == 0, status.stderr
    return set(json.loads(status.stdout))


@pytest.mark.slow
def test_smoke_pipeline_writes_sopo_tables_and_one_runs_params_rerun_only_it_and_its_evaluation(smoke_repo: Path):
    sopo = json.loads((smoke_repo / "reports/metrics/sopo.json").read_text())
    smoke = yaml.safe_load((smoke_repo / "params.yaml").read_text())
    assert set(sopo["rows"]) == {"mdm", *smoke["sopo"]["runs"]}
    for entry in sopo["rows"].values():
        for name in ("top1", "top2", "top3", "mm_dist", "fid", "diversity"):
            assert np.isfinite(entry[name]) and f"{name}_ci" in entry
        assert 0.0 <= entry["miss_share"] <= 1.0
    assert sopo["findings"] and all(v is None or isinstance(v, bool) for v in sopo["findings"].values())
    assert "## Table 1" in (smoke_repo / "reports/sopo.md").read_text()
    # one run's block reruns that run; its new model then reruns its evaluation only
    before = _changed(smoke_repo)
    params = yaml.safe_load((smoke_repo / "params.yaml").read_text())
    params["sopo"]["runs"]["dsopo"]["lr"] = 3.0e-4
    (smoke_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert _changed(smoke_repo) - before == {"sopo@dsopo"}
    single = _run([str(BIN / "dvc"), "repro", "--single-item", "sopo@dsopo"], smoke_repo)
    assert single.returncode == 0, single.stdout[-2000:] + single.stderr[-2000:]
    assert {s for s in _changed(smoke_repo) - before if "sopo" in s} == {"evaluate_sopo@dsopo", "report_sopo"}
