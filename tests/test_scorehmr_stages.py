"""ScoreHMR's stage logic on small synthetic sets (humandiff.scorehmr.data / training / run / report).

The stages themselves run in the smoke pipeline (tests/test_pipeline_e2e.py) and the bad-input
catalogue (tests/test_bad_inputs.py); these tests build a set by hand (the body model posed with
random poses, projected through a pinhole camera) and check the pieces in seconds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from humandiff.body.model import load_body_model
from humandiff.io.artifacts import ArtifactError
from humandiff.perception.model import project_camera_points, smpl_joints_from_rotations
from humandiff.scorehmr.data import SetData, body_joints_np, features, joint_metrics, regression_start, truth_pose
from humandiff.scorehmr.model import pose_to_rotations
from humandiff.scorehmr.report import findings, metrics_json, report_markdown
from humandiff.scorehmr.run import METHODS, run_method, run_record, run_settings
from humandiff.scorehmr.training import (DenoiserSettings, PoseFeatureDataset, fit_denoiser, load_denoiser, save_denoiser,
                                         train_gmm)
from humandiff.train.loop import LoopConfig

BODY = "data/body/anny_smpl_neutral.npz"
PARAMS = {"seed": 0, "threads": 1, "max_units": {"fit": 0, "multiview": 0, "video": 0},
          "losses": {"fit": ["repr"], "multiview": ["mv"], "video": ["repr", "temp"]},
          "fit": {"max_iterations": 1, "tau": 4}, "multiview": {"max_iterations": 1, "tau": 20}, "video": {"max_iterations": 1, "tau": 4},
          "smplify": {"fit": {"steps": 2}, "multiview": {"steps": 2}, "video": {"steps": 2}},
          "sweep": {"step_4": {"ddim_step": 4}}}


@pytest.fixture(scope="module")
def body_model():
    return load_body_model(BODY)


def synthetic_set(body_model, name: str, units: int, per_unit: int, seed: int = 0) -> SetData:
    """``units`` groups of ``per_unit`` rows: true poses near rest, a noisy "regression", keypoints
    projected from the truth 3 m in front of a 128 px camera."""
    rng = np.random.default_rng(seed)
    n = units * per_unit
    body_pose = (0.2 * rng.standard_normal((n, 69))).astype(np.float32)
    orient = np.tile(np.array([np.pi, 0, 0], np.float32), (n, 1)) + 0.1 * rng.standard_normal((n, 3)).astype(np.float32)
    betas = np.zeros((n, 10), np.float32)
    truth = {"global_orient_cam": orient, "body_pose": body_pose, "betas": betas}
    pose = truth_pose(SetData(name, {}, truth, pd.DataFrame(), np.zeros(n), None))  # type: ignore[arg-type]
    transl = np.tile(np.array([0.0, 0.0, 3.0], np.float32), (n, 1))
    with torch.no_grad():
        joints = smpl_joints_from_rotations(body_model, pose_to_rotations(pose), torch.from_numpy(betas))
    intrinsics = np.tile(np.array([200.0, 200.0, 64.0, 64.0]), (n, 1))
    keypoints = project_camera_points(joints + torch.from_numpy(transl)[:, None], torch.from_numpy(intrinsics).float())
    noisy = pose + 0.05 * torch.randn(pose.shape, generator=torch.Generator().manual_seed(seed))
    extraction = {"image_id": np.array([f"{name}_{i:04d}" for i in range(n)]), "intrinsics": intrinsics,
                  "keypoints": keypoints.numpy().astype(np.float32), "confidence": np.full((n, 24), 0.9, np.float32),
                  "feature": rng.standard_normal((n, 8)).astype(np.float32),
                  "pose_6d": noisy.numpy().reshape(n, 24, 6).astype(np.float32), "betas": betas,
                  "cam": np.tile(np.array([0.5, 0.0, 0.0], np.float32), (n, 1)), "transl": transl + 0.05,
                  "image_size": np.array(128)}
    truth["joints_cam"] = (joints.numpy() + transl[:, None]).astype(np.float32)
    groups = np.repeat(np.arange(units), per_unit)
    rows = pd.DataFrame({"image_id": extraction["image_id"], "sequence": groups, "frame": np.tile(np.arange(per_unit), units),
                         "fps": 20.0})
    return SetData(name, extraction, truth, rows, groups if per_unit > 1 else np.arange(n), None)  # type: ignore[arg-type]


def test_run_settings_names_the_parameter():
    with pytest.raises(ArtifactError, match="unknown setting 'panorama'"):
        run_settings(PARAMS, "panorama", "scorehmr")
    with pytest.raises(ArtifactError, match="unknown method"):
        run_settings(PARAMS, "fit", "prohmr")
    with pytest.raises(ArtifactError, match="'scorehmr.losses.fit'"):
        run_settings(PARAMS | {"losses": {**PARAMS["losses"], "fit": ["chamfer"]}}, "fit", "scorehmr")
    with pytest.raises(ArtifactError, match="'scorehmr.losses.fit'"):
        run_settings(PARAMS | {"losses": {**PARAMS["losses"], "fit": ["mv"]}}, "fit", "scorehmr")
    with pytest.raises(ArtifactError, match="'scorehmr.smplify.video'.*steps"):
        run_settings(PARAMS | {"smplify": {**PARAMS["smplify"], "video": {"steps": 0}}}, "video", "smplify")
    with pytest.raises(ArtifactError, match="'scorehmr.sweep.nope' is missing"):
        run_settings(PARAMS, "fit", "scorehmr", "nope")
    sweep = run_settings(PARAMS, "fit", "scorehmr", "step_4")
    assert sweep.options == {"max_iterations": 1, "tau": 4, "ddim_step": 4} and sweep.run_name == "scorehmr_step_4"


def test_metrics_are_zero_for_the_truth_and_follow_the_protocol(body_model):
    data = synthetic_set(body_model, "video", 2, 6)
    exact = data.truth["joints_cam"].astype(np.float64)
    metrics = joint_metrics(exact, data, fps=20.0)
    assert metrics["pa_mpjpe_lsp14_mm"] == 0 and metrics["mpjpe_mm"] == 0 and metrics["accel_error"] == 0
    shifted = exact + np.array([0.0, 0.1, 0.0])  # a translation: no pose error
    assert joint_metrics(shifted, data)["mpjpe_mm"] == 0
    jitter = exact.copy()
    jitter[1::2, 1:] += 0.001  # 1 mm back and forth on odd frames (the pelvis still: it is aligned away)
    result = joint_metrics(jitter, data, fps=20.0)
    assert result["accel_error_mm_per_frame2"] > 0 and result["accel_error"] == pytest.approx(400 * result["accel_error_mm_per_frame2"], rel=1e-2)


def test_the_regression_start_reproduces_the_extraction(body_model):
    data = synthetic_set(body_model, "test", 4, 1)
    start = regression_start(data)
    assert start["pose"].shape == (4, 144) and torch.equal(start["camera"], torch.from_numpy(data.extraction["transl"]))
    assert features(data, "pooled").shape == (4, 8) and features(data, "regression").shape == (4, 144 + 10 + 3)
    with pytest.raises(ArtifactError, match="unknown feature source"):
        features(data, "tokens")


def test_training_is_seeded_and_its_model_round_trips(tmp_path):
    poses = torch.randn(32, 144)
    feats = torch.randn(32, 8)
    loop = LoopConfig(steps=3, batch_size=8, lr=1e-3, ema_decay=0.995)
    settings = DenoiserSettings(hidden_dim=16)
    runs = [fit_denoiser(PoseFeatureDataset(poses, feats), settings, loop, checkpoint_file=None, fingerprint={}) for _ in range(2)]
    first, second = (r.ema.state_dict() for r in runs)
    assert all(torch.equal(first[k], second[k]) for k in first)
    save_denoiser(tmp_path / "model.pt", runs[0].ema, {"feature": "pooled"})
    model, extra = load_denoiser(tmp_path / "model.pt")
    assert extra == {"feature": "pooled"} and not model.training
    assert all(torch.equal(model.state_dict()[k], first[k]) for k in first)


@pytest.mark.parametrize("setting, units, per_unit", [("fit", 6, 1), ("multiview", 3, 2), ("video", 2, 5)])
def test_every_method_runs_on_a_setting_and_keeps_the_shapes(body_model, setting, units, per_unit):
    data = synthetic_set(body_model, setting, units, per_unit)
    torch.manual_seed(0)
    denoiser = fit_denoiser(PoseFeatureDataset(truth_pose(data), torch.from_numpy(features(data, "pooled"))),
                            DenoiserSettings(hidden_dim=16), LoopConfig(steps=2, batch_size=4, lr=1e-3),
                            checkpoint_file=None, fingerprint={}, device="cpu").ema.eval()
    prior = train_gmm(synthetic_set(body_model, "train", 24, 1, seed=1), 2, 0)
    for method in METHODS:
        settings = run_settings(PARAMS, setting, method)
        output = run_method(settings, data, body_model, denoiser=denoiser, prior=prior)
        arrays, record, timing = run_record(settings, data, body_model, output)
        assert timing["images"] == len(data) and "seconds" not in record
        assert arrays["pose"].shape == (len(data), 144) and arrays["camera"].shape == (len(data), 3)
        assert np.isfinite(arrays["pose"]).all()
        assert {"pa_mpjpe_lsp14_mm", "pa_mpjpe_mm", "mpjpe_mm"} <= set(record["metrics"])
        assert ("accel_error" in record["metrics"]) == (setting == "video")
        if method == "regression":
            assert record["metrics"] == joint_metrics(body_joints_np(body_model, output.pose, output.betas), data,
                                                      20.0 if setting == "video" else None)
        if method == "scorehmr":
            assert record["iterations_mean"] == 1 and "history_total" in arrays


def _record(pa: float, mpjpe: float, accel: float | None = None) -> dict:
    metrics = {"pa_mpjpe_lsp14_mm": pa, "pa_mpjpe_mm": pa + 10, "mpjpe_mm": mpjpe, "images": 10}
    if accel is not None:
        metrics |= {"accel_error": accel, "accel_error_mm_per_frame2": accel / 400}
    return {"metrics": metrics, "seconds": 1.0, "frames_per_s": 10.0}


def test_the_report_gathers_the_keys_and_the_findings():
    runs = {"fit": {"regression": _record(60, 90), "smplify": _record(62, 95), "scorehmr": _record(55, 88)},
            "multiview": {"regression": _record(60, 90), "smplify": _record(58, 85), "scorehmr": _record(57, 80)},
            "video": {"regression": _record(60, 90, 8000), "smplify": _record(59, 90, 5000), "scorehmr": _record(61, 90, 3000)}}
    records = {"runs": runs, "sweep": {v: _record(56, 88) for v in ("tau_100", "tau_200", "step_4", "step_10")},
               "ablation": {f"{f}-{t}": _record(57, 89) | {"steps": 10} for f in ("pooled", "regression") for t in ("gt", "pseudo")}}
    metrics = metrics_json(records)
    assert set(metrics["fit"]["regression"]) == set(METHODS) and set(metrics["video"]["scorehmr"]) >= {"accel_error"}
    found = findings(runs)
    assert found["fit_pa_below_regression"] and found["fit_pa_below_smplify"] and found["multiview_mpjpe_below_regression"]
    assert found["video_accel_below_regression"] and found["video_accel_below_smoothing"]
    assert not found["video_pa_not_worse_than_regression"] and "61" in found["text"]["video_pa_not_worse_than_regression"]
    text = report_markdown(metrics, records, {"feature": "pooled"}, {}, {"fit": "scorehmr/fit.png"})
    for heading in ("Table 1", "Table 2", "Table 3", "Table 4", "Supplementary C", "Findings", "Protocol"):
        assert f"## {heading}" in text
    assert "51.1" in text and "![fit](scorehmr/fit.png)" in text  # the paper's HMR 2.0 + ScoreHMR-b, the picture
