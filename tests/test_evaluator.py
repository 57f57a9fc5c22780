"""The matching evaluator and its token embeddings."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from click.testing import CliRunner

from humandiff.io import ArtifactError, concat_ragged, save_npz, save_parquet
from humandiff.evaluators.evaluator import (
    CaptionedClips,
    EvaluatorConfig,
    EvaluatorHistory,
    EvaluatorTraining,
    MatchingEvaluator,
    evaluator_metrics,
    evaluator_summary,
    finite_or_none,
    info_nce_matching_loss,
    load_evaluator,
    margin_matching_loss,
    matching_loss,
    pad_clips,
    random_crop,
    save_evaluator,
    train_evaluator,
)
from humandiff.eval.report import write_loss_curves
from humandiff.motion.dataset import MotionSplit
from humandiff.text.tokens import (
    build_token_table,
    load_token_table,
    minilm_token_table,
    minilm_word_vectors,
    save_token_table,
)
from script_loader import stage_command

SMALL = EvaluatorConfig(conv_channels=16, motion_hidden=16, text_hidden=16, embed_dim=8, dropout=0.0)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


WORDS = ["walks", "runs", "jumps", "waves", "left", "right", "forward", "back", "a", "person"]


def _tokenize(caption: str) -> list[int]:
    return [WORDS.index(w) + 1 for w in caption.split()]


def _vectors(dim: int = 384) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(len(WORDS) + 1, dim)).astype(np.float32)


def _fake_dataset(clips_per_class: int, seed: int) -> tuple[CaptionedClips, list[str]]:
    """Four motion classes (distinct offsets in a few dims) each with its own caption."""
    captions = ["a person walks forward", "a person runs back", "a person jumps left", "a person waves right"]
    rng = np.random.default_rng(seed)
    clips, rows = [], []
    for label in range(len(captions)):
        for _ in range(clips_per_class):
            clip = rng.normal(scale=0.3, size=(int(rng.integers(16, 33)), 263)).astype(np.float32)
            clip[:, 4 + label * 10 : 14 + label * 10] += 2.0
            clips.append(clip)
            rows.append(np.array([label]))
    return CaptionedClips(clips, rows), captions


# --------------------------------------------------------------------------- tokens


def test_token_table_compacts_vocabulary_and_pads():
    vectors = _vectors(6)
    table = build_token_table(["a person walks", "a person walks", "jumps"], _tokenize, vectors)
    assert table.captions == ("a person walks", "jumps")
    np.testing.assert_array_equal(table.lengths, [3, 1])
    words, lengths = table.embed([1, 0])
    assert words.shape == (2, 3, 6)
    np.testing.assert_allclose(words[1, 0].numpy(), vectors[WORDS.index("a") + 1])
    np.testing.assert_allclose(words[0, 0].numpy(), vectors[WORDS.index("jumps") + 1])
    assert float(words[0, 1:].abs().sum()) == 0.0  # padding rows are zero
    np.testing.assert_array_equal(lengths.numpy(), [1, 3])


def test_token_table_truncation_keeps_the_end_marker():
    table = build_token_table(["a person walks forward left"], _tokenize, _vectors(4), max_tokens=3)
    words, _ = table.embed([0])
    np.testing.assert_allclose(words[0, -1].numpy(), _vectors(4)[WORDS.index("left") + 1])
    assert int(table.lengths[0]) == 3


def test_token_table_round_trip_and_bad_input(tmp_path):
    table = build_token_table(["a person walks", "runs"], _tokenize, _vectors(4))
    save_token_table(tmp_path / "tokens.npz", table)
    loaded = load_token_table(tmp_path / "tokens.npz")
    assert loaded.captions == table.captions
    np.testing.assert_array_equal(loaded.ids, table.ids)
    np.testing.assert_array_equal(loaded.vectors, table.vectors)
    with pytest.raises(ArtifactError, match="not in the table"):
        table.rows(["a person jumps"])
    with pytest.raises(ArtifactError, match="empty"):
        build_token_table(["  "], _tokenize, _vectors(4))
    with pytest.raises(ArtifactError, match="outside the table"):
        build_token_table(["person"], _tokenize, _vectors(4)[:3])


@pytest.fixture(scope="module")
def minilm():
    from humandiff.text.encoder import load_minilm

    return load_minilm()


def test_minilm_token_embeddings_are_the_static_table_and_deterministic(minilm):
    captions = ["a person walks forward and turns left.", "someone jumps twice"]
    first = minilm_token_table(captions, model=minilm)
    second = minilm_token_table(list(reversed(captions)) + captions, model=minilm)
    a, _ = first.embed(first.rows(captions))
    b, _ = second.embed(second.rows(captions))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    tokenize, table = minilm_word_vectors(minilm)
    ids = tokenize(captions[1])
    assert ids[0] == minilm.tokenizer.cls_token_id and ids[-1] == minilm.tokenizer.sep_token_id
    np.testing.assert_array_equal(a[1, : len(ids)].numpy(), table[ids])
    assert table.shape == (30522, 384)


# --------------------------------------------------------------------------- encoders


def test_embeddings_ignore_contacts_and_batch_padding():
    torch.manual_seed(0)
    model = MatchingEvaluator(SMALL).eval()
    rng = np.random.default_rng(1)
    short, long = rng.normal(size=(40, 263)).astype(np.float32), rng.normal(size=(96, 263)).astype(np.float32)
    alone = model.embed_motions([short])
    batched = model.embed_motions([short, long])
    np.testing.assert_allclose(alone[0], batched[0], atol=1e-5)
    changed = short.copy()
    changed[:, 259:263] = 100.0
    np.testing.assert_allclose(model.embed_motions([changed])[0], alone[0], atol=1e-6)
    changed[:, 10] += 1.0
    assert np.abs(model.embed_motions([changed])[0] - alone[0]).max() > 1e-4


def test_evaluator_rejects_bad_input():
    model = MatchingEvaluator(SMALL)
    with pytest.raises(ArtifactError, match="263"):
        model.encode_motion(torch.zeros(2, 16, 260), torch.tensor([16, 16]))
    with pytest.raises(ArtifactError, match="word vectors"):
        model.encode_text(torch.zeros(2, 5, 300), torch.tensor([5, 5]))
    with pytest.raises(ArtifactError, match="eval_std"):
        MatchingEvaluator(SMALL, np.zeros(263), np.zeros(263))
    with pytest.raises(ArtifactError, match="clip 0"):
        CaptionedClips([np.zeros((2, 263), np.float32)], [np.array([0])])
    with pytest.raises(ArtifactError, match="'loss' must be one of margin, info_nce, infonce, got 'triplet'"):
        EvaluatorTraining(loss="triplet")


def test_random_crop_is_a_multiple_of_four_inside_the_clip():
    clip = np.arange(50, dtype=np.float32)[:, None]
    rng = np.random.default_rng(0)
    for _ in range(50):
        crop = random_crop(clip, rng)
        assert len(crop) in (44, 48)
        assert np.all(np.diff(crop[:, 0]) == 1.0) and crop[0, 0] >= 0 and crop[-1, 0] <= 49


# --------------------------------------------------------------------------- losses and training


def test_margin_loss_known_values():
    text = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    motion = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    # positives at distance 0; the two negatives at distance 5 -> relu(10 - 5)^2 = 25
    assert float(margin_matching_loss(text, motion, torch.tensor([0, 1]), margin=10.0)) == pytest.approx(25.0)
    # the same caption twice: no valid negative, only the positive term remains
    assert float(margin_matching_loss(text, motion, torch.tensor([0, 0]), margin=10.0)) == pytest.approx(0.0, abs=1e-9)
    # InfoNCE with logits -d: log(1 + e^-5) per direction and row
    expected = np.log1p(np.exp(-5.0))
    assert float(info_nce_matching_loss(text, motion, torch.tensor([0, 1]))) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("loss", ["margin", "info_nce"])
def test_contrastive_loss_decreases_on_fake_data(loss):
    torch.manual_seed(0)
    data, captions = _fake_dataset(8, seed=0)
    table = build_token_table(captions, _tokenize, _vectors())
    model = MatchingEvaluator(SMALL)
    options = EvaluatorTraining(loss=loss, margin=3.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    features, lengths = pad_clips(data.clips)
    rows = np.concatenate(data.caption_rows)
    words, word_lengths = table.embed(rows)
    losses = []
    for _ in range(40):
        value = matching_loss(model, features, lengths, words, word_lengths, torch.from_numpy(rows), options)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        losses.append(float(value.detach()))
    assert losses[-1] < 0.5 * losses[0]


def test_train_evaluator_is_deterministic_and_learns(tmp_path):
    train, captions = _fake_dataset(16, seed=1)
    val, _ = _fake_dataset(10, seed=2)
    table = build_token_table(captions, _tokenize, _vectors())
    options = EvaluatorTraining(epochs=3, batch_size=16, lr=3e-3, margin=3.0, seed=5, val_replications=2)
    runs = []
    for _ in range(2):
        torch.manual_seed(123)  # the model's init; training seeds itself from options.seed
        model = MatchingEvaluator(SMALL)
        history = train_evaluator(model, train, val, table, options, progress=False)
        runs.append((model, history))
    (model, history), (other, other_history) = runs
    assert history.val_top3 == other_history.val_top3 and history.train_loss == other_history.train_loss
    for (name, a), b in zip(model.state_dict().items(), other.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    assert len(history.train_loss) == 3 and 1 <= history.best_epoch <= 3
    assert history.train_loss[-1] < history.train_loss[0]
    # 4 classes of ~8 clips per batch of 32, one caption each: the best possible top-3 is about 3/8,
    # chance is 3/32
    assert max(history.val_top3) > 0.25

    save_evaluator(tmp_path / "evaluator.pt", model)
    loaded = load_evaluator(tmp_path / "evaluator.pt")
    np.testing.assert_allclose(loaded.embed_motions(val.clips[:5]), model.embed_motions(val.clips[:5]), atol=1e-6)
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ArtifactError, match="broken.pt"):
        load_evaluator(tmp_path / "broken.pt")
    with pytest.raises(ArtifactError, match="file not found"):
        load_evaluator(tmp_path / "missing.pt")


def test_captioned_clips_of_a_split_read_their_captions_rows():
    lengths = [8, 12, 9]
    features = np.random.default_rng(0).normal(size=(sum(lengths), 263)).astype(np.float32)
    index = pd.DataFrame({"clip_id": ["a", "b", "c"], "captions": [["a person walks forward"],
                          ["a person runs back", "a person jumps left"], ["a person walks forward"]]})
    split = MotionSplit(index, features, np.cumsum([0, *lengths]), None, ())
    table = build_token_table(["a person jumps left", "a person runs back", "a person walks forward"], _tokenize, _vectors())
    data = CaptionedClips.from_split(split, table)
    assert len(data) == 3 and [len(c) for c in data.clips] == lengths
    np.testing.assert_array_equal(data.clips[1], features[8:20])
    assert [list(rows) for rows in data.caption_rows] == [[2], [1, 0], [2]]


def test_evaluator_metrics_report_the_chosen_epoch_and_null_for_unmeasured(tmp_path):
    nan = float("nan")
    history = EvaluatorHistory(train_loss=[3.0, 2.0, 1.5], val_loss=[2.5, 1.25, 1.5], best_epoch=2,
                               val_top1=[nan, nan, nan], val_top2=[nan, nan, nan], val_top3=[0.1, 0.4, 0.3],
                               val_mm_dist=[4.0, 3.5, 3.0])
    table = build_token_table(["a person walks forward"], _tokenize, _vectors())
    model = MatchingEvaluator(SMALL)
    metrics = evaluator_metrics(history, EvaluatorTraining(epochs=3), model, table, 40, 8, 12.345)
    assert list(metrics) == ["loss", "best_epoch", "epochs", "val_loss", "val_top1", "val_top2", "val_top3",
                             "val_mm_dist", "chance_top3", "train_clips", "val_clips", "parameters", "vocabulary",
                             "train_seconds"]
    assert metrics["val_loss"] == 1.25 and metrics["val_top1"] is None and metrics["val_top3"] == 0.4
    assert metrics["val_mm_dist"] == 3.5 and metrics["chance_top3"] == 3 / 8 and metrics["train_seconds"] == 12.3
    assert metrics["parameters"] == sum(t.numel() for t in model.parameters()) and metrics["vocabulary"] == 4
    assert (metrics["loss"], metrics["epochs"], metrics["train_clips"], metrics["val_clips"]) == ("margin", 3, 40, 8)
    assert finite_or_none(np.float32(2.5)) == 2.5 and finite_or_none(float("inf")) is None
    assert evaluator_summary(history, 40) == ("evaluator: best epoch 2 (val loss 1.2500), val top-3 0.400 (chance 0.094), "
                                              "MM-Dist 3.500")

    write_loss_curves(tmp_path / "plots", "evaluator", history.train_loss, history.val_loss)
    assert (tmp_path / "plots/evaluator_loss.csv").read_text().splitlines() == [
        "epoch,train_loss,val_loss", "1,3,2.5", "2,2,1.25", "3,1.5,1.5"]
    assert not (tmp_path / "plots/evaluator_loss.png").exists()  # a PNG only with a title
    write_loss_curves(tmp_path / "plots", "evaluator", history.train_loss, history.val_loss, "evaluator margin loss")
    assert (tmp_path / "plots/evaluator_loss.png").stat().st_size > 1000


def test_info_nce_and_its_old_spelling_train_the_same_weights():
    train, captions = _fake_dataset(4, seed=1)
    val, _ = _fake_dataset(2, seed=2)
    table = build_token_table(captions, _tokenize, _vectors())
    states = []
    for loss in ("info_nce", "infonce"):
        torch.manual_seed(0)
        model = MatchingEvaluator(SMALL)
        train_evaluator(model, train, val, table, EvaluatorTraining(epochs=1, batch_size=8, loss=loss), progress=False)
        states.append(model.state_dict())
    for name, value in states[0].items():
        torch.testing.assert_close(value, states[1][name], rtol=0, atol=0, msg=name)


# --------------------------------------------------------------------------- stages train_evaluator, evaluate_t2m

REPO = Path(__file__).resolve().parents[1]


def _stage(name: str):
    return stage_command(name)


def _invoke(name: str, *args) -> object:
    return CliRunner().invoke(_stage(name), [str(a) for a in args], catch_exceptions=False)


STAGE_PARAMS = {
    "train_evaluator": {"seed": 0, "threads": 1, "device": "cpu", "epochs": 2, "batch_size": 16, "lr": 0.003, "loss": "infonce",
                        "margin": 3.0, "temperature": 1.0, "max_tokens": 16, "conv_channels": 16, "motion_hidden": 16,
                        "text_hidden": 16, "embed_dim": 8, "dropout": 0.0, "val_replications": 2},
    "evaluate_t2m": {"seed": 0, "threads": 1, "device": "cpu", "replications": 3, "diversity_times": 20, "sample_sets": 3, "mm_texts": 4,
                     "mm_repeats": 3, "mm_times": 2, "sample_batch_size": 8},
}


def _write_params(tmp_path: Path, **overrides) -> Path:
    params = copy.deepcopy(STAGE_PARAMS)
    for dotted, value in overrides.items():
        section, key = dotted.split("__")
        params[section][key] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A tiny corpus in the foundation stages' formats: 4 motion classes, 80 clips (train 40, val 8, test 32),
    a tiny MDM prior and its 'samples' (noisy test motions)."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    captions = [["a person walks forward", "someone walks"], ["a person runs back", "someone runs"],
                ["a person jumps left", "someone jumps"], ["a person waves right", "someone waves"]]
    clips, rows = [], []
    splits = ["train"] * 40 + ["val"] * 8 + ["test"] * 32
    for k, split in enumerate(splits):
        label = k % 4
        clip = rng.normal(scale=0.3, size=(int(rng.integers(40, 60)), 263)).astype(np.float32)
        clip[:, 4 + 10 * label : 14 + 10 * label] += 2.0
        clips.append(clip)
        rows.append({"clip_id": f"{k:04d}", "source_id": f"{k:04d}", "split": split, "length": len(clip),
                     "captions": captions[label], "actions": ["x"], "mirror": False})
    features, offsets = concat_ragged(clips)
    hml = root / "hml"
    save_parquet(hml / "index.parquet", pd.DataFrame(rows))
    save_npz(hml / "features.npz", {"features": features, "offsets": offsets})
    mean, std = features.mean(0), features.std(0) + 0.1
    save_npz(hml / "mean_std.npz", {"mean": mean, "std": std, "eval_mean": mean, "eval_std": std})
    distinct = sorted({c for caps in captions for c in caps})
    vectors = rng.normal(size=(len(distinct), 384)).astype(np.float32)
    save_parquet(root / "embeddings.parquet", pd.DataFrame(
        {"caption": distinct, "embedding": list(vectors / np.linalg.norm(vectors, axis=1, keepdims=True))}))
    test = [k for k, s in enumerate(splits) if s == "test"]
    samples, sample_offsets = concat_ragged([clips[k] + rng.normal(scale=0.01, size=clips[k].shape).astype(np.float32)
                                             for k in test])
    save_npz(root / "samples.npz", {"features": samples, "offsets": sample_offsets})
    save_parquet(root / "samples.parquet", pd.DataFrame({"clip_id": [rows[k]["clip_id"] for k in test],
                                                         "caption": [rows[k]["captions"][0] for k in test],
                                                         "length": [len(clips[k]) for k in test],
                                                         "seed": 0, "ddim_steps": 2, "guidance_scale": 2.5, "eta": 0.0}))
    from humandiff.prior.mdm import MDMConfig, MotionDiffusionModel, save_mdm

    config = MDMConfig(latent_dim=16, num_layers=1, num_heads=2, ff_dim=32, diffusion_steps=10)
    torch.manual_seed(0)
    save_mdm(root / "mdm.pt", root / "mdm.json", MotionDiffusionModel(config).state_dict(), config)
    return root


def _train_args(corpus: Path, params: Path, out: Path) -> list:
    return ["--params", params, "--index", corpus / "hml/index.parquet", "--features", corpus / "hml/features.npz",
            "--mean-std", corpus / "hml/mean_std.npz", "--out", out / "evaluator.pt", "--metrics", out / "evaluator.json",
            "--plots-dir", out / "plots"]


def _evaluate_args(corpus: Path, params: Path, out: Path) -> list:
    return ["--params", params, "--evaluator", out / "evaluator.pt", "--index", corpus / "hml/index.parquet",
            "--features", corpus / "hml/features.npz", "--mean-std", corpus / "hml/mean_std.npz",
            "--embeddings", corpus / "embeddings.parquet", "--samples", corpus / "samples.npz",
            "--samples-index", corpus / "samples.parquet", "--mdm-model", corpus / "mdm.pt",
            "--mdm-config", corpus / "mdm.json", "--report", out / "t2m.md", "--metrics", out / "t2m.json"]


def test_train_evaluator_and_evaluate_t2m_stages(corpus, tmp_path):
    params = _write_params(tmp_path)
    result = _invoke("train_evaluator", *_train_args(corpus, params, tmp_path))
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "evaluator.json").read_text())
    assert metrics["best_epoch"] in (1, 2) and metrics["train_clips"] == 40 and metrics["val_clips"] == 8
    # 8 val clips: R-precision measured on what there is, one batch of 8 (chance top-3 3/8)
    assert 0.0 <= metrics["val_top3"] <= 1.0 and metrics["chance_top3"] == 3 / 8
    assert "in one batch of all 8 val clips" in result.output
    assert (tmp_path / "plots/evaluator_loss.csv").read_text().startswith("epoch,train_loss,val_loss")
    assert (tmp_path / "plots/evaluator_loss.png").stat().st_size > 0

    result = _invoke("evaluate_t2m", *_evaluate_args(corpus, params, tmp_path))
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "t2m.json").read_text())
    for row in ("real", "mdm"):
        for name in ("top1", "top2", "top3", "mm_dist", "fid", "diversity", "foot_skating_ratio", "jitter"):
            assert np.isfinite(report[row][name]), (row, name)
        for name in ("top1", "top2", "top3", "mm_dist", "fid", "diversity"):
            assert report[row][f"{name}_ci"] >= 0.0
    assert report["mdm"]["multimodality"] > 0.0 and report["mdm"]["multimodality_ci"] >= 0.0
    assert [bar["holds"] for bar in report["bars"]] == [
        report["mdm"]["top3"] >= 0.8 * report["real"]["top3"],
        abs(report["mdm"]["mm_dist"] - report["real"]["mm_dist"]) <= 0.2 * report["real"]["mm_dist"],
        report["mdm"]["foot_skating_ratio"] <= 0.1,
        report["mdm"]["jitter"] <= 2 * report["real"]["jitter"],
    ]
    # every replication scored its own sample set (set 0 the artifact, two drawn by the stage): the MDM
    # intervals include sampling variance, so FID, which uses every sample, varies between replications
    assert report["protocol"]["mdm_sample_sets"] == 3 and report["mdm"]["fid_ci"] > 0.0
    assert "replication r scores set r mod 3" in (tmp_path / "t2m.md").read_text()
    params = _write_params(tmp_path, evaluate_t2m__sample_sets=1, evaluate_t2m__mm_texts=0)
    (tmp_path / "one").mkdir()
    shutil.copy(tmp_path / "evaluator.pt", tmp_path / "one/evaluator.pt")
    assert _invoke("evaluate_t2m", *_evaluate_args(corpus, params, tmp_path / "one")).exit_code == 0
    one = json.loads((tmp_path / "one/t2m.json").read_text())
    assert one["mdm"]["fid_ci"] == 0.0 and one["real"] == report["real"]
    breakdown = report["mm_dist_breakdown"]
    assert 0.0 <= breakdown["miss_share"] <= 1.0 and breakdown["real_cutoff"] >= breakdown["real_median"] > 0.0
    markdown = (tmp_path / "t2m.md").read_text()
    assert "| Real (test motions) |" in markdown and "| MDM (ours) |" in markdown
    assert "### Where MM-Dist comes from" in markdown
    assert "0.511 ± 0.003" in markdown  # the paper's Real top-1, quoted


@pytest.mark.parametrize("override, message", [
    ({"train_evaluator__loss": "triplet"}, "'train_evaluator.loss' must be one of margin, info_nce, infonce"),
    ({"train_evaluator__epochs": 0}, "train_evaluator.epochs"),
    ({"train_evaluator__lr": "fast"}, "train_evaluator.lr"),
    ({"train_evaluator__batch_size": 1}, "'train_evaluator.batch_size' must be >= 2"),
    ({"train_evaluator__threads": 0}, "train_evaluator.threads"),
    ({"train_evaluator__epoch": 3}, "unknown parameter(s) train_evaluator.epoch"),
    ({"train_evaluator__device": "gpu"}, "train_evaluator.device' must be one of auto, cpu, cuda"),
    pytest.param({"train_evaluator__device": "cuda"}, "train_evaluator.device' is 'cuda' but torch sees no CUDA device",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is there")),
])
def test_train_evaluator_rejects_bad_params(corpus, tmp_path, override, message):
    result = _invoke("train_evaluator", *_train_args(corpus, _write_params(tmp_path, **override), tmp_path))
    assert result.exit_code == 2 and message in result.output and len(result.output.strip().splitlines()) == 1


def test_evaluate_t2m_rejects_bad_params_and_inputs(corpus, tmp_path):
    result = _invoke("evaluate_t2m", *_evaluate_args(corpus, _write_params(tmp_path, evaluate_t2m__mm_texts=-1), tmp_path))
    assert result.exit_code == 2 and "mm_texts" in result.output
    params = _write_params(tmp_path, train_evaluator__epochs=1)
    assert _invoke("train_evaluator", *_train_args(corpus, params, tmp_path)).exit_code == 0
    params = _write_params(tmp_path, evaluate_t2m__diversity_times=300)
    result = _invoke("evaluate_t2m", *_evaluate_args(corpus, params, tmp_path))
    assert result.exit_code == 2 and "diversity_times" in result.output
    params = _write_params(tmp_path, evaluate_t2m__sample_sets=4)  # more sets than the 3 replications
    result = _invoke("evaluate_t2m", *_evaluate_args(corpus, params, tmp_path))
    assert result.exit_code == 2 and "evaluate_t2m.sample_sets" in result.output
    (tmp_path / "evaluator.pt").unlink()
    result = _invoke("evaluate_t2m", *_evaluate_args(corpus, _write_params(tmp_path), tmp_path))
    assert result.exit_code == 2 and "evaluator.pt: file not found" in result.output
