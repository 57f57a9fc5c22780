"""Stage dno_tasks: write DNO's task specifications (one Parquet table per family) from params.

The tables (edit: Table 1, control: the qualitative tasks, refine: Table 2, ablate: Table 3) are
made by :func:`humandiff.dno.task_tables.task_tables` from the ``dno_tasks`` params and the test
clips. They are plain data (see ``humandiff.dno.tasks``): edit them, or append rows, to run new
tasks without code.
"""

from __future__ import annotations

from pathlib import Path

import click

from humandiff.dno.task_tables import TaskTableSettings, task_tables
from humandiff.dno.tasks import save_tasks, tasks_frame
from humandiff.io.stage import run_stage, stage_params
from humandiff.motion.dataset import load_motion_split

SECTION = "dno_tasks"
PARAMS = {
    "seed": int, "edit_length": int, "edits_per_action": int, "keyframes": list, "target_range": float,
    "actions": list, "control_caption": str, "control_length": int, "blend_frames": int, "blend_transition": int,
    "refine_clips": int, "refine_max_frames": int, "refine_noise_std": float, "refine_settings": list,
    "ablate_clips": int, "ablate_max_frames": int, "ablate_noise_std": float,
}


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True, type=click.Path())
@click.option("--hml-dir", default="data/motion/hml", show_default=True, type=click.Path())
@click.option("--out-dir", default="data/dno/tasks", show_default=True, type=click.Path())
@run_stage
def main(params_file: str, hml_dir: str, out_dir: str) -> None:
    settings = TaskTableSettings.from_params(stage_params(params_file, SECTION, PARAMS, complete=True), params_file, SECTION)
    hml = Path(hml_dir)
    test = load_motion_split(hml / "index.parquet", hml / "features.npz", None, "test")
    for family, rows in task_tables(test, settings, str(hml / "index.parquet")).items():
        path = Path(out_dir) / f"{family}.parquet"
        save_tasks(path, tasks_frame(rows, str(path)))
        click.echo(f"{path}: {len(rows)} tasks")


if __name__ == "__main__":
    main()
