"""Choose the guided baseline's scale on validation edits, not on the reported ones.

The GMD-style baseline (``dno.guided``) has one free number per mode, the scale of its gradient step.
A fair comparison with DNO needs the scale at which the baseline reaches its targets as well as
it can. This tool draws a validation set of edits with another task seed (other sources, other
targets), runs the baseline at each scale in this process (:func:`humandiff.dno.run.run_method`,
as the dno stage does) and prints the median objective error and the content preservation, so the
choice made in params.yaml can be checked and redone for a new prior:

    PYTHONPATH=lib python tools/tune_guided_scale.py --mode xt --scales 20,100,400,1600
"""

from __future__ import annotations

from pathlib import Path

import click
import pandas as pd
import torch
import yaml

from humandiff.dno.run import GuidedBaseline, Prior, RunSettings, run_method
from humandiff.dno.task_tables import TaskTableSettings, task_tables
from humandiff.dno.tasks import parse_tasks, tasks_frame
from humandiff.io import ArtifactError
from humandiff.motion.dataset import load_mean_std, load_motion_split
from humandiff.prior.mdm import load_mdm
from humandiff.train.device import resolve_device

REPO = Path(__file__).resolve().parents[1]


def parse_scales(ctx, param, value: str) -> list[float]:
    try:
        scales = [float(s) for s in value.split(",")]
    except ValueError:
        raise click.ClickException(f"--scales must be comma-separated numbers, got {value!r}") from None
    if not scales or min(scales) < 0:
        raise click.ClickException(f"--scales must be numbers >= 0, got {value!r}")
    return scales


def scale_row(family: str, scale: float, frame: pd.DataFrame) -> dict[str, float]:
    """The numbers the choice is made on, from a guided run's per-task table."""
    row = {"scale": scale}
    if family == "edit":
        row |= {"objective_error_m_median": frame["objective_error_m"].median(),
                "content_preservation": frame["content_preservation"].mean()}
    else:
        row |= {"mpjpe_all_cm": frame["mpjpe_all_cm"].mean()}
    return row | {"foot_skating_ratio": frame["foot_skating_ratio"].mean(), "jitter": frame["jitter"].mean()}


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True, type=click.Path(exists=True))
@click.option("--scales", default="20,100,400,1600", show_default=True, callback=parse_scales,
              help="comma-separated scales to try")
@click.option("--task-seed", default=1000, show_default=True, help="dno_tasks.seed of the validation edits")
@click.option("--family", default="edit", show_default=True, type=click.Choice(["edit", "refine"]))
@click.option("--mode", default=None, type=click.Choice(["xt", "x0", "eps"]), help="dno.guided.mode (default: the params')")
@click.option("--hml-dir", default=str(REPO / "data/motion/hml"), show_default=True, type=click.Path())
@click.option("--embeddings", "embeddings_file", default=str(REPO / "data/motion/text/embeddings.parquet"),
              show_default=True, type=click.Path())
@click.option("--model-dir", default=str(REPO / "data/mdm"), show_default=True, type=click.Path())
def main(params_file: str, scales: list[float], task_seed: int, family: str, mode: str | None, hml_dir: str,
         embeddings_file: str, model_dir: str) -> None:
    params = yaml.safe_load(Path(params_file).read_text())
    dno, guided = params["dno"], dict(params["dno"]["guided"])
    if mode:
        guided["mode"] = mode
    if task_seed == params["dno_tasks"]["seed"]:
        raise click.ClickException("--task-seed must differ from dno_tasks.seed (tune on other edits than the reported ones)")
    key = "scale_edit" if family == "edit" else "scale_refine"
    try:
        hml = Path(hml_dir)
        test = load_motion_split(hml / "index.parquet", hml / "features.npz", None, "test")
        table_settings = TaskTableSettings.from_params({**params["dno_tasks"], "seed": task_seed}, params_file)
        tasks = parse_tasks(tasks_frame(task_tables(test, table_settings, str(hml / "index.parquet"))[family]))
        tasks = tasks[: dno["max_tasks"]] if dno["max_tasks"] else tasks
        device = resolve_device(dno.get("device", "auto"), f"{params_file}: dno.device")
        torch.set_num_threads(dno["threads"])
        model, config = load_mdm(Path(model_dir) / "model.pt", Path(model_dir) / "config.json")
        prior = Prior(model, config.noise_schedule(), *load_mean_std(hml / "mean_std.npz"))
        rows = []
        for scale in scales:
            settings = RunSettings(family, "guided", "", dno["seed"], dno["batch_size"], dno.get("source_ddim_steps"),
                                   dno.get("source_guidance"), GuidedBaseline.from_params({**guided, key: scale}, params_file))
            torch.manual_seed(dno["seed"])  # as each run of the stage starts
            rows.append(scale_row(family, scale, run_method(tasks, prior, settings, hml, embeddings_file, device).table))
            click.echo(", ".join(f"{k} {v:.4g}" for k, v in rows[-1].items()))
    except ArtifactError as exc:
        raise click.ClickException(str(exc).splitlines()[0]) from None
    click.echo(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
