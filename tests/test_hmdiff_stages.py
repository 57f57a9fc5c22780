"""HMDiff's stage logic (issue 28): the ``hmdiff`` params section, training losses of both modes, one
evaluated row end to end on a tiny synthetic set, and the report's tables, findings and metrics JSON.
Fast: no pipeline artifacts (the stages on real artifacts: tests/test_bad_inputs.py, the e2e test)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from humandiff.body import DEFAULT_BODY_MODEL, load_body_arrays, load_body_model
from humandiff.hmdiff.data import ImageSet, build_geometry, true_meshes
from humandiff.hmdiff.report import METRICS, Row, findings, load_rows, metrics_json, paper_numbers, tables
from humandiff.hmdiff.run import evaluate_run, score
from humandiff.hmdiff.settings import EvalSettings, RunSpec, read_params
from humandiff.hmdiff.training import HMDiffNet, ModelSpec, RowDataset, curve_columns, hmdiff_loss_fn, network_config
from humandiff.hmdiff.losses import LossWeights
from humandiff.io.artifacts import ArtifactError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def geometry():
    return build_geometry(DEFAULT_BODY_MODEL, (0.5, 0.125), 16, 0)


@pytest.fixture(scope="module")
def tiny_set(geometry) -> ImageSet:
    """Four images: random tokens and heatmaps, true meshes of random SMPL parameters."""
    generator = torch.Generator().manual_seed(0)
    count = 4
    body_model = load_body_model()
    truth = {"global_orient_cam": np.tile(np.array([[np.pi, 0, 0]], np.float32), (count, 1)),
             "body_pose": (0.2 * torch.randn(count, 69, generator=generator)).numpy(),
             "betas": np.zeros((count, 10), np.float32), "transl_cam": np.tile(np.array([[0, 0, 4.0]], np.float32), (count, 1))}
    vertices, joints = true_meshes(body_model, truth)
    heatmaps = torch.rand(count, 24, 8, 8, generator=generator)
    return ImageSet(np.array([f"img{i}" for i in range(count)]), torch.randn(count, 6, 16, generator=generator),
                    heatmaps / heatmaps.sum((2, 3), keepdim=True), 0.1 * torch.randn(count, 24, 8, 8, generator=generator),
                    torch.tensor([[40.0, 40.0, 16.0, 16.0]] * count), torch.full((count,), 4.0), vertices, joints,
                    torch.as_tensor(geometry.hierarchy.down(vertices.double()), dtype=torch.float32), 4,
                    {"global_orient": truth["global_orient_cam"], "body_pose": truth["body_pose"], "betas": truth["betas"],
                     "transl": truth["transl_cam"], "joints_cam": (joints + torch.tensor([0, 0, 4.0])).numpy()})


def _write_params(tmp_path: Path, **changes) -> Path:
    params = yaml.safe_load((REPO / "presets/smoke.yaml").read_text())
    for dotted, value in changes.items():
        *path, key = dotted.split(".")
        block = params
        for part in path:
            block = block[part]
        block[key] = value
    target = tmp_path / "params.yaml"
    target.write_text(yaml.safe_dump(params, sort_keys=False))
    return target


def test_every_preset_parses_and_dvc_yaml_has_a_stage_per_model_and_run():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for preset in ("default", "smoke", "paper"):
        p = read_params(REPO / "presets" / f"{preset}.yaml")
        assert set(p.models) == set(stages["train_hmdiff"]["foreach"]) | set(stages["train_hmdiff_baseline"]["foreach"])
        assert set(p.runs) == set(stages["eval_hmdiff"]["foreach"]) | {"regression_head"}
        for name, item in stages["eval_hmdiff"]["foreach"].items():
            assert item["model"] == p.runs[name].model
        report_deps = set(stages["report_hmdiff"]["deps"])
        assert all(f"data/hmdiff/eval/{name}.{ext}" in report_deps for name in p.runs for ext in ("json", "npz"))
    default = read_params(REPO / "params.yaml")
    assert (default.eval.num_samples, default.eval.threshold, default.eval.gamma) == (25, 0.05, 0.2)
    assert default.runs["hmdiff"].steps == (40,) and default.runs["hmdiff"].ablation == "full"
    # the diagnosis's fixes are the defaults; paper_literal is Algorithm 1 literally
    assert (default.eval.min_alpha_bar, default.eval.dat_mode, default.weights.alpha_bar) == (0.01, "x0", True)
    full = default.runs["hmdiff"].hmdiff_options(default.eval, 40)
    literal = default.runs["paper_literal"].hmdiff_options(default.eval, 40)
    assert (full.min_alpha_bar, full.dat_mode) == (0.01, "x0")
    assert (literal.min_alpha_bar, literal.dat_mode, literal.dat, literal.activation) == (0.0, "xt", True, True)


@pytest.mark.parametrize("changes, message", [
    ({"hmdiff.eval.threshold": 1.0}, r"'hmdiff.eval.threshold' \(r\) must lie in \(0, 1\)"),
    ({"hmdiff.eval.num_samples": 0}, r"'hmdiff.eval.num_samples' \(N\) must be an integer >= 1"),
    ({"hmdiff.runs.hmdiff.model": "nope"}, r"'hmdiff.runs.hmdiff.model' must name one of hmdiff.models"),
    ({"hmdiff.runs.baseline_a.model": "image"}, r"model 'image' is not a regression model"),
    ({"hmdiff.runs.hmdiff.ablation": "nope"}, r"'hmdiff.runs.hmdiff.ablation' must be one of"),
    ({"hmdiff.runs.hmdiff.steps": [0]}, r"'hmdiff.runs.hmdiff.steps' must be a list of integers >= 1"),
    ({"hmdiff.train.lr": -1.0}, r"'hmdiff.train.lr' must be > 0"),
    ({"hmdiff.models.both.stack": 2}, r"'hmdiff.models.both'"),
    ({"hmdiff.architecture.context": "pose"}, r"come from the data or hmdiff.models"),
    ({"hmdiff.no_such_key": 1}, r"unknown parameter\(s\) hmdiff.no_such_key"),
    ({"hmdiff.eval.min_alpha_bar": 1.5}, r"'hmdiff.eval.min_alpha_bar' must lie in \[0, 1\)"),
    ({"hmdiff.eval.dat_mode": "eps"}, r"'hmdiff.eval.dat_mode' must be one of x0, xt"),
    ({"hmdiff.runs.paper_literal.options": {"dat_mode": "eps"}}, r"'hmdiff.runs.paper_literal.options'.*'dat_mode'"),
    ({"hmdiff.weights.alpha_bar": 1}, r"'hmdiff.weights.alpha_bar' must be true or false"),
])
def test_bad_params_are_one_line_errors_naming_the_key(tmp_path, changes, message):
    with pytest.raises(ArtifactError, match=message) as info:
        read_params(_write_params(tmp_path, **changes))
    assert "\n" not in str(info.value) and "params.yaml" in str(info.value)


def test_a_mesh_that_cannot_be_coarsened_names_the_body_file_and_the_parameter():
    with pytest.raises(ArtifactError, match=r"anny_smpl_neutral.npz: .*cannot coarsen.*'hmdiff.hierarchy'"):
        build_geometry(DEFAULT_BODY_MODEL, (5000,), 16)


@pytest.mark.parametrize("spec", [ModelSpec(), ModelSpec(context="both"), ModelSpec(mode="regression", stack=2)])
def test_one_training_step_of_each_mode_lowers_nothing_to_nan(geometry, tiny_set, spec):
    torch.manual_seed(0)
    model = HMDiffNet(network_config(spec, {"heads": 2, "ff_dim": 16}, geometry, tiny_set), geometry)
    dataset = RowDataset(tiny_set)
    loss, terms = hmdiff_loss_fn(geometry, LossWeights(), 1.0)(model, dataset.collate([0, 1, 2]), torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss) and ("diffusion" in terms) == (spec.mode == "diffusion") and "upsample" in terms
    assert model.upsampler.weight.grad is not None
    assert curve_columns([{"step": 1, "loss": 1.0, **terms}])[:2] == ("step", "loss")
    assert ("diffusion" in curve_columns([{"step": 1, "loss": 1.0, **terms}])) == (spec.mode == "diffusion")


def test_score_is_zero_at_the_truth_and_the_row_keeps_timings_apart(geometry, tiny_set):
    regressor = torch.as_tensor(load_body_arrays(DEFAULT_BODY_MODEL)["J_regressor"], dtype=torch.float32)
    errors = score(tiny_set.vertices, tiny_set, regressor)
    assert errors["mpve_mm"].max() < 1e-3 and errors["pa_mpjpe_mm"].max() < 20  # J_regressor vs skeleton joints
    torch.manual_seed(0)
    model = HMDiffNet(network_config(ModelSpec(), {"heads": 2, "ff_dim": 16}, geometry, tiny_set), geometry).eval()
    model.requires_grad_(False)
    settings = EvalSettings(images=4, batch_images=3, num_samples=2, gamma=0.001, figure_images=2)
    outcome = evaluate_run("hmdiff", RunSpec(steps=(3, 2)), settings, tiny_set, geometry, regressor, model, seed=0)
    summary = outcome.summary
    assert summary["images"] == 4 and summary["steps"] in (3, 2) and len(summary["sweep"]) == 2
    assert sum(row["best"] for row in summary["sweep"]) == 1
    assert "seconds" not in summary and "fps" not in summary and outcome.speed["fps"] > 0
    assert outcome.arrays["samples"].shape == (2, 2, geometry.coarse_vertices, 3)
    assert outcome.arrays["history_ratio"].shape == (summary["steps"], 4, 2)
    again = evaluate_run("hmdiff", RunSpec(steps=(3, 2)), settings, tiny_set, geometry, regressor, model, seed=0)
    assert again.summary == summary  # seeded: the same row twice
    head = evaluate_run("regression_head", RunSpec(kind="head", model=None), settings, tiny_set, geometry, regressor,
                        body_model=load_body_model())
    assert head.summary["mpve_mm"] < 1e-3 and head.summary["sweep"] == []


def _row(name: str, mpjpe: float, steps: int | None = 40) -> Row:
    summary = {"run": name, "kind": "diffusion", "steps": steps, "mpve_mm": mpjpe + 10, "mpjpe_mm": mpjpe,
               "pa_mpjpe_mm": mpjpe / 2, "sweep": [{"steps": steps, "mpjpe_mm": mpjpe}]}
    return Row(summary, {"vertices": np.zeros((1, 3, 3), np.float32)})


def test_report_tables_findings_and_metrics_json():
    rows = {"hmdiff": _row("hmdiff", 70.0), "no_dat_image": _row("no_dat_image", 80.0, 20),
            "baseline_a": _row("baseline_a", 65.0, 1), "direct_l2": _row("direct_l2", 90.0)}
    found = {f["claim"]: f["holds"] for f in findings(rows)}
    assert found == {"hmdiff beats no_dat_image (MPJPE)": True, "hmdiff beats baseline_a (MPJPE)": False,
                     "hmdiff beats direct_l2 (MPJPE)": True}
    metrics = metrics_json(rows, findings(rows), 16)
    assert metrics["rows"]["table4/no_dat_image"] == {"mpve_mm": 90.0, "mpjpe_mm": 80.0, "pa_mpjpe_mm": 40.0, "steps": 20,
                                                      "fps": None, "diverged": 0.0}
    assert set(metrics["rows"]["table3/hmdiff"]) == set(METRICS) | {"steps", "fps", "diverged"}
    text = tables(rows, paper_numbers(), {"hmdiff": 1.5}, 16)
    for needle in ("Table 1", "Table 3", "Table 4", "Table 5", "Table 6", "82.4", "FastMETRO", "(not run)", "20: 80.0"):
        assert needle in text


def test_a_diverged_run_is_a_row_that_says_so_not_a_stopped_report(tmp_path, tiny_set, geometry):
    """paper_literal (Algorithm 1 literally) may diverge: its row records it and the report prints it."""
    regressor = torch.as_tensor(load_body_arrays(DEFAULT_BODY_MODEL)["J_regressor"], dtype=torch.float32)
    model = HMDiffNet(network_config(ModelSpec(), {"heads": 2, "ff_dim": 16}, geometry, tiny_set), geometry).eval()
    model.denoiser.networks[0].output.bias.data[0] = float("inf")  # every chain's noise estimate blows up
    settings = EvalSettings(images=0, batch_images=4, num_samples=2, gamma=0.5, figure_images=2)
    outcome = evaluate_run("direct_l2", RunSpec(steps=(3, 2), ablation="direct_l2"), settings, tiny_set, geometry,
                           regressor, model, seed=0)
    assert outcome.summary["diverged"] == 1.0 and outcome.summary["mpjpe_mm"] is None
    assert [row["mpjpe_mm"] for row in outcome.summary["sweep"]] == [None, None]
    assert outcome.summary["diverged_options"]["gamma"] == 0.5
    (tmp_path / "direct_l2.json").write_text(json.dumps(outcome.summary))
    np.savez(tmp_path / "direct_l2.npz", **outcome.arrays)
    rows = load_rows(tmp_path, ["direct_l2"]) | {"hmdiff": _row("hmdiff", 70.0)}
    assert {f["claim"]: f["holds"] for f in findings(rows)} == {"hmdiff beats direct_l2 (MPJPE)": True}
    assert "diverged (NaN)" in tables(rows, paper_numbers(), {}, 16)
    assert metrics_json(rows, [], 16)["rows"]["table5/direct_l2"]["diverged"] == 1.0
    partly = dict(outcome.summary, diverged=0.25)  # some images only: the metrics are null all the same
    (tmp_path / "direct_l2.json").write_text(json.dumps(partly))
    assert load_rows(tmp_path, ["direct_l2"])["direct_l2"].summary["diverged"] == 0.25
