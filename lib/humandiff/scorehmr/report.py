"""ScoreHMR's report (the ``report_scorehmr`` stage's logic): Tables 1-4 and the supplementary's
sweeps, ours beside the paper's (``paper.yaml``), the findings of issue 26, and the metrics JSON.

Ours come from the run records (``<data-dir>/<setting>/<run>.json``, ``ablation/<feature>-<target>.json``)
that the run stages write; this module only gathers and lays them out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from humandiff.eval.report import markdown_table
from humandiff.io.artifacts import ArtifactError
from humandiff.scorehmr.data import FEATURE_SOURCES, METRIC_NAMES
from humandiff.scorehmr.run import METHODS
from humandiff.scorehmr.training import TARGETS

PAPER_FILE = "paper.yaml"
SWEEP_VARIANTS = ("tau_100", "tau_200", "step_4", "step_10")
SETTINGS = ("fit", "multiview", "video")


def paper_numbers() -> dict[str, Any]:
    """The paper's tables as quoted in ``paper.yaml`` beside this module."""
    return yaml.safe_load((Path(__file__).parent / PAPER_FILE).read_text())


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ArtifactError(f"{path}: missing run record (run its stage first)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc.msg})") from None


def load_records(data_dir: str | Path) -> dict[str, Any]:
    """Every run record: ``runs[setting][method]``, ``sweep[variant]``, ``ablation["<feature>-<target>"]``."""
    root = Path(data_dir)
    return {"runs": {s: {m: _read(root / s / f"{m}.json") for m in METHODS} for s in SETTINGS},
            "sweep": {v: _read(root / "fit" / f"scorehmr_{v}.json") for v in SWEEP_VARIANTS},
            "ablation": {f"{f}-{t}": _read(root / "ablation" / f"{f}-{t}.json") for f in FEATURE_SOURCES for t in TARGETS}}


def _metrics(record: dict[str, Any], video: bool = False) -> dict[str, float]:
    names = METRIC_NAMES + (("accel_error", "accel_error_mm_per_frame2") if video else ())
    return {name: record["metrics"][name] for name in names}


