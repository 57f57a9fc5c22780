"""A catalogue of bad inputs and parameters, run over every stage of dvc.yaml.

For each stage (one item of a matrix stage) and each fault: a missing input, a truncated ``.npz``,
``.parquet`` and ``.pt``, a wrong-shape array, NaN/Inf in an input array, an object array in an
``.npz``, a mistyped and an unknown parameter. The stage must exit non-zero with one line
``error: ...`` naming the file or the parameter, print no traceback, and write nothing.

The inputs are a smoke-preset ``dvc repro`` (the ``smoke_repo`` fixture, a few minutes; or an
already reproduced smoke repository named by ``HUMANDIFF_SMOKE_REPO``). Each case runs the stage's
command from that repository's dvc.lock in process, on a copy of ``data/`` and ``reports/`` made of
symbolic links with one file replaced, its outputs sent to an empty folder. The table grows with
dvc.yaml: a new stage is in it, and a fault that does not apply to a stage (no input of that kind)
is skipped.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from click.testing import CliRunner
from script_loader import load_script

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow

#: Flags whose value a stage writes; every other path argument is an input.
OUTPUT_FLAGS = {"--out", "--out-dir", "--report", "--report-dir", "--metrics", "--plot", "--plots-dir", "--figure",
                "--checkpoint", "--checkpoint-dir", "--speed"}


def _stages() -> list[str]:
    """dvc.yaml's stages, a matrix stage by the prefix of its items (its last item is run: for the dno
    stages the refine family, which reads every input the stage lists)."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    return [f"{name}@" if "matrix" in stage or "foreach" in stage else name for name, stage in stages.items()]


FAULTS = ["missing", "truncated_npz", "truncated_parquet", "truncated_pt", "wrong_shape", "nan", "inf", "object_array",
          "bad_param", "unknown_param"]


@pytest.fixture(scope="module")
def smoke(request) -> Path:
    given = os.environ.get("HUMANDIFF_SMOKE_REPO")
    return Path(given) if given else request.getfixturevalue("smoke_repo")


@pytest.fixture(scope="module")
def lock(smoke: Path) -> dict:
    return yaml.safe_load((smoke / "dvc.lock").read_text())["stages"]


def _entry(lock: dict, stage: str) -> tuple[str, dict]:
    names = [name for name in lock if name == stage or (stage.endswith("@") and name.startswith(stage))]
    assert names, f"stage {stage} is not in dvc.lock"
    return names[-1], lock[names[-1]]


def _data_deps(smoke: Path, name: str, entry: dict) -> list[str]:
    """The stage's input files, relative to the repository: the files dvc.lock lists, then those of
    the folders it lists (a file named after the matrix item, e.g. ``tasks/edit.parquet``, first)."""
    files, folders = [], []
    item = name.partition("@")[2].split("-")
    for dep in entry["deps"]:
        path = dep["path"]
        if path.startswith(("lib/", "stages/")):
            continue
        if (smoke / path).is_dir():
            inside = sorted(p.relative_to(smoke) for p in (smoke / path).rglob("*") if p.is_file())
            folders += sorted((str(p) for p in inside), key=lambda p: Path(p).stem not in item)
        else:
            files.append(path)
    return files + folders


def _float_field(path: Path, ndim: int = 1) -> str | None:
    with np.load(path, allow_pickle=False) as data:
        return next((k for k in data.files if np.issubdtype(data[k].dtype, np.floating) and data[k].ndim >= ndim
                     and data[k].size), None)


def _pick(smoke: Path, deps: list[str], fault: str) -> str | None:
    """The input a fault goes into: the first of the right kind (NaN/shape faults: a float field)."""
    suffix = {"truncated_npz": ".npz", "truncated_parquet": ".parquet", "truncated_pt": ".pt"}.get(fault)
    for dep in deps:
        if suffix and dep.endswith(suffix):
            return dep
        if fault in ("nan", "inf", "object_array") and dep.endswith(".npz") and not dep.endswith("_history.npz") \
                and _float_field(smoke / dep):
            return dep
        if fault == "wrong_shape" and dep.endswith(".npz") and not dep.endswith("_history.npz") \
                and _float_field(smoke / dep, 2):
            return dep
        if fault == "missing":
            return dep
    return None


