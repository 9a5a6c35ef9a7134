"""The parser attaches the embedding model's token ids when a model is there, and stays cheap without one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from services.parser.parse import parse_document
from services.parser.tokens import PaperTokenizer, open_tokenizer
from shared.events import PaperParsed
from shared.model_files import ModelError, ModelManifest
from shared.text_tokens import compose_text, load_tokenizer, tokenize
from tests.unit.embedder.model_cache import exported_model_dir

FIXTURES = Path(__file__).parents[2] / "fixtures"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return exported_model_dir(tmp_path_factory)


def test_no_model_means_no_ids_and_no_crash(tmp_path: Path) -> None:
    assert open_tokenizer(None, tmp_path) is None
    assert open_tokenizer(False, tmp_path) is None
    with pytest.raises(ModelError, match="no manifest.json"):
        open_tokenizer(True, tmp_path)


def test_real_feed_papers_carry_the_models_ids(model_dir: Path) -> None:
    body = (FIXTURES / "arxiv_rss/distill_rss2_cs.AI_2026-04.xml").read_text()
    result = parse_document("arxiv-rss", body)
    events = [PaperParsed(paper=p) for p in result.papers]
    tokenizer = open_tokenizer(None, model_dir)
    assert tokenizer is not None
    assert tokenizer.attach(events) == len(events) == 3
    info = ModelManifest.read(model_dir)
    tok = load_tokenizer(model_dir / info.tokenizer.file, info.max_tokens)
    ref = Tokenizer.from_file(str(model_dir / info.tokenizer.file))  # plain HF tokenizers: the reference ids
    ref.no_padding()
    ref.enable_truncation(max_length=info.max_tokens)
    first = events[0]
    assert first.tokens is not None
    assert first.tokens.tokenizer_sha256 == info.tokenizer.sha256 and first.tokens.max_tokens == 256
    # "Math Takes Two: A test for ..." -> [CLS] math takes two : ...
    expected = ref.encode(compose_text(first.paper.title, first.paper.abstract)).ids
    assert first.tokens.array().tolist() == expected
    assert expected[:5] == [101, *ref.encode("Math Takes Two", add_special_tokens=False).ids, 1024]
    flat, _ = tokenize(tok, [compose_text(e.paper.title, e.paper.abstract) for e in events], 256)
    assert np.array_equal(np.concatenate([e.tokens.array() for e in events]), flat)


def test_a_changed_tokenizer_file_is_refused(model_dir: Path, tmp_path: Path) -> None:
    import shutil

    for name in ("manifest.json", "tokenizer.json"):
        shutil.copy(model_dir / name, tmp_path / name)
    with open(tmp_path / "tokenizer.json", "a") as fh:
        fh.write(" ")
    with pytest.raises(ModelError, match="mismatch"):
        PaperTokenizer.open(tmp_path)
    assert open_tokenizer(None, tmp_path) is None  # default: warn and carry no ids


def test_another_models_export_gives_no_ids(model_dir: Path) -> None:
    """Ids from another model's tokenizer would be ignored by the embedder at best: the parser says so at start."""
    with pytest.raises(ModelError, match="PAPERWIRE_MODEL_ID is 'BAAI/bge-small-en-v1.5' but"):
        open_tokenizer(True, model_dir, model_id="BAAI/bge-small-en-v1.5")
    assert open_tokenizer(None, model_dir, model_id="BAAI/bge-small-en-v1.5") is None
    assert open_tokenizer(None, model_dir, model_id="sentence-transformers/all-MiniLM-L6-v2") is not None


def test_flash_tokenizer_gets_small_batches_and_the_same_ids(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """flash-tokenizer holds the GIL for a whole call (~80 ms for the 387-paper OAI page), so a worker thread
    alone would still stall the event loop: it gets ``flash_chunk`` texts a call. The ids are the same as one
    call for the whole page; HF tokenizers (releases the GIL) keeps one call."""
    import services.parser.tokens as tokens_module

    body = (FIXTURES / "arxiv_oai/litpuvn_ListRecords_arXivRaw_from2016-10-20.xml").read_bytes()
    papers = parse_document("arxiv-oai", body).papers
    tokenizer = open_tokenizer(None, model_dir)
    assert tokenizer is not None
    sizes: list[int] = []

    def counted(tok: object, texts: list[str], max_tokens: int) -> tuple[np.ndarray, np.ndarray]:
        sizes.append(len(texts))
        return tokenize(tok, texts, max_tokens)

    monkeypatch.setattr(tokens_module, "tokenize", counted)
    chunked = [PaperParsed(paper=p) for p in papers]
    tokenizer.attach(chunked)
    whole = [PaperParsed(paper=p) for p in papers]
    one_call = PaperTokenizer(tokenizer.tokenizer, tokenizer.sha256, tokenizer.max_tokens, flash_chunk=len(papers))
    one_call.attach(whole)
    assert [e.tokens for e in chunked] == [e.tokens for e in whole]
    if tokenizer.tokenizer.engine == "flash":
        assert max(sizes[:-1]) == 32 and sum(sizes[:-1]) == len(papers) == 387
    else:
        assert sizes == [len(papers), len(papers)]
