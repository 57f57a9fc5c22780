"""Stage report_dno: DNO's Tables 1-3 with this project's numbers beside the paper's, pictures, metrics JSON.

Reads every ``<data-dir>/<family>/<run>.{parquet,npz,json}`` the dno stages wrote and the test
split (FID's reference clips); the report itself is :func:`humandiff.dno.report.dno_report`.
Writes ``reports/dno.md``, ``reports/metrics/dno.json``, contact sheets and videos under
``--report-dir`` and loss curves (CSV + PNG) beside it in ``plots/``.
"""

from __future__ import annotations

from pathlib import Path

import click

from humandiff.dno.report import check_run_files, dno_report, load_runs
from humandiff.io import ArtifactError, atomic_path, save_json
from humandiff.io.stage import run_stage, stage_params
from humandiff.motion.dataset import load_motion_split

SECTION = "report_dno"
PARAMS = {"sheet_tasks": int, "videos": int, "fid_min_samples": int}


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True, type=click.Path())
@click.option("--data-dir", default="data/dno", show_default=True, type=click.Path())
@click.option("--hml-dir", default="data/motion/hml", show_default=True, type=click.Path())
@click.option("--evaluator", "evaluator_file", default="data/models/evaluator.pt", show_default=True, type=click.Path())
@click.option("--report", "report_file", default="reports/dno.md", show_default=True, type=click.Path())
@click.option("--report-dir", default="reports/dno", show_default=True, type=click.Path())
@click.option("--metrics", "metrics_file", default="reports/metrics/dno.json", show_default=True, type=click.Path())
@run_stage
def main(params_file: str, data_dir: str, hml_dir: str, evaluator_file: str, report_file: str, report_dir: str,
         metrics_file: str) -> None:
    p = stage_params(params_file, SECTION, PARAMS, complete=True)
    for key, least in (("sheet_tasks", 0), ("videos", 0), ("fid_min_samples", 2)):
        if p[key] < least:
            raise ArtifactError(f"{params_file}: parameter '{SECTION}.{key}' must be >= {least}, got {p[key]!r}")
    data = Path(data_dir)
    if not Path(evaluator_file).is_file():
        raise ArtifactError(f"{evaluator_file}: file not found (the report's FID needs the trained evaluator)")
    check_run_files(data, data / "tasks")
    runs = load_runs(data)
    if not runs:
        raise ArtifactError(f"{data}: no DNO run outputs found (run the dno stages first)")
    hml = Path(hml_dir)
    test = load_motion_split(hml / "index.parquet", hml / "features.npz", None, "test")
    report = dno_report(runs, test, evaluator_file, data / "tasks", Path(report_dir), fid_min_samples=p["fid_min_samples"],
                        sheet_tasks=p["sheet_tasks"], videos=p["videos"])
    with atomic_path(report_file, suffix=".md") as tmp:
        tmp.write_text(report.markdown)
    save_json(metrics_file, report.metrics)


if __name__ == "__main__":
    main()
