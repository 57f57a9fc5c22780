"""End-to-end: the text-to-motion chain on a HumanML3D folder in the release layout (smoke preset, a copy)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hml3d_release import write_release
from test_pipeline_e2e import BIN, _run, copy_work_tree


def _release_ids() -> tuple[dict[str, int], dict[str, list[str]]]:
    """About 190 ids of 40-130 frames (a few too short, too long or missing) in train/val/test."""
    rng = np.random.default_rng(7)
    lengths, splits = {}, {"train": [], "val": [], "test": []}
    for k in range(186):
        clip_id = f"{k:06d}"
        lengths[clip_id] = int(rng.integers(40, 130))
        splits["train" if k < 110 else "val" if k < 145 else "test"].append(clip_id)
    lengths["000000"], lengths["000001"] = 30, 230  # dropped: too short, too long
    splits["test"].append("009999")  # listed, no files: dropped as missing
    return lengths, splits


@pytest.mark.slow
def test_text_to_motion_chain_runs_on_a_release_layout(tmp_path: Path):
    release = tmp_path / "HumanML3D"
    write_release(release, *_release_ids())
    work = tmp_path / "repo"
    copy_work_tree(work)
    params = yaml.safe_load((work / "presets/smoke.yaml").read_text())
    params["synth_motion"]["clips"] = 4  # prepare_motion still depends on it; the HumanML3D source ignores it
    params["prepare_motion"].update(source="humanml3d", humanml3d_root=str(release))
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run(["git", "init", "-q"], cwd=work, check=True)

    check = _run([str(BIN / "python"), "stages/prepare_motion.py", "--check"], work)
    assert check.returncode == 0 and "187 ids listed, 184 kept, 3 dropped" in check.stdout, check.stdout + check.stderr
    result = _run([str(BIN / "dvc"), "repro", "evaluate_t2m"], work)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    data = json.loads((work / "reports/metrics/data.json").read_text())
    assert data["source"] == "humanml3d" and data["clips"] == 184
    assert data["humanml3d"]["dropped"] == {"missing": 1, "too_short": 1, "too_long": 1}
    index = pd.read_parquet(work / "data/motion/hml/index.parquet")
    lengths, _ = _release_ids()
    assert dict(zip(index["clip_id"], index["length"])) == {k: n for k, n in lengths.items() if 40 <= n < 200}
    t2m = json.loads((work / "reports/metrics/t2m.json").read_text())
    for row in ("real", "mdm"):
        assert all(np.isfinite(t2m[row][name]) for name in ("top1", "top3", "mm_dist", "fid", "diversity"))
