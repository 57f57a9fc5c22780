"""Where stages run: ``device: auto | cpu | cuda`` (humandiff.train.device), the training loop and the
inference stages on a device other than the CPU.

Without a GPU, meta tensors stand in for CUDA ones: like CUDA tensors they refuse to mix with CPU
tensors, so a loop or loss that would mix devices on a GPU fails here too. The tests that compare
CUDA with the CPU run only where torch sees a GPU.
"""

from __future__ import annotations

import copy
import json
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from torch.overrides import TorchFunctionMode

from humandiff.io import ArtifactError
from humandiff.motion.dataset import MotionTextDataset, collate_motion, load_mean_std
from humandiff.prior.mdm import GeometryWeights, MDMConfig, MotionDiffusionModel, generate, training_loss
from humandiff.train.loop import LoopConfig, train
from humandiff.train.device import OnDevice, on_device, resolve_device, to_device
from script_loader import stage_command
from test_mdm import TRAIN_PARAMS
from test_mdm import corpus, one_thread, train_set  # noqa: F401  (the fake corpus, one torch thread)

REPO = Path(__file__).resolve().parents[1]
BODY = REPO / "data/body/anny_smpl_neutral.npz"
TINY = MDMConfig(latent_dim=32, num_layers=2, num_heads=4, ff_dim=64, dropout=0.0, diffusion_steps=100)
PERCEPTION = dict(image_size=64, widths=(8, 12, 16, 24, 32), blocks=(1, 1, 1, 1), head_width=12, token_dim=16,
                  regressor_width=64, ief_iterations=2)
STAGES = ("encode_text", "train_mdm", "sample_mdm", "evaluate_t2m", "train_perception", "extract", "train_scorehmr")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="only without a CUDA device")


def _mdm_loss(corpus: Path):
    """The train_mdm stage's loss: geometry terms, dropped captions and top-level timesteps included."""
    mean, std = load_mean_std(corpus / "hml/mean_std.npz")
    geometry = GeometryWeights(torch.from_numpy(mean), torch.from_numpy(std), 0.1, 0.1, 0.1, signal_weighted=True)
    return partial(training_loss, schedule=TINY.noise_schedule(), cond_drop=0.1, geometry=geometry, high_noise_share=0.5)


# --------------------------------------------------------------------------------------------- resolve_device


def test_auto_is_cuda_when_available_else_cpu():
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")


@no_cuda
def test_auto_is_the_cpu_without_a_gpu():
    assert resolve_device("auto").type == "cpu"


@pytest.mark.parametrize("name", ["bogus", "gpu", "cuda:0", "", None, 1])
def test_a_bad_name_is_a_one_line_error_naming_the_parameter(name):
    with pytest.raises(ArtifactError) as error:
        resolve_device(name, "params.yaml: parameter 'train_mdm.device'")
    message = str(error.value)
    assert "\n" not in message and "params.yaml: parameter 'train_mdm.device'" in message
    assert "auto, cpu, cuda" in message


@no_cuda
def test_cuda_without_a_gpu_is_a_one_line_error_naming_the_parameter():
    with pytest.raises(ArtifactError) as error:
        resolve_device("cuda", "params.yaml: parameter 'extract.device'")
    message = str(error.value)
    assert "\n" not in message and "params.yaml: parameter 'extract.device'" in message and "'cuda'" in message


def _smoke_params(tmp_path: Path, section: str, device) -> Path:
    params = yaml.safe_load((REPO / "presets/smoke.yaml").read_text())
    params[section]["device"] = device
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_with_a_bad_device_exits_with_one_line_naming_params_and_key(stage: str, tmp_path: Path):
    # the device is checked with the other params, before any input is read (none exists here)
    params = _smoke_params(tmp_path, stage, "bogus")
    result = CliRunner().invoke(stage_command(stage), ["--params", str(params)])
    assert result.exit_code != 0
    assert result.output.count("\n") == 1, result.output
    assert str(params) in result.output and f"'{stage}.device'" in result.output and "bogus" in result.output


@no_cuda
@pytest.mark.parametrize("stage", ["train_mdm", "sample_mdm"])
def test_a_stage_asked_for_cuda_without_a_gpu_exits_with_one_line(stage: str, tmp_path: Path):
    params = _smoke_params(tmp_path, stage, "cuda")
    result = CliRunner().invoke(stage_command(stage), ["--params", str(params)])
    assert result.exit_code != 0 and result.output.count("\n") == 1 and f"'{stage}.device'" in result.output


# --------------------------------------------------------------------------------------------- CPU: nothing changes


