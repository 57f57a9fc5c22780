"""``reports/sopo.md`` and ``reports/metrics/sopo.json``: SoPo's Tables 1 and 3, the paper's numbers
beside ours, the tau mapping, the miss breakdown of MDM and SoPo, and the paper's findings.

Inputs: ``evaluate_sopo``'s rows (``data/sopo/eval/<row>.json``), the runs' records
(``data/sopo/<run>/train.json``) and the calibration (``data/sopo/calibration.json``); the paper's
numbers from ``paper.yaml`` beside this module. Every metric is the evaluator's; the reward model's
scores appear only as the training signal of the runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import yaml

from humandiff.eval.report import format_interval, format_value, markdown_table
from humandiff.io import ArtifactError

PAPER_FILE = "paper.yaml"
#: The metrics of a row, in the paper's column order, with the direction that is better.
METRICS = (("top1", "Top 1 ↑", 1), ("top2", "Top 2 ↑", 1), ("top3", "Top 3 ↑", 1), ("mm_dist", "MM Dist ↓", -1),
           ("diversity", "Diversity →", 0), ("fid", "FID ↓", -1))
TABLE1 = (("mdm", "MDM (ours, 50-step DDIM)"), ("dpo_offline", "+ DPO (MoDiPO-like, offline pairs)"),
          ("sopo", "+ SoPo"))
PAPER_TABLE1 = (("mdm", "MDM (fast, 50-step; Table 3)"), ("dpo_offline", "+ MoDiPO (not legible in the stored text)"),
                ("sopo", "+ SoPo (Table 3)"))
TABLE3 = (("dsopo", "+ DSoPo"), ("sopo_no_vu", "+ SoPo w/o VU"), ("usopo", "+ USoPo"), ("sopo", "+ SoPo"),
          ("tau_040", "+ SoPo (τ = 0.40)"), ("sopo", "+ SoPo (τ = 0.45)"), ("tau_050", "+ SoPo (τ = 0.50)"),
          ("tau_055", "+ SoPo (τ = 0.55)"), ("tau_060", "+ SoPo (τ = 0.60)"), ("k2", "+ SoPo (K = 2)"),
          ("sopo", "+ SoPo (K = 4)"), ("dpo_online", "+ DPO (online: the policy's best and worst)"))
TAU_RUNS = (("tau_040", 0.40), ("sopo", 0.45), ("tau_050", 0.50), ("tau_055", 0.55), ("tau_060", 0.60))


def paper_numbers() -> dict:
    """The paper's tables (``paper.yaml`` beside this module)."""
    return yaml.safe_load((Path(__file__).with_name(PAPER_FILE)).read_text())


def load_rows(eval_dir: str | Path, names: Sequence[str]) -> dict[str, dict]:
    """``evaluate_sopo``'s record of each row in ``names`` (a missing one names its file)."""
    rows = {}
    for name in names:
        path = Path(eval_dir) / f"{name}.json"
        try:
            rows[name] = json.loads(path.read_text())
        except FileNotFoundError:
            raise ArtifactError(f"{path}: file not found (stage evaluate_sopo@{name})") from None
        except ValueError:
            raise ArtifactError(f"{path}: not valid JSON") from None
    return rows


def relative(value: float, base: float, direction: int, real: float | None = None) -> float:
    """The paper's relative change (%): improvement positive; for Diversity, of the gap to Real."""
    if direction == 0:
        return 100.0 * (abs(base - real) - abs(value - real)) / max(abs(base - real), 1e-12)
    return 100.0 * direction * (value - base) / abs(base)


def row_entry(record: Mapping[str, Any]) -> dict:
    """One entry of ``sopo.json``: the six metrics with ``_ci``, the miss share, the protocol's sets."""
    row, breakdown = record["row"], record["mm_dist_breakdown"]
    entry = {}
    for key, _, _ in METRICS:
        entry[key], entry[f"{key}_ci"] = row[key], row.get(f"{key}_ci")
    entry["miss_share"] = breakdown["miss_share"]
    entry["miss_share_single_action"] = breakdown["miss_share_single_action"]
    entry["miss_share_multi_action"] = breakdown["miss_share_multi_action"]
    entry["sample_sets"], entry["replications"] = record["protocol"]["sample_sets"], record["protocol"]["replications"]
    return entry


