"""DNO's report: Tables 1-3 with this project's numbers beside the paper's, the paper's findings
checked, the protocol in prose, the metrics JSON.

Inputs are the run outputs of the dno stages, ``<data-dir>/<family>/<run>.{parquet,npz,json}`` and
``<run>_history.npz`` (:func:`load_runs`; each family with a task table must have the runs of
:data:`REQUIRED_RUNS`, and each run all four files: :func:`check_run_files`). FID
compares each setting's outputs with test clips no task used, through the trained evaluator (the
report_dno stage requires it; :func:`dno_report` leaves the cells empty without it). The paper's quoted numbers are data, in
``paper.yaml`` beside this module (:func:`paper_numbers`).

The metrics (:func:`dno_report`) are ``edit.<action>.<method>``, ``refine.<setting>.<method>``,
``ablate.<variant>``, ``control.<setting>.<method>``, ``real``, ``tasks``, ``findings``. Run times are
not inputs: the dno stages write them to ``reports/metrics/dno_time/``, which nothing depends on.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from humandiff.dno.figures import METHOD_LABELS, loss_curves, pictures
from humandiff.dno.metrics import fid_scorer, realism, summary
from humandiff.dno.tasks import load_tasks
from humandiff.eval.report import format_value, markdown_table
from humandiff.io import ArtifactError, load_npz, load_parquet, split_ragged

FAMILIES = ("edit", "control", "refine", "ablate")
#: The paper's quoted numbers (Karunratanakul et al. 2024), beside this module.
PAPER_FILE = "paper.yaml"
REFINE_LABELS = {"noisy": "Noisy", "guided": "Guided (GMD-style)", "dno": "DNO"}
#: how each ``dno.guided.mode`` steers a DDIM step with the criterion L on the clean estimate x0_hat
GUIDED_STEERING = {
    "xt": "every step's result moves by -scale x grad_{x_t} L(x0_hat(x_t)), the gradient taken through the "
          "denoiser (GMD's dense gradient propagation)",
    "x0": "every step's clean estimate moves by -scale x grad_{x0_hat} L(x0_hat) (no gradient through the denoiser)",
    "eps": "every step's noise estimate moves by sqrt(1 - alpha_bar_t) x scale x grad_{x_t} L(x0_hat(x_t)) (the score form)",
}


@dataclass(frozen=True)
class PaperNumbers:
    """The paper's tables as quoted in ``paper.yaml``.

    ``table1[action][method]``: (content preservation, objective error (m), foot skating ratio,
    jitter); ``table2[setting][method]`` and ``table2_real``: (MPJPE observed (cm), FID, foot
    skating ratio, jitter); ``table3[run]``: (label, (MPJPE all (cm), FID, jitter, foot skating
    ratio) or None); ``action_names[action]``: Table 1's row name.
    """

    table1: dict[str, dict[str, tuple[float, ...]]]
    action_names: dict[str, str]
    table2_real: tuple[float, ...]
    table2: dict[str, dict[str, tuple[float, ...]]]
    table3: dict[str, tuple[str, tuple[float, ...] | None]]


@lru_cache(maxsize=1)
def paper_numbers() -> PaperNumbers:
    """:class:`PaperNumbers` read from :data:`PAPER_FILE`; a malformed file is a one-line error."""
    path = Path(__file__).parent / PAPER_FILE
    try:
        data = yaml.safe_load(path.read_text())
        return PaperNumbers(
            table1={a: {m: tuple(v) for m, v in row.items()} for a, row in data["table1"].items()},
            action_names={str(k): str(v) for k, v in data["action_names"].items()},
            table2_real=tuple(data["table2_real"]),
            table2={s: {m: tuple(v) for m, v in row.items()} for s, row in data["table2"].items()},
            table3={run: (str(label), None if values is None else tuple(values))
                    for run, (label, values) in data["table3"].items()},
        )
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ArtifactError(f"{path}: not the paper's tables ({type(exc).__name__}: {exc})") from None


# ------------------------------------------------------------------------------------------- loading


#: The runs the dno stages write for each family's tasks (dvc.yaml: dno_input, dno_guided, dno and
#: dno_ablation_base); ablation variants (``dno_<variant>``) are reported when present.
REQUIRED_RUNS = {"edit": ("input", "guided", "dno"), "control": ("input", "guided", "dno"),
                 "refine": ("input", "guided", "dno"), "ablate": ("input", "dno")}


def check_run_files(data_dir: Path, tasks_dir: Path) -> None:
    """One-line ArtifactError naming the first missing file: a task table's run (:data:`REQUIRED_RUNS`)
    or one of a run's ``.npz``/``.json``/``_history.npz`` beside its table."""
    data_dir, tasks_dir = Path(data_dir), Path(tasks_dir)
    families = [family for family in FAMILIES if (tasks_dir / f"{family}.parquet").is_file()]
    if not families:
        raise ArtifactError(f"{tasks_dir}: no task table found (run dno_tasks first)")
    for family in families:
        for run in REQUIRED_RUNS[family]:
            table = data_dir / family / f"{run}.parquet"
            if not table.is_file():
                raise ArtifactError(f"{table}: file not found (the {family} tasks' {run} run; run its dno stage)")
        for table in sorted((data_dir / family).glob("*.parquet")):
            for name in (f"{table.stem}.npz", f"{table.stem}.json", f"{table.stem}_history.npz"):
                if not (table.parent / name).is_file():
                    raise ArtifactError(f"{table.parent / name}: file not found (an output of the run of {table.name})")


