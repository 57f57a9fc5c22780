"""The image sets (humandiff.imaging) and the render stage: ground-truth geometry, split
membership, shard format, determinism and failure behaviour."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from click.testing import CliRunner

from humandiff.body import load_body_model, posed_joints
from humandiff.imaging import (
    SHARD_FIELDS,
    BodyAssets,
    RenderSettings,
    SetSizes,
    ShardWriter,
    check_shard_arrays,
    clip_table,
    load_image_set,
    load_index,
    plan_units,
    read_shard,
    render_unit,
)
from humandiff.imaging.build import RenderedSets, check_sets_follow_splits, render_config, render_metrics
from humandiff.imaging.draw import contact_sheet, draw_keypoints
from humandiff.io import save_npz, save_parquet
from humandiff.io.artifacts import ArtifactError
from humandiff.render import Camera
from script_loader import stage_command

REPO = Path(__file__).resolve().parents[1]
BODY = REPO / "data/body/anny_smpl_neutral.npz"
SPLITS = ["train", "train", "train", "train", "train", "val", "test", "test"]


def _stage(name: str):
    return stage_command(name)


@pytest.fixture(scope="module")
def motion_dir(tmp_path_factory) -> Path:
    """A tiny motion dataset in the pipeline's format: 8 clips of 24 frames, the last one walking 2 m."""
    root = tmp_path_factory.mktemp("motion")
    rng = np.random.default_rng(0)
    clips, frames = len(SPLITS), 24
    ids = [f"{k:06d}" for k in range(clips)]
    body_pose = rng.normal(0, 0.15, (clips * frames, 69)).astype(np.float32)
    global_orient = np.zeros((clips * frames, 3), np.float32)
    global_orient[:, 1] = np.repeat(rng.uniform(-np.pi, np.pi, clips), frames)
    transl = np.zeros((clips * frames, 3), np.float32)
    transl[:, 1] = 0.9
    transl[-frames:, 2] = np.linspace(0.0, 2.0, frames)
    save_npz(root / "raw/motions.npz", {
        "global_orient": global_orient, "body_pose": body_pose, "transl": transl,
        "joints": np.zeros((clips * frames, 24, 3), np.float32),
        "betas": rng.normal(0, 0.5, (clips, 10)).astype(np.float32),
        "offsets": np.arange(0, clips * frames + 1, frames, dtype=np.int64),
    })
    save_parquet(root / "raw/clips.parquet", pd.DataFrame({
        "clip_id": ids, "length": [frames] * clips, "fps": [20.0] * clips, "actions": [["walk"]] * clips,
        "captions": [["a person walks"] * 3] * clips}))
    rows = []
    for clip_id, split in zip(ids, SPLITS):
        rows.append({"clip_id": clip_id, "source_id": clip_id, "split": split, "length": frames - 1, "mirror": False})
        rows.append({"clip_id": f"M{clip_id}", "source_id": clip_id, "split": split, "length": frames - 1, "mirror": True})
    save_parquet(root / "hml/index.parquet", pd.DataFrame(rows))
    return root


@pytest.fixture(scope="module")
def body() -> BodyAssets:
    return BodyAssets.from_model(load_body_model(BODY))


def _table_and_motions(motion_dir: Path) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    with np.load(motion_dir / "raw/motions.npz", allow_pickle=False) as data:
        motions = {k: data[k] for k in data.files}
    table = clip_table(pd.read_parquet(motion_dir / "raw/clips.parquet"), pd.read_parquet(motion_dir / "hml/index.parquet"),
                       motions["offsets"])
    return table, motions


SIZES = SetSizes(train=6, val=2, test=3, multiview_instants=1, multiview_views=3, video_sequences=1, video_frames=6)


