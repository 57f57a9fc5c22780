"""MDM-style prior: model masks and conditioning, losses, EMA, dataset, training loop, sampling, stages."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from click.testing import CliRunner

from humandiff.motion.dataset import MotionTextDataset, collate_motion, crop_length, load_mean_std, load_motion_split, padding_mask
from humandiff.diffusion import cosine_schedule
from humandiff.io import ArtifactError, save_npz, save_parquet
from humandiff.train.ema import ema_copy, ema_decay_at, ema_update
from humandiff.prior.mdm import (
    GeometryWeights,
    MDMConfig,
    MotionDiffusionModel,
    denoising_loss,
    generate,
    geometry_losses,
    guided_denoiser,
    load_mdm,
    save_mdm,
    training_loss,
    training_timesteps,
)
from humandiff.motion.hml3d import recover_from_ric
from humandiff.train.loop import LoopConfig, epoch_batches, learning_rate_at, load_resume_state, train
from script_loader import stage_command

REPO = Path(__file__).resolve().parents[1]
TINY = MDMConfig(latent_dim=32, num_layers=2, num_heads=4, ff_dim=64, dropout=0.1, diffusion_steps=100)
CLASS_WORDS = ("walks in a circle", "jumps up and down", "waves the right hand")


def write_fake_corpus(folder: Path, clips: int = 24, seed: int = 0) -> Path:
    """A tiny corpus in the pipeline's format: index.parquet, features.npz, mean_std.npz under
    ``folder/hml`` and ``folder/embeddings.parquet``. Clip k belongs to class k % 3; its features
    are class-specific sinusoids (so a model can learn text -> motion), lengths 40..80 frames."""
    rng = np.random.default_rng(seed)
    rows, clips_features = [], []
    splits = ["train"] * 16 + ["val"] * 4 + ["test"] * 4
    for k in range(clips):
        c = k % 3
        length = int(rng.integers(40, 81))
        t = np.arange(length)[:, None]
        frequency = 0.1 * (c + 1) * (1 + 0.1 * np.arange(263) / 263)
        feats = np.sin(frequency * t + rng.uniform(0, 6.28)) * (0.5 + 0.5 * c) + 0.05 * rng.standard_normal((length, 263))
        feats[:, 3] = 0.9 + 0.02 * feats[:, 3]  # root height
        feats[:, 259:263] = (feats[:, 259:263] > 0).astype(float)
        clips_features.append(feats.astype(np.float32))
        captions = [f"a person {CLASS_WORDS[c]}", f"someone {CLASS_WORDS[c]}", f"the man {CLASS_WORDS[c]} slowly"]
        rows.append({"clip_id": f"{k:06d}", "source_id": f"{k:06d}", "split": splits[k % len(splits)], "length": length,
                     "captions": captions, "actions": [str(c)], "mirror": False})
    hml = folder / "hml"
    flat = np.concatenate(clips_features)
    offsets = np.concatenate([[0], np.cumsum([len(f) for f in clips_features])]).astype(np.int64)
    save_npz(hml / "features.npz", {"features": flat, "offsets": offsets})
    save_parquet(hml / "index.parquet", pd.DataFrame(rows))
    mean, std = flat.mean(0), flat.std(0) + 1e-3
    save_npz(hml / "mean_std.npz", {"mean": mean, "std": std, "eval_mean": mean, "eval_std": std / 2})
    captions = sorted({c for r in rows for c in r["captions"]})
    embeddings = rng.standard_normal((len(captions), 384)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    save_parquet(folder / "embeddings.parquet", pd.DataFrame({"caption": captions, "embedding": list(embeddings)}))
    return folder


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One thread: tiny ops on a shared 2-core machine are many times slower with two (spin waits)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_fake_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def train_set(corpus: Path) -> MotionTextDataset:
    split = load_motion_split(corpus / "hml/index.parquet", corpus / "hml/features.npz", corpus / "embeddings.parquet", "train")
    mean, std = load_mean_std(corpus / "hml/mean_std.npz")
    return MotionTextDataset(split, mean, std, max_frames=64, seed=0)


def tiny_model(seed: int = 0, config: MDMConfig = TINY) -> MotionDiffusionModel:
    """A seeded model; adaLN modulations (zero at init, so blocks start as the identity) and the clip
    progress map (zero at init) get small random weights, as after some training, so the condition
    reaches every block and the progress reaches the tokens."""
    torch.manual_seed(seed)
    model = MotionDiffusionModel(config)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "modulation" in name or "progress" in name:
                parameter.normal_(0.0, 0.05)
    return model


ADALN = MDMConfig(**(TINY.to_dict() | {"conditioning": "adaln"}))
PROGRESS = MDMConfig(**(TINY.to_dict() | {"conditioning": "adaln", "clip_progress": True}))


# --------------------------------------------------------------------------------------------- model


@pytest.mark.parametrize("clip_progress", [False, True])
@pytest.mark.parametrize("conditioning", ["token", "adaln"])
@pytest.mark.parametrize("frames_per_token", [1, 4])
def test_output_shape_and_padding_does_not_change_valid_frames(frames_per_token: int, conditioning: str,
                                                               clip_progress: bool):
    config = MDMConfig(**(TINY.to_dict() | {"frames_per_token": frames_per_token, "conditioning": conditioning,
                                            "clip_progress": clip_progress}))
    model = tiny_model(config=config).eval()
    x, t, text = torch.randn(3, 12, 263), torch.tensor([0, 50, 99]), torch.randn(3, 384)
    lengths = torch.tensor([12, 7, 4])
    mask = padding_mask(lengths)
    out = model(x, t, text, mask)
    assert out.shape == (3, 12, 263)
    assert torch.all(out[~mask] == 0)
    # other padding values and extra padding frames leave the real frames untouched
    x_other = torch.cat([x, torch.randn(3, 5, 263)], 1)
    x_other[~padding_mask(lengths, 17)] = 1e3
    out_other = model(x_other, t, text, padding_mask(lengths, 17))
    torch.testing.assert_close(out_other[:, :12][mask], out[mask], atol=1e-5, rtol=1e-5)
    # a clip alone, unpadded, gives the same frames as inside the padded batch
    alone = model(x[1:2, :7], t[1:2], text[1:2])
    torch.testing.assert_close(alone[0], out[1, :7], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("config", [TINY, ADALN], ids=["token", "adaln"])
def test_text_and_timestep_change_the_output_and_none_is_zero_text(config: MDMConfig):
    model = tiny_model(config=config).eval()
    x, t = torch.randn(2, 8, 263), torch.tensor([10, 10])
    text = torch.randn(2, 384)
    assert not torch.allclose(model(x, t, text), model(x, t, -text))
    assert not torch.allclose(model(x, t, text), model(x, torch.tensor([90, 90]), text))
    torch.testing.assert_close(model(x, t, None), model(x, t, torch.zeros(2, 384)))


@pytest.mark.parametrize("config", [TINY, ADALN, PROGRESS], ids=["token", "adaln", "progress"])
def test_gradients_reach_every_parameter(config: MDMConfig):
    model = tiny_model(config=config)
    model(torch.randn(2, 8, 263), torch.tensor([3, 70]), torch.randn(2, 384), padding_mask(torch.tensor([8, 5]))).square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0 for p in model.parameters())


def test_clip_progress_is_each_tokens_place_in_its_own_clip():
    """Token k of a clip of n tokens gets the embedding of k / n whatever padding follows it, and it
    starts as a no-op: at its zero init the model is the one without it, weight for weight."""
    model = tiny_model(config=PROGRESS).eval()
    valid = padding_mask(torch.tensor([4, 6]), 6)
    progress = model.progress(valid, 2, 6)
    torch.testing.assert_close(progress[0, :4], model.progress(None, 1, 4)[0])
    torch.testing.assert_close(progress[1], model.progress(None, 1, 6)[0])
    assert not torch.allclose(progress[0, 1:4], progress[1, 1:4])  # same index, other place in the clip
    torch.testing.assert_close(progress[0, 0], progress[1, 0])  # k = 0 starts every clip

    plain = tiny_model(config=ADALN).eval()
    fresh = MotionDiffusionModel(PROGRESS).eval()
    missing, unexpected = fresh.load_state_dict(plain.state_dict(), strict=False)
    assert sorted(missing) == ["progress_proj.bias", "progress_proj.weight"] and not unexpected
    x, t, text = torch.randn(2, 12, 263), torch.tensor([5, 60]), torch.randn(2, 384)
    mask = padding_mask(torch.tensor([12, 9]))
    torch.testing.assert_close(fresh(x, t, text, mask), plain(x, t, text, mask))


def test_adaln_blocks_start_as_the_identity():
    """adaLN-Zero: with the modulation at its zero init every block passes its input through, so
    before training the frames cannot see the caption; the modulation's gradient is not zero."""
    torch.manual_seed(0)
    model = MotionDiffusionModel(ADALN).eval()
    tokens, cond = torch.randn(2, 5, 32), torch.randn(2, 32)
    for block in model.blocks:
        torch.testing.assert_close(block(tokens, cond, None), tokens)
    x, t = torch.randn(2, 8, 263), torch.tensor([10, 10])
    torch.testing.assert_close(model(x, t, torch.randn(2, 384)), model(x, t, torch.randn(2, 384)))
    model(x, t, torch.randn(2, 384)).square().sum().backward()
    assert model.blocks[0].modulation.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("bad", [dict(latent_dim=30), dict(num_layers=0), dict(dropout=1.5), dict(schedule="sigmoid"),
                                 dict(cond_drop=-0.1), dict(conditioning="film")])
