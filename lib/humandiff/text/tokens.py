"""Fixed word vectors for captions: the static word-piece embedding table of the offline MiniLM model.

Guo et al.'s evaluator reads GloVe vectors; none ship offline, so the text encoder of the
evaluator reads the rows of MiniLM's input embedding table (``model[0].auto_model.embeddings
.word_embeddings``, 30522 x 384) for the caption's word pieces instead: context-free vectors,
frozen, looked up by the MiniLM tokenizer. A :class:`TokenTable` caches the token ids of a set
of captions over a compact vocabulary (only the word pieces those captions use), so that an
artifact or a checkpoint never has to carry the full 47 MB table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from humandiff.io import ArtifactError, load_npz, save_npz

WORD_DIM = 384
#: Row 0 of a compact table is the zero vector used for padding.
PAD_ROW = 0

Tokenize = Callable[[str], Sequence[int]]


def minilm_word_vectors(model=None) -> tuple[Tokenize, np.ndarray]:
    """The MiniLM tokenizer (caption -> word-piece ids incl. [CLS]/[SEP]) and its table (30522, 384) float32."""
    if model is None:
        from humandiff.text.encoder import load_minilm

        model = load_minilm()
    tokenizer = model.tokenizer
    weights = model[0].auto_model.embeddings.word_embeddings.weight.detach().cpu().numpy().astype(np.float32)

    def tokenize(caption: str) -> list[int]:
        return list(tokenizer(caption, add_special_tokens=True, truncation=False)["input_ids"])

    return tokenize, weights


@dataclass(frozen=True)
class TokenTable:
    """Word-piece ids of N distinct captions over a compact vocabulary.

    Attributes:
        captions: the N captions, in the order given to :func:`build_token_table` (duplicates dropped).
        ids: (N, L) int64 rows into ``vectors``; PAD_ROW after each caption's length.
        lengths: (N,) int64, 1 <= length <= L.
        vectors: (V, 384) float32; row PAD_ROW is zeros.
    """

    captions: tuple[str, ...]
    ids: np.ndarray
    lengths: np.ndarray
    vectors: np.ndarray

    def rows(self, captions: Sequence[str]) -> np.ndarray:
        """Row indices (B,) of ``captions`` in this table; ArtifactError for a caption it lacks."""
        lookup = {caption: row for row, caption in enumerate(self.captions)}
        missing = [c for c in captions if c not in lookup]
        if missing:
            raise ArtifactError(f"token table: caption {missing[0]!r} is not in the table ({len(missing)} missing)")
        return np.array([lookup[c] for c in captions], dtype=np.int64)

    def embed(self, rows: np.ndarray | Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Word vectors (B, L_max, 384) float32 of table rows (B,), trimmed to the longest, and lengths (B,)."""
        rows = np.asarray(rows, dtype=np.int64)
        lengths = self.lengths[rows]
        width = int(lengths.max()) if len(rows) else 1
        vectors = self.vectors[self.ids[rows, :width]]
        return torch.from_numpy(np.ascontiguousarray(vectors)), torch.from_numpy(lengths.copy())


def build_token_table(captions: Sequence[str], tokenize: Tokenize, word_vectors: np.ndarray,
                      max_tokens: int = 32) -> TokenTable:
    """Tokenise distinct ``captions`` and gather the rows of ``word_vectors`` (W, D) they use.

    A caption longer than ``max_tokens`` word pieces keeps its first ``max_tokens - 1`` and its
    final one (the [SEP] end marker with the MiniLM tokenizer). Deterministic: the compact
    vocabulary is sorted by word-piece id.
    """
    if max_tokens < 2:
        raise ArtifactError(f"max_tokens={max_tokens} must be >= 2")
    word_vectors = np.asarray(word_vectors, dtype=np.float32)
    if word_vectors.ndim != 2:
        raise ArtifactError(f"word_vectors has shape {word_vectors.shape}, expected (W, D)")
    distinct: list[str] = list(dict.fromkeys(str(c) for c in captions))
    if not distinct or any(not c.strip() for c in distinct):
        raise ArtifactError("captions: empty list or an empty caption")
    token_lists = []
    for caption in distinct:
        tokens = [int(t) for t in tokenize(caption)]
        if not tokens:
            raise ArtifactError(f"captions: {caption!r} gives no tokens")
        if len(tokens) > max_tokens:
            tokens = tokens[: max_tokens - 1] + tokens[-1:]
        if min(tokens) < 0 or max(tokens) >= len(word_vectors):
            raise ArtifactError(f"captions: {caption!r} has a token id outside the table of {len(word_vectors)} rows")
        token_lists.append(tokens)
    vocabulary = np.unique(np.concatenate([np.asarray(t, dtype=np.int64) for t in token_lists]))
    compact = {int(token): row + 1 for row, token in enumerate(vocabulary)}  # row 0 = padding
    lengths = np.array([len(t) for t in token_lists], dtype=np.int64)
    ids = np.full((len(distinct), int(lengths.max())), PAD_ROW, dtype=np.int64)
    for row, tokens in enumerate(token_lists):
        ids[row, : len(tokens)] = [compact[t] for t in tokens]
    vectors = np.concatenate([np.zeros((1, word_vectors.shape[1]), np.float32), word_vectors[vocabulary]], 0)
    return TokenTable(tuple(distinct), ids, lengths, vectors)


def minilm_token_table(captions: Sequence[str], max_tokens: int = 32, model=None) -> TokenTable:
    """:func:`build_token_table` with the offline MiniLM tokenizer and word-piece table."""
    tokenize, word_vectors = minilm_word_vectors(model)
    return build_token_table(captions, tokenize, word_vectors, max_tokens)


def save_token_table(path: str | Path, table: TokenTable) -> None:
    """Write a token table as NPZ (captions as a unicode array, no pickle)."""
    save_npz(path, {"captions": np.array(table.captions, dtype=np.str_), "ids": table.ids,
                    "lengths": table.lengths, "vectors": table.vectors})


def load_token_table(path: str | Path) -> TokenTable:
    """Read a token table written by :func:`save_token_table`, checking shapes and id ranges."""
    arrays = load_npz(path, {"captions": (None,), "ids": (None, None), "lengths": (None,), "vectors": (None, None)})
    n = len(arrays["captions"])
    if arrays["ids"].shape[0] != n or arrays["lengths"].shape[0] != n:
        raise ArtifactError(f"{path}: fields 'ids'/'lengths' do not have one row per caption ({n})")
    if n and (arrays["ids"].min() < 0 or arrays["ids"].max() >= len(arrays["vectors"])):
        raise ArtifactError(f"{path}: field 'ids' indexes outside 'vectors'")
    return TokenTable(tuple(str(c) for c in arrays["captions"]), arrays["ids"].astype(np.int64),
                      arrays["lengths"].astype(np.int64), arrays["vectors"].astype(np.float32))