def test_plan_keeps_every_set_inside_its_split_and_is_seeded(motion_dir):
    table, motions = _table_and_motions(motion_dir)
    units = plan_units(table, motions, SIZES, seed=3)
    split_of = dict(zip(table["clip_id"], table["split"]))
    expected = {"train": "train", "val": "val", "test": "test", "multiview": "test", "video": "test"}
    assert all(split_of[u.clip_id] == expected[u.set_name] for u in units)
    counts = pd.Series([u.set_name for u in units]).value_counts()
    assert counts.to_dict() == {"train": 6, "test": 3, "val": 2, "multiview": 1, "video": 1}
    video = next(u for u in units if u.kind == "video")
    assert np.array_equal(np.diff(video.frames), np.ones(5)) and video.image_count == 6
    again = plan_units(table, motions, SIZES, seed=3)
    assert [(u.clip_id, tuple(u.frames)) for u in again] == [(u.clip_id, tuple(u.frames)) for u in units]
    other = plan_units(table, motions, SIZES, seed=4)
    assert [(u.clip_id, tuple(u.frames)) for u in other] != [(u.clip_id, tuple(u.frames)) for u in units]
    # the unit carries the clip's own SMPL parameters
    unit = units[0]
    row = table.set_index("clip_id").loc[unit.clip_id]
    assert np.array_equal(unit.body_pose[0], motions["body_pose"][row.start + unit.frames[0]])


def test_rendered_ground_truth_is_geometrically_consistent(motion_dir, body):
    table, motions = _table_and_motions(motion_dir)
    settings = RenderSettings(image_size=64)
    units = plan_units(table, motions, SIZES, seed=0)
    for kind in ("single", "multiview", "video"):
        unit = next(u for u in units if u.kind == kind)
        records = render_unit(unit, body, settings)
        arrays = {name: np.stack([r[name] for r in records]) for name in SHARD_FIELDS}
        assert check_shard_arrays(arrays, kind) == unit.image_count
        for i in range(len(records)):
            camera = Camera.from_arrays(arrays["intrinsics"][i], np.array([64, 64]), arrays["R"][i], arrays["t"][i])
            pixels, depth = camera.project(arrays["joints_3d"][i].astype(np.float64))
            assert np.abs(pixels - arrays["joints_2d"][i]).max() < 1e-3
            assert np.allclose(camera.world_to_camera(arrays["joints_3d"][i]), arrays["joints_cam"][i], atol=1e-5)
            assert (depth > 0).all()
            box = arrays["bbox"][i]
            assert 0 < box[2] - box[0] <= 65 and 0 < box[3] - box[1] <= 65
        # the camera-frame SMPL parameters pose the body where the camera sees it
        as_tensor = lambda name: torch.as_tensor(arrays[name])  # noqa: E731
        in_camera = posed_joints(body.model, as_tensor("global_orient_cam"), as_tensor("body_pose"), as_tensor("betas"),
                                 as_tensor("transl_cam"))
        assert np.allclose(in_camera.numpy(), arrays["joints_cam"], atol=1e-4)
        in_world = posed_joints(body.model, as_tensor("global_orient"), as_tensor("body_pose"), as_tensor("betas"),
                                as_tensor("transl"))
        assert np.allclose(in_world.numpy(), arrays["joints_3d"], atol=1e-4)
        if kind == "multiview":
            assert np.allclose(arrays["joints_3d"], arrays["joints_3d"][:1])  # one instant
            assert len({tuple(np.round(r, 6).ravel()) for r in arrays["R"]}) == unit.views  # different cameras
        if kind == "video":
            assert [r["frame"] for r in records] == list(unit.frames)
            assert len({r["background"] for r in records}) == 1 and len({r["colouring"] for r in records}) == 1


def test_rendering_is_deterministic_per_unit(motion_dir, body):
    table, motions = _table_and_motions(motion_dir)
    unit = plan_units(table, motions, SIZES, seed=0)[0]
    first = render_unit(unit, body, RenderSettings(image_size=64))[0]
    second = render_unit(unit, body, RenderSettings(image_size=64))[0]
    assert np.array_equal(first["image"], second["image"]) and np.array_equal(first["R"], second["R"])


def test_shard_writer_index_and_loading_order(tmp_path, motion_dir, body):
    table, motions = _table_and_motions(motion_dir)
    units = plan_units(table, motions, SIZES, seed=0)[:5]
    writer = ShardWriter(tmp_path, shard_size=2)
    records = []
    for unit in units:
        for record in render_unit(unit, body, RenderSettings(image_size=32)):
            writer.add(unit.set_name, unit.clip_id, unit.sequence, record)
            records.append(record)
    index = writer.close()
    save_parquet(tmp_path / "index.parquet", index)
    assert list(index["shard"]) == ["train/train_0000.npz"] * 2 + ["train/train_0001.npz"] * 2 + ["train/train_0002.npz"]
    assert list(index["row"]) == [0, 1, 0, 1, 0]
    rows, arrays = load_image_set(tmp_path, "train", ["image", "joints_2d"])
    assert list(rows["image_id"]) == [f"train_{i:06d}" for i in range(5)]
    assert all(np.array_equal(arrays["image"][i], records[i]["image"]) for i in range(5))
    with pytest.raises(ArtifactError, match="no image of set 'video'"):
        load_image_set(tmp_path, "video")
    with pytest.raises(ArtifactError, match="unknown field"):
        read_shard(tmp_path / "train/train_0000.npz", ["nonsense"])
    broken = dict(read_shard(tmp_path / "train/train_0000.npz"))
    broken["joints_2d"] = broken["joints_2d"][:, :10]
    with pytest.raises(ArtifactError, match="field 'joints_2d' has shape"):
        check_shard_arrays(broken, "broken")


