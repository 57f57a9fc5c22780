"""DNO task specs (generators, Parquet round trip, one-line errors, resolution, batching), DNO's
metrics (known answers) and the dno_tasks / dno / report_dno stages on a tiny corpus and prior."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch
import yaml
from click.testing import CliRunner

from humandiff.dno.metrics import (
    content_labels,
    content_preservation,
    fid_scorer,
    mpjpe_cm,
    objective_error,
    obstacle_clearance,
    realism,
    summary,
    task_metrics,
)
from humandiff.dno.report import findings, paper_numbers
from humandiff.io import ArtifactError, save_npz, save_parquet
from humandiff.dno.tasks import (
    COLUMNS,
    JOINT_SETS,
    SCHEMA,
    Task,
    EditAction,
    align_after,
    collate_tasks,
    control_tasks,
    default_row,
    edit_tasks,
    load_tasks,
    parse_tasks,
    refine_tasks,
    resolve_task,
    save_tasks,
    task_criterion,
    tasks_frame,
)
from humandiff.evaluators.evaluator import EvaluatorConfig, MatchingEvaluator, save_evaluator
from humandiff.prior.mdm import MDMConfig, MotionDiffusionModel, save_mdm
from humandiff.motion.hml3d import HML_PARENTS, HML_RAW_OFFSETS, feature_mean_std, joints_to_features, offsets_from_rest_joints
from script_loader import load_script

REPO = Path(__file__).resolve().parents[1]
ACTIONS = [EditAction("jumping", "a person jumps up and down twice.", "jump"),
           EditAction("crawling", "a person crawls forward on hands and knees.", "crawl", 1.0)]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def standing_joints(frames: int, rng: np.random.Generator, speed: float | None = None) -> np.ndarray:
    """A plausible walking-ish skeleton (frames, 22, 3): rest pose from HumanML3D's bone directions,
    legs and arms swinging, moving along +z at ``speed`` m/frame (random in [0, 0.06) by default)
    with a random sideways drift, so that root velocities vary across clips as in real data."""
    lengths = np.array([0, .1, .1, .12, .4, .4, .14, .4, .4, .06, .12, .12, .2, .1, .1, .1, .12, .12, .26, .26, .24, .24])
    rest = np.zeros((22, 3))
    for j in range(1, 22):
        rest[j] = rest[HML_PARENTS[j]] + HML_RAW_OFFSETS[j] * lengths[j]
    rest[:, 1] -= rest[:, 1].min()  # feet on the floor
    t = np.arange(frames)
    joints = np.repeat(rest[None], frames, 0)
    phase = rng.uniform(0, 2 * np.pi)
    swing = 0.15 * np.sin(0.3 * t + phase)
    for j, sign in ((4, 1), (7, 1), (10, 1), (5, -1), (8, -1), (11, -1), (18, -1), (20, -1), (19, 1), (21, 1)):
        joints[:, j, 2] += sign * swing * (1.0 if j in (7, 8, 10, 11, 20, 21) else 0.5)
    speed = rng.uniform(0.0, 0.06) if speed is None else speed
    joints[:, :, 2] += speed * t[:, None]
    joints[:, :, 0] += rng.uniform(-0.02, 0.02) * t[:, None]
    return joints


def write_corpus(folder: Path, clips: int = 12, seed: int = 0) -> Path:
    """A tiny corpus in the pipeline's format under ``folder``: hml/{index.parquet, features.npz,
    mean_std.npz}, embeddings.parquet (with the edit captions), and a tiny untrained prior in mdm/."""
    rng = np.random.default_rng(seed)
    rows, features = [], []
    splits = ["train", "test", "val", "test"] * (clips // 4) + ["test"] * (clips % 4)
    for k in range(clips):
        joints = standing_joints(int(rng.integers(50, 90)), rng)
        offsets = offsets_from_rest_joints(joints[0])
        clip_features, _ = joints_to_features(joints, offsets)
        features.append(clip_features)
        rows.append({"clip_id": f"{k:06d}", "source_id": f"{k:06d}", "split": splits[k], "length": len(clip_features),
                     "captions": [f"a person walks forward {k}", "someone walks", "a human walks ahead"],
                     "actions": ["walk"], "mirror": False})
    hml = folder / "hml"
    save_parquet(hml / "index.parquet", pd.DataFrame(rows))
    flat = np.concatenate(features).astype(np.float32)
    save_npz(hml / "features.npz", {"features": flat, "offsets": np.concatenate([[0], np.cumsum([len(f) for f in features])])})
    mean, std = feature_mean_std(features)
    save_npz(hml / "mean_std.npz", {"mean": mean, "std": std, "eval_mean": mean, "eval_std": std})
    captions = sorted({c for r in rows for c in r["captions"]} | {a.caption for a in ACTIONS} | {"a person walks in a line."})
    vectors = rng.standard_normal((len(captions), 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    save_parquet(folder / "embeddings.parquet", pd.DataFrame({"caption": captions, "embedding": list(vectors)}))
    config = MDMConfig(latent_dim=32, num_layers=1, num_heads=2, ff_dim=64, dropout=0.0, diffusion_steps=50)
    torch.manual_seed(seed)
    save_mdm(folder / "mdm" / "model.pt", folder / "mdm" / "config.json", MotionDiffusionModel(config).state_dict(), config)
    tiny = EvaluatorConfig(conv_channels=8, motion_hidden=8, text_hidden=8, embed_dim=4)
    save_evaluator(folder / "evaluator.pt", MatchingEvaluator(tiny, mean, std))
    return folder


def load_stage(name: str):
    return load_script("stages", name)


# ------------------------------------------------------------------------------------------ generators


def test_edit_tasks_follow_the_papers_protocol():
    rows = edit_tasks(ACTIONS, 16, 120, seed=3)
    assert len(rows) == 32
    frame = tasks_frame(rows)
    assert frame["task_id"].is_unique
    for row in rows:
        assert row["init"] == "invert" and row["target_joints"] == [0] and row["target_axes"] == "xz"
        assert 60 <= row["target_frames"][0] <= 90
        dx, dy, dz = row["target_xyz"]
        assert abs(dx) <= 2 and abs(dz) <= 2 and dy == 0
    # one input motion per action, shared by its 16 edits
    assert len({(tuple(r["source_ref"]), tuple(r["source_seed"])) for r in rows}) == 2
    assert edit_tasks(ACTIONS, 16, 120, seed=3) == rows
    with pytest.raises(ArtifactError, match="keyframes"):
        edit_tasks(ACTIONS, 2, 80, seed=0)


def test_refine_tasks_use_the_papers_joint_sets():
    assert JOINT_SETS["six_joints"] == (0, 15, 20, 21, 7, 8)
    assert set(JOINT_SETS["eight_joints"]) == set(JOINT_SETS["six_joints"]) | {16, 17}
    assert set(JOINT_SETS["ten_joints"]) == set(JOINT_SETS["eight_joints"]) | {4, 5}
    rows = refine_tasks([("000001", 80), ("000002", 60)], list(JOINT_SETS), 0.05, seed=1)
    assert len(rows) == 8
    assert {r["kind"] for r in rows} == {"refine", "complete"}
    same_clip = [r for r in rows if r["source_ref"] == ["000001"]]
    assert len({r["noise_seed"] for r in same_clip}) == 1  # one noise draw per clip across settings
    with pytest.raises(ArtifactError, match="unknown joint set"):
        refine_tasks([("a", 50)], ["seven_joints"], 0.05, seed=0)


# -------------------------------------------------------------------------------- Parquet round trip


def test_task_table_round_trips_through_parquet(tmp_path):
    rows = edit_tasks(ACTIONS, 2, 100, seed=0) + refine_tasks([("000003", 70)], ["all_joints"], 0.01, 0, "ablate")
    rows += control_tasks("a person walks.", 100, 0, [("000004", 60), ("000005", 40), ("000006", 45)], np.zeros((22, 3)))
    path = tmp_path / "tasks.parquet"
    save_tasks(path, tasks_frame(rows))
    loaded = load_tasks(path)
    assert [t.task_id for t in loaded] == [r["task_id"] for r in rows]
    original = {r["task_id"]: r for r in rows}
    for task in loaded:
        row = task.to_row()
        for key, value in original[task.task_id].items():
            if isinstance(value, float) and math.isnan(value):
                assert math.isnan(row[key])
            else:
                assert row[key] == pytest.approx(value) if isinstance(value, float) else row[key] == value, key
    assert [t.task_id for t in load_tasks(path, "ablate")] == ["ablate/all_joints/000003"]
    with pytest.raises(ArtifactError, match="no task of family 'refine'"):
        load_tasks(path, "refine")


@pytest.mark.parametrize("change, message", [
    ({"target_xyz": [1.0, 2.0]}, "field 'target_xyz' has 2 numbers, expected 3 per target"),
    ({"family": "edits"}, "field 'family' must be one of"),
    ({"target_joints": [22]}, "field 'target_joints' entries must lie in"),
    ({"target_frames": [500]}, "field 'target_frames' entries must lie in"),
    ({"source_seed": [1, 2]}, "field 'source_seed' has 2 entries for 1 source"),
    ({"init": "random"}, "field 'init' must be one of"),
    ({"obstacle_radius": [0.3]}, "field 'obstacle_xz' has 0 numbers"),
    ({"noise_std": -0.1}, "field 'noise_std' must be a finite number >= 0"),
    ({"content_weight": -1.0}, "field 'content_weight' must be a finite number >= 0"),
    ({"target_joints": [], "target_frames": [], "target_xyz": []}, "no observation, target or obstacle"),
    ({"content_rule": "dance"}, "field 'content_rule' must be one of"),
])
def test_bad_specs_give_a_one_line_error_naming_the_task_and_field(tmp_path, change, message):
    row = edit_tasks(ACTIONS[:1], 1, 100, seed=0)[0]
    row.update(change)
    with pytest.raises(ArtifactError, match=message) as info:
        tasks_frame([row], "my_tasks.parquet")
    text = str(info.value)
    assert "\n" not in text and "my_tasks.parquet" in text and "edit/jumping/00" in text


def test_bad_task_files_are_refused(tmp_path):
    rows = edit_tasks(ACTIONS, 1, 100, seed=0)
    frame = tasks_frame(rows)
    with pytest.raises(ArtifactError, match="duplicate"):
        tasks_frame(rows + rows[:1])
    broken = tmp_path / "broken.parquet"
    frame.drop(columns=["target_axes"]).to_parquet(broken)
    with pytest.raises(ArtifactError, match="missing column.*target_axes"):
        load_tasks(broken)
    garbage = tmp_path / "garbage.parquet"
    garbage.write_text("not parquet")
    with pytest.raises(ArtifactError, match="cannot read as Parquet"):
        load_tasks(garbage)
    with pytest.raises(ArtifactError, match="file not found"):
        load_tasks(tmp_path / "missing.parquet")


# ----------------------------------------------------------------------------------------- resolution


def test_resolution_anchors_targets_and_obstacles_on_the_input():
    rng = np.random.default_rng(0)
    source = standing_joints(100, rng)
    row = default_row(task_id="t", family="control", kind="hand_target", source_kind=["prior"], source_ref=["x"],
                      source_seed=[0], source_start=[0], source_length=[100],
                      target_joints=[21, 0], target_frames=[50, 10], target_xyz=[0.0, 0.4, 0.3, 1.0, 5.0, -1.0],
                      target_axes="xz", target_anchor="same_joint",
                      obstacle_xz=[0.5, 0.0], obstacle_velocity=[1.0, 0.0], obstacle_radius=[0.3], obstacle_anchor_frame=40)
    task = parse_tasks(tasks_frame([row]))[0]
    resolved = resolve_task(task, [source])
    assert np.allclose(resolved.target_points[0], source[50, 21] + [0.0, 0.4, 0.3])
    assert np.allclose(resolved.target_points[1], source[10, 0] + [1.0, 5.0, -1.0])
    assert resolved.observed[50, 21].tolist() == [True, False, True]  # y not constrained on the ground plane
    assert np.isnan(resolved.targets[50, 21, 1]) and resolved.targets[10, 0, 0] == pytest.approx(source[10, 0, 0] + 1.0)
    assert resolved.observed.any(-1).sum() == 2
    # the moving obstacle passes 0.5 m beside the input's pelvis at the anchor frame, moving at 1 m/s on x
    assert np.allclose(resolved.obstacle_centres[0, 40], source[40, 0, [0, 2]] + [0.5, 0.0])
    assert np.allclose(resolved.obstacle_centres[0, 60] - resolved.obstacle_centres[0, 40], [1.0, 0.0])
    pelvis_row = dict(row, task_id="p", target_anchor="pelvis", target_axes="xyz", target_joints=[21, 15], target_frames=[50, 50])
    task = parse_tasks(tasks_frame([pelvis_row]))[0]
    resolved = resolve_task(task, [source])
    assert np.allclose(resolved.target_points, source[50, 0] + np.array([[0.0, 0.4, 0.3], [1.0, 5.0, -1.0]]))


def test_refinement_noise_is_seeded_and_blends_leave_the_transition_free():
    rng = np.random.default_rng(1)
    a, b = standing_joints(40, rng), standing_joints(30, rng)
    [noisy_task] = parse_tasks(tasks_frame(refine_tasks([("c", 40)], ["six_joints"], 0.05, seed=2)))
    first, second = resolve_task(noisy_task, [a]), resolve_task(noisy_task, [a])
    assert np.array_equal(first.noisy, second.noisy)
    assert abs(float((first.noisy - a).std()) - 0.05) < 0.005
    assert first.observed_pairs.sum() == 40 * 6
    assert np.allclose(first.targets[first.observed], first.noisy[first.observed])
    [blend] = parse_tasks(tasks_frame(control_tasks("w", 100, 0, [("x", 50), ("a", 40), ("b", 30)], np.zeros((22, 3))))[-1:])
    resolved = resolve_task(blend, [a, b])
    assert resolved.clean.shape == (70, 22, 3)
    free = ~resolved.observed_pairs.any(1)
    assert free.sum() == 10 and free[35:45].all()
    # the second clip continues where the first ends, facing its way
    assert np.allclose(resolved.clean[40, 0, [0, 2]], a[-1, 0, [0, 2]])
    turned = align_after(a, b)
    assert np.allclose(np.linalg.norm(np.diff(turned[:, 0, [0, 2]], axis=0), axis=1),
                       np.linalg.norm(np.diff(b[:, 0, [0, 2]], axis=0), axis=1))


def test_collated_batch_criterion_matches_each_task_alone():
    rng = np.random.default_rng(2)
    tasks = parse_tasks(tasks_frame(refine_tasks([("a", 30), ("b", 24)], ["all_joints"], 0.02, seed=0)))
    resolved = [resolve_task(t, [standing_joints(t.length, rng)]) for t in tasks]
    batch = collate_tasks(resolved)
    assert batch.mask.shape == (2, 30) and batch.mask[1].sum() == 24
    mean, std = np.zeros(263, np.float32), np.ones(263, np.float32)
    x0 = torch.randn(2, 30, 263, generator=torch.Generator().manual_seed(0)) * 0.01
    together = task_criterion(batch, mean, std)(x0)["pose"]
    alone = task_criterion(collate_tasks(resolved[1:]), mean, std)(x0[1:, :24])["pose"]
    assert float(together[1]) == pytest.approx(float(alone[0]), rel=1e-5)



def test_collated_batch_moves_every_tensor_to_a_device():
    rng = np.random.default_rng(3)
    tasks = parse_tasks(tasks_frame(refine_tasks([("a", 12)], ["six_joints"], 0.02, seed=0)))
    batch = collate_tasks([resolve_task(tasks[0], [standing_joints(12, rng)])])
    assert batch.to("cpu").targets is batch.targets
    moved = batch.to("meta")
    tensors = [f.name for f in dataclasses.fields(batch) if isinstance(getattr(batch, f.name), torch.Tensor)]
    assert tensors and all(getattr(moved, name).device.type == "meta" for name in tensors)
    assert moved.tasks == batch.tasks


def test_task_table_columns_are_the_task_fields():
    assert COLUMNS == tuple(f.name for f in dataclasses.fields(Task))
    assert SCHEMA.field("source_seed").type == pa.list_(pa.int64()) and SCHEMA.field("noise_std").type == pa.float64()


def test_paper_numbers_come_from_the_package_data():
    quoted = paper_numbers()
    assert quoted.table1["jumping"]["dno"] == (0.95, 0.00, 0.05, 1.31)
    assert quoted.table3["dno_ddim_5"] == ("DDIM 5 steps", (9.8, 0.90, 0.36, 0.09)) and quoted.table3["guided"][1] is None


# --------------------------------------------------------------------------------------------- metrics


def test_content_rules_on_constructed_joints():
    joints = np.zeros((4, 22, 3))
    joints[:, 15, 1] = 1.6  # head
    joints[:, [20, 21], 1] = 1.0  # wrists
    joints[1:3, [10, 11], 1] = 0.2  # both feet up in frames 1, 2
    joints[2, 10, 1] = 0.03  # ... but the left one is down again in frame 2
    assert content_labels(joints, "jump").tolist() == [False, True, False, False]
    joints[3, [20, 21], 1] = 1.8
    assert content_labels(joints, "raised_hands").tolist() == [False, False, False, True]
    joints[0, 15, 1] = 0.5
    assert content_labels(joints, "crawl").tolist() == [True, False, False, False]
    assert content_labels(joints, "crawl", threshold=2.0).all()
    after = joints.copy()
    after[:, [10, 11], 1] = 0.0  # the edit lost the jump of frame 1
    assert content_preservation(joints, after, "jump") == pytest.approx(0.75)
    assert content_preservation(joints, joints, "jump") == 1.0
    with pytest.raises(ArtifactError, match="rule"):
        content_labels(joints, "dance")
    with pytest.raises(ArtifactError, match="frames"):
        content_preservation(joints, joints[:3], "jump")


def test_objective_error_mpjpe_and_clearance_known_answers():
    joints = np.zeros((3, 22, 3))
    joints[2, 0] = [1.0, 0.9, 0.0]
    assert objective_error(joints, [0], [2], np.array([[4.0, 0.0, 4.0]]), "xz") == pytest.approx(5.0)
    assert objective_error(joints, [0], [2], np.array([[1.0, 0.0, 0.0]]), "xyz") == pytest.approx(0.9)
    assert objective_error(joints, [0, 0], [2, 1], np.array([[1.0, 0.9, 0.0], [0.0, 0.0, 2.0]]), "xyz") == pytest.approx(1.0)
    other = joints.copy()
    other[:, 5] += [0.03, 0.0, 0.04]
    assert mpjpe_cm(other, joints) == pytest.approx(5.0 / 22)
    pairs = np.zeros((3, 22), dtype=bool)
    pairs[:, 5] = True
    assert mpjpe_cm(other, joints, pairs) == pytest.approx(5.0)
    centres = np.zeros((1, 3, 2))
    clearance = obstacle_clearance(joints, centres, np.array([0.5]))
    assert clearance["min_distance"] == pytest.approx(-0.5) and clearance["penetration_ratio"] == pytest.approx(1.0)
    assert summary([1.0, 2.0, 9.0, float("nan")]) == {"mean": 4.0, "median": 2.0}
    still = realism(np.repeat(joints[:1], 10, 0))
    assert still == {"foot_skating_ratio": 0.0, "jitter": 0.0}


def test_fid_hook_is_open_without_an_evaluator_and_scores_with_one(tmp_path):
    assert fid_scorer(tmp_path / "missing.pt", [np.zeros((8, 263))] * 2) is None
    corpus = write_corpus(tmp_path, clips=4)
    rng = np.random.default_rng(0)
    clips = [np.load(corpus / "hml/features.npz")["features"][:40] + 0.01 * rng.standard_normal((40, 263)) for _ in range(6)]
    score = fid_scorer(corpus / "evaluator.pt", clips)
    assert score(clips) == pytest.approx(0.0, abs=1e-6)
    assert score([c + 1.0 for c in clips]) > 1e-3
    with pytest.raises(ArtifactError, match="generated clips"):
        score(clips[:1])


def test_task_metrics_pick_what_applies():
    rng = np.random.default_rng(4)
    source = standing_joints(100, rng)
    [edit] = parse_tasks(tasks_frame(edit_tasks(ACTIONS[:1], 1, 100, seed=0)))
    resolved = resolve_task(edit, [source])
    metrics = task_metrics(resolved, source)
    assert metrics["content_preservation"] == 1.0
    assert metrics["objective_error_m"] == pytest.approx(np.linalg.norm(edit.target_xyz[::2]))
    assert math.isnan(metrics["mpjpe_all_cm"]) and math.isnan(metrics["penetration_ratio"])
    [refine] = parse_tasks(tasks_frame(refine_tasks([("c", 100)], ["all_joints"], 0.05, seed=0)))
    resolved = resolve_task(refine, [source])
    noisy = task_metrics(resolved, resolved.noisy)
    # |N(0, s^2 I_3)| has mean s * sqrt(8 / pi)
    assert noisy["mpjpe_observed_cm"] == pytest.approx(5.0 * math.sqrt(8 / math.pi), rel=0.03)
    assert noisy["jitter"] > 10 * task_metrics(resolved, source)["jitter"]


# ---------------------------------------------------------------------------------------------- stages


def write_params(path: Path) -> Path:
    params = {
        "dno_tasks": {
            "seed": 0, "edit_length": 96, "edits_per_action": 2, "keyframes": [60, 90], "target_range": 2.0,
            "actions": [{"name": a.name, "caption": a.caption, "rule": a.rule,
                         "threshold": None if math.isnan(a.threshold) else a.threshold} for a in ACTIONS],
            "control_caption": "a person walks in a line.", "control_length": 96, "blend_frames": 30,
            "blend_transition": 10, "refine_clips": 2, "refine_max_frames": 48, "refine_noise_std": 0.05,
            "refine_settings": ["all_joints", "six_joints"], "ablate_clips": 1, "ablate_max_frames": 40, "ablate_noise_std": 0.01,
        },
        "dno": {
            "seed": 0, "device": "cpu", "threads": 1, "batch_size": 3, "max_tasks": 0, "checkpoint": False, "source_ddim_steps": 3,
            "source_guidance": 2.5,
            "edit": {"steps": 3, "warmup_steps": 1, "ddim_steps": 2, "inversion_steps": 3},
            "refine": {"steps": 3, "warmup_steps": 1, "ddim_steps": 2},
            "guided": {"mode": "xt", "ddim_steps": 3, "scale_edit": 5.0, "scale_refine": 50.0, "text_guidance": 2.5},
            "ablations": {"no_decorr": {"lambda_decorr": 0.0}},
        },
        "report_dno": {"sheet_tasks": 1, "videos": 1, "fid_min_samples": 2},
    }
    path.write_text(yaml.safe_dump(params))
    return path


def test_stages_write_tasks_run_every_method_and_report(tmp_path):
    corpus = write_corpus(tmp_path / "corpus")
    params = write_params(tmp_path / "params.yaml")
    runner = CliRunner()
    common = ["--params", str(params)]
    result = runner.invoke(load_stage("dno_tasks").main, common + ["--hml-dir", str(corpus / "hml"), "--out-dir", str(tmp_path / "dno/tasks")])
    assert result.exit_code == 0, result.output
    assert len(load_tasks(tmp_path / "dno/tasks/edit.parquet")) == 4
    assert len(load_tasks(tmp_path / "dno/tasks/refine.parquet")) == 4

    dno = load_stage("dno")
    paths = ["--tasks-dir", str(tmp_path / "dno/tasks"), "--hml-dir", str(corpus / "hml"), "--embeddings",
             str(corpus / "embeddings.parquet"), "--model-dir", str(corpus / "mdm"), "--out-dir", str(tmp_path / "dno"),
             "--timing-dir", str(tmp_path / "dno_time")]
    for family, method, variant in [("edit", "input", ""), ("edit", "guided", ""), ("edit", "dno", ""),
                                    ("refine", "input", ""), ("refine", "guided", ""), ("refine", "dno", ""),
                                    ("ablate", "input", ""), ("ablate", "dno", ""), ("ablate", "dno", "no_decorr"),
                                    ("control", "input", ""), ("control", "guided", ""), ("control", "dno", "")]:
        args = common + ["--family", family, "--method", method] + (["--variant", variant] if variant else []) + paths
        result = runner.invoke(dno.main, args)
        assert result.exit_code == 0, (family, method, result.output)
        # the run's wall-clock figures go to their own metrics file, never into what report_dno reads
        run = method + (f"_{variant}" if variant else "")
        summary = json.loads((tmp_path / f"dno/{family}/{run}.json").read_text())
        assert not [key for key in summary if "seconds" in key], summary
        assert json.loads((tmp_path / f"dno_time/{family}_{run}.json").read_text())["seconds"] >= 0
    # each guided run records (and reads) the scales of its tasks' start kinds only
    assert set(json.loads((tmp_path / "dno/edit/guided.json").read_text())["guided"]) == {
        "ddim_steps", "scale_edit", "text_guidance", "mode"}
    assert "scale_edit" not in json.loads((tmp_path / "dno/refine/guided.json").read_text())["guided"]
    assert {"scale_edit", "scale_refine"} <= set(json.loads((tmp_path / "dno/control/guided.json").read_text())["guided"])
    edit = pd.read_parquet(tmp_path / "dno/edit/dno.parquet")
    assert len(edit) == 4 and edit["objective_error_m"].notna().all() and edit["inversion_mpjpe_cm"].notna().all()
    assert (pd.read_parquet(tmp_path / "dno/edit/input.parquet")["content_preservation"] == 1.0).all()
    history = np.load(tmp_path / "dno/edit/dno_history.npz")
    assert {"pose", "content", "total", "grad_norm", "lr"} <= set(history.files) and history["total"].shape == (3, 4)
    refine_history = np.load(tmp_path / "dno/refine/dno_history.npz")
    assert "decorr" in refine_history.files
    assert "decorr" not in np.load(tmp_path / "dno/ablate/dno_no_decorr_history.npz").files
    control = pd.read_parquet(tmp_path / "dno/control/dno.parquet").set_index("task_id")
    assert control.loc["control/obstacle_moving", "penetration_ratio"] >= 0
    assert not math.isnan(control.loc["control/blend", "mpjpe_observed_cm"])

    # rerunning gives identical outputs (determinism of a whole stage)
    first = np.load(tmp_path / "dno/refine/dno.npz")["joints"].copy()
    assert runner.invoke(dno.main, common + ["--family", "refine", "--method", "dno"] + paths).exit_code == 0
    assert np.array_equal(first, np.load(tmp_path / "dno/refine/dno.npz")["joints"])

    bad = runner.invoke(dno.main, common + ["--family", "ablate", "--method", "dno", "--variant", "nope"] + paths)
    assert bad.exit_code == 2 and "has no variant 'nope'" in bad.output and bad.output.count("\n") == 1
    bad = runner.invoke(dno.main, common + ["--family", "edit", "--method", "guided", "--variant", "no_decorr"] + paths)
    assert bad.exit_code == 2 and "applies to --method dno only" in bad.output and bad.output.count("\n") == 1
    # each method reads only the options its stage declares: the input method needs no DNO or guided block
    trimmed = yaml.safe_load(params.read_text())
    for key in ("edit", "refine", "ablations", "checkpoint", "guided"):
        trimmed["dno"].pop(key)
    (tmp_path / "trimmed.yaml").write_text(yaml.safe_dump(trimmed))
    inputs_only = ["--params", str(tmp_path / "trimmed.yaml"), "--family", "edit", "--method", "input"]
    assert runner.invoke(dno.main, inputs_only + paths).exit_code == 0
    missing = runner.invoke(dno.main, ["--params", str(tmp_path / "trimmed.yaml"), "--family", "edit", "--method", "guided"] + paths)
    assert missing.exit_code == 2 and "missing parameter 'dno.guided'" in missing.output
    bad_mode = yaml.safe_load(params.read_text())
    bad_mode["dno"]["guided"]["mode"] = "sideways"
    (tmp_path / "bad_mode.yaml").write_text(yaml.safe_dump(bad_mode))
    bad = runner.invoke(dno.main, ["--params", str(tmp_path / "bad_mode.yaml"), "--family", "edit", "--method", "guided"] + paths)
    assert bad.exit_code == 2 and "'dno.guided.mode' must be one of xt, x0, eps" in bad.output and bad.output.count("\n") == 1

    report = load_stage("report_dno")
    result = runner.invoke(report.main, common + ["--data-dir", str(tmp_path / "dno"), "--hml-dir", str(corpus / "hml"),
                                                  "--evaluator", str(corpus / "evaluator.pt"),
                                                  "--report", str(tmp_path / "reports/dno.md"),
                                                  "--report-dir", str(tmp_path / "reports/dno"),
                                                  "--metrics", str(tmp_path / "reports/metrics/dno.json")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "reports/metrics/dno.json").read_text())
    assert set(metrics["edit"]) == {"jumping", "crawling"}
    assert set(metrics["edit"]["jumping"]) == {"input", "guided", "dno"}
    assert set(metrics["edit"]["jumping"]["dno"]["objective_error_m"]) == {"mean", "median"}
    assert set(metrics["refine"]["six_joints"]) == {"noisy", "guided", "dno"} and metrics["refine"]["six_joints"]["dno"]["fid"] >= 0
    assert "dno_no_decorr" in metrics["ablate"]
    text = (tmp_path / "reports/dno.md").read_text()
    assert "Table 1" in text and "(paper 0.95)" in text and "Table 2" in text and "Table 3" in text
    assert (tmp_path / "reports/dno/edit_jumping_00.png").is_file()
    assert (tmp_path / "reports/dno/videos/edit_jumping_00.mp4").stat().st_size > 0
    assert (tmp_path / "reports/plots/dno_edit_loss.csv").is_file()
    assert "The paper's findings, checked on this run" in text
    assert metrics["findings"]["checks"] >= 2 and 0 <= metrics["findings"]["hold"] <= metrics["findings"]["checks"]


def _method(content, objective, jitter, skating=0.1):
    return {"content_preservation": content, "objective_error_m": {"median": objective, "mean": objective},
            "jitter": jitter, "foot_skating_ratio": skating}


def test_findings_check_the_papers_claims_against_known_numbers():
    edit = {"jumping": {"input": _method(1.0, 1.6, 2.0), "guided": _method(0.7, 0.3, 4.0), "dno": _method(0.9, 0.01, 2.9)},
            "raised_hands": {"input": _method(1.0, 2.0, 2.0), "guided": _method(1.0, 1.9, 3.0), "dno": _method(0.95, 0.08, 3.1)}}
    refine = {"all_joints": {"noisy": {"mpjpe_cm": 8.0, "foot_skating_ratio": 0.8}, "dno": {"mpjpe_cm": 6.0, "foot_skating_ratio": 0.9}}}
    rows = {(r["finding"], r["case"]): r["holds"] for r in findings(edit, refine)}
    assert rows == {
        ("DNO objective median < 5 cm", "jumping"): True,
        ("DNO objective median < guided's", "jumping"): True,
        ("DNO content >= 0.85", "jumping"): True,
        ("DNO content >= guided's", "jumping"): True,
        ("DNO jitter <= 1.5x the input's", "jumping"): True,          # 1.45x
        ("DNO objective median < 5 cm", "raised_hands"): False,       # 8 cm
        ("DNO objective median < guided's", "raised_hands"): True,
        ("DNO content >= guided's", "raised_hands"): False,           # 0.95 < 1.0; no 0.85 bar on this action
        ("DNO jitter <= 1.5x the input's", "raised_hands"): False,    # 1.55x
        ("DNO MPJPE < the noisy input's", "all_joints"): True,
        ("DNO foot skating ratio < the noisy input's", "all_joints"): False,
    }
    assert findings(None, None) == []