def test_on_the_cpu_tensors_state_dicts_and_modules_pass_through_untouched():
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3))
    state = model.state_dict()
    assert to_device(state, "cpu") is state  # same object: a CPU save writes the very same bytes
    batch = {"motion": torch.zeros(2, 3), "lengths": [torch.ones(1), 4], "name": "x"}
    assert to_device(batch, "cpu") is batch
    assert on_device(model, "cpu") is model and on_device(model, torch.device("cpu")) is model


def test_moving_a_state_dict_keeps_its_metadata():
    state = torch.nn.BatchNorm1d(3).state_dict()
    moved = to_device(state, "meta")
    assert moved is not state and all(v.is_meta for v in moved.values())
    assert moved._metadata == state._metadata  # module versions, read by load_state_dict


def test_on_device_keeps_the_modules_interface():
    model = MotionDiffusionModel(TINY).eval()
    wrapped = OnDevice(model, "cpu")
    assert wrapped.config is model.config and not wrapped.training
    wrapped.train()
    assert model.training
    x, t = torch.randn(2, 8, 263), torch.tensor([3, 50])
    with torch.no_grad():
        assert torch.equal(wrapped(x, t, text_emb=None, mask=None), model(x, t, text_emb=None, mask=None))


# --------------------------------------------------------------------------------------------- another device


class _MetaValues(TorchFunctionMode):
    """Meta tensors hold no values: reading one gives 0 (False), and a meta loss counts as finite."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.isfinite and args[0].is_meta:
            return torch.tensor(True)
        if func in (torch.Tensor.__bool__, torch.Tensor.item, torch.Tensor.__float__) and args[0].is_meta:
            return False if func is torch.Tensor.__bool__ else 0.0
        return func(*args, **kwargs)


def test_the_loop_trains_the_prior_on_another_device_without_mixing_devices(corpus: Path, train_set: MotionTextDataset):
    torch.manual_seed(0)
    model = MotionDiffusionModel(TINY)
    config = LoopConfig(steps=3, batch_size=4, lr=1e-3, log_every=1)
    with _MetaValues():
        result = train(model, train_set, collate_motion, _mdm_loss(corpus), config, device="meta", progress=False)
    assert result.step == 3 and len(result.history) == 3
    assert all(p.is_meta for p in result.model.parameters()) and all(p.is_meta for p in result.ema.parameters())


def test_the_perception_loss_runs_on_another_device_without_mixing_devices():
    from humandiff.body.model import load_body_model
    from humandiff.perception.model import LossWeights, PerceptionConfig, PerceptionNet
    from humandiff.perception.train import Augmentation, perception_loss_fn

    torch.manual_seed(0)
    config = PerceptionConfig(**PERCEPTION)
    net = PerceptionNet(config).fast_layout().to("meta")
    body_model = load_body_model(BODY).to("meta")
    batch = to_device({
        "images": torch.rand(2, 3, 64, 64), "joints_2d": torch.rand(2, 24, 2) * 64,
        "visible": torch.ones(2, 24, dtype=torch.bool), "in_image": torch.ones(2, 24, dtype=torch.bool),
        "joints_cam": torch.rand(2, 24, 3) + torch.tensor([0.0, 0.0, 3.0]), "rotations_cam": torch.eye(3).expand(2, 24, 3, 3),
        "betas": torch.zeros(2, 10), "intrinsics": torch.tensor([[60.0, 60.0, 32.0, 32.0]] * 2),
    }, "meta")
    generator = torch.Generator().manual_seed(0)
    loss_fn = perception_loss_fn(body_model, 64, LossWeights(), Augmentation(0.2, 0.5, 2.0, 0.05))
    with _MetaValues():  # as train_perception's loss runs in the loop
        loss, terms = loss_fn(net, batch, generator)
    assert loss.is_meta and set(terms) >= {"heatmap", "joints3d"}


# --------------------------------------------------------------------------------------------- CUDA against the CPU


@pytest.fixture
def exact_cuda():
    """No TF32: CUDA matmuls and convolutions in full float32, so CPU and GPU agree to float tolerance."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


