"""Text policy, the character cut shortcut and batch planning, on the real labeled abstracts."""

from __future__ import annotations

import numpy as np

from services.embedder.export import bundled_model_dir, real_abstracts
from shared.embedding import compose_text, cut_text, load_tokenizer, plan_batches, tokenize


def test_compose_text_joins_title_and_abstract_with_whitespace_collapsed() -> None:
    assert (
        compose_text("A Decade of YOLO", "This review\nmarks  the tenth")
        == "A Decade of YOLO. This review marks the tenth"
    )
    assert compose_text("Why transformers?", "Because.") == "Why transformers? Because."
    assert compose_text("  ", "only abstract") == "only abstract"
    assert compose_text("", "") == ""


def test_cut_text_never_splits_a_word() -> None:
    text = "alpha beta gamma delta"
    assert cut_text(text, 100) == text
    assert cut_text(text, 13) == "alpha beta"  # "gamma" would be cut inside: dropped whole
    assert cut_text("unbreakable", 4) == "unbr"


def test_token_ids_with_the_character_cut_equal_the_full_text_ids() -> None:
    """The shortcut must never change a vector: compare with plain truncation on every real abstract."""
    tok = load_tokenizer(bundled_model_dir() / "tokenizer.json", 256)
    texts = real_abstracts()
    assert len(texts) == 2190
    flat, lengths = tokenize(tok, texts, 256)
    full = tok.encode_batch(texts)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    for i, enc in enumerate(full):
        assert flat[offsets[i] : offsets[i] + lengths[i]].tolist() == enc.ids, texts[i][:60]
    assert lengths.max() == 256 and (lengths == 256).sum() > 1000  # most abstracts really are truncated
    assert full[0].ids[0] == 101 and full[0].ids[-1] == 102  # [CLS] ... [SEP]


def test_tokenizer_ignores_the_128_token_padding_shipped_in_tokenizer_json() -> None:
    tok = load_tokenizer(bundled_model_dir() / "tokenizer.json", 256)
    _, lengths = tokenize(tok, ["short title", real_abstracts(1)[0]], 256)
    assert lengths[0] == 4 and lengths[1] > 128


def test_plan_batches_sorts_by_length_and_keeps_the_token_budget() -> None:
    lengths = np.array([10, 256, 40, 256, 33, 7, 129, 256], dtype=np.int32)
    batches = plan_batches(lengths, token_budget=600, bucket=16)
    seen = np.concatenate(batches)
    assert sorted(seen.tolist()) == list(range(len(lengths)))  # every text once
    widths = [int(-(-lengths[b].max() // 16) * 16) for b in batches]
    assert all(w * len(b) <= 600 for w, b in zip(widths, batches, strict=True))
    assert widths == sorted(widths, reverse=True)  # longest first
    assert [lengths[b].tolist() for b in batches][0] == [256, 256]
