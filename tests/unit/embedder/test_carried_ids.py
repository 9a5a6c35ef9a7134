"""Token ids carried from the parser: used only when made by this model's tokenizer, and then the vectors
are exactly those of tokenizing here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.embedder.batch import carried_ids
from services.parser.tokens import PaperTokenizer
from shared.embedding import load_embedder
from shared.events import PaperParsed, TokenIds
from shared.paper import Paper
from shared.text_tokens import tokenize
from tests.unit.embedder.model_cache import labeled_rows


@pytest.fixture(scope="module")
def events() -> list[PaperParsed]:
    rows = labeled_rows(24, step=97)
    return [PaperParsed(paper=Paper(id=r["id"], title=r["title"], abstract=r["summary"])) for r in rows]


@pytest.fixture(scope="module")
def embedder(model_dir: Path):
    emb = load_embedder(model_dir, "fp32", providers=["CPUExecutionProvider"])
    yield emb
    emb.close()


def texts_of(events: list[PaperParsed]) -> list[str]:
    from services.embedder.batch import paper_text

    return [paper_text(e) for e in events]


def test_parser_ids_give_identical_vectors(model_dir: Path, events: list[PaperParsed], embedder) -> None:
    events = [e.model_copy(deep=True) for e in events]
    assert PaperTokenizer.open(model_dir).attach(events) == len(events)
    # through JSON, as on the stream
    events = [PaperParsed.model_validate_json(e.model_dump_json()) for e in events]
    carried = [carried_ids(e, embedder) for e in events]
    assert all(ids is not None for ids in carried)
    texts = texts_of(events)
    flat, lengths = tokenize(embedder.tokenizer, texts, embedder.max_tokens)
    assert np.array_equal(np.concatenate(carried), flat)
    assert int(lengths.max()) == 256  # some abstracts are cut at max_tokens: the cut matches too
    assert carried[0][0] == 101 and carried[0][-1] == 102  # [CLS] ... [SEP]
    np.testing.assert_array_equal(embedder.embed_many(texts, carried=carried), embedder.embed_many(texts))


def test_ids_from_another_tokenizer_are_ignored(events: list[PaperParsed], embedder) -> None:
    sha = embedder.info.tokenizer.sha256
    bogus = np.array([101, 7592, 2088, 102])  # "hello world": a real paper's vector would change with these
    event = events[0].model_copy(update={"tokens": TokenIds.pack(bogus, "0" * 64, embedder.max_tokens)})
    assert carried_ids(event, embedder) is None
    other_max = events[0].model_copy(update={"tokens": TokenIds.pack(bogus, sha, 128)})
    assert carried_ids(other_max, embedder) is None
    # the same ids with the right identity are used: so ignoring them above is what kept the vector right
    matching = events[0].model_copy(update={"tokens": TokenIds.pack(bogus, sha, embedder.max_tokens)})
    used = carried_ids(matching, embedder)
    assert used is not None and used.tolist() == bogus.tolist()
    texts = texts_of([events[0]])
    local = embedder.embed_many(texts)
    ignored = embedder.embed_many(texts, carried=[carried_ids(event, embedder)])
    np.testing.assert_array_equal(ignored, local)
    assert float(embedder.embed_many(texts, carried=[used])[0] @ local[0]) < 0.9


def test_mixed_batch_tokenizes_only_what_lacks_ids(model_dir: Path, events: list[PaperParsed], embedder) -> None:
    some = [e.model_copy(deep=True) for e in events[:6]]
    PaperTokenizer.open(model_dir).attach(some[::2])
    carried = [carried_ids(e, embedder) for e in some]
    assert [ids is not None for ids in carried] == [True, False] * 3
    texts = texts_of(some)
    np.testing.assert_array_equal(embedder.embed_many(texts, carried=carried), embedder.embed(texts))


def test_malformed_ids_are_ignored(events: list[PaperParsed], embedder) -> None:
    sha = embedder.info.tokenizer.sha256
    too_long = TokenIds.pack(np.full(300, 1000), sha, embedder.max_tokens)
    odd = TokenIds(tokenizer_sha256=sha, max_tokens=embedder.max_tokens, ids="AAAA")  # 3 bytes: no uint16s
    one = TokenIds.pack(np.array([101]), sha, embedder.max_tokens)
    for tokens in (too_long, odd, one):
        event = events[0].model_copy(update={"tokens": tokens})
        assert carried_ids(event, embedder) is None


def test_ids_the_tokenizer_could_not_have_made_are_retokenized(events: list[PaperParsed], embedder) -> None:
    """Right sha256 but ids past the vocabulary (ONNX Runtime would fail the whole batch), without [CLS]/[SEP]
    (a silently wrong vector) or in loose base64: the paper is tokenized here, and its batch goes through."""
    sha = embedder.info.tokenizer.sha256
    tok = embedder.tokenizer
    assert (tok.vocab_size, tok.cls_id, tok.sep_id) == (30522, 101, 102)
    bad = [
        TokenIds.pack(np.array([101, 60000, 102]), sha, embedder.max_tokens),
        TokenIds.pack(np.array([101, tok.vocab_size, 102]), sha, embedder.max_tokens),
        TokenIds.pack(np.array([7592, 2088]), sha, embedder.max_tokens),
        TokenIds.pack(np.array([101, 7592, 2088]), sha, embedder.max_tokens),
        TokenIds.pack(np.array([7592, 2088, 102]), sha, embedder.max_tokens),
        TokenIds.pack(np.array([0, 0]), sha, embedder.max_tokens),
        TokenIds(tokenizer_sha256=sha, max_tokens=embedder.max_tokens, ids="ZQAA!!!!ZgAA"),
    ]
    for tokens in bad:
        event = events[0].model_copy(update={"tokens": tokens})
        assert carried_ids(event, embedder) is None, tokens.ids
    edge = TokenIds.pack(np.array([101, tok.vocab_size - 1, 102]), sha, embedder.max_tokens)
    assert carried_ids(events[0].model_copy(update={"tokens": edge}), embedder) is not None
    texts = texts_of(events[:2])
    oov = events[1].model_copy(update={"tokens": bad[0]})
    vectors = embedder.embed_many(texts, carried=[None, carried_ids(oov, embedder)])
    np.testing.assert_array_equal(vectors, embedder.embed_many(texts))