@needs_cuda
def test_training_on_cuda_matches_the_cpu_and_its_checkpoint_resumes_on_the_cpu(corpus: Path, train_set: MotionTextDataset,
                                                                               tmp_path: Path, exact_cuda):
    config = LoopConfig(steps=4, batch_size=4, lr=1e-3, log_every=1, checkpoint_every=2, ema_decay=0.9)
    loss_fn = _mdm_loss(corpus)

    def run(device: str, checkpoint: Path | None = None, stop_at: int | None = None):
        torch.manual_seed(0)  # dropout is 0: the only randomness is the loop's CPU generator, the same on both
        return train(MotionDiffusionModel(TINY), train_set, collate_motion, loss_fn, config, checkpoint_file=checkpoint,
                     stop_at=stop_at, device=device, progress=False)

    cpu, gpu = run("cpu"), run("cuda")
    assert all(p.is_cuda for p in gpu.model.parameters()) and all(p.is_cuda for p in gpu.ema.parameters())
    np.testing.assert_allclose([r["loss"] for r in gpu.history], [r["loss"] for r in cpu.history], rtol=1e-3)
    bound = 2 * config.lr * config.steps  # Adam moves a weight at most ~lr per step, whatever rounds differently
    for a, b in zip(cpu.ema.state_dict().values(), gpu.ema.state_dict().values()):
        assert (a - b.cpu()).abs().max() <= bound

    checkpoint = tmp_path / "state.pt"
    run("cuda", checkpoint, stop_at=2)
    saved = torch.load(checkpoint, weights_only=True)  # no map_location: the tensors say where they were saved
    assert all(v.device.type == "cpu" for part in ("model", "ema") for v in saved[part].values())
    resumed = run("cpu", checkpoint)
    assert resumed.resumed_from == 2 and resumed.step == 4
    np.testing.assert_allclose([r["loss"] for r in resumed.history], [r["loss"] for r in cpu.history], rtol=1e-3)


@needs_cuda
def test_sampling_on_cuda_matches_the_cpu(exact_cuda):
    torch.manual_seed(0)
    model = MotionDiffusionModel(TINY).eval()
    text, lengths = torch.randn(3, TINY.condition_dim), [12, 5, 8]
    schedule = TINY.noise_schedule()
    expected = generate(model, schedule, text, lengths, num_steps=5, seed=1, batch_size=2)
    got = generate(on_device(copy.deepcopy(model), "cuda"), schedule, text, lengths, num_steps=5, seed=1, batch_size=2)
    for a, b in zip(expected, got):
        assert b.device.type == "cpu"
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)


@needs_cuda
def test_perception_inference_on_cuda_matches_the_cpu(exact_cuda):
    from humandiff.body.model import load_body_model
    from humandiff.perception.model import PerceptionConfig, PerceptionNet, predict

    torch.manual_seed(0)
    model = PerceptionNet(PerceptionConfig(**PERCEPTION)).fast_layout().eval()
    images = torch.rand(3, 3, 64, 64)
    on_gpu = on_device(copy.deepcopy(model), "cuda")
    with torch.no_grad():
        expected, got = model(images), on_gpu(images)
    for name, value in expected.items():
        assert got[name].device.type == "cpu"
        torch.testing.assert_close(got[name], value, atol=1e-4, rtol=1e-4)
    pixels = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    intrinsics = np.array([[60.0, 60.0, 32.0, 32.0]] * 3, dtype=np.float32)
    body_model = load_body_model(BODY)
    cpu_out, gpu_out = predict(model, pixels, intrinsics, body_model, 2), predict(on_gpu, pixels, intrinsics, body_model, 2)
    assert cpu_out.keys() == gpu_out.keys()
    for name in ("pose_6d", "betas", "cam", "feature", "joints_cam"):
        np.testing.assert_allclose(gpu_out[name], cpu_out[name], atol=1e-3, rtol=1e-3)


@needs_cuda
def test_the_prior_stages_on_cuda_write_what_the_cpu_writes(corpus: Path, tmp_path: Path, exact_cuda, monkeypatch):
    import test_mdm

    outputs = {}
    for device in ("cpu", "cuda"):
        monkeypatch.setitem(test_mdm.SAMPLE_PARAMS, "device", device)  # sample_mdm's section
        test_mdm._run_stages(corpus, tmp_path / device, dict(TRAIN_PARAMS, dropout=0.0, device=device))
        outputs[device] = tmp_path / device
    cpu, gpu = outputs["cpu"], outputs["cuda"]
    weights_cpu = torch.load(cpu / "mdm/model.pt", weights_only=True)
    weights_gpu = torch.load(gpu / "mdm/model.pt", weights_only=True)
    assert weights_cpu.keys() == weights_gpu.keys() and all(v.device.type == "cpu" for v in weights_gpu.values())
    for name in weights_cpu:
        assert (weights_cpu[name] - weights_gpu[name]).abs().max() <= 2 * TRAIN_PARAMS["lr"] * TRAIN_PARAMS["steps"], name
    for name in ("train.json", "sample.json"):  # the same keys: nothing about the device in the metrics
        assert json.loads((cpu / name).read_text()).keys() == json.loads((gpu / name).read_text()).keys()
    metrics_cpu, metrics_gpu = (json.loads((d / "train.json").read_text()) for d in (cpu, gpu))
    np.testing.assert_allclose(metrics_gpu["final_loss"], metrics_cpu["final_loss"], rtol=1e-2)
    with np.load(cpu / "mdm/samples.npz") as a, np.load(gpu / "mdm/samples.npz") as b:
        assert np.array_equal(a["offsets"], b["offsets"]) and np.isfinite(b["features"]).all()
