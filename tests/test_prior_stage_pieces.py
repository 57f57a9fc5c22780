"""The library pieces of the train_mdm, sample_mdm and evaluate_t2m stages (humandiff.prior.training,
humandiff.prior.samples, humandiff.eval.t2m_report)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from humandiff.eval import t2m_report
from humandiff.io import ArtifactError
from humandiff.io.stage import section_config
from humandiff.motion.dataset import load_motion_split
from humandiff.prior import samples, training
from humandiff.prior.mdm import MDMConfig
from humandiff.train.loop import LoopConfig

from test_mdm import SAMPLE_PARAMS, TRAIN_PARAMS, write_fake_corpus


def _params(tmp_path: Path, section: str, values: dict) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({section: values}))
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_fake_corpus(tmp_path_factory.mktemp("corpus"))


# --------------------------------------------------------------------------------------------- training


def test_the_train_section_builds_both_configs_as_the_stage_did(tmp_path: Path):
    path = _params(tmp_path, "train_mdm", TRAIN_PARAMS)
    (config, loop), p = section_config(path, "train_mdm", (MDMConfig, LoopConfig), training.TRAIN_EXTRA,
                                       defaults=training.TRAIN_DEFAULTS)
    assert config == MDMConfig.from_section(TRAIN_PARAMS) and config.prediction == "x0"
    assert loop == LoopConfig(steps=6, batch_size=4, lr=1e-3, weight_decay=0.0, warmup_steps=2, lr_decay="cosine",
                              grad_clip=1.0, ema_decay=0.9, checkpoint_every=3, seed=0, bf16=False, length_buckets=2)
    training.check_training_params(path, "train_mdm", p)
    fingerprint = training.training_fingerprint(p, config, [])
    assert "threads" not in fingerprint["params"] and "device" not in fingerprint["params"]
    assert fingerprint["model"] == config.to_dict() and fingerprint["data"] == []


@pytest.mark.parametrize("key,value,message", [("max_frames", 2, "train_mdm.max_frames' must be >= 4"),
                                                ("threads", 0, "train_mdm.threads' must be > 0"),
                                                ("lambda_velocity", -0.5, "train_mdm.lambda_velocity' must be >= 0"),
                                                ("high_noise_fraction", 1.5, "train_mdm.high_noise_fraction"),
                                                ("frames_per_token", 8, "train_mdm.frames_per_token' must be 1, 2 or 4")])
def test_stage_settings_are_checked_with_one_line_errors(tmp_path: Path, key, value, message):
    with pytest.raises(ValueError) as error:
        training.check_training_params("params.yaml", "train_mdm", dict(TRAIN_PARAMS, **{key: value}))
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("key,value,message", [("steps", 0, "'train_mdm.steps' must be > 0"),
                                                ("clause_slots", -1, "'train_mdm.clause_slots' must be >= 0"),
                                                ("bogus", 1, "unknown parameter(s) train_mdm.bogus")])
def test_config_errors_name_the_params_file_and_key(tmp_path: Path, key, value, message):
    path = _params(tmp_path, "train_mdm", dict(TRAIN_PARAMS, **{key: value}))
    with pytest.raises(ArtifactError) as error:
        section_config(path, "train_mdm", (MDMConfig, LoopConfig), training.TRAIN_EXTRA, defaults=training.TRAIN_DEFAULTS)
    assert str(path) in str(error.value) and message in str(error.value)


def test_sentence_conditions_need_no_table_and_clauses_index_one(corpus: Path):
    assert training.condition_table(corpus / "embeddings.parquet", MDMConfig(clause_slots=0, word_tokens=0)) is None
    config = MDMConfig(clause_slots=1, word_tokens=0)
    table = training.condition_table(corpus / "embeddings.parquet", config)
    assert table.shape[1] == config.condition_dim
    split = training.conditioned_split(corpus / "hml/index.parquet", corpus / "hml/features.npz",
                                       corpus / "embeddings.parquet", "train", table)
    assert split.embeddings is table and training.with_conditions(split, None) is split


def test_training_metrics_from_a_loop_result():
    @dataclass
    class Result:
        history: list
        step: int = 20
        resumed_from: int = 10
        wall_seconds: float = 4.0
        steps_run: int = 10
        total_seconds: float = 8.04

    import torch

    model = torch.nn.Linear(3, 2)
    history = [{"step": s, "loss": float(s)} for s in range(1, 21)]
    metrics = training.training_metrics(model, Result(history), batch_size=4, ranks=1, train_clips=30, val_loss=0.5,
                                        stage_seconds=9.96)
    assert metrics["parameters"] == 8 and metrics["epochs"] == round(20 * 4 / 30, 2)
    assert metrics["final_loss"] == 19.5  # the mean of the last tenth of the curve
    assert (metrics["seconds_per_step"], metrics["train_seconds"], metrics["stage_seconds"]) == (0.4, 8.0, 10.0)
    assert list(metrics)[-1] == "stage_seconds" and metrics["val_loss_ema"] == 0.5


# --------------------------------------------------------------------------------------------- samples


def test_a_limited_selection_spreads_over_the_split():
    assert list(samples.choose_clips(5, 0)) == [0, 1, 2, 3, 4]
    assert list(samples.choose_clips(10, 3)) == [0, 4, 9] and list(samples.choose_clips(2, 5)) == [0, 1]
    assert list(samples.shown(7, 0)) == [] and list(samples.shown(7, 2)) == [0, 6]


def test_sampling_params_and_ddim_steps_are_checked(tmp_path: Path):
    assert samples.sampling_params(_params(tmp_path, "sample_mdm", SAMPLE_PARAMS), "sample_mdm")["device"] == "cpu"
    with pytest.raises(ValueError, match="sample_mdm.videos' must be >= 0"):
        samples.sampling_params(_params(tmp_path, "sample_mdm", dict(SAMPLE_PARAMS, videos=-1)), "sample_mdm")
    with pytest.raises(ArtifactError, match="missing parameter 'sample_mdm.device'"):
        samples.sampling_params(_params(tmp_path, "sample_mdm", {k: v for k, v in SAMPLE_PARAMS.items() if k != "device"}),
                                "sample_mdm")
    with pytest.raises(ValueError, match="must be <= the model's 4 diffusion steps"):
        samples.check_ddim_steps("params.yaml", "sample_mdm", dict(SAMPLE_PARAMS, ddim_steps=5), MDMConfig(diffusion_steps=4))


def test_the_samples_table_and_the_report(corpus: Path, tmp_path: Path):
    test = load_motion_split(corpus / "hml/index.parquet", corpus / "hml/features.npz", None, "test")
    chosen = samples.choose_clips(len(test), 2)
    captions = [test.captions(int(k))[0] for k in chosen]
    features = [test.clip(int(k)) for k in chosen]
    table = samples.samples_table(test, chosen, captions, [len(f) for f in features], SAMPLE_PARAMS)
    assert list(table.columns) == ["clip_id", "caption", "length", "seed", "ddim_steps", "guidance_scale", "eta"]
    assert table["length"].dtype == np.int64 and table["eta"].dtype == np.float64
    assert list(table["clip_id"]) == [str(test.index.at[int(k), "clip_id"]) for k in chosen]
    assert samples.joints_of(features[0]).shape == (len(features[0]), 22, 3)
    assert not samples.write_contact_sheet(tmp_path / "none.png", test, chosen, captions, features, [])
    assert samples.write_contact_sheet(tmp_path / "sheet.png", test, chosen, captions, features, [0, 1])
    assert (tmp_path / "sheet.png").is_file()


def test_sampling_metrics():
    generated, real = {"foot_skating_ratio": 0.1, "jitter": 2.0}, {"foot_skating_ratio": 0.0, "jitter": 0.0}
    metrics = samples.sampling_metrics(8, SAMPLE_PARAMS, 2.0, generated, real)
    assert metrics["samples_per_second"] == 4.0 and metrics["jitter_ratio"] == 2.0 / 1e-9
    assert list(metrics) == ["clips", "ddim_steps", "guidance_scale", "seconds", "samples_per_second", "generated",
                             "real", "jitter_ratio"]


# --------------------------------------------------------------------------------------------- evaluate_t2m

T2M = {"seed": 0, "threads": 1, "device": "cpu", "replications": 4, "sample_sets": 2, "diversity_times": 5,
       "mm_texts": 2, "mm_repeats": 3, "mm_times": 2, "sample_batch_size": 8}


def test_t2m_params_and_inputs_are_checked(tmp_path: Path):
    assert t2m_report.t2m_params(_params(tmp_path, "evaluate_t2m", T2M), "evaluate_t2m") == T2M
    with pytest.raises(ArtifactError, match="sample_sets' 5 exceeds replications 4"):
        t2m_report.t2m_params(_params(tmp_path, "evaluate_t2m", dict(T2M, sample_sets=5)), "evaluate_t2m")
    t2m_report.check_t2m_inputs("params.yaml", "evaluate_t2m", T2M, 10, 10)
    with pytest.raises(ArtifactError, match="mm_texts' 2 exceeds 1 test clips"):
        t2m_report.check_t2m_inputs("params.yaml", "evaluate_t2m", T2M, 1, 10)
    with pytest.raises(ArtifactError, match="diversity_times' 5 exceeds the 10 test clips or 4 MDM samples"):
        t2m_report.check_t2m_inputs("params.yaml", "evaluate_t2m", T2M, 10, 4)
    with pytest.raises(ArtifactError, match="mm_times' 4 exceeds mm_repeats 3"):
        t2m_report.check_t2m_inputs("params.yaml", "evaluate_t2m", dict(T2M, mm_times=4), 10, 10)
    assert t2m_report.needs_sampler(T2M) and not t2m_report.needs_sampler(dict(T2M, sample_sets=1, mm_texts=0))


def test_extra_sets_are_drawn_with_their_own_seeds_and_scored():
    from humandiff.prior.mdm import sample_set_seed

    class Evaluator:
        def embed_motions(self, clips):
            return np.array([[clip.sum()] for clip in clips])

    class Sampler:
        def __init__(self):
            self.calls = []

        def conditions(self, captions):
            return np.zeros((len(captions), 1))

        def __call__(self, conditions, lengths, seed):
            self.calls.append(seed)
            return [np.full((n, 263), float(seed % 7)) for n in lengths]

    first = [np.zeros((8, 263)), np.zeros((12, 263))]
    sampler, lines = Sampler(), []
    scored = t2m_report.scored_sample_sets(Evaluator(), first, sampler, ["a", "b"], [8, 12], 3, 3, log=lines.append)
    assert len(scored) == 3 and sampler.calls == [sample_set_seed(3, 1), sample_set_seed(3, 2)]
    assert lines == ["sample set 2 of 3", "sample set 3 of 3"] and set(scored[0][1]) == {"foot_skating_ratio", "jitter"}
    assert len(t2m_report.scored_sample_sets(Evaluator(), first, None, ["a", "b"], [8, 12], 3, 1)) == 1


def test_the_variance_note_and_the_protocol():
    assert "its own set" in t2m_report.variance_note(4, 4)
    assert "from 2 independent sets only, each scored about 2 times" in t2m_report.variance_note(2, 4)
    assert "With one set" in t2m_report.variance_note(1, 4)
    settings = {"seed": 0, "ddim_steps": 50, "guidance_scale": 2.5, "eta": 0.0}
    protocol = t2m_report.t2m_protocol(T2M, 32, "ev.pt", 32, 2, settings, "s.npz")
    assert {k: v for k, v in protocol.items() if k != "notes"} == {
        "test_clips": 32, "evaluator": "ev.pt", "mdm_samples": 32, "mdm_sample_sets": 2, "replications": 4}
    assert len(protocol["notes"]) == 6 and "2 test captions x 3 MDM generations" in protocol["notes"][3]
    assert "not computed" in t2m_report.t2m_protocol(dict(T2M, mm_texts=0), 32, "e", 32, 2, settings, "s")["notes"][3]


def test_the_payload_needs_every_metric_and_drops_the_notes():
    row = {name: 0.5 for name in ("top1", "top2", "top3", "mm_dist", "fid", "diversity")}
    evaluation = {"real": row, "mdm": dict(row), "bars": [{"holds": True}, {"holds": False}], "mm_dist_breakdown": {}}
    payload = t2m_report.t2m_payload(evaluation, {"test_clips": 3, "notes": ["x"]}, "t2m.json")
    assert list(payload) == ["real", "mdm", "bars", "mm_dist_breakdown", "protocol"] and payload["protocol"] == {"test_clips": 3}
    assert t2m_report.t2m_summary_line(payload).endswith("bars held: 1/2")
    with pytest.raises(ArtifactError, match=r"t2m.json: missing metric\(s\) \['fid'\]"):
        t2m_report.t2m_payload(dict(evaluation, mdm={k: v for k, v in row.items() if k != "fid"}), {}, "t2m.json")