def test_bad_config_is_one_line_error(bad):
    with pytest.raises(ArtifactError) as info:
        MDMConfig(**bad)
    assert "\n" not in str(info.value) and "MDMConfig" in str(info.value)
    with pytest.raises(ArtifactError, match="unknown parameter"):
        MDMConfig.from_dict({"latent": 3})


def test_config_from_params_section_keeps_only_its_fields():
    section = {"latent_dim": 64, "num_layers": 2, "conditioning": "adaln", "word_tokens": 8, "steps": 1400,
               "batch_size": 128, "lambda_foot": 600.0}
    config = MDMConfig.from_section(section)
    assert (config.latent_dim, config.num_layers, config.conditioning, config.word_tokens) == (64, 2, "adaln", 8)
    assert config.ff_dim == MDMConfig().ff_dim  # absent fields keep the paper's defaults
    with pytest.raises(ArtifactError, match="word_tokens"):
        MDMConfig.from_section({"word_tokens": 1, "conditioning": "adaln", "steps": 10})


def test_bad_inputs_name_the_field():
    model = tiny_model()
    with pytest.raises(ArtifactError, match="x_t has 200 features"):
        model(torch.randn(2, 8, 200), torch.tensor([1, 2]))
    with pytest.raises(ArtifactError, match="mask has shape"):
        model(torch.randn(2, 8, 263), torch.tensor([1, 2]), mask=torch.ones(2, 7, dtype=torch.bool))


# --------------------------------------------------------------------------------------------- losses