def findings(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Issue 26's findings as booleans, each with a line of text."""
    fit, mv, video = (runs[s] for s in SETTINGS)
    pa = lambda r: r["metrics"]["pa_mpjpe_lsp14_mm"]  # noqa: E731
    checks = {
        "fit_pa_below_regression": (pa(fit["scorehmr"]) < pa(fit["regression"]),
                                    f"fit PA-MPJPE (14): ScoreHMR {pa(fit['scorehmr'])} vs regression {pa(fit['regression'])} mm"),
        "fit_pa_below_smplify": (pa(fit["scorehmr"]) < pa(fit["smplify"]),
                                 f"fit PA-MPJPE (14): ScoreHMR {pa(fit['scorehmr'])} vs SMPLify {pa(fit['smplify'])} mm"),
        "multiview_mpjpe_below_regression": (
            mv["scorehmr"]["metrics"]["mpjpe_mm"] < mv["regression"]["metrics"]["mpjpe_mm"],
            f"multi-view MPJPE: ScoreHMR {mv['scorehmr']['metrics']['mpjpe_mm']} vs per-view regression "
            f"{mv['regression']['metrics']['mpjpe_mm']} mm"),
        "video_accel_below_regression": (
            video["scorehmr"]["metrics"]["accel_error"] < video["regression"]["metrics"]["accel_error"],
            f"video accel error: ScoreHMR {video['scorehmr']['metrics']['accel_error']} vs regression "
            f"{video['regression']['metrics']['accel_error']} mm/s^2"),
        "video_accel_below_smoothing": (
            video["scorehmr"]["metrics"]["accel_error"] < video["smplify"]["metrics"]["accel_error"],
            f"video accel error: ScoreHMR {video['scorehmr']['metrics']['accel_error']} vs SMPLify+smoothing "
            f"{video['smplify']['metrics']['accel_error']} mm/s^2"),
        "video_pa_not_worse_than_regression": (pa(video["scorehmr"]) <= pa(video["regression"]),
                                               f"video PA-MPJPE (14): ScoreHMR {pa(video['scorehmr'])} vs regression "
                                               f"{pa(video['regression'])} mm"),
    }
    out: dict[str, Any] = {name: bool(holds) for name, (holds, _) in checks.items()}
    out["text"] = {name: text for name, (_, text) in checks.items()}
    return out


def metrics_json(records: dict[str, Any]) -> dict[str, Any]:
    """``reports/metrics/scorehmr.json``: ``fit.<start>.<method>``, ``multiview.<method>``, ``video.<method>``,
    ``sweep.<variant>``, ``ablation.<feature>-<target>`` and ``findings`` (no timing: the run stages
    write theirs to ``reports/metrics/scorehmr_time/``, which no stage reads)."""
    runs = records["runs"]
    out: dict[str, Any] = {"fit": {"regression": {m: _metrics(runs["fit"][m]) for m in METHODS}},
                           "multiview": {m: _metrics(runs["multiview"][m]) for m in METHODS},
                           "video": {m: _metrics(runs["video"][m], video=True) for m in METHODS},
                           "sweep": {v: _metrics(r) for v, r in records["sweep"].items()},
                           "ablation": {k: _metrics(r) for k, r in records["ablation"].items()}}
    out["findings"] = findings(runs)
    return out


def _f(value: Any, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def report_markdown(metrics: dict[str, Any], records: dict[str, Any], training: dict[str, Any], targets: dict[str, Any],
                    figures: dict[str, str]) -> str:
    """The report's Markdown (see the module doc); ``figures`` maps a name to its link relative to the report."""
    paper, runs = paper_numbers(), records["runs"]
    fit, mv, vid = metrics["fit"]["regression"], metrics["multiview"], metrics["video"]
    names = {"regression": "Regression (our perception net's HMR-style head)", "smplify": "+ SMPLify (single stage)",
             "scorehmr": "+ ScoreHMR (ours)"}
    lines = ["# ScoreHMR: score-guided refinement (Stathopoulos et al. 2024), Tables 1-4", "",
             "Ours: the synthetic rendered sets of this pipeline (128 px images, our body model), so our numbers are "
             "comparable with each other, not with the paper's real-data numbers, which are quoted beside them (labelled "
             "*paper*) for the layout and the direction of each effect.", "",
             f"Denoiser: {training.get('parameters', '?')} parameters, feature `{training.get('feature')}` "
             f"({training.get('feature_dim')} numbers), target `{training.get('target')}`, {training.get('steps')} steps on "
             f"{training.get('train_images')} training images.", ""]

    lines += ["## Table 1: ablation (feature source x pose target), fit setting", ""]
    rows = [["Regression", "-", "-", _f(fit["regression"]["pa_mpjpe_lsp14_mm"]), _f(fit["regression"]["pa_mpjpe_mm"]), ""]]
    for key, record in records["ablation"].items():
        feature, target = key.split("-")
        m = record["metrics"]
        rows.append(["+ ScoreHMR", feature, {"gt": "exact GT", "pseudo": "SMPLify fits"}[target],
                     _f(m["pa_mpjpe_lsp14_mm"]), _f(m["pa_mpjpe_mm"]), f"{record.get('steps')} steps"])
    lines += [markdown_table(["ours", "features", "pose targets", "PA-MPJPE (14)", "PA-MPJPE (24)", "training"], rows), ""]
    lines += ["*Paper* (ProHMR / PARE features, SPIN / EFT fits; 3DPW (14), EMDB 1 (24)):", ""]
    lines += [markdown_table(["paper", "features", "fits", *paper["table1"]["columns"]],
                             [[r[0], r[1], r[2], *[_f(v) for v in r[3]]] for r in paper["table1"]["rows"]]), ""]

    lines += ["## Table 2: model fitting methods (fit setting, PA-MPJPE mm)", ""]
    table2 = []
    for method in METHODS:
        p = paper["table2"]["hmr2"][method]
        table2.append([names[method], _f(fit[method]["pa_mpjpe_lsp14_mm"]), _f(fit[method]["pa_mpjpe_mm"]),
                       _f(fit[method]["mpjpe_mm"]), _f(p[0]), _f(p[1])])
    p = paper["table2"]["hmr2"]["fitting"]
    table2.append(["+ ProHMR-fitting (learned prior; not run, see docs/scorehmr.md)", "–", "–", "–", _f(p[0]), _f(p[1])])
    lines += [markdown_table(["method", "ours PA-MPJPE (14)", "ours PA-MPJPE (24)", "ours MPJPE",
                              "paper (HMR 2.0 start) 3DPW (14)", "paper EMDB 1 (24)"], table2), ""]

    lines += ["## Table 3: multi-view refinement", ""]
    table3 = []
    for method in METHODS:
        p = paper["table3"]["hmr2"].get(method if method != "smplify" else "fitting", [None, None])
        label = names[method] if method != "smplify" else "+ SMPLify towards the views' mean body pose (paper: ProHMR-fitting)"
        table3.append([label, _f(mv[method]["mpjpe_mm"]), _f(mv[method]["pa_mpjpe_lsp14_mm"]), _f(p[0]), _f(p[1])])
    lines += [markdown_table(["method", "ours MPJPE (24)", "ours PA-MPJPE (14)", "paper H36M MPJPE (14)",
                              "paper PA-MPJPE (14)"], table3), ""]

    lines += ["## Table 4: motion refinement (video)", ""]
    table4 = []
    for method in METHODS:
        p = paper["table4"]["hmr2"].get(method if method != "smplify" else "fitting", [None, None])
        label = names[method] if method != "smplify" else "+ SMPLify with smoothing (paper: ProHMR-fitting + smoothness)"
        table4.append([label, _f(vid[method]["pa_mpjpe_lsp14_mm"]), _f(vid[method]["accel_error"]),
                       _f(vid[method]["accel_error_mm_per_frame2"], 2), _f(p[0]), _f(p[1])])
    lines += [markdown_table(["method", "ours PA-MPJPE (14)", "ours Acc Err (mm/s^2)", "ours Acc Err (mm/frame^2)",
                              "paper 3DPW PA-MPJPE (14)", "paper Acc Err"], table4), ""]

    lines += ["## Supplementary C: noise level tau and DDIM step (fit setting, PA-MPJPE (14) mm)", ""]
    base = fit["scorehmr"]["pa_mpjpe_lsp14_mm"]
    sweep = metrics["sweep"]
    tau = [["50 (default)", _f(base), _f(paper["sweep_tau"][50])]] + \
        [[str(t), _f(sweep[f"tau_{t}"]["pa_mpjpe_lsp14_mm"]), _f(paper["sweep_tau"][t])] for t in (100, 200)]
    step = [["2 (default)", _f(base), _f(paper["sweep_step"][2])]] + \
        [[str(s), _f(sweep[f"step_{s}"]["pa_mpjpe_lsp14_mm"]), _f(paper["sweep_step"][s])] for s in (4, 10)]
    lines += [markdown_table(["tau", "ours", "paper"], tau), "", markdown_table(["DDIM step", "ours", "paper"], step), ""]

    lines += ["## Findings", ""]
    finding_rows = [[name, "yes" if metrics["findings"][name] else "**no**", text]
                    for name, text in metrics["findings"]["text"].items()]
    lines += [markdown_table(["finding (issue 26)", "holds", "numbers"], finding_rows), ""]

    lines += ["## Runtime", ""]
    rt = paper["runtime"]
    lines += [f"Paper: {rt['frames']} 3DPW frames in {rt['seconds'] / 60:.0f} minutes on one GPU "
              f"({rt['frames'] / rt['seconds']:.0f} frames/s). Ours (CPU, batched over the whole set): each run's wall "
              "time is in `reports/metrics/scorehmr_time/` (kept out of this report, so that it depends on no "
              "timing); `benchmarks/bench_scorehmr.py` measures frames/s.", ""]
    if targets:
        lines += [f"Pseudo ground truth (SMPLify on the true 2D joints of {targets.get('images')} training images): "
                  f"PA-MPJPE (14) {targets['pseudo_gt']['pa_mpjpe_lsp14_mm']} mm against the truth "
                  f"(the regression: {targets['regression']['pa_mpjpe_lsp14_mm']} mm).", ""]

    lines += ["## Protocol", "", PROTOCOL, ""]
    lines += ["## Pictures", ""]
    lines += [f"![{name}]({link})" for name, link in figures.items()]
    return "\n".join(lines) + "\n"


PROTOCOL = """- Joints: the body model's 24 SMPL skeleton joints (`humandiff.body`; the same model renders the
  images), posed with each method's pose and the regression's betas (shape is not refined, as the paper's
  default), against the rendered person's true camera-frame joints (`joints_cam` of the image shards).
  No joint is regressed from vertices: the real benchmarks regress the 14 LSP joints (3DPW) from the
  mesh vertices with the H36M joint regressor, and EMDB uses SMPL's 24 skeleton joints; here SMPL's own
  joints stand in for the LSP ones (`humandiff.eval.mesh.SMPL_TO_LSP14`, in LSP order: right ankle 8,
  knee 5, hip 2, left hip 1, knee 4, ankle 7, right wrist 21, elbow 19, shoulder 17, left shoulder 16,
  elbow 18, wrist 20, neck 12, head 15).
- PA-MPJPE (14) / (24): similarity (Procrustes, Umeyama, no reflection) alignment of the prediction to
  the truth on the evaluated joints, then the mean joint distance, mm.
- MPJPE: both skeletons translated so that the pelvis (joint 0) is at the origin; 24 joints; mm.
- Acc Err (video): per sequence, second finite differences of the pelvis-aligned 24 joints, the mean norm
  of (predicted - true), averaged over all frames of all sequences; reported per frame^2 (VIBE's code,
  which the paper's numbers follow) and times fps^2 = 400 (20 fps) as mm/s^2.
- Every method starts from the same regression; the multi-view numbers are per view (each view's
  camera-frame pose), the video numbers per frame."""