def beyond(a: Mapping, b: Mapping, key: str, direction: int) -> bool:
    """Whether ``a`` is better than ``b`` on ``key`` with the 95% intervals apart."""
    if direction > 0:
        return a[key] - (a[f"{key}_ci"] or 0) > b[key] + (b[f"{key}_ci"] or 0)
    return a[key] + (a[f"{key}_ci"] or 0) < b[key] - (b[f"{key}_ci"] or 0)


def findings(entries: Mapping[str, dict], real: Mapping[str, float]) -> dict[str, bool | None]:
    """The paper's findings (issue 27) as booleans; None where a row is missing."""
    mdm, sopo, dpo = entries.get("mdm"), entries.get("sopo"), entries.get("dpo_offline")
    out: dict[str, bool | None] = {}
    if mdm and sopo:
        out["sopo_top1_up_beyond_ci"] = beyond(sopo, mdm, "top1", 1)
        out["sopo_top3_up_beyond_ci"] = beyond(sopo, mdm, "top3", 1)
        out["sopo_mm_dist_down_beyond_ci"] = beyond(sopo, mdm, "mm_dist", -1)
        out["sopo_fewer_misses"] = sopo["miss_share"] < mdm["miss_share"]
    if sopo and dpo:
        out["sopo_r_precision_at_least_dpo"] = all(sopo[k] >= dpo[k] for k in ("top1", "top2", "top3"))
        out["sopo_mm_dist_at_most_dpo"] = sopo["mm_dist"] <= dpo["mm_dist"]
    taus = [(tau, entries[name]) for name, tau in TAU_RUNS if name in entries]
    if len(taus) >= 3:
        x = np.array([t for t, _ in taus])

        def slope(values: list[float]) -> float:
            return float(np.polyfit(x, np.asarray(values, dtype=np.float64), 1)[0])

        out["tau_smaller_favours_alignment"] = slope([e["top3"] for _, e in taus]) < 0 and \
            slope([e["mm_dist"] for _, e in taus]) > 0
        out["tau_larger_favours_fid_diversity"] = slope([e["fid"] for _, e in taus]) < 0 and \
            slope([abs(e["diversity"] - real["diversity"]) for _, e in taus]) < 0
    return out


def _cells(entry: Mapping, base: Mapping | None, real: Mapping) -> list[str]:
    cells = []
    for key, _, direction in METRICS:
        text = format_interval(entry[key], entry[f"{key}_ci"])
        if base is not None and base is not entry:
            text += f" ({relative(entry[key], base[key], direction, real.get('diversity')):+.2f}%)"
        cells.append(text)
    return cells


def _paper_cells(values: Sequence[float | None] | None, base: Sequence[float | None] | None, real: Sequence[float]) -> list[str]:
    if values is None:
        return ["–"] * len(METRICS)
    cells = []
    for i, (_, _, direction) in enumerate(METRICS):
        value = values[i]
        text = format_value(value)
        if value is not None and base is not None and base[i] is not None and values is not base:
            text += f" ({relative(value, base[i], direction, real[4]):+.2f}%)"
        cells.append(text)
    return cells