class _Spy(torch.nn.Module):
    """Records the text embeddings it is called with and predicts zeros."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []
        self.scale = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x_t, t, text_emb=None, mask=None):
        self.seen.append(text_emb.clone())
        return x_t * self.scale


def test_text_token_is_dropped_at_the_configured_rate():
    batch = {"motion": torch.randn(4000, 4, 263), "mask": torch.ones(4000, 4, dtype=torch.bool),
             "text_emb": torch.randn(4000, 384) + 3.0}
    schedule = cosine_schedule(100)
    spy = _Spy()
    for rate, low, high in ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (0.1, 0.08, 0.12)):
        spy.seen.clear()
        training_loss(spy, batch, torch.Generator().manual_seed(0), schedule=schedule, cond_drop=rate)
        seen = spy.seen[0]
        dropped = (seen == 0).all(1)
        assert low <= dropped.float().mean().item() <= high
        # kept rows pass the caption embedding through unchanged
        torch.testing.assert_close(seen[~dropped], batch["text_emb"][~dropped])


def test_training_timesteps_put_the_asked_share_in_the_top_levels():
    schedule = cosine_schedule(1000)
    uniform = training_timesteps(schedule, 20000, torch.Generator().manual_seed(0))
    # the default is the plain uniform draw, random numbers included
    torch.testing.assert_close(uniform, torch.randint(0, 1000, (20000,), generator=torch.Generator().manual_seed(0)))
    assert uniform.min() >= 0 and uniform.max() <= 999
    shifted = training_timesteps(schedule, 20000, torch.Generator().manual_seed(0), high_noise_share=0.5,
                                 high_noise_fraction=0.1)
    assert shifted.min() >= 0 and shifted.max() <= 999
    # half the batch from [900, 1000) plus a tenth of the uniform half: 0.55 expected
    assert 0.53 <= (shifted >= 900).float().mean().item() <= 0.57
    assert (training_timesteps(schedule, 500, torch.Generator().manual_seed(1), 1.0, 0.05) >= 950).all()
    for share, fraction in ((-0.1, 0.1), (1.5, 0.1), (0.5, 0.0), (0.5, 1.2)):
        with pytest.raises(ArtifactError, match="high_noise"):
            training_timesteps(schedule, 4, torch.Generator(), share, fraction)


def test_masked_loss_ignores_padding_and_is_zero_for_a_perfect_model():
    schedule = cosine_schedule(100)
    x0 = torch.randn(2, 6, 263)
    mask = padding_mask(torch.tensor([6, 3]))
    oracle = lambda x_t, t, text_emb=None, mask=None: x0 * mask[..., None]  # noqa: E731
    loss, parts = denoising_loss(oracle, schedule, x0, torch.tensor([5, 50]), torch.randn_like(x0), text_emb=None, mask=mask)
    assert loss.shape == (2,) and torch.all(loss == 0)
    # changing the padded frames of x0 changes nothing
    x0_pad = x0.clone()
    x0_pad[1, 3:] = 50.0
    wrong = lambda x_t, t, text_emb=None, mask=None: torch.zeros_like(x_t)  # noqa: E731
    a, _ = denoising_loss(wrong, schedule, x0, torch.tensor([5, 50]), torch.randn_like(x0), text_emb=None, mask=mask)
    b, _ = denoising_loss(wrong, schedule, x0_pad, torch.tensor([5, 50]), torch.randn_like(x0), text_emb=None, mask=mask)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a[1], x0[1, :3].square().mean())


def test_eps_prediction_loss_is_zero_for_a_perfect_model(corpus: Path):
    mean, std = load_mean_std(corpus / "hml/mean_std.npz")
    schedule = cosine_schedule(100)
    x0, noise = torch.randn(2, 6, 263) * 0.1, torch.randn(2, 6, 263)
    mask = padding_mask(torch.tensor([6, 4]))
    oracle = lambda x_t, t, text_emb=None, mask=None: noise  # noqa: E731
    geometry = GeometryWeights(torch.from_numpy(mean), torch.from_numpy(std), joints=1.0, velocity=1.0)
    loss, parts = denoising_loss(oracle, schedule, x0, torch.tensor([5, 50]), noise, text_emb=None, mask=mask,
                                 geometry=geometry, prediction="eps")
    assert torch.all(parts["mse"] == 0)
    # the geometric losses see the clean estimate recovered from the noise: x0 up to rounding
    assert torch.all(loss < 1e-6) and set(parts) == {"mse", "joints", "velocity"}
    assert torch.all(denoising_loss(oracle, schedule, x0, torch.tensor([5, 50]), noise, text_emb=None, mask=mask)[0] > 0)


def test_geometry_losses_known_answers(corpus: Path):
    mean, std = load_mean_std(corpus / "hml/mean_std.npz")
    weights = GeometryWeights(torch.from_numpy(mean), torch.from_numpy(std), joints=1.0, velocity=1.0, foot_contact=1.0)
    target = torch.randn(2, 10, 263, dtype=torch.float64) * 0.1
    target[..., 0] = -float(mean[0] / std[0])  # no root rotation: a constant offset then stays constant in the world
    mask = padding_mask(torch.tensor([10, 6]))
    same = geometry_losses(target, target, mask, weights)
    assert set(same) == {"joints", "velocity", "foot_contact"}
    assert torch.all(same["joints"] == 0) and torch.all(same["velocity"] == 0)
    # a constant offset of the normalised ric features moves every non-root joint: known joint loss
    shifted = target.clone()
    shifted[..., 4:67] += 1.0
    moved = geometry_losses(shifted, target, mask, weights)
    ric_std = torch.from_numpy(std[4:67]).double().reshape(21, 3)
    # rotating by the root's yaw keeps the length of the per-joint offset vector
    expected = ric_std.square().sum(-1).sum() / (22 * 3)
    torch.testing.assert_close(moved["joints"], expected.expand(2), rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(moved["velocity"], torch.zeros(2, dtype=torch.float64), atol=1e-12, rtol=0)
    # foot contact: a static prediction has zero foot velocity, hence zero loss
    static = target.clone()
    static[:, :, :3] = -torch.from_numpy(mean[:3]).double() / torch.from_numpy(std[:3]).double()  # no root motion
    static[:, :, 3:67] = static[:, :1, 3:67]
    assert torch.all(geometry_losses(static, target, mask, weights)["foot_contact"].abs() < 1e-20)
    assert torch.all(recover_from_ric(static * weights.std.double() + weights.mean.double()).diff(dim=1).abs() < 1e-9)



def test_signal_weighted_geometry_scales_each_sample_by_alpha_bar(corpus: Path):
    mean, std = load_mean_std(corpus / "hml/mean_std.npz")
    schedule = cosine_schedule(1000)
    x0 = torch.randn(2, 10, 263) * 0.1
    mask = padding_mask(torch.tensor([10, 7]))
    t, noise = torch.tensor([20, 990]), torch.randn(2, 10, 263)
    wrong = lambda x_t, t, text_emb=None, mask=None: torch.zeros_like(x_t)  # noqa: E731
    weights = dict(mean=torch.from_numpy(mean), std=torch.from_numpy(std), velocity=2.0, foot_contact=3.0)
    plain, parts = denoising_loss(wrong, schedule, x0, t, noise, text_emb=None, mask=mask,
                                  geometry=GeometryWeights(**weights))
    weighted, same_parts = denoising_loss(wrong, schedule, x0, t, noise, text_emb=None, mask=mask,
                                          geometry=GeometryWeights(**weights, signal_weighted=True))
    geometric = 2.0 * parts["velocity"] + 3.0 * parts["foot_contact"]
    assert torch.all(geometric > 0)
    torch.testing.assert_close(plain, parts["mse"] + geometric)
    torch.testing.assert_close(weighted, parts["mse"] + schedule.alphas_cumprod[t].float() * geometric)
    # the parts themselves are unweighted; near t = T the geometric terms all but vanish
    torch.testing.assert_close(same_parts["foot_contact"], parts["foot_contact"])
    assert (weighted[1] - parts["mse"][1]) < 1e-3 * geometric[1]


# --------------------------------------------------------------------------------------------- EMA


def test_ema_update_known_values():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    average = ema_copy(model)
    assert all(not p.requires_grad for p in average.parameters()) and not average.training
    with torch.no_grad():
        for p in average.parameters():
            p.zero_()
        for p in model.parameters():
            p.fill_(1.0)
        model[1].num_batches_tracked.fill_(7)
    ema_update(average, model, 0.9)
    assert all(torch.allclose(p, torch.full_like(p, 0.1)) for p in average.parameters())
    ema_update(average, model, 0.9)
    assert all(torch.allclose(p, torch.full_like(p, 0.19)) for p in average.parameters())
    assert int(average[1].num_batches_tracked) == 7  # integer buffers are copied
    assert ema_decay_at(0, 0.999) == pytest.approx(0.1)
    assert ema_decay_at(90, 0.999) == pytest.approx(0.91)
    assert ema_decay_at(10**6, 0.999) == 0.999 and ema_decay_at(0, 0.99, warmup=False) == 0.99
    with pytest.raises(ArtifactError, match="decay"):
        ema_update(average, model, 1.5)
    with pytest.raises(ArtifactError, match="state-dict keys"):
        ema_update(average, torch.nn.Linear(2, 2), 0.5)


# --------------------------------------------------------------------------------------------- dataset


def test_dataset_items_are_crops_of_their_clip(train_set: MotionTextDataset):
    data = train_set.data
    for i in range(len(train_set)):
        item = train_set[i]
        clip = (data.clip(i) - train_set.mean) / train_set.std
        T = item["length"]
        assert T % 4 == 0 and 4 <= T <= min(64, len(clip)) and item["motion"].shape == (T, 263)
        starts = [s for s in range(len(clip) - T + 1) if np.allclose(clip[s : s + T], item["motion"].numpy(), atol=1e-6)]
        assert starts, "the item is not a crop of its clip"
        assert item["caption"] in data.captions(i)
        row = data.caption_rows[i][data.captions(i).index(item["caption"])]
        np.testing.assert_array_equal(item["text_emb"].numpy(), data.embeddings[row])
    # deterministic per (seed, epoch, index); another epoch draws again
    again = MotionTextDataset(data, train_set.mean, train_set.std, max_frames=64, seed=0)
    assert all(torch.equal(again[i]["motion"], train_set[i]["motion"]) for i in range(len(train_set)))
    again.set_epoch(1)
    assert any(again[i]["length"] != train_set[i]["length"] or not torch.equal(again[i]["motion"], train_set[i]["motion"])
               for i in range(len(train_set)))


def test_crop_length_follows_humanml3d():
    rng = np.random.default_rng(0)
    draws = [crop_length(83, 196, rng) for _ in range(600)]
    assert set(draws) == {80, 76}
    assert 0.25 < draws.count(76) / 600 < 0.42
    assert {crop_length(199, 196, rng) for _ in range(50)} <= {196, 192}
    assert {crop_length(150, 64, rng) for _ in range(50)} == {64}


def test_collate_pads_and_masks(train_set: MotionTextDataset):
    items = [train_set[i] for i in range(4)]
    batch = collate_motion(items)
    T = max(item["length"] for item in items)
    assert batch["motion"].shape == (4, T, 263) and batch["mask"].shape == (4, T)
    for b, item in enumerate(items):
        assert batch["mask"][b].sum() == item["length"]
        assert torch.equal(batch["motion"][b, : item["length"]], item["motion"])
        assert torch.all(batch["motion"][b, item["length"] :] == 0)
    assert batch["text_emb"].shape == (4, 384) and batch["captions"] == [item["caption"] for item in items]


def test_dataset_without_embeddings_gives_captions_only(corpus: Path):
    split = load_motion_split(corpus / "hml/index.parquet", corpus / "hml/features.npz", None, ["val", "test"])
    mean, std = load_mean_std(corpus / "hml/mean_std.npz", "eval")
    dataset = MotionTextDataset(split, mean, std, random=False)
    batch = collate_motion([dataset[i] for i in range(3)])
    assert "text_emb" not in batch and batch["captions"] == [split.captions(i)[0] for i in range(3)]
    assert set(split.index["split"]) == {"val", "test"}
    # the leading crop, normalised with the evaluator's statistics
    np.testing.assert_allclose(batch["motion"][0, : batch["lengths"][0]].numpy(),
                               (split.clip(0)[: int(batch["lengths"][0])] - mean) / std, rtol=1e-5, atol=1e-5)


def test_loader_errors_name_file_and_field(corpus: Path, tmp_path: Path):
    hml = corpus / "hml"
    with pytest.raises(ArtifactError, match="splits"):
        load_motion_split(hml / "index.parquet", hml / "features.npz", None, "holdout")
    table = pd.read_parquet(corpus / "embeddings.parquet").iloc[1:]
    save_parquet(tmp_path / "emb.parquet", table)
    with pytest.raises(ArtifactError, match=r"emb\.parquet: no embedding for caption"):
        load_motion_split(hml / "index.parquet", hml / "features.npz", tmp_path / "emb.parquet", ["train", "val", "test"])
    with np.load(hml / "features.npz") as data:
        save_npz(tmp_path / "features.npz", {"features": data["features"], "offsets": data["offsets"][:-1]})
    with pytest.raises(ArtifactError, match=r"features\.npz: field 'offsets'"):
        load_motion_split(hml / "index.parquet", tmp_path / "features.npz", None)
    with pytest.raises(ArtifactError, match="eval_std|kind"):
        load_mean_std(hml / "mean_std.npz", "other")


# --------------------------------------------------------------------------------------------- loop


def _loop(steps: int = 5, **overrides) -> LoopConfig:
    values = dict(steps=steps, batch_size=4, lr=2e-3, warmup_steps=2, lr_decay="cosine", ema_decay=0.9,
                  checkpoint_every=2, log_every=1, seed=3, length_buckets=2)
    values.update(overrides)
    return LoopConfig(**values)


def _loss_fn(config: MDMConfig = TINY):
    return partial(training_loss, schedule=config.noise_schedule(), cond_drop=0.1)


def test_epoch_batches_shard_and_bucket():
    lengths = np.arange(40)
    shards = [epoch_batches(40, 4, epoch=2, seed=1, rank=r, world_size=2, lengths=lengths, buckets=3) for r in range(2)]
    flat = [i for shard in shards for batch in shard for i in batch]
    assert sorted(flat) == list(range(40))  # the two ranks' shards are disjoint and cover all
    for shard in shards:
        assert all(len(b) == 4 for b in shard)
    assert epoch_batches(40, 4, 2, 1, 0, 2, lengths, 3) == shards[0]
    assert epoch_batches(40, 4, 3, 1, 0, 2, lengths, 3) != shards[0]
    # bucketing: inside a bucket group the batches are sorted by length
    one = epoch_batches(40, 4, 0, 0, 0, 1, lengths, buckets=10)
    assert sorted(i for b in one for i in b) == list(range(40))
    assert all(list(b) == sorted(b) for b in one)


def test_learning_rate_schedule():
    config = _loop(100, warmup_steps=10, lr=1.0, min_lr_ratio=0.1)
    assert learning_rate_at(0, config) == pytest.approx(0.1)
    assert learning_rate_at(9, config) == pytest.approx(1.0)
    assert learning_rate_at(10, config) == pytest.approx(1.0)
    assert learning_rate_at(100, config) == pytest.approx(0.1)
    assert learning_rate_at(55, config) == pytest.approx(0.55)


@pytest.mark.parametrize("bad", [dict(steps=0), dict(lr=0.0), dict(lr_decay="step"), dict(ema_decay=1.0), dict(batch_size=-1)])
def test_bad_loop_config(bad):
    with pytest.raises(ArtifactError) as info:
        _loop(**bad)
    assert "\n" not in str(info.value)


def test_a_few_steps_reduce_the_loss(train_set: MotionTextDataset):
    model = tiny_model(config=MDMConfig(latent_dim=32, num_layers=2, num_heads=4, ff_dim=64, dropout=0.0, diffusion_steps=100))
    batch = collate_motion([train_set[i] for i in range(8)])
    schedule = TINY.noise_schedule()
    t, noise = torch.arange(8) * 12, torch.randn(batch["motion"].shape, generator=torch.Generator().manual_seed(0))

    def fixed_loss(m):
        with torch.no_grad():
            return float(denoising_loss(m, schedule, batch["motion"], t, noise, text_emb=batch["text_emb"], mask=batch["mask"])[0].mean())

    before = fixed_loss(model)
    result = train(model, train_set, collate_motion, _loss_fn(), _loop(40, lr=3e-3, ema_decay=0.5), progress=False)
    assert result.step == 40 and len(result.history) == 40
    assert fixed_loss(result.model) < 0.6 * before
    assert fixed_loss(result.ema) < 0.7 * before
    first, last = np.mean([r["loss"] for r in result.history[:5]]), np.mean([r["loss"] for r in result.history[-5:]])
    assert last < first


def test_resume_matches_an_uninterrupted_run(train_set: MotionTextDataset, tmp_path: Path):
    config = _loop(6, checkpoint_every=4)
    full = train(tiny_model(), train_set, collate_motion, _loss_fn(), config, checkpoint_file=tmp_path / "full.pt",
                 fingerprint={"data": "x"}, lengths=train_set.crop_lengths(), progress=False)
    part = train(tiny_model(), train_set, collate_motion, _loss_fn(), config, checkpoint_file=tmp_path / "part.pt",
                 fingerprint={"data": "x"}, lengths=train_set.crop_lengths(), stop_at=3, progress=False)
    assert part.step == 3 and load_resume_state(tmp_path / "part.pt")["step"] == 3
    # a fresh process would rebuild the model from scratch: the checkpoint restores everything
    rest = train(tiny_model(seed=99), train_set, collate_motion, _loss_fn(), config, checkpoint_file=tmp_path / "part.pt",
                 fingerprint={"data": "x"}, lengths=train_set.crop_lengths(), progress=False)
    assert rest.resumed_from == 3 and rest.steps_run == 3 and rest.step == 6
    for key, value in full.model.state_dict().items():
        assert torch.equal(value, rest.model.state_dict()[key]), key
    for key, value in full.ema.state_dict().items():
        assert torch.equal(value, rest.ema.state_dict()[key]), key
    assert full.history == rest.history
    # another fingerprint (e.g. new data) does not resume
    other = train(tiny_model(), train_set, collate_motion, _loss_fn(), _loop(2), checkpoint_file=tmp_path / "part.pt",
                  fingerprint={"data": "y"}, progress=False)
    assert other.resumed_from == 0 and other.step == 2


# --------------------------------------------------------------------------------------------- sampling


def test_frames_per_token_groups_frames():
    config = MDMConfig(**(TINY.to_dict() | {"frames_per_token": 4}))
    model = tiny_model(config=config).eval()
    # overlapping windows of 2P frames in and out
    assert model.input_proj.kernel_size == (8,) and model.input_proj.stride == (4,)
    assert model.output_proj.kernel_size == (8,) and model.output_proj.stride == (4,)
    seen = []
    model.encoder.register_forward_hook(lambda module, args, kwargs_or_out: seen.append(args[0].shape))
    out = model(torch.randn(2, 10, 263), torch.tensor([30, 40]), mask=padding_mask(torch.tensor([10, 6])))
    # one condition token plus ceil(10 / 4) = 3 frame tokens
    assert out.shape == (2, 10, 263) and seen == [(2, 4, 32)]
    with pytest.raises(ArtifactError, match="frames_per_token"):
        MDMConfig(frames_per_token=0)
    with pytest.raises(ArtifactError, match="frames_per_token"):
        MDMConfig(frames_per_token=3)


@pytest.mark.parametrize("frames_per_token", [1, 4])
def test_sampling_shapes_determinism_and_guidance(frames_per_token: int):
    model = tiny_model(config=MDMConfig(**(TINY.to_dict() | {"frames_per_token": frames_per_token}))).eval()
    schedule = TINY.noise_schedule()
    text, lengths = torch.randn(3, 384), [12, 5, 8]
    first = generate(model, schedule, text, lengths, num_steps=5, seed=1, batch_size=2)
    again = generate(model, schedule, text, lengths, num_steps=5, seed=1, batch_size=2)
    other_batching = generate(model, schedule, text, lengths, num_steps=5, seed=1, batch_size=3)
    other_seed = generate(model, schedule, text, lengths, num_steps=5, seed=2, batch_size=2)
    assert [m.shape for m in first] == [(12, 263), (5, 263), (8, 263)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(first, other_batching))
    assert not any(torch.allclose(a, b) for a, b in zip(first, other_seed))
    stochastic = generate(model, schedule, text, lengths, num_steps=5, seed=1, eta=1.0)
    assert all(torch.isfinite(m).all() for m in stochastic) and not torch.allclose(stochastic[0], first[0])
    # guidance: scale 1 is the conditional model, scale 0 the unconditional one, 2.5 extrapolates
    x, t, mask = torch.randn(3, 12, 263), torch.full((3,), 40), padding_mask(torch.tensor(lengths), 12)
    cond, uncond = model(x, t, text, mask), model(x, t, None, mask)
    torch.testing.assert_close(guided_denoiser(model, text, 1.0)(x, t, mask=mask), cond)
    torch.testing.assert_close(guided_denoiser(model, text, 0.0)(x, t, mask=mask), uncond, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(guided_denoiser(model, text, 2.5)(x, t, mask=mask), uncond + 2.5 * (cond - uncond), atol=1e-5, rtol=1e-5)
    with pytest.raises(ArtifactError, match="caption embeddings"):
        generate(model, schedule, text, [4, 4], num_steps=2)


def test_prediction_is_a_config_field_read_by_sampling(tmp_path: Path, monkeypatch):
    assert MDMConfig().prediction == "x0" and MDMConfig(prediction="eps").prediction == "eps"
    for bad in ("v", "score", None):
        with pytest.raises(ArtifactError, match="MDMConfig: parameter 'prediction'") as info:
            MDMConfig(prediction=bad)
        assert "\n" not in str(info.value)
    # a config.json written before the field existed loads as x0
    model = tiny_model()
    save_mdm(tmp_path / "model.pt", tmp_path / "config.json", model.state_dict(), TINY)
    old = json.loads((tmp_path / "config.json").read_text())
    assert old.pop("prediction") == "x0"
    (tmp_path / "config.json").write_text(json.dumps(old))
    assert load_mdm(tmp_path / "model.pt", tmp_path / "config.json")[1] == TINY
    # generate samples with what the config says the network predicts
    import humandiff.prior.mdm as mdm

    seen = []
    real = mdm.ddim_sample
    monkeypatch.setattr(mdm, "ddim_sample", lambda *args, **kw: seen.append(kw["prediction"]) or real(*args, **kw))
    for prediction in ("x0", "eps"):
        eps_model = tiny_model(config=MDMConfig(**(TINY.to_dict() | {"prediction": prediction}))).eval()
        generate(eps_model, TINY.noise_schedule(), torch.randn(1, 384), [6], num_steps=2)
    assert seen == ["x0", "eps"]


def test_save_and_load_round_trip(tmp_path: Path):
    model = tiny_model()
    save_mdm(tmp_path / "model.pt", tmp_path / "config.json", model.state_dict(), TINY)
    loaded, config = load_mdm(tmp_path / "model.pt", tmp_path / "config.json")
    assert config == TINY and not loaded.training
    x, t = torch.randn(1, 6, 263), torch.tensor([4])
    torch.testing.assert_close(loaded(x, t), model.eval()(x, t))
    bigger = json.loads((tmp_path / "config.json").read_text()) | {"latent_dim": 64}
    (tmp_path / "config.json").write_text(json.dumps(bigger))
    with pytest.raises(ArtifactError, match="weights do not fit"):
        load_mdm(tmp_path / "model.pt", tmp_path / "config.json")


# --------------------------------------------------------------------------------------------- stages


def _stage(name: str):
    return stage_command(name)


TRAIN_PARAMS = {"seed": 0, "threads": 1, "device": "cpu", "latent_dim": 32, "num_layers": 2, "num_heads": 4, "ff_dim": 64, "dropout": 0.1,
                "frames_per_token": 2,
                "diffusion_steps": 100, "schedule": "cosine", "cond_drop": 0.1, "conditioning": "adaln",
                "standardize_text": True, "max_frames": 64, "steps": 6,
                "batch_size": 4, "lr": 1e-3, "weight_decay": 0.0, "warmup_steps": 2, "lr_decay": "cosine",
                "grad_clip": 1.0, "ema_decay": 0.9, "bf16": False, "length_buckets": 2, "checkpoint_every": 3,
                "lambda_joints": 0.0, "lambda_velocity": 0.1, "lambda_foot": 0.1, "geometry_signal_weighted": True,
                "clause_slots": 1,
                "word_tokens": 4, "clip_progress": True, "high_noise_share": 0.5, "high_noise_fraction": 0.1}
SAMPLE_PARAMS = {"seed": 0, "threads": 1, "device": "cpu", "ddim_steps": 4, "guidance_scale": 2.5, "eta": 0.0, "batch_size": 3,
                 "max_clips": 0, "videos": 1, "sheet_rows": 2}


def _run_stages(corpus: Path, out: Path, train_params: dict = TRAIN_PARAMS) -> None:
    params = out / "params.yaml"
    out.mkdir(parents=True, exist_ok=True)
    params.write_text(yaml.safe_dump({"train_mdm": train_params, "sample_mdm": SAMPLE_PARAMS}))
    common = ["--params", str(params), "--hml-dir", str(corpus / "hml"), "--embeddings", str(corpus / "embeddings.parquet")]
    result = CliRunner().invoke(_stage("train_mdm"), common + [
        "--out-dir", str(out / "mdm"), "--checkpoint", str(out / "mdm/ckpt.pt"), "--plot", str(out / "loss.csv"),
        "--metrics", str(out / "train.json")])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(_stage("sample_mdm"), common + [
        "--model-dir", str(out / "mdm"), "--out-dir", str(out / "mdm"), "--report-dir", str(out / "report"),
        "--metrics", str(out / "sample.json")])
    assert result.exit_code == 0, result.output


def test_stages_train_and_sample_deterministically(corpus: Path, tmp_path: Path):
    for run in ("a", "b"):
        _run_stages(corpus, tmp_path / run)
    a, b = tmp_path / "a", tmp_path / "b"
    weights_a = torch.load(a / "mdm/model.pt", weights_only=True)
    weights_b = torch.load(b / "mdm/model.pt", weights_only=True)
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    with np.load(a / "mdm/samples.npz") as sa, np.load(b / "mdm/samples.npz") as sb:
        assert np.array_equal(sa["features"], sb["features"]) and np.array_equal(sa["offsets"], sb["offsets"])
        features, offsets = sa["features"], sa["offsets"]
    index = pd.read_parquet(corpus / "hml/index.parquet")
    test = index[index["split"] == "test"].reset_index(drop=True)
    samples = pd.read_parquet(a / "mdm/samples.parquet")
    assert list(samples["clip_id"]) == list(test["clip_id"])
    assert list(samples["caption"]) == [caps[0] for caps in test["captions"]]
    # the table records how the samples were drawn (evaluate_t2m draws more sets the same way)
    assert (samples["ddim_steps"] == SAMPLE_PARAMS["ddim_steps"]).all() and (samples["seed"] == SAMPLE_PARAMS["seed"]).all()
    assert (samples["guidance_scale"] == SAMPLE_PARAMS["guidance_scale"]).all() and (samples["eta"] == 0.0).all()
    assert np.array_equal(np.diff(offsets), test["length"].to_numpy()) and features.shape[1] == 263
    loss_rows = (a / "loss.csv").read_text().splitlines()
    assert loss_rows[0] == "step,loss" and loss_rows[-1].startswith("6,")  # logged every 10 steps and at the end
    metrics = json.loads((a / "train.json").read_text())
    assert metrics["steps"] == 6 and np.isfinite(metrics["val_loss_ema"])
    assert (a / "report/samples.png").is_file() and (a / "report/sample_00.mp4").is_file()
    assert set(json.loads((a / "sample.json").read_text())["generated"]) == {"foot_skating_ratio", "jitter"}
    # the library's sampler (evaluate_t2m's extra sets, prior_fit) draws set 0 exactly as sample_mdm did
    from humandiff.prior.sampler import PriorSampler

    sampler = PriorSampler(a / "mdm/model.pt", a / "mdm/config.json", corpus / "hml/mean_std.npz",
                           corpus / "embeddings.parquet", SAMPLE_PARAMS, batch_size=2)
    drawn = sampler(sampler.conditions(list(samples["caption"])), samples["length"].tolist(), seed=SAMPLE_PARAMS["seed"])
    np.testing.assert_allclose(np.concatenate(drawn), features, rtol=1e-5, atol=1e-5)


def test_stage_trains_afresh_after_a_code_change(corpus: Path, tmp_path: Path, monkeypatch):
    import humandiff.train.loop
    from humandiff.io import code_digest

    digest = code_digest()
    assert digest == code_digest() and len(digest) == 64
    params = dict(TRAIN_PARAMS, steps=2)
    _run_stages(corpus, tmp_path, params)
    _run_stages(corpus, tmp_path, params)
    assert json.loads((tmp_path / "train.json").read_text())["resumed_from"] == 2  # nothing changed: nothing to do
    # DVC reruns the stage after a code change: it must train again, not "resume" the finished run
    monkeypatch.setattr(humandiff.train.loop, "code_digest", lambda: "edited")  # every training loop's fingerprint holds it
    _run_stages(corpus, tmp_path, params)
    metrics = json.loads((tmp_path / "train.json").read_text())
    assert metrics["resumed_from"] == 0 and metrics["steps"] == 2


@pytest.mark.parametrize("key,value,message", [("steps", 0, "train_mdm.steps' must be > 0"),
                                                ("latent_dim", 30, "latent_dim"),
                                                ("lr_decay", "step", "lr_decay"),
                                                ("lambda_foot", -1.0, "lambda_foot"),
                                                ("frames_per_token", 3, "frames_per_token"),
                                                ("conditioning", "film", "conditioning"),
                                                ("standardize_text", "yes", "standardize_text"),
                                                ("clause_slots", -1, "train_mdm.clause_slots' must be >= 0"),
                                                ("word_tokens", 1, "train_mdm.word_tokens' must be 0 or >= 2"),
                                                ("geometry_signal_weighted", "yes", "geometry_signal_weighted"),
                                                ("high_noise_share", 1.5, "train_mdm.high_noise_share"),
                                                ("high_noise_fraction", 0.0, "train_mdm.high_noise_fraction")])
def test_stage_bad_params_one_line_error(corpus: Path, tmp_path: Path, key, value, message):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"train_mdm": dict(TRAIN_PARAMS, **{key: value})}))
    result = CliRunner().invoke(_stage("train_mdm"), ["--params", str(params), "--hml-dir", str(corpus / "hml"),
                                                      "--embeddings", str(corpus / "embeddings.parquet"),
                                                      "--out-dir", str(tmp_path / "mdm")])
    assert result.exit_code == 2
    assert message in result.output and result.output.strip().count("\n") == 0


def test_sample_stage_missing_model_is_one_line_error(corpus: Path, tmp_path: Path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"sample_mdm": SAMPLE_PARAMS}))
    result = CliRunner().invoke(_stage("sample_mdm"), ["--params", str(params), "--hml-dir", str(corpus / "hml"),
                                                       "--model-dir", str(tmp_path / "none")])
    assert result.exit_code == 2 and "file not found" in result.output and result.output.strip().count("\n") == 0


def test_text_statistics_standardise_captions_and_travel_with_the_weights(tmp_path: Path):
    """With statistics (m, s) set, caption m + s * u conditions like u does with identity statistics;
    the statistics are saved and loaded with the weights, and the zero ("no text") caption stays
    a fixed point of its own."""
    plain = tiny_model().eval()
    standardised = tiny_model().eval()
    corpus = torch.randn(50, 384) * 0.05 + 0.3
    standardised.set_text_statistics(corpus)
    mean, std = corpus.mean(0), corpus.std(0)
    u, t = torch.randn(2, 384), torch.tensor([5, 60])
    torch.testing.assert_close(standardised.condition(t, mean + std * u), plain.condition(t, u))
    torch.testing.assert_close(standardised.condition(t, None), standardised.condition(t, torch.zeros(2, 384)))
    save_mdm(tmp_path / "m.pt", tmp_path / "c.json", standardised.state_dict(), TINY)
    loaded, _ = load_mdm(tmp_path / "m.pt", tmp_path / "c.json")
    torch.testing.assert_close(loaded.text_mean, mean)
    torch.testing.assert_close(loaded.condition(t, mean + std * u), plain.condition(t, u))
    with pytest.raises(ArtifactError, match="set_text_statistics"):
        plain.set_text_statistics(torch.randn(5, 10))