def load_runs(data_dir: Path) -> dict[str, dict[str, dict]]:
    """{family: {run: {"table", "features", "joints", "clean", "summary", "history"}}} of what exists
    (a missing ``.json`` or ``_history.npz`` gives ``{}`` / ``None``; :func:`check_run_files` refuses it)."""
    runs: dict[str, dict[str, dict]] = {}
    for family in FAMILIES:
        folder = data_dir / family
        if not folder.is_dir():
            continue
        for table_file in sorted(folder.glob("*.parquet")):
            run = table_file.stem
            arrays = load_npz(folder / f"{run}.npz", ["features", "feature_offsets", "joints", "joint_offsets"])
            entry = {
                "table": load_parquet(table_file, ["task_id", "setting", "method"]),
                "features": split_ragged(arrays["features"], arrays["feature_offsets"]),
                "joints": split_ragged(arrays["joints"], arrays["joint_offsets"]),
                "clean": split_ragged(arrays["clean_features"], arrays["clean_feature_offsets"]) if "clean_features" in arrays else None,
                "clean_joints": split_ragged(arrays["clean_joints"], arrays["clean_joint_offsets"]) if "clean_joints" in arrays else None,
                "summary": json.loads((folder / f"{run}.json").read_text()) if (folder / f"{run}.json").is_file() else {},
                "history": load_npz(folder / f"{run}_history.npz", finite=False) if (folder / f"{run}_history.npz").is_file() else None,
            }
            if len(entry["table"]) != len(entry["joints"]):
                raise ArtifactError(f"{table_file}: {len(entry['table'])} rows but {len(entry['joints'])} motions in {run}.npz")
            runs.setdefault(family, {})[run] = entry
    return runs


def mean_of(frame: pd.DataFrame, column: str) -> float | None:
    values = frame[column].dropna() if column in frame.columns else pd.Series(dtype=float)
    return float(values.mean()) if len(values) else None


def nan_to_none(value):
    return None if value is None or (isinstance(value, float) and not math.isfinite(value)) else value


# --------------------------------------------------------------------------------------- aggregation


class FID:
    """FID of feature clips against the reference set, or None (no evaluator, too few samples)."""

    def __init__(self, evaluator_file: Path, reference: list[np.ndarray], min_samples: int) -> None:
        self.score = fid_scorer(evaluator_file, reference) if len(reference) >= 2 else None
        self.min_samples = max(2, min_samples)
        self.available = self.score is not None

    def __call__(self, clips: list[np.ndarray]) -> float | None:
        clips = [c for c in clips if len(c) >= 4]
        if self.score is None or len(clips) < self.min_samples:
            return None
        return self.score(clips)