def tau_mapping_lines(calibration: Mapping[str, Any]) -> list[str]:
    """The paper tau -> quantile -> our threshold table."""
    rows = [[tau, f"{v['quantile']:.3f}", f"{v['threshold']:.4f}", f"{100 * v['dpo_share']:.0f}%"]
            for tau, v in calibration["taus"].items()]
    return [
        f"tau on our reward's scale (`sopo_calibrate`): {calibration['K']} samples of the prior for each of "
        f"{calibration['captions']} training captions ({calibration['ddim_steps']} DDIM steps, the runs' online sampler), "
        f"scored by the reward model; r(x_l, c) is each group's lowest reward (mean {calibration['group_min_mean']:.4f}, "
        f"range {calibration['group_min_range'][0]:.4f}-{calibration['group_min_range'][1]:.4f}; mean of all samples "
        f"{calibration['reward_mean']:.4f}). The paper's tau p maps linearly to the quantile "
        f"q(p) = {calibration['anchor_quantile']} + (p - {calibration['anchor_tau']}) / 0.20 x {calibration['span']} "
        "of r(x_l, c), and that quantile is our threshold: at the start of fine-tuning about a share q of the steps' "
        "rows take the DPO term (humandiff/sopo/calibration.py says why the share, not the value, carries over).",
        "",
        markdown_table(["paper tau", "quantile q", "our threshold", "groups below it (DPO term at the start)"], rows),
        "",
    ]


def miss_lines(records: Mapping[str, dict]) -> list[str]:
    """The miss breakdown (reports/t2m.md's "Where MM-Dist comes from") of MDM and SoPo side by side."""
    names = [n for n in ("mdm", "dpo_offline", "sopo") if n in records]
    if not names:
        return []

    def pct(value: float | None) -> str:
        return "–" if value is None else f"{100 * value:.0f}%"

    keys = (("median matched distance", "generated_median", "{:.2f}"), ("mean matched distance", "generated_mean", "{:.2f}"),
            ("misses (beyond Real's 95th percentile)", "miss_share", None),
            ("misses, one-action captions", "miss_share_single_action", None),
            ("misses, several actions", "miss_share_multi_action", None), ("misses' mean distance", "miss_mean", "{:.2f}"))
    rows = []
    for label, key, fmt in keys:
        cells = []
        for n in names:
            value = records[n]["mm_dist_breakdown"].get(key)
            cells.append(pct(value) if fmt is None else ("–" if value is None else fmt.format(value)))
        rows.append([label, *cells])
    for group in ("1", "2", "3+"):
        rows.append([f"misses, {group} action clause(s)",
                     *[pct(records[n]["mm_dist_breakdown"]["miss_share_by_actions"].get(group)) for n in names]])
    real = records[names[0]]["mm_dist_breakdown"]
    return ["## Where MM-Dist comes from: MDM and SoPo", "",
            f"As in `reports/t2m.md`: a pair misses when its matched distance lies beyond Real's 95th percentile "
            f"({real['real_cutoff']:.2f}; Real's median {real['real_median']:.2f}); pooled over every sample set of the row.",
            "", markdown_table(["", *[dict(TABLE1)[n] for n in names]], rows), ""]