def _inject(path: Path, fault: str) -> None:
    """Replace the symbolic link ``path`` by a faulty file."""
    original = path.resolve()
    path.unlink()
    if fault == "missing":
        return
    if fault.startswith("truncated"):
        data = original.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return
    with np.load(original, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    key = _float_field(original, 2 if fault == "wrong_shape" else 1)
    value = arrays[key].copy()
    if fault == "wrong_shape":
        arrays[key] = value[..., :-1]
    elif fault in ("nan", "inf"):
        value.reshape(-1)[len(value.reshape(-1)) // 2] = np.nan if fault == "nan" else np.inf
        arrays[key] = value
    elif fault == "object_array":
        arrays[key] = np.array([value, "x"], dtype=object)
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def _case(smoke: Path, tmp: Path) -> tuple[Path, Path]:
    """(inputs root, outputs root): symbolic-link copies of data/ and reports/, a params copy."""
    inputs, outputs = tmp / "in", tmp / "out"
    inputs.mkdir()
    outputs.mkdir()
    for folder in ("data", "reports"):
        subprocess.run(["cp", "-as", str(smoke / folder), str(inputs / folder)], check=True)
    params = yaml.safe_load((REPO / "presets/smoke.yaml").read_text())  # the smoke repository's params.yaml
    params["body"]["model_path"] = str(inputs / params["body"]["model_path"])
    (inputs / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return inputs, outputs


def _args(cmd: str, inputs: Path, outputs: Path) -> tuple[str, list[str]]:
    """The stage's script name and its arguments, inputs under ``inputs``, outputs under ``outputs``."""
    words = shlex.split(cmd)
    assert words[:1] == ["python"] and words[1].startswith("stages/")
    args = words[2:]
    for n in range(1, len(args)):
        flag, value = args[n - 1], args[n]
        if not flag.startswith("--") or value.startswith("--"):
            continue
        if flag in OUTPUT_FLAGS:
            args[n] = str(outputs / value)
        elif "/" in value or value.endswith((".yaml", ".json")):
            args[n] = str(inputs / value)
    return Path(words[1]).stem, args


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())


def _check_error(result, must_name: list[str]) -> str:
    output = (result.stderr or "") + (result.stdout or "")
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.exit_code != 0, output[-2000:]
    assert "Traceback" not in output, output[-3000:]
    assert len(errors) == 1, result.stderr[-2000:]
    line = errors[0]
    assert any(name in line for name in must_name), f"{line!r} names none of {must_name}"
    return line


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("stage", _stages())
def test_bad_input_is_one_named_line_and_writes_nothing(smoke: Path, lock: dict, tmp_path: Path, stage: str, fault: str):
    name, entry = _entry(lock, stage)
    inputs, outputs = _case(smoke, tmp_path)
    script, args = _args(entry["cmd"], inputs, outputs)
    module = load_script("stages", script)
    command, section = module.main, module.SECTION
    params_file = inputs / "params.yaml"

    if fault in ("bad_param", "unknown_param"):
        params = yaml.safe_load(params_file.read_text())
        if fault == "bad_param":
            key = next(k for k in params[section] if k not in ("device",) and not isinstance(params[section][k], dict))
            params[section][key] = [["not", "a", "value"]]
            must_name = [f"'{section}.{key}'"]
        else:
            params[section]["no_such_key"] = 1
            must_name = [f"{section}.no_such_key"]
        params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    else:
        target = _pick(smoke, _data_deps(smoke, name, entry), fault)
        if target is None:
            pytest.skip(f"{name} reads no input for fault {fault}")
        _inject(inputs / target, fault)
        folder = str(Path(target).parent) if Path(target).parent.name in ("train", "val", "test", "multiview", "video",
                                                                           "tasks") else None
        must_name = [Path(target).name] + ([folder] if folder else [])

    result = CliRunner().invoke(command, args, catch_exceptions=False, env={"HUMANDIFF_DEBUG": ""})
    _check_error(result, must_name)
    assert _files(outputs) == [], f"{name} wrote {_files(outputs)} before failing"


def test_traceback_only_with_debug_env(smoke: Path, lock: dict, tmp_path: Path):
    """A real process: one line and exit 2 by default; HUMANDIFF_DEBUG=1 gives the traceback."""
    _, entry = _entry(lock, "encode_text")
    inputs, outputs = _case(smoke, tmp_path)
    _inject(inputs / "data/motion/hml/index.parquet", "truncated_parquet")
    script, args = _args(entry["cmd"], inputs, outputs)
    env = dict(os.environ, PYTHONPATH=str(REPO / "lib"), HUMANDIFF_DEBUG="")
    run = [sys.executable, str(REPO / "stages" / f"{script}.py"), *args]
    quiet = subprocess.run(run, env=env, capture_output=True, text=True, timeout=300)
    assert quiet.returncode == 2 and quiet.stderr.count("\n") == 1 and "index.parquet" in quiet.stderr, quiet.stderr
    loud = subprocess.run(run, env=env | {"HUMANDIFF_DEBUG": "1"}, capture_output=True, text=True, timeout=300)
    assert loud.returncode != 0 and "Traceback" in loud.stderr
    assert _files(outputs) == []


def test_stage_list_covers_dvc_yaml(lock: dict):
    """Every stage of dvc.lock is in the catalogue (by its name or its matrix prefix)."""
    prefixes = _stages()
    assert all(any(name == s or (s.endswith("@") and name.startswith(s)) for s in prefixes) for name in lock)


# ------------------------------------------------------------------ the faults of issue 29, one by one


def _stage(smoke: Path, lock: dict, tmp_path: Path, stage: str, **params):
    """(stage module, its arguments, inputs root, outputs root), ``params`` ("section.key": value) applied."""
    _, entry = _entry(lock, stage)
    inputs, outputs = _case(smoke, tmp_path)
    script, args = _args(entry["cmd"], inputs, outputs)
    if params:
        values = yaml.safe_load((inputs / "params.yaml").read_text())
        for dotted, value in params.items():
            *path, key = dotted.split(".")
            block = values
            for part in path:
                block = block[part]
            block[key] = value
        (inputs / "params.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    return load_script("stages", script), args, inputs, outputs


def assert_refused(module, args, outputs: Path, *names: str) -> str:
    """Assert that the stage exits non-zero with one line naming every one of ``names``, without a
    traceback, and leaves nothing in ``outputs``; returns the line."""
    result = CliRunner().invoke(module.main, args, catch_exceptions=False, env={"HUMANDIFF_DEBUG": ""})
    line = _check_error(result, list(names))
    assert all(name in line for name in names), line
    assert _files(outputs) == [], _files(outputs)
    return line


def _replace(path: Path, write) -> None:
    """Replace the symbolic link ``path`` with what ``write(original, path)`` writes."""
    original = path.resolve()
    path.unlink()
    write(original, path)


def test_prior_with_nan_weights_is_refused_before_sampling(smoke, lock, tmp_path):
    module, args, inputs, outputs = _stage(smoke, lock, tmp_path, "sample_mdm")

    def poison(original: Path, path: Path) -> None:
        state = torch.load(original, weights_only=True)
        for value in state.values():
            if value.is_floating_point():
                value.fill_(float("nan"))
        torch.save(state, path)

    _replace(inputs / "data/mdm/model.pt", poison)
    assert_refused(module, args, outputs, "model.pt", "NaN")


def test_non_finite_samples_are_refused_and_nothing_is_written(smoke, lock, tmp_path, monkeypatch):
    module, args, _, outputs = _stage(smoke, lock, tmp_path, "sample_mdm")
    monkeypatch.setattr(module.PriorSampler, "__call__",
                        lambda self, conditions, lengths, seed: [np.full((n, 263), np.nan, np.float32) for n in lengths])
    assert_refused(module, args, outputs, "samples.npz", "refusing to write field 'features'")


@pytest.mark.parametrize("removed", ["data/models/evaluator.pt", "data/dno/edit/guided.parquet", "data/dno/refine/dno.json",
                                     "data/dno/control/input_history.npz", "data/dno/ablate/input.parquet"])
def test_report_dno_refuses_a_missing_input(smoke, lock, tmp_path, removed):
    module, args, inputs, outputs = _stage(smoke, lock, tmp_path, "report_dno")
    (inputs / removed).unlink()
    assert_refused(module, args, outputs, removed, "file not found")


@pytest.mark.parametrize("key", ["sheet_tasks", "videos", "fid_min_samples"])
def test_report_dno_refuses_negative_parameters(smoke, lock, tmp_path, key):
    module, args, _, outputs = _stage(smoke, lock, tmp_path, "report_dno", **{f"report_dno.{key}": -1})
    assert_refused(module, args, outputs, "params.yaml", f"'report_dno.{key}'")


@pytest.mark.parametrize("stage", ["train_evaluator", "train_mdm", "train_reward"])
@pytest.mark.parametrize("caption", ["", "   "])
def test_an_empty_caption_in_the_val_split_is_refused(smoke, lock, tmp_path, stage, caption):
    module, args, inputs, outputs = _stage(smoke, lock, tmp_path, stage)

    def blank(original: Path, path: Path) -> None:
        index = pd.read_parquet(original)
        k = int(np.flatnonzero(index["split"].to_numpy() == "val")[0])
        index.at[k, "captions"] = np.array([caption, *index.at[k, "captions"][1:]], dtype=object)
        index.to_parquet(path, index=False)

    _replace(inputs / "data/motion/hml/index.parquet", blank)
    assert_refused(module, args, outputs, "index.parquet", "(val split)", "empty caption")


def test_render_names_the_file_whose_betas_do_not_fit_the_body_model(smoke, lock, tmp_path):
    module, args, inputs, outputs = _stage(smoke, lock, tmp_path, "render")

    def widen(original: Path, path: Path) -> None:
        with np.load(original) as data:
            arrays = {k: data[k] for k in data.files}
        arrays["betas"] = np.pad(arrays["betas"], ((0, 0), (0, 1)))
        np.savez(path, **arrays)

    _replace(inputs / "data/motion/raw/motions.npz", widen)
    assert_refused(module, args, outputs, "motions.npz", "field 'betas' has 11", "anny_smpl_neutral.npz")


def test_dno_option_errors_name_the_params_file(smoke, lock, tmp_path):
    module, args, _, outputs = _stage(smoke, lock, tmp_path, "dno@", **{"dno.refine.steps": -2})
    assert_refused(module, args, outputs, "params.yaml", "'dno.refine.steps'")


def test_a_diverging_loss_is_one_line_naming_the_learning_rate(smoke, lock, tmp_path):
    module, args, _, outputs = _stage(smoke, lock, tmp_path, "train_mdm", **{"train_mdm.lr": 1e30})
    assert_refused(module, args, outputs, "loss became", "'train_mdm.lr'")


# ------------------------------------------------------------------ kill -9 during training, then dvc repro

#: Run as ``python KILLER N WHEN script args...``: the stage, SIGKILLed right after its N-th resume
#: checkpoint is on disk (WHEN "after") or halfway through writing it (WHEN "during": half the
#: bytes in the temporary file the atomic write renames at the end). A real kill -9 at a chosen
#: point, so that the test is deterministic however fast the smoke training runs.
KILLER = '''
import io, os, runpy, signal, sys, tempfile
import humandiff.train.loop as loop

calls, real, target, when = [0], loop.save_torch, int(sys.argv[1]), sys.argv[2]

def save_then_die(path, payload):
    calls[0] += 1
    if calls[0] == target and when == "during":
        import torch
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".pt", dir=os.path.dirname(path))
        os.write(fd, buffer.getvalue()[: len(buffer.getvalue()) // 2])
        os.kill(os.getpid(), signal.SIGKILL)
    real(path, payload)
    if calls[0] == target:
        os.kill(os.getpid(), signal.SIGKILL)

loop.save_torch = save_then_die
script, sys.argv = sys.argv[3], sys.argv[3:]
runpy.run_path(script, run_name="__main__")
'''


def _md5(path: Path) -> str:
    import hashlib

    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("stage, model, checkpoint, when", [
    ("train_mdm", "data/mdm/model.pt", "data/mdm_checkpoint/train_checkpoint.pt", "after"),
    ("train_mdm", "data/mdm/model.pt", "data/mdm_checkpoint/train_checkpoint.pt", "during"),
    ("train_perception", "data/models/perception.pt", "data/perception_checkpoint/train_checkpoint.pt", "after"),
    ("train_scorehmr", "data/scorehmr/model.pt", "data/scorehmr_checkpoint/train_checkpoint.pt", "after"),
])
def test_kill_9_during_training_then_dvc_repro_resumes_to_the_same_model(smoke, lock, tmp_path, stage, model, checkpoint,
                                                                          when):
    """kill -9 after the first checkpoint (or while writing the second), then ``dvc repro``: the run
    resumes from the first checkpoint and ends with the model of the uninterrupted smoke run."""
    from test_pipeline_e2e import BIN, _run

    if not (smoke / ".dvc").is_dir():
        pytest.skip("needs a reproduced DVC repository")
    work = tmp_path / "repo"
    shutil.copytree(smoke, work, symlinks=True)
    expected = _md5(smoke / model)
    (work / model).unlink()
    shutil.rmtree((work / checkpoint).parent)
    (tmp_path / "killer.py").write_text(KILLER)
    words = shlex.split(lock[stage]["cmd"])
    env = dict(os.environ, PYTHONPATH=str(REPO / "lib"), HUMANDIFF_DEBUG="")
    killed = subprocess.run([sys.executable, str(tmp_path / "killer.py"), "1" if when == "after" else "2", when,
                             *words[1:]], cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert (work / checkpoint).is_file() and not (work / model).exists()
    step = torch.load(work / checkpoint, weights_only=False)["step"]
    assert 0 < step < yaml.safe_load((work / "params.yaml").read_text())[stage]["steps"]

    result = _run([str(BIN / "dvc"), "repro", stage], work)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"Running stage '{stage}'" in result.stdout
    metrics = json.loads((work / words[words.index("--metrics") + 1]).read_text())
    assert metrics["resumed_from"] == step  # resumed, not started over
    assert _md5(work / model) == expected


# ------------------------------------------------------------------ ScoreHMR's faults (issue 26)


def _edit_npz(path: Path, change) -> None:
    """Replace the symbolic link ``path`` (an .npz) with a copy whose arrays ``change(arrays)`` edited."""
    def write(original: Path, target: Path) -> None:
        with np.load(original, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        change(arrays)
        with open(target, "wb") as handle:
            np.savez(handle, **arrays)

    _replace(path, write)


@pytest.mark.parametrize("stage", ["scorehmr@fit", "scorehmr_smplify@fit", "scorehmr_regression@fit"])
@pytest.mark.parametrize("fault, names", [("nan_keypoints", ["keypoints", "NaN"]), ("confidence_above_one", ["confidence", "[0, 1]"]),
                                          ("confidence_below_zero", ["confidence", "[0, 1]"])])
def test_scorehmr_refuses_bad_keypoints(smoke, lock, tmp_path, stage, fault, names):
    module, args, inputs, outputs = _stage(smoke, lock, tmp_path, stage)

    def change(arrays: dict) -> None:
        if fault == "nan_keypoints":
            arrays["keypoints"][0, 3, 0] = np.nan
        else:
            arrays["confidence"][0, 5] = 1.5 if fault == "confidence_above_one" else -0.2

    _edit_npz(inputs / "data/extract/test.npz", change)
    assert_refused(module, args, outputs, "test.npz", *names)


@pytest.mark.parametrize("stage", ["scorehmr@multiview", "scorehmr_smplify@multiview"])
def test_scorehmr_multiview_refuses_a_view_count_of_one(smoke, lock, tmp_path, stage):
    module, args, inputs, outputs = _stage(smoke, lock, tmp_path, stage)

    def single_views(original: Path, path: Path) -> None:
        index = pd.read_parquet(original)
        views = index["set"] == "multiview"
        index.loc[views, "sequence"] = np.arange(int(views.sum()))  # every view its own person
        index.to_parquet(path, index=False)

    _replace(inputs / "data/images/index.parquet", single_views)
    assert_refused(module, args, outputs, "multiview.npz", "view count of 1")


def test_scorehmr_refuses_an_unknown_setting(smoke, lock, tmp_path):
    module, args, _, outputs = _stage(smoke, lock, tmp_path, "scorehmr@fit")
    args[args.index("--setting") + 1] = "panorama"
    assert_refused(module, args, outputs, "params.yaml", "unknown setting 'panorama'")


@pytest.mark.parametrize("setting, losses", [("fit", ["repr", "chamfer"]), ("video", []), ("fit", ["temp"])])
def test_scorehmr_refuses_an_unknown_or_unusable_loss(smoke, lock, tmp_path, setting, losses):
    module, args, _, outputs = _stage(smoke, lock, tmp_path, f"scorehmr@{setting}", **{f"scorehmr.losses.{setting}": losses})
    assert_refused(module, args, outputs, "params.yaml", f"'scorehmr.losses.{setting}'")


@pytest.mark.parametrize("stage, key, value, name", [
    ("scorehmr@fit", "scorehmr.fit", {"tau": -5}, "'scorehmr.fit'"),
    ("scorehmr@fit", "scorehmr.fit", {"no_such_option": 1}, "no_such_option"),
    ("scorehmr_smplify@video", "scorehmr.smplify.video", {"steps": 0}, "'scorehmr.smplify.video'"),
    ("scorehmr_sweep@step_10", "scorehmr.sweep.step_10", {"ddim_step": 1000}, "'scorehmr.sweep.step_10'"),
    ("scorehmr_ablation@pooled-gt", "scorehmr_ablation.target", "gt", "'scorehmr_ablation.feature'"),
])
def test_scorehmr_option_errors_name_the_parameter(smoke, lock, tmp_path, stage, key, value, name):
    module, args, _, outputs = _stage(smoke, lock, tmp_path, stage, **{key: value})
    assert_refused(module, args, outputs, "params.yaml", name)


# ------------------------------------------------------------------ HMDiff (issue 28)


@pytest.mark.parametrize("stage, extract", [("eval_hmdiff@", "test.npz"), ("train_hmdiff@", "train.npz"),
                                            ("report_hmdiff", "test.npz")])
@pytest.mark.parametrize("field", ["tokens", "heatmaps_q", "depth_maps_cm"])
def test_hmdiff_stages_refuse_extractions_without_heatmaps_or_tokens(smoke, lock, tmp_path, stage, extract, field):
    module, args, inputs, outputs = _stage(smoke, lock, tmp_path, stage)
    _edit_npz(inputs / "data/extract" / extract, lambda arrays: arrays.pop(field))
    assert_refused(module, args, outputs, extract, field)


@pytest.mark.parametrize("stage", ["train_hmdiff@", "eval_hmdiff@", "eval_hmdiff_head"])
def test_hmdiff_a_body_mesh_that_cannot_be_coarsened_names_the_file_and_parameter(smoke, lock, tmp_path, stage):
    module, args, inputs, outputs = _stage(smoke, lock, tmp_path, stage, **{"hmdiff.hierarchy": [5000]})
    assert_refused(module, args, outputs, "anny_smpl_neutral.npz", "hmdiff.hierarchy")


@pytest.mark.parametrize("stage", ["eval_hmdiff@", "report_hmdiff"])
@pytest.mark.parametrize("key, value, message", [("threshold", 0.0, "(0, 1)"), ("threshold", 1.5, "(0, 1)"),
                                                 ("num_samples", 0, ">= 1")])
def test_hmdiff_r_outside_0_1_and_n_below_1_are_one_line_errors(smoke, lock, tmp_path, stage, key, value, message):
    module, args, inputs, outputs = _stage(smoke, lock, tmp_path, stage, **{f"hmdiff.eval.{key}": value})
    line = assert_refused(module, args, outputs, f"hmdiff.eval.{key}", "params.yaml")
    assert message in line


def test_report_hmdiff_refuses_a_missing_row(smoke, lock, tmp_path):
    module, args, inputs, outputs = _stage(smoke, lock, tmp_path, "report_hmdiff")
    (inputs / "data/hmdiff/eval/direct_l2.json").unlink()
    assert_refused(module, args, outputs, "direct_l2.json")


# ------------------------------------------------------------------ SoPo (issue 27)


@pytest.mark.parametrize("stage", ["sopo@sopo", "sopo_calibrate"])
@pytest.mark.parametrize("target, fault, names", [("data/mdm/model.pt", "missing", ["model.pt", "file not found"]),
                                                  ("data/mdm/model.pt", "truncated_pt", ["model.pt"]),
                                                  ("data/models/reward.pt", "missing", ["reward.pt", "file not found"]),
                                                  ("data/models/reward.pt", "truncated_pt", ["reward.pt"])])
def test_sopo_refuses_a_missing_or_corrupt_prior_or_reward_model(smoke, lock, tmp_path, stage, target, fault, names):
    module, args, inputs, outputs = _stage(smoke, lock, tmp_path, stage)
    _inject(inputs / target, fault)
    assert_refused(module, args, outputs, *names)


@pytest.mark.parametrize("key, value, names", [("K", 1, ["'K'", "sopo.runs.sopo"]),
                                               ("tau", 1.5, ["'tau'", "sopo.runs.sopo"]),
                                               ("tau", 0.0, ["'tau'", "sopo.runs.sopo"]),
                                               ("variant", "ipo", ["'variant'", "sopo.runs.sopo"])])
def test_sopo_refuses_bad_run_parameters(smoke, lock, tmp_path, key, value, names):
    module, args, _, outputs = _stage(smoke, lock, tmp_path, "sopo@sopo", **{f"sopo.runs.sopo.{key}": value})
    assert_refused(module, args, outputs, "params.yaml", *names)


def test_sopo_refuses_a_run_that_does_not_exist(smoke, lock, tmp_path):
    module, args, _, outputs = _stage(smoke, lock, tmp_path, "sopo@sopo")
    args = [("nosuch" if args[n - 1] == "--run" else a) for n, a in enumerate(args)]
    assert_refused(module, args, outputs, "params.yaml", "'sopo.runs'", "'nosuch'")


def test_sopo_offline_pairs_refuse_k_below_two(smoke, lock, tmp_path):
    module, args, _, outputs = _stage(smoke, lock, tmp_path, "sopo_offline_pairs", **{"sopo.offline_pairs.K": 1})
    assert_refused(module, args, outputs, "params.yaml", "'sopo.offline_pairs.K'")


def test_sopo_refuses_an_empty_training_caption(smoke, lock, tmp_path):
    module, args, inputs, outputs = _stage(smoke, lock, tmp_path, "sopo@sopo")

    def blank(original: Path, path: Path) -> None:
        index = pd.read_parquet(original)
        k = int(np.flatnonzero(index["split"].to_numpy() == "train")[0])
        index.at[k, "captions"] = np.array(["", *index.at[k, "captions"][1:]], dtype=object)
        index.to_parquet(path, index=False)

    _replace(inputs / "data/motion/hml/index.parquet", blank)
    assert_refused(module, args, outputs, "index.parquet", "empty caption")


def test_evaluate_sopo_refuses_a_row_without_a_protocol(smoke, lock, tmp_path):
    module, args, _, outputs = _stage(smoke, lock, tmp_path, "evaluate_sopo@sopo")
    args = [("nosuch" if args[n - 1] == "--run" else a) for n, a in enumerate(args)]
    assert_refused(module, args, outputs, "params.yaml", "'sopo_eval.sets.nosuch'")
