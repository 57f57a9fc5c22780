"""Clause conditioning: a caption's sentence embedding followed by one embedding per action clause.

One mean-pooled sentence embedding blurs "kneels down, then performs a long jump" into a single
direction that says little about which action comes first. Splitting the caption at its
sequencing connectors ("then", "and then", "after that", "and finally") and embedding each
clause on its own gives the motion prior one slot per action, in order. The condition of a
caption is ``[sentence, clause_1, ..., clause_K]`` (384 * (1 + K),), with zeros in the slots of
clauses a caption does not have; with K = 0 it is the sentence embedding alone (MDM's condition).
What it changed on the default corpus is in docs/prior.md.
"""

from __future__ import annotations

import re
from typing import Callable, Mapping, Sequence

import numpy as np

from humandiff.io import ArtifactError

SENTENCE_DIM = 384
#: Connectors that join consecutive actions, longest first ("and then" before "then").
SEQUENCE_CONNECTORS = re.compile(r",? and then |, then |, after that |, and finally | then ")

Encode = Callable[[list[str]], np.ndarray]
#: captions -> each caption's word-piece vectors (n_i, 384), in order, with the start and end markers
WordVectors = Callable[[list[str]], list[np.ndarray]]


def split_clauses(caption: str) -> list[str]:
    """The action clauses of ``caption`` in order, without the final full stop (at least one)."""
    parts = [part.strip(" .") for part in SEQUENCE_CONNECTORS.split(caption.strip())]
    parts = [part for part in parts if part]
    return parts or [caption.strip()]


def minilm_encode(captions: list[str]) -> np.ndarray:
    """Unit-norm MiniLM sentence embeddings (N, 384) of ``captions`` (loads the offline model)."""
    from humandiff.text.encoder import encode_captions, load_minilm

    return encode_captions(load_minilm(), captions)


def minilm_words(captions: list[str]) -> list[np.ndarray]:
    """Each caption's MiniLM word-piece vectors (n_i, 384), [CLS] ... [SEP] (the evaluator's word table)."""
    from humandiff.text.tokens import minilm_word_vectors

    tokenize, table = minilm_word_vectors()
    return [table[np.asarray(tokenize(caption), dtype=np.int64)] for caption in captions]


def word_slots(captions: Sequence[str], word_tokens: int, words: WordVectors = minilm_words) -> np.ndarray:
    """Word-piece vectors (N, word_tokens * 384) float32 of ``captions``, zeros after each caption's end.

    A caption with more word pieces keeps its first ``word_tokens - 1`` and its last (the end marker).
    """
    out = np.zeros((len(captions), word_tokens, SENTENCE_DIM), dtype=np.float32)
    for n, vectors in enumerate(words([str(c) for c in captions])):
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != SENTENCE_DIM or not len(vectors) or not np.isfinite(vectors).all():
            raise ArtifactError(f"word_slots: the word table returned {vectors.shape} (or non-finite values) "
                                f"for caption {captions[n]!r}")
        if len(vectors) > word_tokens:
            vectors = np.concatenate([vectors[: word_tokens - 1], vectors[-1:]])
        out[n, : len(vectors)] = vectors
    return out.reshape(len(captions), -1)


def clause_conditions(captions: Sequence[str], sentences: np.ndarray, clause_slots: int,
                      encode: Encode = minilm_encode, *, word_tokens: int = 0,
                      words: WordVectors = minilm_words) -> np.ndarray:
    """Conditions (N, 384 * (1 + clause_slots + word_tokens)) float32 of ``captions`` with sentence embeddings (N, 384).

    Slot k >= 1 holds the embedding of clause k (``encode`` of the clause text; every distinct
    clause is encoded once); clauses past ``clause_slots`` are dropped, missing ones are zeros.
    With ``word_tokens`` > 0 the caption's word pieces follow (:func:`word_slots`).
    """
    if isinstance(word_tokens, bool) or not isinstance(word_tokens, int) or word_tokens < 0 or word_tokens == 1:
        raise ArtifactError(f"clause_conditions: parameter 'word_tokens' must be 0 or an integer >= 2, got {word_tokens!r}")
    pooled = _pooled_conditions(captions, sentences, clause_slots, encode)
    if word_tokens == 0:
        return pooled
    return np.concatenate([pooled, word_slots(captions, word_tokens, words)], 1)


def _pooled_conditions(captions: Sequence[str], sentences: np.ndarray, clause_slots: int, encode: Encode) -> np.ndarray:
    """The sentence and clause slots (N, 384 * (1 + clause_slots)) of :func:`clause_conditions`."""
    sentences = np.asarray(sentences, dtype=np.float32)
    if sentences.shape != (len(captions), SENTENCE_DIM):
        raise ArtifactError(f"clause_conditions: sentences must have shape ({len(captions)}, {SENTENCE_DIM}), "
                            f"got {sentences.shape}")
    if isinstance(clause_slots, bool) or not isinstance(clause_slots, int) or clause_slots < 0:
        raise ArtifactError(f"clause_conditions: parameter 'clause_slots' must be an integer >= 0, got {clause_slots!r}")
    if clause_slots == 0:
        return sentences
    clauses = [split_clauses(str(c))[:clause_slots] for c in captions]
    distinct = sorted({clause for parts in clauses for clause in parts})
    vectors = np.asarray(encode(distinct), dtype=np.float32)
    if vectors.shape != (len(distinct), SENTENCE_DIM) or not np.isfinite(vectors).all():
        raise ArtifactError(f"clause_conditions: the text encoder returned {vectors.shape} (or non-finite values) "
                            f"for {len(distinct)} clauses")
    row = {clause: i for i, clause in enumerate(distinct)}
    out = np.zeros((len(captions), clause_slots + 1, SENTENCE_DIM), dtype=np.float32)
    out[:, 0] = sentences
    for n, parts in enumerate(clauses):
        for k, clause in enumerate(parts):
            out[n, k + 1] = vectors[row[clause]]
    return out.reshape(len(captions), -1)


def caption_conditions(captions: Sequence[str], sentence_table: tuple[Mapping[str, int], np.ndarray],
                       clause_slots: int, encode: Encode = minilm_encode, *, strict_source: str | None = None,
                       word_tokens: int = 0, words: WordVectors = minilm_words) -> np.ndarray:
    """:func:`clause_conditions` of ``captions`` whose sentence embeddings come from ``sentence_table``
    (caption -> row, matrix (C, 384), as :func:`humandiff.motion.dataset.load_embeddings` returns).

    Captions missing from the table are encoded with ``encode``; with ``strict_source`` (the
    table's file name) a missing caption is an error naming that file instead, for stages whose
    captions must all come from the corpus.
    """
    rows, matrix = sentence_table
    missing = sorted({str(c) for c in captions if str(c) not in rows})
    if missing and strict_source is not None:
        raise ArtifactError(f"{strict_source}: no embedding for caption {missing[0]!r}")
    extra = dict(zip(missing, np.asarray(encode(missing), dtype=np.float32))) if missing else {}
    sentences = np.stack([matrix[rows[str(c)]] if str(c) in rows else extra[str(c)] for c in captions]) if captions \
        else np.zeros((0, SENTENCE_DIM), np.float32)
    return clause_conditions(list(captions), sentences, clause_slots, encode, word_tokens=word_tokens, words=words)