def report_markdown(records: Mapping[str, dict], entries: Mapping[str, dict], runs: Mapping[str, dict],
                    calibration: Mapping[str, Any], found: Mapping[str, bool | None], figures: Sequence[tuple[str, str]]) -> str:
    """The whole of ``reports/sopo.md``."""
    paper = paper_numbers()
    real_record = next(iter(records.values()))["real"]
    real = {key: real_record[key] for key, _, _ in METRICS}
    headers = ["Method", *[label for _, label, _ in METRICS], "sets x replications"]
    base = entries.get("mdm")

    def protocol(name: str) -> str:
        return f"{entries[name]['sample_sets']} x {entries[name]['replications']}"

    real_cells = [format_interval(real_record[k], real_record.get(f"{k}_ci")) for k, _, _ in METRICS]
    t1 = [["Real (ours, test set)", *real_cells, "–"]]
    t1 += [[label, *_cells(entries[n], base, real), protocol(n)] for n, label in TABLE1 if n in entries]
    t1 += [["Real (paper)", *_paper_cells(paper["real"], None, paper["real"]), "paper"]]
    t1 += [[f"{label} (paper)", *_paper_cells(paper["table1"].get(n), paper["table1"]["mdm"], paper["real"]), "paper"]
           for n, label in PAPER_TABLE1]
    t3 = [["MDM (ours)", *_cells(base, base, real), protocol("mdm")]] if base else []
    t3 += [[label, *_cells(entries[n], base, real), protocol(n)] for n, label in TABLE3 if n in entries]
    p3 = paper["table3"]
    t3p = [["MDM (fast) (paper)", *_paper_cells(p3["mdm"], p3["mdm"], paper["real"])]]
    t3p += [[f"{label} (paper)", *_paper_cells(p3.get(n), p3["mdm"], paper["real"])] for n, label in TABLE3 if n in p3]
    run_rows = [[name, r["options"]["variant"], r["options"]["K"], r["options"]["tau"], f"{r['threshold']:.4f}",
                 r["steps"], "–" if r["dpo_share"] is None else f"{100 * r['dpo_share']:.0f}%",
                 format_value(r["reward_samples_first"], 4), format_value(r["reward_samples_last"], 4)]
                for name, r in runs.items()]
    lines = [
        "# SoPo: semi-online preference optimisation of the text-to-motion prior",
        "",
        "Every metric below is the Guo et al.-style evaluator's (`evaluate_t2m`'s library); the TMR-style reward "
        "model is only the fine-tuning's signal. All rows are drawn on `sample_mdm`'s test captions and lengths "
        "with its seeds and sampler (50-step DDIM, guidance 2.5), so every row shares the MDM row's noise. "
        "Cells: value ± 95% interval (relative change against our MDM row as the paper prints it: improvement "
        "positive; for Diversity, of the gap to Real). The last column gives each row's protocol: sample sets x "
        "replications (batches of 32). Fewer sets than replications leave part of the sampling variance out of "
        "the intervals (`evaluate_t2m` uses 20 sets); see docs/sopo.md for the budget.",
        "",
        "## Table 1: preference alignment of MDM",
        "",
        markdown_table(headers, t1),
        "",
        "## Table 3: alignment methods, cut-off tau, number of samples K",
        "",
        markdown_table(headers, t3),
        "",
        "The paper's Table 3 (MDM, 50-step DDIM, no intervals printed):",
        "",
        markdown_table(headers[:-1], t3p),
        "",
        "## Findings",
        "",
        markdown_table(["finding (issue 27)", "holds"], [[k, "–" if v is None else ("yes" if v else "no")]
                                                          for k, v in found.items()]),
        "",
        "## The tau mapping",
        "",
        *tau_mapping_lines(calibration),
        "## The runs",
        "",
        "Training signal only (the reward model's mean score of the K online samples in the first and last fifth "
        "of the steps); `dpo share`: rows of the steps that took the DPO term.",
        "",
        markdown_table(["run", "variant", "K", "paper tau", "our threshold", "steps", "dpo share", "reward first",
                        "reward last"], run_rows),
        "",
        *miss_lines(records),
    ]
    if figures:
        lines += ["## Where SoPo changed the motion", "",
                  "Captions whose MDM sample (set 0) missed by the evaluator's distance and whose SoPo sample, drawn "
                  "from the same noise, lies closest to it (before: MDM, after: SoPo):", ""]
        lines += [f"- {caption}: ![]({path})" if path.endswith(".png") else f"- {caption}: [{Path(path).name}]({path})"
                  for caption, path in figures]
        lines.append("")
    return "\n".join(lines)


def changed_captions(mdm: Mapping[str, Any], sopo: Mapping[str, Any], count: int) -> list[int]:
    """The ``count`` samples whose set-0 matched distance SoPo lowered the most (MDM's misses first)."""
    before, after = np.asarray(mdm["set0_distances"]), np.asarray(sopo["set0_distances"])
    cutoff = mdm["mm_dist_breakdown"]["real_cutoff"]
    gain = before - after + 1e3 * ((before > cutoff) & (after <= cutoff))
    return [int(i) for i in np.argsort(-gain, kind="stable")[:count]]