def aggregate_edit(runs: dict[str, dict]) -> dict:
    out: dict = {}
    for method in ("input", "guided", "dno"):
        if method not in runs:
            continue
        table = runs[method]["table"]
        for action, rows in table.groupby("setting", sort=False):
            out.setdefault(action, {})[method] = {
                "content_preservation": mean_of(rows, "content_preservation"),
                "objective_error_m": {k: nan_to_none(v) for k, v in summary(rows["objective_error_m"].tolist()).items()},
                "foot_skating_ratio": mean_of(rows, "foot_skating_ratio"),
                "jitter": mean_of(rows, "jitter"),
                "tasks": int(len(rows)),
                **{name: mean_of(rows, name) for name in ("inversion_mpjpe_cm", "fitted_inversion_mpjpe_cm") if name in rows},
            }
    return out


def aggregate_refine(runs: dict[str, dict], fid: FID, names: dict[str, str]) -> dict:
    """{setting: {name: metrics}} for runs named by ``names`` (run -> reported method name)."""
    out: dict = {}
    for run, name in names.items():
        if run not in runs:
            continue
        table = runs[run]["table"]
        for setting, rows in table.groupby("setting", sort=False):
            clips = [runs[run]["features"][i] for i in rows.index]
            out.setdefault(setting, {})[name] = {
                "mpjpe_cm": mean_of(rows, "mpjpe_observed_cm"),
                "mpjpe_all_cm": mean_of(rows, "mpjpe_all_cm"),
                "fid": fid(clips),
                "foot_skating_ratio": mean_of(rows, "foot_skating_ratio"),
                "jitter": mean_of(rows, "jitter"),
                "tasks": int(len(rows)),
            }
    return out


def real_row(runs: dict[str, dict], fid: FID) -> dict | None:
    """Realism and FID of the clean inputs of one refinement setting (the tables' Real row)."""
    entry = runs.get("input")
    if entry is None or entry["clean"] is None:
        return None
    table = entry["table"]
    rows = table[table["setting"] == table["setting"].iloc[0]]
    clips = [entry["clean"][i] for i in rows.index]
    metrics = [realism(entry["clean_joints"][i]) for i in rows.index]
    return {"mpjpe_cm": 0.0, "fid": fid(clips), "tasks": len(clips),
            "foot_skating_ratio": float(np.mean([m["foot_skating_ratio"] for m in metrics])),
            "jitter": float(np.mean([m["jitter"] for m in metrics]))}


def aggregate_control(runs: dict[str, dict]) -> dict:
    out: dict = {}
    for method in ("input", "guided", "dno"):
        if method not in runs:
            continue
        for _, row in runs[method]["table"].iterrows():
            out.setdefault(row["setting"], {})[method] = {
                key: nan_to_none(float(row[key])) for key in (
                    "objective_error_m", "mpjpe_observed_cm", "min_obstacle_distance_m", "penetration_ratio",
                    "foot_skating_ratio", "jitter") if key in row}
    return out


# --------------------------------------------------------------------------------------------- tables


def cell(ours, paper=None, digits: int = 2) -> str:
    text = format_value(ours, digits)
    return text if paper is None else f"{text} (paper {paper:.{digits}f})"


def table1(edit: dict, captions: dict[str, str]) -> str:
    quoted = paper_numbers()
    lines = []
    headers = ["Action / method", "Content preserve ↑", "Objective error (m) ↓ median / mean", "Foot skating ratio ↓", "Jitter ↓"]
    rows = []
    for action, methods in edit.items():
        label = quoted.action_names.get(action, action)
        rows.append([f"**{label}** — ours: “{captions.get(action, '')}”", "", "", "", ""])
        for method, values in methods.items():
            paper = quoted.table1.get(action, {}).get(method)
            error = values["objective_error_m"]
            rows.append([
                METHOD_LABELS[method],
                cell(values["content_preservation"], paper[0] if paper else None),
                f"{format_value(error['median'], 2)} / {format_value(error['mean'], 2)}" + (f" (paper {paper[1]:.2f})" if paper else ""),
                cell(values["foot_skating_ratio"], paper[2] if paper else None),
                cell(values["jitter"], paper[3] if paper else None),
            ])
    lines.append(markdown_table(headers, rows, "lrrrr"))
    return "\n".join(lines)


