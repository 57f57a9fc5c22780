"""The data stages as a user runs them: tiny real runs, bad params and bad inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from hml3d_release import write_release
from script_loader import stage_command

from humandiff.io import ArtifactError
from humandiff.motion.prepare import PrepareOptions, source_clips, synthetic_clips

REPO = Path(__file__).resolve().parents[1]


def _stage(name: str):
    return stage_command(name)


def _params(tmp_path: Path, **overrides) -> Path:
    params = yaml.safe_load((REPO / "presets/smoke.yaml").read_text())
    params["body"]["model_path"] = str(REPO / params["body"]["model_path"])
    params["synth_motion"].update(clips=6, sheet_clips_per_family=1)
    for dotted, value in overrides.items():
        section, key = dotted.split("__")
        params[section][key] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def _run(name: str, *args: str):
    return CliRunner().invoke(_stage(name), list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("raw")
    result = _run("synth_motion", "--params", str(_params(tmp)), "--out-dir", str(tmp / "raw"),
                  "--report-dir", str(tmp / "report"), "--metrics", str(tmp / "synth.json"))
    assert result.exit_code == 0, result.output
    return tmp / "raw"


def test_synth_motion_writes_consistent_artifacts(raw_dir: Path):
    index = pd.read_parquet(raw_dir / "clips.parquet")
    with np.load(raw_dir / "motions.npz", allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    assert len(index) == 6 and len(arrays["offsets"]) == 7 and arrays["betas"].shape == (6, 10)
    assert np.array_equal(np.diff(arrays["offsets"]), index["length"].to_numpy())
    assert arrays["joints"].shape[1:] == (24, 3) and arrays["body_pose"].shape[1] == 69
    assert all(len(set(c)) >= 3 for c in index["captions"])
    assert arrays["joints"][..., 1].min() >= -1e-4  # nothing below the floor


def test_synth_motion_is_deterministic(raw_dir: Path, tmp_path: Path):
    result = _run("synth_motion", "--params", str(_params(tmp_path)), "--out-dir", str(tmp_path / "raw"),
                  "--report-dir", str(tmp_path / "report"), "--metrics", str(tmp_path / "synth.json"))
    assert result.exit_code == 0, result.output
    with np.load(raw_dir / "motions.npz") as a, np.load(tmp_path / "raw/motions.npz") as b:
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key])


def test_prepare_motion_round_trips_and_mirrors(raw_dir: Path, tmp_path: Path):
    out, metrics = tmp_path / "hml", tmp_path / "data.json"
    result = _run("prepare_motion", "--params", str(_params(tmp_path)), "--raw-dir", str(raw_dir),
                  "--out-dir", str(out), "--metrics", str(metrics))
    assert result.exit_code == 0, result.output
    report = json.loads(metrics.read_text())
    assert report["roundtrip_max_error_mm"] < 1.0
    assert "humanml3d" not in report  # the synthetic source lists nothing from files
    index = pd.read_parquet(out / "index.parquet")
    assert len(index) == 12 and index["mirror"].sum() == 6
    mirrored = index[index["mirror"]].iloc[0]
    original = index[(index["source_id"] == mirrored["source_id"]) & ~index["mirror"]].iloc[0]
    assert mirrored["split"] == original["split"] and mirrored["length"] == original["length"]


@pytest.mark.parametrize(
    "override, needle",
    [({"synth_motion__clips": 0}, "synth_motion.clips"), ({"synth_motion__clips": "many"}, "synth_motion.clips"),
     ({"synth_motion__max_frames": 10}, "max_frames")],
)
def test_synth_motion_rejects_bad_params(tmp_path: Path, override, needle):
    out = tmp_path / "raw"
    result = CliRunner().invoke(_stage("synth_motion"), ["--params", str(_params(tmp_path, **override)), "--out-dir", str(out),
                                                         "--report-dir", str(tmp_path / "r"), "--metrics", str(tmp_path / "m.json")])
    assert result.exit_code == 2 and needle in result.output and len(result.output.strip().splitlines()) == 1
    assert not out.exists()


def test_missing_body_model_is_one_clear_line(tmp_path: Path):
    params = _params(tmp_path, body__model_path=str(tmp_path / "nope.npz"))
    result = CliRunner().invoke(_stage("synth_motion"), ["--params", str(params), "--out-dir", str(tmp_path / "raw"),
                                                         "--report-dir", str(tmp_path / "r"), "--metrics", str(tmp_path / "m.json")])
    assert result.exit_code == 2 and "nope.npz" in result.output


def test_prepare_motion_rejects_unknown_source_and_missing_input(tmp_path: Path, raw_dir: Path):
    result = CliRunner().invoke(_stage("prepare_motion"), ["--params", str(_params(tmp_path, prepare_motion__source="mocap")),
                                                           "--raw-dir", str(raw_dir), "--out-dir", str(tmp_path / "hml")])
    assert result.exit_code == 2 and "prepare_motion.source" in result.output
    result = CliRunner().invoke(_stage("prepare_motion"), ["--params", str(_params(tmp_path)), "--raw-dir", str(tmp_path / "none"),
                                                           "--out-dir", str(tmp_path / "hml")])
    assert result.exit_code == 2 and "clips.parquet" in result.output
    assert not (tmp_path / "hml").exists()


def test_prepare_motion_names_the_clip_with_nan_joints(tmp_path: Path, raw_dir: Path):
    broken = tmp_path / "broken"
    shutil.copytree(raw_dir, broken)
    with np.load(broken / "motions.npz") as data:
        arrays = {k: data[k].copy() for k in data.files}
    arrays["joints"][arrays["offsets"][2] + 3, 5, 0] = np.nan
    np.savez(broken / "motions.npz", **arrays)
    result = CliRunner().invoke(_stage("prepare_motion"), ["--params", str(_params(tmp_path)), "--raw-dir", str(broken),
                                                           "--out-dir", str(tmp_path / "hml"), "--metrics", str(tmp_path / "d.json")])
    assert result.exit_code == 2 and "motions.npz" in result.output and "NaN" in result.output
    assert not (tmp_path / "hml").exists()


def test_prepare_motion_rejects_corrupt_npz(tmp_path: Path, raw_dir: Path):
    broken = tmp_path / "broken"
    shutil.copytree(raw_dir, broken)
    (broken / "motions.npz").write_bytes(b"not a zip file")
    result = CliRunner().invoke(_stage("prepare_motion"), ["--params", str(_params(tmp_path)), "--raw-dir", str(broken),
                                                           "--out-dir", str(tmp_path / "hml")])
    assert result.exit_code == 2 and "motions.npz" in result.output


def test_presets_share_one_structure():
    default = yaml.safe_load((REPO / "presets/default.yaml").read_text())
    structure = {k: sorted(v) for k, v in default.items()}
    presets = sorted(REPO.glob("presets/*.yaml"))
    assert {p.stem for p in presets} >= {"default", "smoke", "paper"}
    for preset in presets:
        assert {k: sorted(v) for k, v in yaml.safe_load(preset.read_text()).items()} == structure, preset.name
    assert yaml.safe_load((REPO / "params.yaml").read_text()) == default


def test_prepare_motion_rejects_empty_caption_and_wrong_shape(tmp_path: Path, raw_dir: Path):
    broken = tmp_path / "broken"
    shutil.copytree(raw_dir, broken)
    index = pd.read_parquet(broken / "clips.parquet")
    index.at[1, "captions"] = ["a person walks.", " ", "someone walks."]
    index.to_parquet(broken / "clips.parquet", index=False)
    args = ["--params", str(_params(tmp_path)), "--raw-dir", str(broken), "--out-dir", str(tmp_path / "hml"),
            "--metrics", str(tmp_path / "d.json")]
    result = CliRunner().invoke(_stage("prepare_motion"), args)
    assert result.exit_code == 2 and "clips.parquet" in result.output and "captions" in result.output
    shutil.copy2(raw_dir / "clips.parquet", broken / "clips.parquet")
    with np.load(broken / "motions.npz") as data:
        arrays = {k: data[k].copy() for k in data.files}
    arrays["joints"] = arrays["joints"][:, :22]
    np.savez(broken / "motions.npz", **arrays)
    result = CliRunner().invoke(_stage("prepare_motion"), args)
    assert result.exit_code == 2 and "motions.npz" in result.output and "'joints'" in result.output
    assert not (tmp_path / "hml").exists() and not (tmp_path / "d.json").exists()


OPTIONS = dict(source="synthetic", humanml3d_root=None, mirror=True, split_seed=0, val_fraction=0.2, test_fraction=0.3,
               contact_threshold=0.002)


@pytest.mark.parametrize("fields, message", [
    ({"source": "mocap"}, "unknown 'source' 'mocap' (synthetic | humanml3d)"),
    ({"source": "humanml3d"}, "'humanml3d_root' must be set when 'source' is humanml3d"),
    ({"val_fraction": 0.5, "test_fraction": 0.5}, "'val_fraction' + 'test_fraction' must lie in (0, 1)"),
    ({"test_fraction": 0.0}, "'val_fraction' + 'test_fraction'"),
    ({"contact_threshold": 0.0}, "'contact_threshold' must be > 0"),
])
def test_prepare_options_reject_bad_values(fields, message):
    with pytest.raises(ArtifactError) as caught:
        PrepareOptions(**{**OPTIONS, **fields})
    assert message in str(caught.value)


def test_prepare_motion_names_the_bad_parameter(tmp_path: Path, raw_dir: Path):
    params = _params(tmp_path, prepare_motion__val_fraction=0.9)
    result = CliRunner().invoke(_stage("prepare_motion"), ["--params", str(params), "--raw-dir", str(raw_dir),
                                                           "--out-dir", str(tmp_path / "hml")])
    assert result.exit_code == 2 and "params.yaml" in result.output
    assert "'prepare_motion.val_fraction' + 'prepare_motion.test_fraction' must lie in (0, 1)" in result.output
    params = _params(tmp_path, prepare_motion__split_seed="zero")
    result = CliRunner().invoke(_stage("prepare_motion"), ["--params", str(params), "--raw-dir", str(raw_dir),
                                                           "--out-dir", str(tmp_path / "hml")])
    assert result.exit_code == 2 and "parameter 'prepare_motion.split_seed' must be int" in result.output


def test_synthetic_clips_split_by_source_clip_and_mirror(raw_dir: Path, tmp_path: Path):
    clips = list(synthetic_clips(raw_dir, PrepareOptions(**OPTIONS)))
    originals, mirrored = clips[::2], clips[1::2]
    assert len(originals) == 6 and all(not c.mirror for c in originals) and all(m.mirror for m in mirrored)
    assert [c.split for c in originals].count("test") == 2 and [c.split for c in originals].count("val") == 1
    for original, mirror in zip(originals, mirrored):
        assert mirror.clip_id == f"M{original.clip_id}" and mirror.source_id == original.clip_id
        assert mirror.split == original.split and mirror.actions == original.actions
        assert original.joints.shape[1:] == (22, 3) and mirror.joints.shape == original.joints.shape
    again = list(synthetic_clips(raw_dir, PrepareOptions(**{**OPTIONS, "mirror": False})))
    assert [c.split for c in again] == [c.split for c in originals]  # the split does not depend on mirroring
    assert len(source_clips(PrepareOptions(**OPTIONS), raw_dir)) == 12

    empty = tmp_path / "empty"
    empty.mkdir()
    index = pd.read_parquet(raw_dir / "clips.parquet").iloc[:0]
    index.to_parquet(empty / "clips.parquet", index=False)
    with np.load(raw_dir / "motions.npz") as data:
        np.savez(empty / "motions.npz", joints=data["joints"][:0], offsets=np.zeros(1, np.int64))
    with pytest.raises(ArtifactError, match="empty: no clips"):
        source_clips(PrepareOptions(**OPTIONS), empty)


# --- a real HumanML3D release (fixture in the published layout) ---------------------------------------

RELEASE_LENGTHS = {"000000": 60, "000001": 45, "M000001": 45, "000002": 39, "000003": 200, "000004": 80, "000005": 120}
RELEASE_SPLITS = {"train": ["000000", "000001", "M000001", "000002", "000404"], "val": ["000003", "000004"],
                  "test": ["000005", "000505"]}


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("release") / "HumanML3D"
    write_release(root, RELEASE_LENGTHS, RELEASE_SPLITS)
    return root


def test_prepare_motion_reads_a_release_as_published_and_counts_what_it_drops(release: Path, tmp_path: Path):
    out, metrics = tmp_path / "hml", tmp_path / "data.json"
    params = _params(tmp_path, prepare_motion__source="humanml3d", prepare_motion__humanml3d_root=str(release))
    result = _run("prepare_motion", "--params", str(params), "--raw-dir", str(tmp_path / "no_raw"),
                  "--out-dir", str(out), "--metrics", str(metrics))
    assert result.exit_code == 0, result.output
    report = json.loads(metrics.read_text())
    assert report["humanml3d"] == {
        "motion_folder": "new_joint_vecs", "listed": 9, "loaded": 5, "clips": 5, "mean_std": "release",
        "dropped": {"missing": 2, "too_short": 1, "too_long": 1},
        "splits": {"train": {"listed": 5, "kept": 3}, "val": {"listed": 2, "kept": 1}, "test": {"listed": 2, "kept": 1}},
    }
    index = pd.read_parquet(out / "index.parquet")
    assert list(index["clip_id"]) == ["000000", "000001", "M000001", "000004", "000005"]
    assert list(index["length"]) == [60, 45, 45, 80, 120]  # the published frame counts, none one short
    with np.load(out / "features.npz") as data:
        features, offsets = data["features"], data["offsets"]
    for k, clip_id in enumerate(index["clip_id"]):
        published = np.load(release / "new_joint_vecs" / f"{clip_id}.npy")
        assert np.array_equal(features[offsets[k] : offsets[k + 1]], published)
    with np.load(out / "mean_std.npz") as stats:
        assert np.array_equal(stats["mean"], np.load(release / "Mean.npy"))
        assert np.array_equal(stats["std"], np.load(release / "Std.npy"))
        assert np.allclose(stats["eval_std"][:4], stats["std"][:4] / 5)


def test_prepare_motion_check_prints_the_counts_and_writes_nothing(release: Path, tmp_path: Path):
    out, metrics = tmp_path / "hml", tmp_path / "data.json"
    params = _params(tmp_path, prepare_motion__source="humanml3d", prepare_motion__humanml3d_root=str(release))
    result = _run("prepare_motion", "--params", str(params), "--out-dir", str(out), "--metrics", str(metrics), "--check")
    assert result.exit_code == 0, result.output
    assert "9 ids listed, 5 kept, 4 dropped (missing 2, too short 1, too long 1)" in result.output
    assert "test: 2 listed, 1 kept" in result.output and "Mean.npy/Std.npy" in result.output
    assert not out.exists() and not metrics.exists()
    import subprocess
    import sys

    tool = subprocess.run([sys.executable, str(REPO / "tools/check_data.py"), str(release)], capture_output=True, text=True)
    assert tool.returncode == 0 and "9 ids listed, 5 kept, 4 dropped" in tool.stdout, tool.stderr
    tool = subprocess.run([sys.executable, str(REPO / "tools/check_data.py"), str(tmp_path / "nowhere")],
                          capture_output=True, text=True)
    assert tool.returncode == 2 and tool.stderr.strip().endswith("nowhere: HumanML3D folder not found")


def test_render_refuses_a_split_index_from_another_source(release: Path, raw_dir: Path, tmp_path: Path):
    """HumanML3D ids 000000.. collide with the synthetic ones: render must not pair their splits."""
    params = _params(tmp_path, prepare_motion__source="humanml3d", prepare_motion__humanml3d_root=str(release))
    result = _run("prepare_motion", "--params", str(params), "--out-dir", str(tmp_path / "hml"),
                  "--metrics", str(tmp_path / "data.json"))
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(_stage("render"), [
        "--params", str(params), "--motions", str(raw_dir / "motions.npz"), "--clips", str(raw_dir / "clips.parquet"),
        "--split-index", str(tmp_path / "hml/index.parquet"), "--out-dir", str(tmp_path / "images"),
        "--report-dir", str(tmp_path / "render"), "--metrics", str(tmp_path / "render.json")])
    assert result.exit_code == 2, result.output
    assert "prepare_motion.source" in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "images").exists() and not (tmp_path / "render.json").exists()
