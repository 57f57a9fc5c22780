"""Clause conditioning: splitting captions at sequencing connectors and building the prior's condition."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from humandiff.io import ArtifactError
from humandiff.prior.mdm import MDMConfig, MotionDiffusionModel
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


def _fake_words(captions):
    # word piece k of a caption: the vector (k + 1, len(caption), 0, ...), so slots and order are readable
    return [np.stack([np.r_[k + 1, len(c), np.zeros(382)] for k in range(len(c.split()) + 2)]).astype(np.float32)
            for c in captions]


def test_word_slots_follow_the_pooled_part_with_zeros_after_the_end():
    captions = ["a man jumps.", "a man jumps, then sits down on a low chair."]  # 5 and 12 pieces
    sentences = np.ones((2, 384), np.float32)
    out = clause_conditions(captions, sentences, 1, _fake_encode([]), word_tokens=6, words=_fake_words)
    assert out.shape == (2, (2 + 6) * 384)
    words = out[:, 2 * 384:].reshape(2, 6, 384)
    np.testing.assert_array_equal(words[0, :5, 0], [1, 2, 3, 4, 5])
    assert not words[0, 5:].any()  # after the caption's end: zeros, which the prior reads as absent
    # too long: the first word_tokens - 1 pieces and the last (the end marker) are kept
    np.testing.assert_array_equal(words[1, :, 0], [1, 2, 3, 4, 5, 12])
    # the pooled part is unchanged by the word slots
    np.testing.assert_array_equal(out[:, : 2 * 384], clause_conditions(captions, sentences, 1, _fake_encode([])))
    table = ({"a man jumps.": 0}, np.ones((1, 384), np.float32))
    via_table = caption_conditions(["a man jumps."], table, 1, _fake_encode([]), word_tokens=6, words=_fake_words)
    np.testing.assert_array_equal(via_table, out[:1])


@pytest.mark.parametrize("word_tokens", [-1, 1, True])
def test_bad_word_tokens_are_one_line_errors(word_tokens):
    with pytest.raises(ArtifactError, match="word_tokens"):
        clause_conditions(["a."], np.zeros((1, 384)), 0, _fake_encode([]), word_tokens=word_tokens, words=_fake_words)


def test_bad_word_vectors_are_one_line_errors():
    with pytest.raises(ArtifactError, match="word table returned"):
        clause_conditions(["a."], np.zeros((1, 384)), 0, _fake_encode([]), word_tokens=4,
                          words=lambda captions: [np.full((3, 384), np.nan)])
    with pytest.raises(ArtifactError, match="word_tokens"):
        MDMConfig(word_tokens=4, conditioning="token")
    for bad in (-1, 1):
        with pytest.raises(ArtifactError, match="'word_tokens' must be 0 or >= 2"):
            MDMConfig(word_tokens=bad, conditioning="adaln")


def _word_prior() -> tuple[MotionDiffusionModel, MDMConfig]:
    config = MDMConfig(latent_dim=32, num_layers=2, num_heads=2, ff_dim=32, frames_per_token=4, conditioning="adaln",
                       clause_slots=1, word_tokens=5, dropout=0.0)
    torch.manual_seed(0)
    model = MotionDiffusionModel(config).eval()
    with torch.no_grad():  # as after training: adaLN-Zero and the cross-attention's output start at zero
        for block in model.blocks:
            for module in (block.modulation, block.cross["out"]):
                module.weight.normal_(0, 0.2)
    return model, config


def test_the_prior_reads_each_word_in_its_place():
    model, config = _word_prior()
    assert config.summary_dim == 2 * 384 and config.condition_dim == 7 * 384
    x, t = torch.randn(2, 8, 263), torch.tensor([3, 900])
    pooled = torch.randn(1, 2 * 384).expand(2, -1)
    words = torch.randn(2, 5, 384)
    words[:, 3:] = 0  # three words, then padding
    cond = torch.cat([pooled, words.flatten(1)], 1)
    base = model(x, t, text_emb=cond)
    # the pooled part alone is the same for both rows: only the words tell them apart
    swapped = words.clone()
    swapped[:, [0, 1]] = words[:, [1, 0]]
    assert not torch.allclose(model(x, t, text_emb=torch.cat([pooled, swapped.flatten(1)], 1)), base, atol=1e-5)
    other = words.clone()
    other[:, 2] = torch.randn(2, 384)
    assert not torch.allclose(model(x, t, text_emb=torch.cat([pooled, other.flatten(1)], 1)), base, atol=1e-5)
    # the dropped caption (all zeros) is the unconditional model
    torch.testing.assert_close(model(x, t, text_emb=torch.zeros(2, config.condition_dim)), model(x, t))


def test_word_gradients_reach_every_block():
    model, config = _word_prior()
    model.train()
    x, t = torch.randn(2, 8, 263), torch.tensor([3, 900])
    cond = torch.randn(2, config.condition_dim)
    model(x, t, text_emb=cond).square().mean().backward()
    assert model.word_proj[1].weight.grad.abs().sum() > 0
    assert model.word_kv[1].weight.grad.abs().sum() > 0
    assert all(block.cross["q"].weight.grad.abs().sum() > 0 for block in model.blocks)