def table2(refine: dict, real: dict | None) -> str:
    headers = ["Setting / method", "MPJPE observed (cm) ↓", "FID ↓", "Foot skating ratio ↓", "Jitter ↓"]
    quoted = paper_numbers()
    real_paper = quoted.table2_real
    rows = []
    if real is not None:
        rows.append(["Real", cell(real["mpjpe_cm"], real_paper[0], 1), cell(real["fid"], real_paper[1]),
                     cell(real["foot_skating_ratio"], real_paper[2]), cell(real["jitter"], real_paper[3])])
    for setting, methods in refine.items():
        rows.append([f"**{setting.replace('_', ' ')}**", "", "", "", ""])
        for method, values in methods.items():
            paper = quoted.table2.get(setting, {}).get(method)
            rows.append([REFINE_LABELS.get(method, method),
                         cell(values["mpjpe_cm"], paper[0] if paper else None, 1), cell(values["fid"], paper[1] if paper else None),
                         cell(values["foot_skating_ratio"], paper[2] if paper else None),
                         cell(values["jitter"], paper[3] if paper else None)])
    return markdown_table(headers, rows, "lrrrr")


#: the paper's findings in the form the default preset is held to: thresholds on DNO's editing
#: objective (m), its content on the actions the paper reports highest, and its jitter against the input's
FINDING_OBJECTIVE_M = 0.05
FINDING_CONTENT = {"jumping": 0.85, "crawling": 0.85}
FINDING_JITTER_RATIO = 1.5


def findings(edit: dict | None, refine: dict | None) -> list[dict]:
    """The paper's findings checked on this run: rows ``{"finding", "case", "ours", "holds"}``.

    Editing (per action, DNO against the input and the guided baseline): objective median under
    5 cm and below the guided baseline's; content at least 0.85 on jumping and crawling and at least
    the guided baseline's; jitter within 1.5x the input's. Refinement (per setting): DNO's MPJPE and
    foot skating ratio below the noisy input's. A case whose numbers are missing is left out.
    """
    rows: list[dict] = []

    def check(finding: str, case: str, ours: str, holds: bool) -> None:
        rows.append({"finding": finding, "case": case, "ours": ours, "holds": bool(holds)})

    for action, methods in (edit or {}).items():
        dno, guided, source = methods.get("dno"), methods.get("guided"), methods.get("input")
        if dno is None:
            continue
        objective = dno["objective_error_m"]["median"]
        if objective is not None:
            check("DNO objective median < 5 cm", action, f"{100 * objective:.1f} cm", objective < FINDING_OBJECTIVE_M)
        if guided is not None and objective is not None and guided["objective_error_m"]["median"] is not None:
            other = guided["objective_error_m"]["median"]
            check("DNO objective median < guided's", action, f"{objective:.3f} m vs {other:.3f} m", objective < other)
        content = dno["content_preservation"]
        if action in FINDING_CONTENT and content is not None:
            check(f"DNO content >= {FINDING_CONTENT[action]}", action, f"{content:.3f}", content >= FINDING_CONTENT[action])
        if guided is not None and content is not None and guided["content_preservation"] is not None:
            check("DNO content >= guided's", action, f"{content:.3f} vs {guided['content_preservation']:.3f}",
                  content >= guided["content_preservation"])
        if source is not None and dno["jitter"] is not None and source["jitter"]:
            ratio = dno["jitter"] / source["jitter"]
            check(f"DNO jitter <= {FINDING_JITTER_RATIO}x the input's", action, f"{ratio:.2f}x", ratio <= FINDING_JITTER_RATIO)
    for setting, methods in (refine or {}).items():
        dno, noisy = methods.get("dno"), methods.get("noisy")
        if dno is None or noisy is None:
            continue
        for key, label, unit in (("mpjpe_cm", "MPJPE", " cm"), ("foot_skating_ratio", "foot skating ratio", "")):
            if dno[key] is not None and noisy[key] is not None:
                check(f"DNO {label} < the noisy input's", setting, f"{dno[key]:.2f}{unit} vs {noisy[key]:.2f}{unit}",
                      dno[key] < noisy[key])
    return rows


def findings_table(rows: list[dict]) -> str:
    held = sum(r["holds"] for r in rows)
    table = markdown_table(["Finding", "Case", "Ours", "Holds"],
                           [[r["finding"], r["case"].replace("_", " "), r["ours"], "yes" if r["holds"] else "**no**"] for r in rows],
                           "lllc")
    return f"{held} of {len(rows)} checks hold on this run.\n\n{table}"


