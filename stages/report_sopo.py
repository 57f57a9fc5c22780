"""Stage report_sopo: SoPo's Tables 1 and 3, the paper's numbers beside ours, the tau mapping, the
miss breakdown of MDM and SoPo, the findings, and stick figures where SoPo changed the motion.

Reads ``evaluate_sopo``'s rows, the runs' records and ``sopo_calibrate``'s map (humandiff.sopo.report);
writes reports/sopo.md, its pictures and videos (before: MDM, after: SoPo, same noise; set 0's joints)
and reports/metrics/sopo.json (one entry per row, and ``findings``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
import numpy as np

from humandiff.io import atomic_path, load_npz, save_json, split_ragged
from humandiff.io.stage import run_stage, stage_params
from humandiff.motion.video import contact_sheet_row, write_image, write_video
from humandiff.sopo.report import (TABLE1, TABLE3, changed_captions, findings, load_rows, report_markdown, row_entry)

SECTION = "report_sopo"


def _joints(eval_dir: Path, name: str) -> list[np.ndarray]:
    """Set 0's joints (T, 22, 3) of row ``name``: every row's file is read (and checked) before anything is written."""
    arrays = load_npz(eval_dir / f"{name}_joints.npz", {"joints": (None, 66), "offsets": (None,)})
    return [j.astype(np.float64).reshape(-1, 22, 3) for j in split_ragged(arrays["joints"], arrays["offsets"].astype(np.int64))]


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True, type=click.Path())
@click.option("--eval-dir", default="data/sopo/eval", show_default=True, type=click.Path())
@click.option("--runs-dir", default="data/sopo", show_default=True, type=click.Path())
@click.option("--calibration", "calibration_file", default="data/sopo/calibration.json", show_default=True, type=click.Path())
@click.option("--report", "report_file", default="reports/sopo.md", show_default=True, type=click.Path())
@click.option("--report-dir", default="reports/sopo", show_default=True, type=click.Path())
@click.option("--metrics", "metrics_file", default="reports/metrics/sopo.json", show_default=True, type=click.Path())
@run_stage
def main(params_file: str, eval_dir: str, runs_dir: str, calibration_file: str, report_file: str, report_dir: str,
         metrics_file: str) -> None:
    p = stage_params(params_file, SECTION, {"videos": int}, complete=True)
    names = list(dict.fromkeys(["mdm", *[n for n, _ in TABLE1], *[n for n, _ in TABLE3]]))
    records = load_rows(eval_dir, names)
    runs = {n: json.loads((Path(runs_dir) / n / "train.json").read_text()) for n in names if n != "mdm"}
    calibration = json.loads(Path(calibration_file).read_text())
    entries = {n: row_entry(r) for n, r in records.items()}
    found = findings(entries, records["mdm"]["real"])
    joints = {n: _joints(Path(eval_dir), n) for n in names}

    figures, out = [], Path(report_dir)
    for n, i in enumerate(changed_captions(records["mdm"], records["sopo"], max(p["videos"], 0))):
        caption = records["mdm"]["captions"][i]
        before, after = joints["mdm"][i], joints["sopo"][i]
        sheet = np.concatenate([contact_sheet_row(before, f"MDM: {caption}"), contact_sheet_row(after, f"SoPo: {caption}")])
        write_image(out / f"changed_{n:02d}.png", sheet)
        for tag, motion in (("mdm", before), ("sopo", after)):
            write_video(out / f"changed_{n:02d}_{tag}.mp4", motion, f"{tag.upper()}: {caption}")
        figures += [(caption, os.path.relpath(out / f"changed_{n:02d}{s}", Path(report_file).parent))
                    for s in (".png", "_mdm.mp4", "_sopo.mp4")]

    save_json(metrics_file, {"rows": entries, "findings": found,
                             "tau_mapping": {t: v["threshold"] for t, v in calibration["taus"].items()}})
    with atomic_path(report_file, suffix=".md") as tmp:
        tmp.write_text(report_markdown(records, entries, runs, calibration, found, figures))
    click.echo("report_sopo: " + ", ".join(f"{k}={v}" for k, v in found.items()))


if __name__ == "__main__":
    main()
