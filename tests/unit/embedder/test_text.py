"""Text policy, the character cut shortcut and batch planning, on the real labeled abstracts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from services.embedder.export import bundled_model_dir, real_abstracts
from shared.model_files import ModelError
from shared.text_tokens import (
    _PROBES,
    compose_text,
    cut_text,
    load_tokenizer,
    plan_batches,
    tokenize,
)


def reference_tokenizer(max_tokens: int = 256) -> Tokenizer:
    """HF tokenizers straight from the model's tokenizer.json: the ids the model was trained with."""
    tok = Tokenizer.from_file(str(bundled_model_dir() / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=max_tokens)
    return tok


def split_ids(flat: np.ndarray, lengths: np.ndarray) -> list[list[int]]:
    return [part.tolist() for part in np.split(flat, np.cumsum(lengths)[:-1])]


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
    assert cut_text("unbreakable", 4) == "unbreakable"  # no space to cut at: not cut
    assert cut_text("a bc-de-fg", 7) == "a"


def test_a_long_text_without_spaces_gives_the_ids_of_plain_hf_truncation() -> None:
    """The reviewer's case: no space in the first 7 x 256 characters. Cut mid-word, ``internationalization``
    became other word pieces than plain HF truncation gives."""
    text = "-".join(["representation"] * 113 + ["model"] * 13) + "-internationalization-" + "-".join(["model"] * 30)
    assert " " not in text and len(text) > 7 * 256
    for engine in ("auto", "hf"):
        flat, _ = tokenize(load_tokenizer(bundled_model_dir() / "tokenizer.json", 256, engine), [text], 256)
        assert flat.tolist() == reference_tokenizer().encode(text).ids, engine


@pytest.mark.parametrize("engine", ["auto", "hf"])
def test_token_ids_equal_plain_hf_tokenizers_on_every_real_abstract(engine: str) -> None:
    """Neither the character cut nor the fast engine may change a vector: compare with plain HF truncation."""
    tok = load_tokenizer(bundled_model_dir() / "tokenizer.json", 256, engine)
    assert tok.engine == ("flash" if engine == "auto" else "hf")
    texts = real_abstracts()
    assert len(texts) == 2190
    assert sum(not t.isascii() for t in texts) > 20  # some take the HF route even with the fast engine
    flat, lengths = tokenize(tok, texts, 256)
    full = reference_tokenizer().encode_batch(texts)
    for i, (ids, enc) in enumerate(zip(split_ids(flat, lengths), full, strict=True)):
        assert ids == enc.ids, texts[i][:60]
    assert lengths.max() == 256 and (lengths == 256).sum() > 1000  # most abstracts really are truncated
    assert full[0].ids[0] == 101 and full[0].ids[-1] == 102  # [CLS] ... [SEP]


def test_fast_engine_matches_hf_on_the_edge_cases_it_would_get_wrong_alone() -> None:
    """flash-tokenizer alone differs from HF on some texts (Hangul, soft hyphens, words over 100 characters);
    those are routed to HF, so the ids still match everywhere."""
    tok = load_tokenizer(bundled_model_dir() / "tokenizer.json", 256, "flash")
    ref = reference_tokenizer()
    expected = [e.ids for e in ref.encode_batch(list(_PROBES))]
    assert tok.encode_ids(_PROBES) == expected
    raw = tok._fast.batch_encode(list(_PROBES), "longest", 256, False)
    assert any(r != e for r, e in zip(raw, expected, strict=True))  # the routing is what makes them equal


SPECIAL_TOKEN_TEXTS = [
    "BERT: Pre-training of Deep Bidirectional Transformers. We randomly replace 15% of the input tokens with "
    "[MASK] and train the model to predict them; the final hidden state of [CLS] is used for classification.",
    "the [CLS] token and [SEP] separators, [PAD] and [UNK]",
    "Masked language models fill in [MASK][MASK] spans; lower-case [mask] is plain text.",
]


def test_texts_with_added_special_tokens_get_hf_ids() -> None:
    """HF (and sentence-transformers) keep ``[MASK]``, ``[CLS]``, ... whole; flash-tokenizer alone splits them
    into ``[``, ``mask``, ``]``, so such texts go to HF, built from tokenizer.json's added_tokens."""
    texts = [*SPECIAL_TOKEN_TEXTS, real_abstracts(1)[0].replace(" the ", " the [MASK] ", 3)]
    ref = reference_tokenizer()
    expected = [e.ids for e in ref.encode_batch(texts)]
    assert 103 in expected[0] and 101 in expected[1][1:]  # [MASK], and [CLS] inside the text
    tok = load_tokenizer(bundled_model_dir() / "tokenizer.json", 256, "flash")
    assert tok.encode_ids(texts) == expected
    assert split_ids(*tokenize(tok, texts, 256)) == expected
    raw = tok._fast.batch_encode(texts, "longest", 256, False)
    assert raw[0] != expected[0]  # the routing is what makes them equal


def test_the_load_time_probes_catch_special_tokens_sent_to_flash(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without routing the added tokens to HF, the probe texts differ and ``auto`` falls back to HF alone."""
    import shared.text_tokens as text_tokens

    assert any("[MASK]" in probe for probe in _PROBES)
    monkeypatch.setattr(text_tokens, "_not_fast_pattern", lambda spec: text_tokens._NOT_FAST)
    assert load_tokenizer(bundled_model_dir() / "tokenizer.json", 256, "auto").engine == "hf"
    with pytest.raises(ModelError, match="differ from HF tokenizers on the probe texts"):
        load_tokenizer(bundled_model_dir() / "tokenizer.json", 256, "flash")


def test_flash_engine_refuses_a_tokenizer_it_cannot_reproduce(tmp_path: Path) -> None:
    spec = json.loads((bundled_model_dir() / "tokenizer.json").read_text(encoding="utf-8"))
    spec["normalizer"]["lowercase"] = False  # a cased model: flash's lower-casing switch no longer matches
    spec["normalizer"]["strip_accents"] = True
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    with pytest.raises(ModelError, match="not a plain BERT WordPiece"):
        load_tokenizer(path, 256, "flash")
    assert load_tokenizer(path, 256).engine == "hf"  # auto falls back, with a log line
    with pytest.raises(ValueError, match="tokenizer engine must be one of"):
        load_tokenizer(path, 256, "fastest")


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
