"""Artifact I/O: atomic writes, checked reads, one-line errors naming file and field."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from humandiff.io import ArtifactError, atomic_path, concat_ragged, load_npz, load_parquet, load_params, save_npz, save_parquet, split_ragged


def test_npz_round_trip_and_shape_checks(tmp_path):
    path = tmp_path / "a.npz"
    save_npz(path, {"x": np.ones((4, 22, 3), np.float32), "n": np.arange(3)})
    data = load_npz(path, {"x": (None, 22, 3), "n": (3,)})
    assert data["x"].shape == (4, 22, 3) and data["n"].tolist() == [0, 1, 2]
    with pytest.raises(ArtifactError, match=r"a\.npz: field 'x' has shape \(4, 22, 3\), expected \(\*, 24, 3\)"):
        load_npz(path, {"x": (None, 24, 3)})
    with pytest.raises(ArtifactError, match="missing field 'y'"):
        load_npz(path, ["y"])


def test_npz_rejects_nan_missing_corrupt_and_pickled(tmp_path):
    save_npz(tmp_path / "nan.npz", {"x": np.array([1.0, np.nan])})
    with pytest.raises(ArtifactError, match="nan.npz: field 'x' contains NaN"):
        load_npz(tmp_path / "nan.npz")
    with pytest.raises(ArtifactError, match="missing.npz: file not found"):
        load_npz(tmp_path / "missing.npz")
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(ArtifactError, match="bad.npz: cannot read"):
        load_npz(tmp_path / "bad.npz")
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ArtifactError, match="obj.npz"):
        load_npz(tmp_path / "obj.npz")
    with pytest.raises(ArtifactError, match="object array"):
        save_npz(tmp_path / "w.npz", {"x": np.array([None], dtype=object)})


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.parquet"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    save_parquet(target, pd.DataFrame({"a": [1, 2], "caps": [["x", "y"], ["z"]]}))
    frame = load_parquet(target, ["a", "caps"])
    assert frame["caps"].map(list).tolist() == [["x", "y"], ["z"]]
    with pytest.raises(ArtifactError, match="missing column"):
        load_parquet(target, ["b"])
    assert [p.name for p in tmp_path.iterdir()] == ["out.parquet"]


def test_ragged_round_trip():
    clips = [np.full((n, 2), n, np.float32) for n in (3, 1, 5)]
    flat, offsets = concat_ragged(clips)
    assert offsets.tolist() == [0, 3, 4, 9]
    for a, b in zip(split_ragged(flat, offsets), clips):
        np.testing.assert_array_equal(a, b)


def test_params_sections(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("a:\n  x: 1\n")
    assert load_params(path, "a") == {"x": 1}
    with pytest.raises(ArtifactError, match="missing section 'b'"):
        load_params(path, "b")
    path.write_text("a: [unclosed\n")
    with pytest.raises(ArtifactError, match="not valid YAML"):
        load_params(path, "a")


def test_torch_files_are_byte_identical_for_equal_tensors_and_round_trip(tmp_path: Path):
    """Same tensors give the same bytes whatever the path (DVC hashes them); extra survives the trip."""
    import torch

    from humandiff.io import load_checkpoint, load_torch, read_checkpoint, save_checkpoint, save_torch

    state = {"weight": torch.arange(6.0).reshape(2, 3), "bias": torch.zeros(2)}
    save_checkpoint(tmp_path / "a.pt", {"width": 3}, state, {"step": 7})
    save_checkpoint(tmp_path / "sub" / "other_name.pt", {"width": 3}, state, {"step": 7})
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "sub" / "other_name.pt").read_bytes()
    config, loaded = load_checkpoint(tmp_path / "a.pt")
    assert config == {"width": 3} and torch.equal(loaded["weight"], state["weight"])
    assert read_checkpoint(tmp_path / "a.pt")["extra"] == {"step": 7}
    save_torch(tmp_path / "plain.pt", state)
    assert torch.equal(load_torch(tmp_path / "plain.pt")["bias"], state["bias"])
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")]  # no temporary file left


def test_unreadable_torch_file_is_one_line_error_naming_it(tmp_path: Path):
    from humandiff.io import load_checkpoint, load_torch

    (tmp_path / "bad.pt").write_bytes(b"not a zip")
    for loader in (load_torch, load_checkpoint):
        with pytest.raises(ArtifactError, match="bad.pt") as info:
            loader(tmp_path / "bad.pt")
        assert "\n" not in str(info.value)
    with pytest.raises(ArtifactError, match="missing.pt: file not found"):
        load_torch(tmp_path / "missing.pt")


def test_run_stage_records_wall_time_under_dvc_only(tmp_path, monkeypatch):
    import json

    import click
    from click.testing import CliRunner

    from humandiff.io.stage import PIPELINE_TIMES, record_stage_time, run_stage

    @click.command()
    @run_stage
    def main() -> None:
        pass

    monkeypatch.delenv("DVC_STAGE", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    assert CliRunner().invoke(main, []).exit_code == 0
    assert not (tmp_path / PIPELINE_TIMES).exists()  # run by hand: nothing recorded
    monkeypatch.setenv("DVC_STAGE", "dno@edit-dno")
    assert CliRunner().invoke(main, []).exit_code == 0
    record_stage_time("synth_motion", 12.34, tmp_path)
    times = json.loads((tmp_path / PIPELINE_TIMES).read_text())
    assert list(times) == ["dno@edit-dno", "synth_motion"] and times["synth_motion"] == {"seconds": 12.3}
    assert times["dno@edit-dno"]["seconds"] >= 0