def table3(ablate: dict, real: dict | None, steps: dict[str, int] | None = None) -> str:
    """Table 3; ``steps`` (run -> optimisation steps) labels the step-count rows with our counts,
    which the default preset scales down from the paper's."""
    steps = steps or {}
    quoted = paper_numbers().table3
    headers = ["Variant", "MPJPE all (cm) ↓", "FID ↓", "Jitter ↓", "Foot skating ratio ↓"]
    rows = []
    if real is not None:
        label, paper = quoted["real"]
        rows.append([label, cell(real["mpjpe_cm"], paper[0], 1), cell(real["fid"], paper[1]), cell(real["jitter"], paper[2]),
                     cell(real["foot_skating_ratio"], paper[3])])
    for run, values in ablate.items():
        label, paper = quoted.get(run, (run, None))
        if run in ("dno", "dno_steps_fewer", "dno_steps_more") and run in steps:
            label = f"{label} (ours: {steps[run]} steps)"
        rows.append([label, cell(values["mpjpe_all_cm"], paper[0] if paper else None, 1),
                     cell(values["fid"], paper[1] if paper else None), cell(values["jitter"], paper[2] if paper else None),
                     cell(values["foot_skating_ratio"], paper[3] if paper else None)])
    return markdown_table(headers, rows, "lrrrr")


def ablation_steps(ablate_runs: dict[str, dict]) -> dict[str, int]:
    """Optimisation steps of each DNO run of the ablation family, read from its JSON summary."""
    steps = {}
    for run, entry in ablate_runs.items():
        options = entry["summary"].get("options", {}).get("refine")
        if options:
            steps[run] = int(options["steps"])
    return steps


def control_table(control: dict) -> str:
    headers = ["Task / method", "Objective error (m)", "MPJPE observed (cm)", "Min. obstacle distance (m)",
               "Frames in obstacle", "Foot skating", "Jitter"]
    rows = []
    for setting, methods in control.items():
        for method, values in methods.items():
            rows.append([f"{setting} / {METHOD_LABELS[method]}", format_value(values.get("objective_error_m"), 2),
                         format_value(values.get("mpjpe_observed_cm"), 1), format_value(values.get("min_obstacle_distance_m"), 2),
                         format_value(values.get("penetration_ratio"), 2), format_value(values.get("foot_skating_ratio"), 2),
                         format_value(values.get("jitter"), 2)])
    return markdown_table(headers, rows, "lrrrrrr")


# ------------------------------------------------------------------------------------------- protocol


def inversion_note(options: dict) -> str:
    """How the editing start point was made, from a run's DNO options."""
    choices = options.get("inversion_choices") or []
    fit = options.get("inversion_fit_steps", 0)
    note = f", DDIM inversion with {options['inversion_steps']} steps"
    if choices:
        note += f" or {' or '.join(str(c) for c in choices)}, whichever decodes closer to each input"
    if fit:
        note += f", then {fit} steps of the same optimiser on the input's joint error alone"
    if choices or fit:
        note += (" (not in the paper: our prior's DDIM inversion decodes far from the input; `inversion_mpjpe_cm` "
                 "and `fitted_inversion_mpjpe_cm` in `reports/metrics/dno.json` give the distance before and after)")
    return note


