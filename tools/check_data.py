"""Check a HumanML3D folder before a long run: how many ids will be kept and dropped, by reason.

Reads the split files and the motion files' headers only, writes nothing (as
``python stages/prepare_motion.py --check``, which reads the folder from params.yaml):

    PYTHONPATH=lib python tools/check_data.py /path/to/HumanML3D
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from humandiff.datasets.humanml3d import load_release_mean_std, scan_humanml3d  # noqa: E402
from humandiff.io.artifacts import ArtifactError  # noqa: E402


@click.command()
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--min-length", default=40, show_default=True, help="Shortest kept motion, frames.")
@click.option("--max-length", default=200, show_default=True, help="Kept motions are shorter than this, frames.")
def main(root: Path, min_length: int, max_length: int) -> None:
    """Print what prepare_motion (source humanml3d) will keep from ROOT; exit 2 with one line on a bad folder."""
    try:
        counts = scan_humanml3d(root, min_length=min_length, max_length=max_length)
        stats = load_release_mean_std(root)
    except ArtifactError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(f"{root}: {counts.summary().split('; ')[0]}")
    for split, n in counts.split_ids.items():
        click.echo(f"  {split}: {n['listed']} listed, {n['kept']} kept")
    click.echo(f"  motions from {counts.motion_folder}/, normalisation from "
               + ("the release's Mean.npy/Std.npy" if stats else "the train split"))
    if counts.loaded == 0:
        click.echo(f"error: {root}: no id would be kept", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