def test_keypoint_drawing_and_sheet_shapes():
    image = np.zeros((32, 32, 3), np.uint8)
    keypoints = np.random.default_rng(0).uniform(0, 31, (24, 2))
    drawn = draw_keypoints(image, keypoints, np.arange(24) % 2 == 0, scale=2)
    assert drawn.shape == (64, 64, 3) and drawn.any()
    assert contact_sheet([drawn] * 3, columns=2, gap=4).shape == (2 * 68 + 4, 2 * 68 + 4, 3)
    with pytest.raises(ArtifactError, match="keypoints"):
        draw_keypoints(image, keypoints[:5])


# ---------------------------------------------------------------------------------- the stage
def _params(tmp_path: Path, name: str = "params.yaml", **overrides) -> Path:
    render = {
        "seed": 0, "workers": 1, "image_size": 48, "shard_size": 4, "train_images": 6, "val_images": 2,
        "test_images": 3, "multiview_instants": 1, "multiview_views": 2, "video_sequences": 1, "video_frames": 4,
        "focal_range": [1.0, 2.5], "elevation_range": [-10, 35], "fill_range": [0.6, 0.95], "offcentre": 0.1,
        "occluder_probability": 0.3, "video_occluders": False, "video_orbit_deg_per_s": 10.0, "sheet_columns": 4,
    }
    render.update(overrides)
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"body": {"model_path": str(BODY)}, "render": render}))
    return path


def _render(tmp_path: Path, motion_dir: Path, params: Path, out: str = "images"):
    return CliRunner().invoke(_stage("render"), [
        "--params", str(params), "--motions", str(motion_dir / "raw/motions.npz"),
        "--clips", str(motion_dir / "raw/clips.parquet"), "--split-index", str(motion_dir / "hml/index.parquet"),
        "--out-dir", str(tmp_path / out), "--report-dir", str(tmp_path / "report"),
        "--metrics", str(tmp_path / f"{out}.json")], catch_exceptions=False)


def test_render_stage_writes_sets_by_split_and_does_not_depend_on_workers(tmp_path, motion_dir):
    result = _render(tmp_path, motion_dir, _params(tmp_path))
    assert result.exit_code == 0, result.output
    index = load_index(tmp_path / "images")
    assert index["set"].value_counts().to_dict() == {"train": 6, "test": 3, "val": 2, "multiview": 2, "video": 4}
    split_of = dict(zip([f"{k:06d}" for k in range(len(SPLITS))], SPLITS))
    assert not any(split_of[c] == "test" for c in index.loc[index["set"].isin(["train", "val"]), "clip_id"])
    assert all(split_of[c] == "train" for c in index.loc[index["set"] == "train", "clip_id"])
    assert all(split_of[c] == "test" for c in index.loc[index["set"].isin(["test", "multiview", "video"]), "clip_id"])
    _, test = load_image_set(tmp_path / "images", "test")
    assert test["image"].shape == (3, 48, 48, 3) and test["image"].dtype == np.uint8
    assert test["joints_2d"].dtype == np.float32 and test["visible"].dtype == bool
    assert (tmp_path / "report/contact_sheet.png").stat().st_size > 1000

    result = _render(tmp_path, motion_dir, _params(tmp_path, "two.yaml", workers=2), out="parallel")
    assert result.exit_code == 0, result.output
    parallel = load_index(tmp_path / "parallel")
    assert parallel.drop(columns=[]).equals(index)
    for shard in sorted(index["shard"].unique()):
        one, two = read_shard(tmp_path / "images" / shard), read_shard(tmp_path / "parallel" / shard)
        assert all(np.array_equal(one[name], two[name]) for name in SHARD_FIELDS)


