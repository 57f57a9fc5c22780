"""Choose the guided baseline's scale on validation edits, not on the reported ones.

The GMD-style baseline (``dno.guided``) has one free number per mode, the scale of its gradient step.
A fair comparison with DNO needs the scale at which the baseline reaches its targets as well as
it can. This tool draws a validation set of edits with another task seed (other sources, other
targets), runs the baseline at each scale and prints the median objective error and the content
preservation, so the choice made in params.yaml can be checked and redone for a new prior:

    PYTHONPATH=lib python tools/tune_guided_scale.py --mode xt --scales 20,100,400,1600
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import click
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]


def run(script: str, *args: str) -> None:
    completed = subprocess.run([sys.executable, str(REPO / "stages" / script), *args], cwd=REPO,
                               capture_output=True, text=True)
    if completed.returncode:
        raise click.ClickException(f"{script} failed: {completed.stderr.strip().splitlines()[-1]}")


def parse_scales(ctx, param, value: str) -> list[float]:
    try:
        scales = [float(s) for s in value.split(",")]
    except ValueError:
        raise click.ClickException(f"--scales must be comma-separated numbers, got {value!r}") from None
    if not scales or min(scales) < 0:
        raise click.ClickException(f"--scales must be numbers >= 0, got {value!r}")
    return scales


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True, type=click.Path(exists=True))
@click.option("--scales", default="20,100,400,1600", show_default=True, callback=parse_scales,
              help="comma-separated scales to try")
@click.option("--task-seed", default=1000, show_default=True, help="dno_tasks.seed of the validation edits")
@click.option("--family", default="edit", show_default=True, type=click.Choice(["edit", "refine"]))
@click.option("--mode", default=None, type=click.Choice(["xt", "x0", "eps"]), help="dno.guided.mode (default: the params')")
def main(params_file: str, scales: list[float], task_seed: int, family: str, mode: str | None) -> None:
    params = yaml.safe_load(Path(params_file).read_text())
    if mode:
        params["dno"]["guided"]["mode"] = mode
    if task_seed == params["dno_tasks"]["seed"]:
        raise click.ClickException("--task-seed must differ from dno_tasks.seed (tune on other edits than the reported ones)")
    key = "scale_edit" if family == "edit" else "scale_refine"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        params["dno_tasks"]["seed"] = task_seed
        (work / "params.yaml").write_text(yaml.safe_dump(params))
        run("dno_tasks.py", "--params", str(work / "params.yaml"), "--out-dir", str(work / "tasks"))
        for scale in scales:
            params["dno"]["guided"][key] = scale
            (work / "params.yaml").write_text(yaml.safe_dump(params))
            run("dno.py", "--params", str(work / "params.yaml"), "--family", family, "--method", "guided",
                "--tasks-dir", str(work / "tasks"), "--out-dir", str(work / "out"))
            frame = pd.read_parquet(work / "out" / family / "guided.parquet")
            row = {"scale": scale}
            if family == "edit":
                row |= {"objective_error_m_median": frame["objective_error_m"].median(),
                        "content_preservation": frame["content_preservation"].mean()}
            else:
                row |= {"mpjpe_all_cm": frame["mpjpe_all_cm"].mean()}
            row |= {"foot_skating_ratio": frame["foot_skating_ratio"].mean(), "jitter": frame["jitter"].mean()}
            rows.append(row)
            click.echo(", ".join(f"{k} {v:.4g}" for k, v in row.items()))
    click.echo(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
