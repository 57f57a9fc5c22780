"""The perception network (humandiff.perception.model) and its stages (train_perception, extract)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from humandiff.body import load_body_model, posed_joints
from humandiff.geometry.rotations import axis_angle_to_matrix
from humandiff.imaging import SHARD_FIELDS, BodyAssets, RenderSettings, RenderUnit, ShardWriter, render_unit
from humandiff.perception.dataset import TRAINING_FIELDS, PerceptionDataset, colour_jitter
from humandiff.perception.extraction import dequantise_heatmaps, load_extraction, quantise_heatmaps
from humandiff.io import save_parquet
from humandiff.io.artifacts import ArtifactError
from humandiff.perception.model import (
    LossWeights,
    PerceptionConfig,
    PerceptionNet,
    gaussian_heatmaps,
    heatmap_to_image,
    image_to_heatmap,
    load_perception,
    peak_confidence,
    perception_loss,
    refine_peaks,
    sample_pose_distribution,
    save_perception,
    smpl_joints_from_rotations,
    soft_argmax_2d,
    translation_to_weak,
    weak_to_translation,
)
from script_loader import stage_command

REPO = Path(__file__).resolve().parents[1]
BODY = REPO / "data/body/anny_smpl_neutral.npz"
SIZE = 64
TINY = dict(image_size=SIZE, widths=(8, 12, 16, 24, 32), blocks=(1, 1, 1, 1), head_width=12, token_dim=16,
            regressor_width=64, ief_iterations=2)


def _stage(name: str):
    return stage_command(name)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors gain nothing from a second thread, and on a shared machine two threads wait on each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def body_model():
    return load_body_model(BODY)


def _records(body_model, count: int, seed: int) -> list[dict]:
    """``count`` rendered single images of random poses (64 px)."""
    rng = np.random.default_rng(seed)
    body, settings = BodyAssets.from_model(body_model), RenderSettings(image_size=SIZE)
    records = []
    for number in range(count):
        unit = RenderUnit("train", "single", "000000", np.array([number]), 1, -1, (seed, 0, number),
                          global_orient=np.array([[0.0, rng.uniform(-np.pi, np.pi), 0.0]], np.float32),
                          body_pose=rng.normal(0, 0.25, (1, 69)).astype(np.float32),
                          transl=np.zeros((1, 3), np.float32), betas=rng.normal(0, 0.5, 10).astype(np.float32))
        records += render_unit(unit, body, settings)
    return records


@pytest.fixture(scope="module")
def tiny_arrays(body_model) -> dict[str, np.ndarray]:
    records = _records(body_model, 12, 0)
    return {name: np.stack([r[name] for r in records]) for name in SHARD_FIELDS}


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory, body_model) -> Path:
    """A tiny image-set folder: 12 train, 4 val, 6 test images."""
    root = tmp_path_factory.mktemp("images")
    writer = ShardWriter(root, shard_size=5)
    for set_name, count, seed in (("train", 12, 0), ("val", 4, 1), ("test", 6, 2)):
        for record in _records(body_model, count, seed):
            writer.add(set_name, "000000", -1, record)
    save_parquet(root / "index.parquet", writer.close())
    return root


# ---------------------------------------------------------------------------------- heatmap decoding
def test_soft_argmax_and_refined_peak_recover_a_known_subpixel_peak():
    centre = torch.tensor([[[10.3, 7.6], [2.2, 28.7]]])
    maps = gaussian_heatmaps(centre, 32, 32, sigma=1.0)
    assert torch.allclose(maps.sum((-2, -1)), torch.ones(1, 2))
    coords, probs = soft_argmax_2d(torch.log(maps.clamp_min(1e-30)))
    assert torch.allclose(probs, maps, atol=1e-6)
    assert torch.allclose(coords[0, 0], centre[0, 0], atol=0.01)  # far from the border: the expectation is exact
    refined = refine_peaks(maps, window=5)
    assert torch.allclose(refined, centre, atol=0.06)
    # heatmap cell <-> image pixel conversion round-trips (stride 4, pixel-centre convention)
    assert torch.allclose(image_to_heatmap(heatmap_to_image(centre)), centre)
    assert torch.allclose(heatmap_to_image(torch.tensor([0.0, 0.0])), torch.tensor([1.5, 1.5]))


def test_peak_confidence_is_one_for_the_target_and_low_for_a_flat_map():
    target = gaussian_heatmaps(torch.tensor([[[12.0, 9.0]]]), 32, 32, sigma=1.0)
    peaks = refine_peaks(target)
    assert peak_confidence(target, peaks, 1.0).item() == pytest.approx(1.0, abs=1e-3)
    flat = torch.full((1, 1, 32, 32), 1.0 / 1024)
    assert peak_confidence(flat, refine_peaks(flat), 1.0).item() < 0.05


def test_sampling_the_pose_distribution_reads_the_depth_at_the_sampled_cell():
    probs = torch.zeros(1, 2, 8, 8)
    probs[0, 0, 3, 5] = 1.0
    probs[0, 1, 6, 1] = 0.5
    probs[0, 1, 2, 2] = 0.5
    depth = torch.arange(2 * 64, dtype=torch.float32).reshape(1, 2, 8, 8)
    poses = sample_pose_distribution(probs, depth, 200, torch.Generator().manual_seed(0))
    assert poses.shape == (1, 200, 2, 3)
    assert torch.equal(poses[0, :, 0], torch.tensor([5.0, 3.0, float(depth[0, 0, 3, 5])]).expand(200, 3))
    second = {tuple(p.tolist()) for p in poses[0, :, 1]}
    assert second == {(1.0, 6.0, float(depth[0, 1, 6, 1])), (2.0, 2.0, float(depth[0, 1, 2, 2]))}


def test_heatmap_quantisation_round_trip():
    maps = gaussian_heatmaps(torch.rand(3, 24, 2) * 31, 32, 32, 1.0).numpy()
    quantised, maxima = quantise_heatmaps(maps)
    assert quantised.dtype == np.uint8 and quantised.max() == 255
    assert np.abs(dequantise_heatmaps(quantised, maxima) - maps).max() < 2e-3


def test_packed_extraction_round_trip_and_missing_fields(tmp_path):
    from humandiff.perception.extraction import pack_predictions, save_extraction

    rng = np.random.default_rng(0)
    heatmaps = gaussian_heatmaps(torch.rand(2, 24, 2) * 15, 16, 16, 1.0).numpy()
    depth_maps = rng.uniform(-0.5, 0.5, (2, 24, 16, 16)).astype(np.float32)
    predictions = {"keypoints": rng.normal(size=(2, 24, 2)), "confidence": rng.uniform(size=(2, 24)),
                   "heatmaps": heatmaps, "depth_maps": depth_maps, "depth": rng.normal(size=(2, 24)),
                   "feature": rng.normal(size=(2, 32)), "tokens": rng.normal(size=(2, 16, 16)),
                   "pose_6d": rng.normal(size=(2, 24, 6)), "global_orient": rng.normal(size=(2, 3)),
                   "body_pose": rng.normal(size=(2, 69)), "betas": rng.normal(size=(2, 10)), "cam": rng.normal(size=(2, 3)),
                   "transl": rng.normal(size=(2, 3)), "joints_cam": rng.normal(size=(2, 24, 3))}
    packed = pack_predictions(predictions, np.array(["a", "b"]), np.ones((2, 4)), 4, 64)
    save_extraction(tmp_path / "x.npz", packed)
    loaded = load_extraction(tmp_path / "x.npz")
    assert list(loaded["image_id"]) == ["a", "b"] and int(loaded["heatmap_stride"]) == 4
    assert np.abs(loaded["heatmaps"] - heatmaps).max() < 2e-3
    kept = packed["heatmaps_q"] > 0
    assert np.abs(loaded["depth_maps"] - depth_maps)[kept].max() <= 0.005 + 1e-6  # centimetre rounding
    assert (loaded["depth_maps"][~kept] == 0).all() and kept.sum() < kept.size
    del packed["tokens"]
    with pytest.raises(ArtifactError, match="tokens"):
        save_extraction(tmp_path / "y.npz", packed)
    np.savez(tmp_path / "z.npz", **packed)
    with pytest.raises(ArtifactError, match="tokens"):
        load_extraction(tmp_path / "z.npz")


# ---------------------------------------------------------------------------------- geometry
def test_weak_perspective_round_trip():
    cam = torch.tensor([[0.9, 0.1, -0.2], [1.4, 0.0, 0.3]])
    focal = torch.tensor([200.0, 300.0])
    translation = weak_to_translation(cam, focal, 128)
    assert torch.allclose(translation[:, 2], 2 * focal / (128 * cam[:, 0]))
    assert torch.allclose(translation_to_weak(translation, focal, 128), cam)


def test_joints_from_rotation_matrices_match_posed_joints_even_at_a_half_turn(body_model):
    rng = np.random.default_rng(3)
    axis_angle = torch.tensor(rng.normal(0, 0.3, (3, 24, 3)), dtype=torch.float32)
    axis_angle[0, 0] = torch.tensor([np.pi, 0.0, 0.0])  # upright body in a y-down camera
    betas = torch.tensor(rng.normal(0, 1, (3, 10)), dtype=torch.float32)
    transl = torch.tensor(rng.normal(0, 1, (3, 3)), dtype=torch.float32)
    expected = posed_joints(body_model, axis_angle[:, 0], axis_angle[:, 1:].reshape(3, -1), betas, transl)
    got = smpl_joints_from_rotations(body_model, axis_angle_to_matrix(axis_angle), betas, transl)
    assert torch.allclose(got, expected, atol=1e-5)
    rotations = axis_angle_to_matrix(axis_angle).requires_grad_(True)
    smpl_joints_from_rotations(body_model, rotations, betas).sum().backward()
    assert torch.isfinite(rotations.grad).all()


# ---------------------------------------------------------------------------------- the network
def test_network_output_shapes():
    config = PerceptionConfig(**TINY)
    model = PerceptionNet(config).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, SIZE, SIZE))
    assert out["heatmap_logits"].shape == (2, 24, 16, 16) and out["depth_maps"].shape == (2, 24, 16, 16)
    assert out["feature"].shape == (2, 32) and out["tokens"].shape == (2, 16, 16)
    assert out["pose_6d"].shape == (2, 24, 6) and out["betas"].shape == (2, 10) and out["cam"].shape == (2, 3)
    assert (out["cam"][:, 0] > 0).all()
    with pytest.raises(ArtifactError, match="images must have shape"):
        model(torch.rand(2, 3, 32, 32))
    with pytest.raises(ArtifactError, match="image_size"):
        PerceptionConfig(image_size=100)


def test_untrained_regression_starts_upright_in_front_of_the_camera(body_model):
    model = PerceptionNet(PerceptionConfig(**TINY)).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, SIZE, SIZE))
    from humandiff.geometry.rotations import rotation_6d_to_matrix

    joints = smpl_joints_from_rotations(body_model, rotation_6d_to_matrix(out["pose_6d"]), out["betas"])
    assert joints[0, 15, 1] < joints[0, 0, 1]  # head above the pelvis means smaller y in a y-down camera


def test_a_few_training_steps_reduce_the_loss_on_a_tiny_rendered_set(tiny_arrays, body_model):
    torch.manual_seed(0)
    dataset = PerceptionDataset({name: tiny_arrays[name] for name in TRAINING_FIELDS})
    batch = dataset.collate(range(len(dataset)))
    model = PerceptionNet(PerceptionConfig(**TINY))
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    weights = LossWeights()
    losses = []
    for _ in range(12):
        loss, terms = perception_loss(model(batch["images"]), batch, body_model, weights, SIZE)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    assert all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < 0.85 * losses[0]
    assert set(terms) == {"heatmap", "keypoint", "depth", "joints3d", "joints2d", "rotations", "betas"}


def test_evaluation_known_answers(tiny_arrays):
    from humandiff.perception.model import SMPL_MIRROR, evaluate_predictions

    truth = tiny_arrays
    rel_depth = truth["joints_cam"][..., 2] - truth["joints_cam"][:, :1, 2]
    perfect = {"keypoints": truth["joints_2d"].copy(), "joints_cam": truth["joints_cam"] + 0.3, "depth": rel_depth,
               "confidence": np.ones(truth["joints_2d"].shape[:2])}
    metrics = evaluate_predictions(perfect, truth)
    assert metrics["pck_0.05"] == 1.0 and metrics["pck_0.1"] == 1.0 and metrics["keypoint_error_px"] == 0.0
    assert metrics["regression_mpjpe_mm"] == pytest.approx(0.0, abs=1e-3)  # pelvis-aligned: the offset cancels
    assert metrics["regression_pa_mpjpe_mm"] == pytest.approx(0.0, abs=1e-3)
    assert metrics["heatmap_depth_error_mm"] == pytest.approx(0.0, abs=1e-3)
    swapped = dict(perfect, keypoints=truth["joints_2d"][:, list(SMPL_MIRROR)])
    metrics = evaluate_predictions(swapped, truth)
    assert metrics["pck_0.1"] < 1.0 and metrics["swap_share_of_misses_0.1"] == 1.0


def test_colour_jitter_keeps_range_and_is_seeded():
    images = torch.rand(4, 3, 8, 8)
    first = colour_jitter(images, torch.Generator().manual_seed(1), 0.3)
    again = colour_jitter(images, torch.Generator().manual_seed(1), 0.3)
    assert torch.equal(first, again) and first.min() >= 0 and first.max() <= 1
    assert not torch.equal(first, images)
    assert torch.equal(colour_jitter(images, torch.Generator(), 0.0), images)


def test_save_and_load_round_trip(tmp_path):
    model = PerceptionNet(PerceptionConfig(**TINY)).eval()
    save_perception(tmp_path / "p.pt", model, {"sigma": 1.5})
    loaded, extra = load_perception(tmp_path / "p.pt")
    assert extra == {"sigma": 1.5}
    image = torch.rand(1, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.equal(model(image)["pose_6d"], loaded(image)["pose_6d"])
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ArtifactError, match="bad.pt"):
        load_perception(tmp_path / "bad.pt")


# ---------------------------------------------------------------------------------- the stages
def _params(tmp_path: Path, **overrides) -> Path:
    params = {
        "body": {"model_path": str(BODY)},
        "train_perception": {
            "seed": 0, "threads": 1, "device": "cpu", "steps": 4, "batch_size": 4, "lr": 2e-3, "weight_decay": 1e-4, "warmup_steps": 1,
            "lr_decay": "cosine", "grad_clip": 10.0, "ema_decay": 0.9, "checkpoint_every": 2,
            "widths": list(TINY["widths"]), "blocks": list(TINY["blocks"]), "head_width": TINY["head_width"],
            "token_dim": TINY["token_dim"], "regressor_width": TINY["regressor_width"], "ief_iterations": 2,
            "layout_channels": 4, "teacher_fraction": 0.5, "teacher_pixel_noise": 2.0, "teacher_depth_noise": 0.05,
            "colour_jitter": 0.2, "sigma": 1.0, "occluded_weight": 0.5, "w_heatmap": 1.0, "w_keypoint": 1.0,
            "w_depth": 1.0, "w_joints3d": 5.0, "w_joints2d": 0.02, "w_rotations": 1.0, "w_betas": 0.01,
            "eval_batch_size": 8,
        },
        "extract": {"sets": ["val", "test"], "batch_size": 4, "threads": 1, "device": "cpu", "refine_window": 5,
                    "chunk_images": 5, "sheet_images": 4},
    }
    for dotted, value in overrides.items():
        section, key = dotted.split("__")
        params[section][key] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def _train(tmp_path: Path, image_dir: Path, params: Path, *extra: str):
    return CliRunner().invoke(_stage("train_perception"), [
        "--params", str(params), "--images", str(image_dir), "--out", str(tmp_path / "model.pt"),
        "--checkpoint", str(tmp_path / "state.pt"), "--plot", str(tmp_path / "loss.csv"),
        "--metrics", str(tmp_path / "train.json"), *extra], catch_exceptions=False)


def _extract(tmp_path: Path, image_dir: Path, params: Path, model: Path):
    return CliRunner().invoke(_stage("extract"), [
        "--params", str(params), "--images", str(image_dir), "--model", str(model),
        "--out-dir", str(tmp_path / "perception"),
        "--report", str(tmp_path / "perception.md"), "--figure", str(tmp_path / "fig/predictions.png"),
        "--metrics", str(tmp_path / "perception.json")], catch_exceptions=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, image_dir) -> Path:
    tmp = tmp_path_factory.mktemp("train")
    interrupted = _train(tmp, image_dir, _params(tmp), "--stop-at", "2")  # as an interruption would
    assert interrupted.exit_code == 0, interrupted.output
    assert (tmp / "state.pt").is_file() and not (tmp / "model.pt").exists()
    result = _train(tmp, image_dir, _params(tmp))
    assert result.exit_code == 0, result.output
    return tmp


def test_train_stage_writes_model_curve_and_metrics(trained):
    metrics = json.loads((trained / "train.json").read_text())
    assert metrics["steps"] == 4 and metrics["train_images"] == 12 and metrics["val_images"] == 4
    assert metrics["resumed_from"] == 2
    assert 0 <= metrics["val_pck_0.1"] <= 1
    curve = (trained / "loss.csv").read_text().splitlines()
    assert curve[0].startswith("step,loss,heatmap") and len(curve) >= 2
    model, extra = load_perception(trained / "model.pt")
    assert model.config.image_size == SIZE and extra["steps"] == 4


def test_extract_writes_network_outputs_not_ground_truth(tmp_path, trained, image_dir):
    params = _params(tmp_path)
    result = _extract(tmp_path, image_dir, params, trained / "model.pt")
    assert result.exit_code == 0, result.output
    test = load_extraction(tmp_path / "perception/test.npz")
    assert test["keypoints"].shape == (6, 24, 2) and test["confidence"].shape == (6, 24)
    assert test["heatmaps"].shape == (6, 24, 16, 16) and test["depth_maps"].shape == (6, 24, 16, 16)
    assert test["feature"].shape == (6, 32) and test["tokens"].shape == (6, 16, 16) and test["tokens"].dtype == np.float16
    assert test["pose_6d"].shape == (6, 24, 6) and test["body_pose"].shape == (6, 69) and test["transl"].shape == (6, 3)
    assert np.allclose(test["heatmaps"].sum((-2, -1)), 1.0, atol=1e-4)
    assert list(test["image_id"]) == [f"test_{i:06d}" for i in range(6)]

    # Keypoints come from the network: far from the ground truth for a barely trained model, and
    # unchanged when the ground truth in the shards is altered.
    from humandiff.imaging import load_image_set, read_shard, write_shard

    _, truth = load_image_set(image_dir, "test", ["joints_2d"])
    assert np.abs(test["keypoints"] - truth["joints_2d"]).mean() > 1.0
    altered = tmp_path / "altered"
    import shutil

    shutil.copytree(image_dir, altered)
    for shard in sorted((altered / "test").glob("*.npz")):
        arrays = read_shard(shard)
        arrays["joints_2d"] = arrays["joints_2d"] + 7.0
        write_shard(shard, arrays)
    again_dir = tmp_path / "again"
    again_dir.mkdir()
    result = _extract(again_dir, altered, params, trained / "model.pt")
    assert result.exit_code == 0, result.output
    again = load_extraction(again_dir / "perception/test.npz")
    assert np.array_equal(again["keypoints"], test["keypoints"])

    metrics = json.loads((tmp_path / "perception.json").read_text())
    for key in ("pck_0.05", "pck_0.1", "regression_mpjpe_mm", "regression_pa_mpjpe_mm", "test_images", "extract_images_per_s"):
        assert key in metrics
    assert metrics["test_images"] == 6 and "render_images_per_s" not in metrics  # a timing is never an input
    assert "PCK@0.1" in (tmp_path / "perception.md").read_text()


def test_bad_params_fail_with_one_line_and_no_output(tmp_path, trained, image_dir):
    result = _train(tmp_path, image_dir, _params(tmp_path, train_perception__steps=0))
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "train_perception.steps" in result.output
    assert not (tmp_path / "model.pt").exists()
    result = _extract(tmp_path, image_dir, _params(tmp_path, extract__sets=["test", "bogus"]), trained / "model.pt")
    assert result.exit_code == 2 and "extract.sets" in result.output and result.output.count("\n") == 1
    assert not (tmp_path / "perception").exists() and not (tmp_path / "perception.json").exists()
    result = _extract(tmp_path, image_dir, _params(tmp_path), tmp_path / "missing.pt")
    assert result.exit_code == 2 and "missing.pt" in result.output
    assert not (tmp_path / "perception").exists()


def test_narrow_stem_trains_in_channels_last_without_crashing():
    """torch 2.13's CPU backward of a 3 -> 8 channel stem in channels_last corrupts the heap; the
    fast layout keeps such stems in the plain layout, and the network reads channels-last images anyway."""
    config = PerceptionConfig(**(TINY | {"image_size": 128, "widths": (8, 8, 16, 16, 16), "blocks": (1, 2, 2, 1)}))
    model = PerceptionNet(config).fast_layout()
    assert model.stem[0].weight.is_contiguous()
    images = torch.rand(4, 3, 128, 128).contiguous(memory_format=torch.channels_last)
    out = model(images)
    (out["heatmap_logits"].sum() + out["pose_6d"].sum()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.stem.parameters())


def test_fast_layout_puts_wide_stems_in_channels_last():
    config = PerceptionConfig(**(TINY | {"widths": (16, 16, 16, 16, 16)}))
    model = PerceptionNet(config).fast_layout()
    assert model.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert not model.stem[0].weight.is_contiguous()


# ---------------------------------------------------------------------------------- training (perception.train)
def test_augmentation_and_loss_weights_errors_name_the_parameter(tmp_path):
    from humandiff.perception.train import Augmentation, loss_weights, refuse_image_fields

    for bad in ({"colour_jitter": 1.0}, {"teacher_fraction": 1.5}, {"teacher_pixel_noise": -1.0}):
        with pytest.raises(ArtifactError, match=f"'{next(iter(bad))}'"):
            Augmentation(**bad)
    section = yaml.safe_load(_params(tmp_path).read_text())["train_perception"]
    weights = loss_weights("params.yaml", "train_perception", section)
    assert weights == LossWeights(heatmap=1.0, keypoint=1.0, depth=1.0, joints3d=5.0, joints2d=0.02, rotations=1.0,
                                  betas=0.01, sigma=1.0, occluded_weight=0.5)
    with pytest.raises(ArtifactError) as caught:
        loss_weights("params.yaml", "train_perception", section | {"w_depth": -1.0})
    assert str(caught.value) == "params.yaml: parameter 'train_perception.w_depth' must be a finite number >= 0, got -1.0"
    refuse_image_fields("params.yaml", "train_perception", section)
    with pytest.raises(ArtifactError, match=r"train_perception\.image_size come from the training images"):
        refuse_image_fields("params.yaml", "train_perception", section | {"image_size": 64})


@pytest.mark.parametrize("override, key", [
    ({"train_perception__colour_jitter": 1.0}, "train_perception.colour_jitter"),
    ({"train_perception__teacher_fraction": -0.1}, "train_perception.teacher_fraction"),
    ({"train_perception__w_betas": -1.0}, "train_perception.w_betas"),
    ({"train_perception__widths": [8, 8]}, "train_perception.widths"),
    ({"train_perception__image_size": 64}, "train_perception.image_size"),
    ({"train_perception__lr_decya": "cosine"}, "train_perception.lr_decya"),
    ({"train_perception__device": "gpu"}, "train_perception.device"),
])
def test_train_params_are_checked_before_any_input_is_read(tmp_path, override, key):
    result = _train(tmp_path, tmp_path / "no_images", _params(tmp_path, **override))
    assert result.exit_code == 2 and result.output.count("\n") == 1 and key in result.output, result.output
    assert str(tmp_path / "params.yaml") in result.output


def test_sized_config_takes_the_image_size_and_betas_from_the_data(tiny_arrays):
    from humandiff.perception.train import sized_config

    config = sized_config(PerceptionConfig(**(TINY | {"image_size": 128})), PerceptionDataset(tiny_arrays))
    assert config.image_size == SIZE and config.num_betas == 10 and config.widths == TINY["widths"]


def test_the_loss_fn_augments_with_the_generators_draws_only(tiny_arrays, body_model):
    from humandiff.perception.train import Augmentation, perception_loss_fn

    dataset = PerceptionDataset(tiny_arrays)
    batch = dataset.collate(range(4))
    torch.manual_seed(0)
    net = PerceptionNet(PerceptionConfig(**TINY))
    loss_fn = perception_loss_fn(body_model, SIZE, LossWeights(), Augmentation())
    first, terms = loss_fn(net, batch, torch.Generator().manual_seed(3))
    again, _ = loss_fn(net, batch, torch.Generator().manual_seed(3))
    other, _ = loss_fn(net, batch, torch.Generator().manual_seed(4))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert set(terms) >= set(LossWeights.__dataclass_fields__) - {"sigma", "occluded_weight"}
    # without augmentation (no jitter, no teacher) the loss is the network's on the plain images
    plain = perception_loss_fn(body_model, SIZE, LossWeights(), Augmentation(0.0, 0.0, 0.0, 0.0))
    expected, _ = perception_loss(net(batch["images"], None, None), batch, body_model, LossWeights(), SIZE)
    assert torch.allclose(plain(net, batch, torch.Generator().manual_seed(5))[0], expected)


def test_training_metrics_report_per_step_times_of_the_steps_run():
    from humandiff.perception.train import training_metrics
    from humandiff.train.loop import LoopConfig, LoopResult

    model = PerceptionNet(PerceptionConfig(**TINY))
    result = LoopResult(model=model, ema=model, history=[{"step": 8, "loss": 1.23456}], step=8, resumed_from=4,
                        wall_seconds=2.0, steps_run=4, total_seconds=3.04)
    metrics = training_metrics(result, model, LoopConfig(steps=8, batch_size=6, lr=1e-3), 12, 2, 1.0)
    assert metrics["epochs"] == 4.0 and metrics["seconds_per_step"] == 0.5 and metrics["cpu_seconds_per_step"] == 0.25
    assert metrics["final_loss"] == 1.2346 and metrics["resumed_from"] == 4 and metrics["train_seconds"] == 3.0
    assert metrics["parameters"] == sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------------- extraction (perception.extract, .report)
@pytest.mark.parametrize("values, key", [
    ({"sets": ["val"]}, "'sets'"),
    ({"sets": ["test", "test"]}, "'sets'"),
    ({"sets": ["test", "bogus"]}, "'sets'"),
    ({"sets": ["test"], "refine_window": 4}, "'refine_window' must be odd"),
    ({"sets": ["test"], "chunk_images": 0}, "'chunk_images' must be > 0"),
])
def test_extract_settings_are_checked(values, key):
    from humandiff.perception.extract import ExtractSettings

    with pytest.raises(ArtifactError, match=key):
        ExtractSettings(**values)
    assert ExtractSettings(sets=["test", "val"]).sets == ("test", "val")


def test_image_sets_are_checked_whole_before_extraction(tmp_path, image_dir):
    import shutil

    from humandiff.imaging import load_index
    from humandiff.perception.extract import check_image_sets

    check_image_sets(image_dir, load_index(image_dir), ["val", "test"])
    with pytest.raises(ArtifactError, match=r"no image of set\(s\) \['video'\] listed in 'extract.sets'"):
        check_image_sets(image_dir, load_index(image_dir), ["test", "video"], "'extract.sets'")
    damaged = tmp_path / "images"
    shutil.copytree(image_dir, damaged)
    last = sorted((damaged / "test").glob("*.npz"))[-1]
    last.write_bytes(b"not a shard")
    with pytest.raises(ArtifactError, match=last.name):
        check_image_sets(damaged, load_index(damaged), ["val", "test"])


def test_extract_stage_fails_on_a_damaged_shard_before_running_the_network(tmp_path, trained, image_dir, monkeypatch):
    import shutil

    import humandiff.perception.extract as extract_module

    damaged = tmp_path / "images"
    shutil.copytree(image_dir, damaged)
    sorted((damaged / "test").glob("*.npz"))[-1].write_bytes(b"not a shard")
    monkeypatch.setattr(extract_module, "predict", lambda *args, **kwargs: pytest.fail("the network ran"))
    out = tmp_path / "out"
    out.mkdir()
    result = _extract(out, damaged, _params(tmp_path), trained / "model.pt")
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "test_0001.npz" in result.output, result.output
    assert not (out / "perception").exists() and not (out / "perception.json").exists()


def test_video_metrics_align_the_pelvis_and_follow_the_frames():
    import pandas as pd

    from humandiff.perception.report import video_metrics

    # two sequences of 4 and 3 frames, rows out of frame order
    rows = pd.DataFrame({"sequence": [0, 0, 0, 0, 1, 1, 1], "frame": [3, 1, 0, 2, 2, 0, 1], "fps": 20.0})
    truth = {"joints_cam": np.zeros((7, 24, 3), np.float32)}
    # joints moving at constant velocity in frame order, the root included: no acceleration
    velocity = np.linspace(0.0, 0.05, 72, dtype=np.float32).reshape(1, 24, 3)
    steady = {"joints_cam": rows["frame"].to_numpy(np.float32)[:, None, None] * velocity}
    assert video_metrics(rows, steady, truth) == {"regression_accel_error_mm_s2": pytest.approx(0.0, abs=1e-3)}
    # a moving root is aligned away
    moving = {"joints_cam": steady["joints_cam"] + np.float32(0.5) * rows["frame"].to_numpy(np.float32)[:, None, None] ** 2}
    assert video_metrics(rows, moving, truth)["regression_accel_error_mm_s2"] == pytest.approx(0.0, abs=1.0)  # float32
    # in row order (not frame order) the same motion would jitter
    assert video_metrics(rows.assign(frame=range(7)), steady, truth)["regression_accel_error_mm_s2"] > 1000
    assert video_metrics(rows.assign(sequence=[0, 0, 1, 1, 2, 2, 3]), steady, truth) == {}  # no sequence of 3 frames


def test_metrics_report_and_figure_of_the_extract_stage(tmp_path):
    from humandiff.perception.report import (figure_link, perception_metrics, perception_report, prediction_sheet,
                                             sheet_tiles)

    scores = {key: 0.5 for key in ("pck_0.05", "pck_0.1", "pck_0.05_visible", "pck_0.1_visible", "pck_0.05_lsp14",
                                   "pck_0.1_lsp14", "keypoint_error_px", "swap_share_of_misses_0.1", "regression_mpjpe_mm",
                                   "regression_pa_mpjpe_mm", "regression_mpjpe_lsp14_mm", "regression_pa_mpjpe_lsp14_mm",
                                   "regression_pck_0.1", "heatmap_depth_error_mm")}
    per_set = {"test": scores | {"images": 6}, "video": scores | {"images": 10, "regression_accel_error_mm_s2": 1234.5}}
    metrics = perception_metrics(per_set, 64, 2.0)
    assert metrics["extract_images_per_s"] == 8.0 and metrics["test_images"] == 6 and metrics["image_size"] == 64
    assert metrics["sets"]["video"]["images"] == 10.0
    text = perception_report(metrics, per_set, figure_link(tmp_path / "reports/perception/predictions.png",
                                                           tmp_path / "reports/perception.md"))
    assert "| video | 10 | 0.500 |" in text and "acceleration error 1234 mm/s^2" in text
    assert "(perception/predictions.png)" in text and "extraction 8.0 images/s" in text
    assert figure_link("/elsewhere/fig.png", "reports/perception.md") == "/elsewhere/fig.png"


    rng = np.random.default_rng(0)
    truth = {"image": rng.integers(0, 255, (5, 32, 32, 3), dtype=np.uint8), "joints_2d": rng.uniform(0, 32, (5, 24, 2)),
             "in_image": np.ones((5, 24), bool)}
    predictions = {"keypoints": truth["joints_2d"] + 3.0, "confidence": np.full((5, 24), 0.9)}
    tiles = sheet_tiles(truth, predictions, np.array([f"test_{i}" for i in range(5)]), 3)
    assert len(tiles) == 3 and tiles[0].shape == (64, 64, 3)
    assert prediction_sheet(tiles).shape == (4 + 68, 4 + 3 * 68, 3)
