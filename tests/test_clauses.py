"""Clause conditioning: splitting captions at sequencing connectors and building the prior's condition."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from humandiff.io import ArtifactError
from humandiff.models.mdm import MDMConfig, MotionDiffusionModel
from humandiff.text.clauses import caption_conditions, clause_conditions, split_clauses


@pytest.mark.parametrize("caption, clauses", [
    ("a person walks forward.", ["a person walks forward"]),
    ("a man kneels down, then performs a long jump.", ["a man kneels down", "performs a long jump"]),
    ("someone sits down and then gets up, after that waves.", ["someone sits down", "gets up", "waves"]),
    ("a human jogs, then hops and then claps, and finally bows.", ["a human jogs", "hops", "claps", "bows"]),
    ("a woman walks then turns around.", ["a woman walks", "turns around"]),
    # "and" alone also joins parts of one action ("sits down and gets up"), so it is not a connector
    ("a person sits down and gets up.", ["a person sits down and gets up"]),
])
def test_captions_split_at_sequencing_connectors(caption, clauses):
    assert split_clauses(caption) == clauses


def _fake_encode(calls):
    def encode(texts):
        calls.append(list(texts))
        # a deterministic vector per text: its length in slot 0, a hash-free marker in slot 1
        return np.stack([np.r_[len(t), sum(map(ord, t)) % 97, np.zeros(382)] for t in texts]).astype(np.float32)
    return encode


def test_conditions_hold_sentence_then_clauses_with_zeros_for_missing_slots():
    captions = ["a man jumps.", "a man jumps, then sits down, after that waves, and finally bows."]
    sentences = np.arange(2 * 384, dtype=np.float32).reshape(2, 384)
    calls = []
    out = clause_conditions(captions, sentences, 2, _fake_encode(calls))
    assert out.shape == (2, 3 * 384) and out.dtype == np.float32
    slots = out.reshape(2, 3, 384)
    np.testing.assert_array_equal(slots[:, 0], sentences)
    assert slots[0, 1, 0] == len("a man jumps") and not slots[0, 2].any()
    assert slots[1, 1, 0] == len("a man jumps") and slots[1, 2, 0] == len("sits down")
    # clauses beyond the slots are dropped; each distinct clause is encoded once
    assert calls == [sorted({"a man jumps", "sits down"})]
    # no slots: the sentence embedding alone, and the encoder is never called
    np.testing.assert_array_equal(clause_conditions(captions, sentences, 0, _fake_encode(calls)), sentences)
    assert len(calls) == 1


def test_caption_conditions_encode_sentences_missing_from_the_table():
    table = ({"a man jumps.": 0}, np.ones((1, 384), np.float32))
    calls = []
    out = caption_conditions(["a man jumps.", "a person crawls."], table, 1, _fake_encode(calls))
    assert calls[0] == ["a person crawls."]
    np.testing.assert_array_equal(out[0, :384], 1.0)
    assert out[1, 0] == len("a person crawls.") and out[1, 384] == len("a person crawls")


def test_bad_inputs_are_one_line_errors():
    with pytest.raises(ArtifactError, match="sentences must have shape"):
        clause_conditions(["a."], np.zeros((2, 384)), 1, _fake_encode([]))
    with pytest.raises(ArtifactError, match="clause_slots"):
        clause_conditions(["a."], np.zeros((1, 384)), -1, _fake_encode([]))
    with pytest.raises(ArtifactError, match="clause_slots"):
        clause_conditions(["a."], np.zeros((1, 384)), True, _fake_encode([]))
    with pytest.raises(ArtifactError, match="clause_slots"):
        MDMConfig(clause_slots=-2)
    table = ({"a man jumps.": 0}, np.ones((1, 384), np.float32))
    calls: list = []
    with pytest.raises(ArtifactError, match=r"^emb\.parquet: no embedding for caption 'a person crawls\.'$"):
        caption_conditions(["a man jumps.", "a person crawls."], table, 1, _fake_encode(calls),
                           strict_source="emb.parquet")
    assert calls == []  # refused before encoding anything


def test_the_prior_takes_conditions_of_its_clause_slots():
    config = MDMConfig(latent_dim=32, num_layers=1, num_heads=2, ff_dim=32, frames_per_token=4, clause_slots=2)
    assert config.condition_dim == 3 * 384
    model = MotionDiffusionModel(config).eval()
    x, t = torch.randn(2, 8, 263), torch.tensor([3, 900])
    assert model(x, t, text_emb=torch.randn(2, 3 * 384)).shape == (2, 8, 263)
    assert model(x, t).shape == (2, 8, 263)  # no text: the zero condition
    with pytest.raises(ArtifactError, match=r"expected \(2, 1152\)"):
        model(x, t, text_emb=torch.randn(2, 384))