@pytest.mark.parametrize("overrides, message", [
    ({"fill_range": [0.9, 0.5]}, "fill_range"),
    ({"train_images": -1}, "train"),
    ({"workers": 0}, "render.workers"),
    ({"focal_range": [1.0]}, "render.focal_range"),
    ({"video_frames": 500}, "video sequence"),
])
def test_render_stage_bad_params_give_one_line_and_no_output(tmp_path, motion_dir, overrides, message):
    result = _render(tmp_path, motion_dir, _params(tmp_path, **overrides))
    assert result.exit_code == 2
    assert result.output.startswith("error:") and result.output.count("\n") == 1 and message in result.output
    assert not (tmp_path / "images").exists() and not (tmp_path / "images.json").exists()
    assert not list(tmp_path.glob(".images*"))


def test_render_config_maps_the_section_and_names_a_bad_range():
    values = {"image_size": 64, "focal_range": [1, 2], "elevation_range": [-10, 35], "fill_range": [0.6, 0.95],
              "offcentre": 0.1, "occluder_probability": 0.3, "video_occluders": True, "video_orbit_deg_per_s": 5.0,
              "train_images": 6, "val_images": 2, "test_images": 3, "multiview_instants": 1, "multiview_views": 2,
              "video_sequences": 1, "video_frames": 4}
    settings, sizes = render_config(values, 30.0, "p.yaml")
    assert settings == RenderSettings(image_size=64, focal_range=(1.0, 2.0), elevation_range=(-10.0, 35.0),
                                      fill_range=(0.6, 0.95), offcentre=0.1, occluder_probability=0.3,
                                      video_occluders=True, video_orbit_deg_per_s=5.0, fps=30.0)
    assert type(settings.focal_range[0]) is float
    assert sizes == SetSizes(train=6, val=2, test=3, multiview_instants=1, multiview_views=2, video_sequences=1,
                             video_frames=4)
    for bad in ([1.0], [1.0, "2"], [True, 2.0]):
        with pytest.raises(ArtifactError) as caught:
            render_config({**values, "fill_range": bad}, 20.0, "p.yaml", "images")
        assert str(caught.value) == f"p.yaml: parameter 'images.fill_range' must be a list of two numbers, got {bad!r}"


def test_sets_must_follow_the_clip_splits_and_metrics_count_them():
    table = pd.DataFrame({"clip_id": ["a", "b", "c"], "split": ["train", "val", "test"]})
    index = pd.DataFrame({"set": ["train", "val", "test", "multiview", "video"], "clip_id": ["a", "b", "c", "c", "c"],
                          "occluded": [True, False, False, False, True], "background": ["sky", "room", "sky", "sky", "sky"],
                          "colouring": ["parts", "clothes", "clothes", "clothes", "clothes"]})
    check_sets_follow_splits(index, table)
    for set_name in ("val", "multiview"):
        leaking = index.assign(clip_id=np.where(index["set"] == set_name, "a", index["clip_id"]))
        with pytest.raises(ArtifactError, match=rf"set\(s\) \['{set_name}'\] hold clips of another split"):
            check_sets_follow_splits(leaking, table)
    rendered = RenderedSets(index, np.array([100.0, 80.0, 60.0]), 2.0, np.zeros((4, 4, 3), np.uint8))
    assert render_metrics(rendered, 64, 2) == {
        "image_size": 64, "images": 5, "images_per_set": {"train": 1, "val": 1, "test": 1, "multiview": 1, "video": 1},
        "render_seconds": 2.0, "render_images_per_s": 2.5, "workers": 2, "occluded_fraction": 0.4,
        "joints_in_image_fraction": 0.8, "joints_visible_fraction": 0.6, "backgrounds": {"room": 1, "sky": 4},
        "colourings": {"clothes": 4, "parts": 1}}


def test_render_stage_rejects_motion_files_that_disagree(tmp_path, motion_dir):
    broken = tmp_path / "motion"
    (broken / "raw").mkdir(parents=True)
    (broken / "hml").mkdir()
    with np.load(motion_dir / "raw/motions.npz", allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["betas"] = arrays["betas"][:3]
    save_npz(broken / "raw/motions.npz", arrays)
    for name in ("raw/clips.parquet", "hml/index.parquet"):
        (broken / name).write_bytes((motion_dir / name).read_bytes())
    result = _render(tmp_path, broken, _params(tmp_path))
    assert result.exit_code == 2 and "betas" in result.output and not (tmp_path / "images").exists()
