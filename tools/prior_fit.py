"""Does the text-to-motion prior miss because it underfits or because it fails on new captions?

Samples the prior for ``--count`` clips of one split (each clip's first caption and length, DDIM
and guidance as ``sample_mdm``), embeds them and their captions with the trained evaluator, and
prints R-precision (batches of 32, 20 replications), MM-Dist, the share of pairs beyond Real's
95th percentile, foot skating ratio and jitter (``evaluate_t2m``'s bars), for the real clips and
for the prior's samples. Run it on ``train`` and on
``test``: equal miss shares mean the prior does not fit even the captions it was trained on.

One set of samples moves MM-Dist by a standard deviation of about 0.16 on 320 clips (more on
160), so comparisons of priors need ``--sets K``: K independent sample sets for the same clips
(seeds as ``evaluate_t2m``'s sets), each row their mean with their standard deviation.

    PYTHONPATH=lib python tools/prior_fit.py --split train --count 160 --sets 4
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
import torch
import yaml

from humandiff.motion.dataset import load_motion_split
from humandiff.eval.t2m import matched_distances, motion_quality, r_precision_replications
from humandiff.io import ArtifactError

SPLITS = ("train", "val", "test")
REPLICATIONS = 20


def fit_row(text: np.ndarray, motion: np.ndarray, cutoff: float, seed: int) -> dict[str, float]:
    """R-precision top-1..3 and MM-Dist of paired (N, E) embeddings (means over replications), and the
    share of pairs farther apart than ``cutoff``."""
    row = r_precision_replications([text] * REPLICATIONS, motion, np.random.default_rng(seed))
    return {**row, "miss_share": float((matched_distances(text, motion) > cutoff).mean())}


def format_row(name: str, rows: list[dict[str, float]]) -> str:
    """One line: each figure's mean over ``rows`` (one per sample set), with their standard deviation when there
    are several; foot skating and jitter when the rows have them."""

    def figure(key: str, digits: int, scale: float = 1.0) -> str:
        values = scale * np.array([row[key] for row in rows])
        spread = f" ± {values.std(ddof=1):.{digits}f}" if len(values) > 1 else ""
        return f"{values.mean():.{digits}f}{spread}"

    line = (f"{name:5s} top-1/2/3 {figure('top1', 3)} / {figure('top2', 3)} / {figure('top3', 3)}  "
            f"MM-Dist {figure('mm_dist', 3)}  beyond Real's 95th percentile {figure('miss_share', 0, 100)}%")
    if all("foot_skating_ratio" in row and "jitter" in row for row in rows):
        line += f"  foot skating {figure('foot_skating_ratio', 3)}  jitter {figure('jitter', 0)}"
    return line


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True, type=click.Path(exists=True))
@click.option("--split", default="train", show_default=True, type=click.Choice(SPLITS))
@click.option("--count", default=160, show_default=True, help="clips to sample (at least 32: one R-precision batch)")
@click.option("--seed", default=5, show_default=True, help="which clips, and the samples' noise")
@click.option("--sets", default=1, show_default=True, help="independent sample sets for the same clips")
@click.option("--model-dir", default="data/mdm", show_default=True, type=click.Path())
@click.option("--evaluator", "evaluator_file", default="data/models/evaluator.pt", show_default=True, type=click.Path())
@click.option("--hml-dir", default="data/motion/hml", show_default=True, type=click.Path())
@click.option("--embeddings", "embeddings_file", default="data/motion/text/embeddings.parquet", show_default=True,
              type=click.Path())
def main(params_file: str, split: str, count: int, seed: int, sets: int, model_dir: str, evaluator_file: str, hml_dir: str,
         embeddings_file: str) -> None:
    from humandiff.evaluators.evaluator import load_evaluator
    from humandiff.prior.mdm import sample_set_seed
    from humandiff.prior.sampler import PriorSampler
    from humandiff.text.tokens import minilm_token_table

    if count < 32:
        raise click.ClickException(f"--count must be >= 32 (one R-precision batch), got {count}")
    if sets < 1:
        raise click.ClickException(f"--sets must be >= 1, got {sets}")
    sampling = yaml.safe_load(Path(params_file).read_text())["sample_mdm"]
    torch.set_num_threads(int(sampling["threads"]))
    try:
        sampler = PriorSampler(Path(model_dir) / "model.pt", Path(model_dir) / "config.json", Path(hml_dir) / "mean_std.npz",
                               embeddings_file, sampling, int(sampling["batch_size"]))
        evaluator = load_evaluator(evaluator_file)
        hml = Path(hml_dir)
        data = load_motion_split(hml / "index.parquet", hml / "features.npz", None, split)
        if count > len(data):
            raise click.ClickException(f"--count {count} exceeds the {len(data)} clips of split {split!r}")
        chosen = np.sort(np.random.default_rng(seed).choice(len(data), count, replace=False))
        captions = [data.captions(int(k))[0] for k in chosen]
        conditions = sampler.conditions(captions)
        sample_sets = [sampler(conditions, data.lengths[chosen].tolist(), sample_set_seed(seed, k)) for k in range(sets)]
    except ArtifactError as error:
        raise click.ClickException(str(error)) from None
    table = minilm_token_table(captions, evaluator.config.max_tokens)
    text = evaluator.embed_texts(table, table.rows(captions))
    real_clips = [data.clip(int(k)) for k in chosen]
    real = evaluator.embed_motions(real_clips)
    cutoff = float(np.quantile(matched_distances(text, real), 0.95))
    click.echo(f"{count} {split} clips; Real's 95th percentile of matched distances: {cutoff:.2f}")
    click.echo(format_row("real", [fit_row(text, real, cutoff, seed) | motion_quality(real_clips)]))
    rows = [fit_row(text, evaluator.embed_motions(samples), cutoff, seed) | motion_quality(samples)
            for samples in sample_sets]
    click.echo(format_row("mdm" if sets == 1 else f"mdm, {sets} sets", rows))


if __name__ == "__main__":
    main()
