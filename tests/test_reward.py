"""The TMR-style reward model for SoPo."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from click.testing import CliRunner

from humandiff.io import ArtifactError, concat_ragged, save_npz, save_parquet
from humandiff.evaluators.tmr import (
    CaptionedMotions,
    RewardConfig,
    RewardHistory,
    RewardModel,
    RewardTraining,
    filtered_info_nce,
    load_reward_model,
    retrieval_scores,
    reward_metrics,
    reward_summary,
    save_reward_model,
    train_reward,
)
from humandiff.motion.dataset import MotionSplit
from script_loader import stage_command

SMALL = RewardConfig(latent_dim=16, layers=1, heads=2, ff_dim=32, dropout=0.0, patch=4)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


def _fake_motions(per_class: int, seed: int) -> CaptionedMotions:
    """Four motion classes (offsets in distinct dims), each with two nearly orthogonal caption vectors."""
    rng = np.random.default_rng(seed)
    caption_bank = _unit(np.random.default_rng(99).normal(size=(4, 2, 384)))
    clips, embeddings = [], []
    for label in range(4):
        for _ in range(per_class):
            clip = rng.normal(scale=0.3, size=(int(rng.integers(12, 30)), 263)).astype(np.float32)
            clip[:, 4 + 10 * label : 14 + 10 * label] += 2.0
            clips.append(clip)
            embeddings.append(caption_bank[label])
    return CaptionedMotions(clips, embeddings)


def test_reward_is_cosine_mapped_to_unit_interval_and_ignores_padding():
    torch.manual_seed(0)
    model = RewardModel(SMALL).eval()
    features = torch.randn(3, 22, 263)
    mask = torch.arange(22)[None, :] < torch.tensor([22, 13, 7])[:, None]
    captions = torch.nn.functional.normalize(torch.randn(3, 384), dim=-1)
    scores = model.reward(features, mask, captions)
    assert scores.shape == (3,) and bool(((scores >= 0) & (scores <= 1)).all())
    cosine = (model.encode_motion(features, mask) * model.encode_text(captions)).sum(-1)
    torch.testing.assert_close(scores, cosine / 2 + 0.5)
    garbage = features.clone()
    garbage[~mask] = 1e3
    torch.testing.assert_close(model.reward(garbage, mask, captions), scores)
    # a clip scored alone, unpadded, scores the same as inside the padded batch
    alone = model.reward(features[2:, :7], mask[2:, :7], captions[2:])
    torch.testing.assert_close(alone, scores[2:], atol=1e-5, rtol=0)


def test_reward_is_differentiable_in_the_motion():
    model = RewardModel(SMALL).eval()
    features = torch.randn(2, 16, 263, requires_grad=True)
    model.reward(features, torch.ones(2, 16, dtype=torch.bool), torch.randn(2, 384)).sum().backward()
    assert features.grad is not None and float(features.grad.abs().sum()) > 0


def test_reward_rejects_bad_input():
    model = RewardModel(SMALL)
    features, mask = torch.zeros(2, 8, 263), torch.ones(2, 8, dtype=torch.bool)
    with pytest.raises(ArtifactError, match="263"):
        model.reward(torch.zeros(2, 8, 200), mask, torch.zeros(2, 384))
    with pytest.raises(ArtifactError, match="mask"):
        model.reward(features, mask.float(), torch.zeros(2, 384))
    with pytest.raises(ArtifactError, match="caption embeddings"):
        model.reward(features, mask, torch.zeros(2, 300))
    with pytest.raises(ArtifactError, match="2 motions but 3 captions"):
        model.reward(features, mask, torch.zeros(3, 384))
    with pytest.raises(ArtifactError, match="no valid frame"):
        model.reward(features, torch.zeros(2, 8, dtype=torch.bool), torch.zeros(2, 384))
    with pytest.raises(ArtifactError, match="divisible"):
        RewardConfig(latent_dim=30, heads=4)


def test_filtered_info_nce_known_values():
    latents = torch.eye(4)
    captions = torch.eye(4, 384)
    # orthonormal, perfectly matched latents: logits 10 on the diagonal, 0 elsewhere
    expected = float(np.log(np.exp(10.0) + 3.0) - 10.0)
    assert float(filtered_info_nce(latents, latents, captions, 0.1, 0.8)) == pytest.approx(expected, rel=1e-3)
    # captions 0 and 1 nearly the same: their cross pairs leave the denominators
    similar = captions.clone()
    similar[1] = torch.nn.functional.normalize(captions[0] + 0.1 * captions[1], dim=0)
    text = torch.nn.functional.normalize(torch.tensor([[1.0, 1.0, 0, 0], [1.0, 1.0, 0, 0], [0, 0, 1.0, 0],
                                                       [0, 0, 0, 1.0]]), dim=-1)
    motion = torch.eye(4)
    logits = text @ motion.T / 0.1
    filtered = logits.clone()
    filtered[0, 1] = filtered[1, 0] = float("-inf")
    target = torch.arange(4)
    manual = 0.5 * (torch.nn.functional.cross_entropy(filtered, target)
                    + torch.nn.functional.cross_entropy(filtered.T, target))
    assert float(filtered_info_nce(text, motion, similar, 0.1, 0.8)) == pytest.approx(float(manual), rel=1e-6)
    unfiltered = filtered_info_nce(text, motion, similar, 0.1, 1.0)
    assert float(unfiltered) > float(manual)


def test_train_reward_learns_and_is_deterministic(tmp_path):
    train, val = _fake_motions(12, seed=0), _fake_motions(10, seed=1)
    options = RewardTraining(epochs=3, batch_size=16, lr=3e-3, seed=3)
    runs = []
    for _ in range(2):
        torch.manual_seed(7)
        model = RewardModel(SMALL)
        runs.append((model, train_reward(model, train, val, options, progress=False)))
    (model, history), (other, other_history) = runs
    assert history.train_loss == other_history.train_loss and history.val_top3 == other_history.val_top3
    for a, b in zip(model.state_dict().values(), other.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert history.train_loss[-1] < history.train_loss[0]
    scores = retrieval_scores(model, val, np.random.default_rng(0), replications=2)
    assert scores["matched_reward"] > scores["mismatched_reward"]
    assert scores["top3"] > 3 / 32

    save_reward_model(tmp_path / "reward.pt", model)
    loaded = load_reward_model(tmp_path / "reward.pt")
    features, mask = torch.randn(2, 20, 263), torch.ones(2, 20, dtype=torch.bool)
    captions = torch.from_numpy(_unit(np.random.default_rng(0).normal(size=(2, 384))))
    torch.testing.assert_close(loaded.reward(features, mask, captions), model.reward(features, mask, captions))
    torch.save({"config": {"latent_dim": 32, "heads": 2}, "state_dict": model.state_dict()}, tmp_path / "bad.pt")
    with pytest.raises(ArtifactError, match="state_dict"):
        load_reward_model(tmp_path / "bad.pt")


def test_captioned_motions_of_a_split_and_the_reward_metrics():
    lengths = [6, 9]
    features = np.random.default_rng(0).normal(size=(sum(lengths), 263)).astype(np.float32)
    embeddings = _unit(np.random.default_rng(1).normal(size=(3, 384)))
    index = pd.DataFrame({"clip_id": ["a", "b"], "captions": [["x", "y"], ["z"]]})
    split = MotionSplit(index, features, np.cumsum([0, *lengths]), embeddings, (np.array([0, 1]), np.array([2])))
    data = CaptionedMotions.from_split(split)
    assert len(data) == 2 and [len(c) for c in data.clips] == lengths
    np.testing.assert_array_equal(data.caption_embeddings[0], embeddings[:2])
    np.testing.assert_array_equal(data.caption_embeddings[1], embeddings[2:])

    test = {"top1": 0.5, "top2": 0.625, "top3": 0.75, "matched_reward": 0.9, "mismatched_reward": 0.4}
    history = RewardHistory(train_loss=[2.0, 1.0], val_loss=[1.5, 1.75], best_epoch=1)
    model = RewardModel(SMALL)
    metrics = reward_metrics(test, history, RewardTraining(epochs=2), model, 100, 32, 5, 7.77)
    assert metrics == {
        "test_top1": 0.5, "test_top2": 0.625, "test_top3": 0.75, "test_matched_reward": 0.9,
        "test_mismatched_reward": 0.4, "chance_top3": 3 / 32,
        "retrieval": "text -> motion among shuffled batches of 32, cosine ranking, 5 caption draws",
        "best_epoch": 1, "epochs": 2, "val_loss": 1.5, "train_clips": 100, "test_clips": 32,
        "parameters": sum(t.numel() for t in model.parameters()), "train_seconds": 7.8}
    assert reward_summary(history, test) == "reward: best epoch 1, test top-3 0.750 (chance 0.094), matched 0.900 vs mismatched 0.400"


# --------------------------------------------------------------------------- stage train_reward

REPO = Path(__file__).resolve().parents[1]
STAGE_PARAMS = {"seed": 1, "threads": 1, "device": "cpu", "epochs": 2, "batch_size": 16, "lr": 0.003, "weight_decay": 0.01,
                "temperature": 0.1, "negative_threshold": 0.8, "latent_dim": 16, "layers": 1, "heads": 2, "ff_dim": 32,
                "dropout": 0.0, "patch": 4, "test_replications": 2}


def _main():
    return stage_command("train_reward")


def _corpus(root: Path) -> None:
    """index / features / mean_std / embeddings in the foundation formats: 4 classes, train 40, val 8, test 32."""
    data = _fake_motions(20, seed=4)
    splits = (["train"] * 10 + ["val"] * 2 + ["test"] * 8) * 4  # per class, in class order
    captions = [[f"class {label} caption {i}" for i in range(2)] for label in range(4)]
    features, offsets = concat_ragged(data.clips)
    index = pd.DataFrame({"clip_id": [f"{k:03d}" for k in range(80)], "split": splits,
                          "length": [len(c) for c in data.clips], "captions": [captions[k // 20] for k in range(80)]})
    save_parquet(root / "index.parquet", index)
    save_npz(root / "features.npz", {"features": features, "offsets": offsets})
    save_npz(root / "mean_std.npz", {"mean": np.zeros(263, np.float32), "std": np.ones(263, np.float32)})
    embeddings = {captions[k // 20][i]: data.caption_embeddings[k][i] for k in range(80) for i in range(2)}
    save_parquet(root / "embeddings.parquet",
                 pd.DataFrame({"caption": list(embeddings), "embedding": list(embeddings.values())}))


def _args(root: Path, params: dict) -> list[str]:
    (root / "params.yaml").write_text(yaml.safe_dump({"train_reward": params}))
    return [str(a) for a in ["--params", root / "params.yaml", "--index", root / "index.parquet", "--features",
                             root / "features.npz", "--mean-std", root / "mean_std.npz", "--embeddings",
                             root / "embeddings.parquet", "--out", root / "reward.pt", "--metrics", root / "reward.json",
                             "--plots-dir", root / "plots"]]


def test_train_reward_stage(tmp_path):
    _corpus(tmp_path)
    result = CliRunner().invoke(_main(), _args(tmp_path, STAGE_PARAMS), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "reward.json").read_text())
    assert metrics["test_clips"] == 32 and metrics["train_clips"] == 40
    assert 0.0 <= metrics["test_mismatched_reward"] <= 1.0 and 0.0 <= metrics["test_matched_reward"] <= 1.0
    assert 0.0 <= metrics["test_top1"] <= metrics["test_top2"] <= metrics["test_top3"] <= 1.0
    model = load_reward_model(tmp_path / "reward.pt")
    assert model.config.latent_dim == 16 and float(model.std[0]) == 1.0

    for bad, message in [({"negative_threshold": 1.5}, "'train_reward.negative_threshold' must be in [-1, 1]"),
                         ({"heads": 3}, "'train_reward.latent_dim' 16 must be divisible by 'train_reward.heads' 3"),
                         ({"test_replications": 0}, "train_reward.test_replications"),
                         ({"lr": "fast"}, "parameter 'train_reward.lr' must be float, got 'fast'"),
                         ({"temprature": 0.1}, "unknown parameter(s) train_reward.temprature"),
                         ({"device": "tpu"}, "train_reward.device' must be one of auto, cpu, cuda")]:
        result = CliRunner().invoke(_main(), _args(tmp_path, dict(STAGE_PARAMS, **bad)), catch_exceptions=False)
        assert result.exit_code == 2 and message in result.output, (bad, result.output)
        assert len(result.output.strip().splitlines()) == 1
    result = CliRunner().invoke(_main(), _args(tmp_path, {k: v for k, v in STAGE_PARAMS.items() if k != "device"}))
    assert result.exit_code == 2 and "missing parameter 'train_reward.device'" in result.output
    (tmp_path / "embeddings.parquet").write_bytes(b"junk")
    result = CliRunner().invoke(_main(), _args(tmp_path, STAGE_PARAMS), catch_exceptions=False)
    assert result.exit_code == 2 and "embeddings.parquet" in result.output