def protocol_notes(runs: dict[str, dict[str, dict]], fid_available: bool, reference_clips: int) -> str:
    """How the numbers were made: settings read back from the runs' JSON summaries."""
    lines = ["## Protocol\n"]
    for family, kind in (("edit", "edit"), ("refine", "refine")):
        summary_ = runs.get(family, {}).get("dno", {}).get("summary", {})
        options = summary_.get("options", {}).get(kind)
        if options:
            lines.append(f"- DNO ({family}): {options['steps']} steps, Adam lr {options['lr']}, {options['warmup_steps']}-step "
                         f"warm-up then cosine to 0 ({options['lr_schedule']}), normalised gradient "
                         f"{options['normalize_gradient']}, DDIM-{options['ddim_steps']} (eta 0, empty text), "
                         f"lambda_cont {options['lambda_content']}, lambda_decorr {options['lambda_decorr']}, "
                         f"perturbation {options['perturbation']}" + (inversion_note(options) if kind == "edit" else "")
                         + ". The paper: 300 (editing) / 500 (refinement) steps.")
    # each guided run records the scales its tasks read: gather them over the families
    guided_runs = [r["summary"]["guided"] for fam in runs.values() for r in fam.values() if r["summary"].get("guided")]
    if guided_runs:
        guided = {k: v for run in guided_runs for k, v in run.items()}
        steer = GUIDED_STEERING.get(guided.get("mode", "x0"), "")
        lines.append(f"- Guided baseline: DDIM-{guided['ddim_steps']} where {steer} (scale {guided.get('scale_edit', '-')} for edits, "
                     f"{guided.get('scale_refine', '-')} from noise); edits start from the input's own x_T with its caption (CFG {guided['text_guidance']}), "
                     "refinement from the task's N(0, I) without text. The scales are the best of a sweep by "
                     "`tools/tune_guided_scale.py` on validation tasks drawn with another task seed.")
    lines += [
        "- Content preservation: per frame, a label from the action's rule (jump: both feet (joints 10, 11) above "
        "5 cm; raised hands: both wrists above the head; crawl: head below the task's threshold (the paper's 1.5 m; "
        "the default tasks use 1.0 m because the corpus skeleton's standing head is at 1.52 m)); the ratio is the "
        "share of frames whose label is the same before and after the edit.",
        "- Objective error: distance from the target to the output joint at the keyframe, on the ground plane (x, z) "
        "for pelvis targets; median and mean over the edits.",
        "- Refinement noise: N(0, sigma^2) per axis on every joint's position; MPJPE is the mean Euclidean error "
        "against the clean input without alignment (observed joints for Table 2, all joints for Table 3). For 5 cm "
        "noise the noisy input's MPJPE is sigma * sqrt(8 / pi) = 8.0 cm; the paper's Noisy row reads 11.1 cm while its "
        "noisy jitter (28.6) matches ours, so its MPJPE must be measured differently (not stated).",
        f"- FID: the evaluator's embeddings of each row's outputs against {reference_clips} test clips no task used"
        + ("" if fid_available else " (not computed: no evaluator file yet)") + "; with few motions per row FID is "
        "biased upwards, compare rows with each other only. The noisy input's features come from its joints by "
        "HumanML3D's feature extraction (retargeted to its own bone lengths).",
        "- Foot skating ratio and jitter (10^2 m/s^3) as the paper: feet 10, 11 below 5 cm moving more than 2.5 cm "
        "per frame; mean magnitude of the third difference of positions times fps^3.\n",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class DNOReport:
    """``markdown``: the report's text (pictures linked relative to its folder); ``metrics``: the
    numbers as plain JSON data (a value ``json`` cannot write became None)."""

    markdown: str
    metrics: dict[str, Any]


def reference_clips(runs: dict[str, dict[str, dict]], test) -> list[np.ndarray]:
    """Features (T, 263) of the test clips of ``test`` (a :class:`~humandiff.motion.dataset.MotionSplit`)
    that no refinement or ablation task used: FID's reference set."""
    used = {str(t).split("/")[-1] for fam in ("refine", "ablate") for r in runs.get(fam, {}).values() for t in r["table"]["task_id"]}
    return [test.clip(k) for k in range(len(test)) if str(test.index.at[k, "clip_id"]) not in used]


def edit_captions(tasks_dir: Path) -> dict[str, str]:
    """Action -> the caption its editing input was generated from (empty without an edit table)."""
    captions: dict[str, str] = {}
    if (tasks_dir / "edit.parquet").is_file():
        for task in load_tasks(tasks_dir / "edit.parquet", "edit"):
            captions.setdefault(task.setting, task.caption)
    return captions


def dno_report(
    runs: dict[str, dict[str, dict]],
    test,
    evaluator_file: str | Path,
    tasks_dir: Path,
    report_dir: Path,
    *,
    fid_min_samples: int,
    sheet_tasks: int,
    videos: int,
) -> DNOReport:
    """The report of the runs :func:`load_runs` found (at least one).

    ``test`` is the corpus' test split (FID's reference set, :func:`reference_clips`);
    ``evaluator_file`` the trained evaluator (FID stays empty while it does not exist). Writes
    the pictures (:func:`~humandiff.dno.figures.pictures`: contact sheets and videos into
    ``report_dir``, loss curves into ``report_dir.parent / "plots"``) and returns the text and metrics.
    """
    reference = reference_clips(runs, test)
    fid = FID(Path(evaluator_file), reference, fid_min_samples)

    metrics: dict = {}
    if "edit" in runs:
        metrics["edit"] = aggregate_edit(runs["edit"])
    if "refine" in runs:
        metrics["refine"] = aggregate_refine(runs["refine"], fid, {"input": "noisy", "guided": "guided", "dno": "dno"})
        metrics["real"] = real_row(runs["refine"], fid)
    if "ablate" in runs:
        names = {run: run for run in sorted(runs["ablate"], key=lambda r: (r != "input", r != "dno", r))}
        per_setting = aggregate_refine(runs["ablate"], fid, names)
        metrics["ablate"] = next(iter(per_setting.values())) if per_setting else {}
        metrics["ablate_real"] = real_row(runs["ablate"], fid)
    if "control" in runs:
        metrics["control"] = aggregate_control(runs["control"])
    metrics["tasks"] = {f"{family}.{run}": entry["summary"].get("tasks")
                        for family, family_runs in runs.items() for run, entry in family_runs.items()}
    metrics["fid_available"] = fid.available
    checks = findings(metrics.get("edit"), metrics.get("refine"))
    metrics["findings"] = {"checks": len(checks), "hold": sum(r["holds"] for r in checks),
                           "failed": [f"{r['finding']} ({r['case']})" for r in checks if not r["holds"]]}

    captions = edit_captions(tasks_dir)
    figures: list[str] = []
    plots: list[str] = []
    for family in runs:
        figures += pictures(family, runs[family], tasks_dir / f"{family}.parquet", report_dir, sheet_tasks, videos)
        plots += loss_curves(family, runs[family], report_dir.parent / "plots")

    sections = ["# DNO: diffusion noise optimisation over this project's MDM prior\n",
                "Numbers in parentheses are the paper's (Karunratanakul et al., 2024, DNO-MDM), quoted exactly; the "
                "others are this run's, on the embedded synthetic corpus with this project's small MDM, so they are "
                "not expected to match. Guided = our GMD-style loss-guided baseline (see the protocol), not GMD itself.\n",
                protocol_notes(runs, fid.available, len(reference))]
    if "edit" in metrics:
        sections += ["## Table 1: motion editing (pelvis to a random ground target at a random keyframe)\n",
                     table1(metrics["edit"], captions)]
    if "refine" in metrics:
        sections += ["## Table 2: noisy motion refinement and completion (5 cm noise)\n", table2(metrics["refine"], metrics.get("real"))]
    if "ablate" in metrics:
        sections += ["## Table 3: ablations on the 1 cm refinement task\n", table3(metrics["ablate"], metrics.get("ablate_real"), ablation_steps(runs["ablate"]))]
    if checks:
        sections += ["## The paper's findings, checked on this run\n", findings_table(checks)]
    if "control" in metrics:
        sections += ["## Qualitative tasks (trajectory, hand, pose, obstacles, in-betweening, blending)\n",
                     control_table(metrics["control"])]
    if not fid.available:
        sections.append(f"FID: the evaluator `{evaluator_file}` does not exist yet, so FID cells are empty.\n")
    sections += ["## Cost of this run\n", "Each run's wall-clock time is in `reports/metrics/dno_time/<family>_<run>.json` "
                 "(`dvc metrics show`), kept out of this report so that a rerun which changes only timings reruns "
                 "nothing; `benchmarks/bench_dno.py` measures the optimisation's speed.\n"]
    if figures or plots:
        sections.append("## Pictures\n")
        sections += [f"![{Path(f).stem}]({f})\n" if f.endswith(".png") else f"- video: [{Path(f).name}]({f})\n" for f in figures + plots]
    return DNOReport("\n".join(sections), json.loads(json.dumps(metrics, default=lambda o: None)))
