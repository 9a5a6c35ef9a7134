"""The text policy and tokenization: which text a paper is embedded as, and its token ids.

Both the embedder and the parser (which carries token ids upstream in ``papers.parsed``) tokenize here, so the
ids are the same wherever they are made. Importable with only numpy and tokenizers (flash-tokenizer is used when
installed): the benchmark runs on bare GPU hosts.

Text policy (stated once, used everywhere): a paper is embedded as ``"<title>. <abstract>"`` with
whitespace collapsed, cut to ``max_tokens`` word pieces (the model's own limit, 256 for all-MiniLM-L6-v2)
including ``[CLS]``/``[SEP]``. Before tokenizing, texts are cut at the last space before ``7 * max_tokens``
characters (never inside a word; a text with no space there is not cut): the tokenizer then does less work and
the token ids are identical (a cut text that comes out shorter than ``max_tokens`` is tokenized again in full,
so the shortcut never changes a vector).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shared.model_files import ModelError

log = logging.getLogger("paperwire.text_tokens")

CHARS_PER_TOKEN_CUT = 7


# --------------------------------------------------------------------------------------------- text


def compose_text(title: str, abstract: str = "") -> str:
    """The text a paper is embedded as: title and abstract, whitespace collapsed."""
    title = " ".join((title or "").split())  # str.split's whitespace is re's \s: same text, a third of the time
    abstract = " ".join((abstract or "").split())
    if title and abstract:
        sep = " " if title[-1] in ".?!:" else ". "
        return f"{title}{sep}{abstract}"
    return title or abstract


def cut_text(text: str, max_chars: int) -> str:
    """Cut at the last space before ``max_chars``, never elsewhere: a cut inside a word changes its word pieces
    (``representation-...-internationalization`` cut mid-word gave other ids than HF truncation)."""
    if len(text) <= max_chars:
        return text
    space = text.rfind(" ", 0, max_chars)
    return text[:space] if space > 0 else text


# ----------------------------------------------------------------------------------- tokenizing


TOKENIZER_ENGINES = ("auto", "flash", "hf")

# Texts the fast engine may take: printable ASCII and no "word" over WordPiece's 100 characters. It differs
# from HF outside that (measured: Hangul is not decomposed, soft hyphens and zero-width spaces are kept,
# over-long words are split instead of [UNK]), so anything else goes to HF (2 % of real abstracts). Texts
# holding one of the tokenizer's added tokens ([MASK], [SEP], ...) go to HF too: ``_not_fast_pattern``.
_NOT_FAST = re.compile(r"[^\t\n\r\x20-\x7e]|\S{101,}")

# Edge cases both engines must tokenize identically before the fast one is trusted: empty text, LaTeX,
# punctuation runs, a 100-character word, truncation at max_tokens, non-ASCII texts and added special tokens
# (both routed to HF).
_PROBES = (
    "",
    "We replace 15% of the input tokens with [MASK] and predict them; [CLS] and [SEP] mark the ends.",
    "$\\mathcal{O}(n^{2})$ -- (a,b]; e.g., i.e.: [1,2]...!!! state-of-the-art GPT-4o's 3.5x F1@10 \\cite{x}",
    "x" * 100 + " " + "y" * 101 + " supercalifragilisticexpialidocious antidisestablishmentarianism",
    "Attention is all you need. " * 80,
    "Schrödinger équation naïve CAFÉ Ångström ﬁne-tuning",
    "深度学习 の 研究 한국어 текст на русском ελληνικά",
    "tab\there\x00null\u200bzero-width\u00adsoft hyphen\r\nline",
)


class TextTokenizer:
    """Token ids for texts, identical whichever engine makes them.

    HF ``tokenizers`` reads any tokenizer.json. For a plain BERT WordPiece (BertNormalizer, BertPreTokenizer,
    [CLS] ... [SEP]: all-MiniLM-L6-v2 and most sentence-transformers BERTs) ``flash-tokenizer``, a C++
    WordPiece, does the same work ~4x faster per core (DESIGN.md: at GPU speed the tokenizer is the
    bottleneck). It takes the plain-ASCII texts (98 % of abstracts) and HF the rest; it is used only when
    the tokenizer.json has that shape and the probe texts come out identical, otherwise HF alone.
    """

    def __init__(self, hf: Any, max_tokens: int, fast: Any = None, not_fast: re.Pattern[str] | None = None) -> None:
        self._hf = hf
        self._fast = fast
        self._not_fast = not_fast or _NOT_FAST
        self.max_tokens = max_tokens
        bounds = hf.encode("").ids  # what the post-processor adds around every text
        self.cls_id: int | None = bounds[0] if len(bounds) == 2 else None
        self.sep_id: int | None = bounds[-1] if len(bounds) == 2 else None
        self.vocab_size: int = hf.get_vocab_size(with_added_tokens=True)

    @property
    def engine(self) -> str:
        return "flash" if self._fast is not None else "hf"

    def well_formed(self, ids: np.ndarray) -> bool:
        """Whether ids made elsewhere could have come from this tokenizer: an id past the vocabulary makes
        ONNX Runtime fail the whole batch, and missing [CLS]/[SEP] silently gives another vector."""
        if not 2 <= len(ids) <= self.max_tokens or int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size:
            return False
        return (self.cls_id is None or int(ids[0]) == self.cls_id) and (
            self.sep_id is None or int(ids[-1]) == self.sep_id
        )

    def _hf_ids(self, texts: list[str]) -> list[list[int]]:
        encode = getattr(self._hf, "encode_batch_fast", self._hf.encode_batch)
        return [e.ids for e in encode(texts)]

    def encode_ids(self, texts: Sequence[str]) -> list[list[int]]:
        texts = list(texts)
        if self._fast is None:
            return self._hf_ids(texts)
        ids = self._fast.batch_encode(texts, "longest", self.max_tokens, False)
        slow = [i for i, t in enumerate(texts) if self._not_fast.search(t)]
        if slow:
            for i, row in zip(slow, self._hf_ids([texts[i] for i in slow]), strict=True):
                ids[i] = row
        return ids


def _hf_tokenizer(path: Path, max_tokens: int) -> Any:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path))
    tok.no_padding()  # tokenizer.json ships padding/truncation at 128: ours is explicit
    tok.enable_truncation(max_length=max_tokens)
    return tok


def _not_fast_pattern(spec: dict[str, Any]) -> re.Pattern[str]:
    """``_NOT_FAST`` plus the tokenizer's added tokens: HF keeps ``[MASK]`` whole, flash-tokenizer splits it into
    ``[``, ``mask``, ``]``. Matched ignoring case, as a normalized added token would be: routing a few more texts
    to HF costs nothing in ids."""
    added = sorted({t["content"] for t in spec.get("added_tokens") or () if t.get("content")}, key=len, reverse=True)
    if not added:
        return _NOT_FAST
    return re.compile(_NOT_FAST.pattern + "|(?i:" + "|".join(re.escape(t) for t in added) + ")")


def _flash_tokenizer(path: Path, max_tokens: int) -> tuple[Any, re.Pattern[str] | None, str]:
    """(flash tokenizer, texts it must leave to HF, "") when tokenizer.json is a plain BERT WordPiece
    flash-tokenizer can reproduce, else (None, None, why not)."""
    try:
        from flash_tokenizer._core import FlashBertTokenizer
    except ImportError:
        return None, None, "flash-tokenizer is not installed"
    spec = json.loads(path.read_text(encoding="utf-8"))
    model, norm = spec.get("model") or {}, spec.get("normalizer") or {}
    post = json.dumps(spec.get("post_processor") or {})
    plain_bert = (
        model.get("type") == "WordPiece"
        and model.get("unk_token") == "[UNK]"
        and model.get("continuing_subword_prefix") == "##"
        and model.get("max_input_chars_per_word", 100) == 100
        and norm.get("type") == "BertNormalizer"
        and norm.get("clean_text", True)
        and norm.get("strip_accents") in (None, norm.get("lowercase"))
        and (spec.get("pre_tokenizer") or {}).get("type") == "BertPreTokenizer"
        and '"[CLS]"' in post
        and '"[SEP]"' in post
    )
    if not plain_bert:
        return None, None, "tokenizer.json is not a plain BERT WordPiece"
    vocab: dict[str, int] = model.get("vocab") or {}
    words = sorted(vocab, key=vocab.__getitem__)
    if [vocab[w] for w in words] != list(range(len(words))) or any("\n" in w for w in words):
        return None, None, "the WordPiece vocabulary is not a dense id range"
    import tempfile

    with tempfile.TemporaryDirectory(prefix="paperwire-vocab-") as tmp:
        vocab_file = Path(tmp) / "vocab.txt"
        vocab_file.write_text("\n".join(words) + "\n", encoding="utf-8")
        lower = bool(norm.get("lowercase", True))
        tok = FlashBertTokenizer(str(vocab_file), lower, max_tokens, bool(norm.get("handle_chinese_chars", True)))
    return tok, _not_fast_pattern(spec), ""


def load_tokenizer(path: Path, max_tokens: int, engine: str = "auto") -> TextTokenizer:
    """The model's tokenizer, truncating at ``max_tokens``. ``engine``: auto (flash when it reproduces HF
    exactly), flash (an error when it cannot), or hf."""
    if engine not in TOKENIZER_ENGINES:
        raise ValueError(f"tokenizer engine must be one of {', '.join(TOKENIZER_ENGINES)}, not {engine!r}")
    hf = TextTokenizer(_hf_tokenizer(path, max_tokens), max_tokens)
    if engine == "hf":
        return hf
    fast, not_fast, why = _flash_tokenizer(path, max_tokens)
    if fast is not None:
        both = TextTokenizer(hf._hf, max_tokens, fast, not_fast)
        if both.encode_ids(_PROBES) == hf.encode_ids(_PROBES):
            return both
        why = "its token ids differ from HF tokenizers on the probe texts"
    if engine == "flash":
        raise ModelError(f"the flash tokenizer cannot be used for {path}: {why}")
    log.info("tokenizer: HF tokenizers only (%s)", why)
    return hf


def tokenize(tok: TextTokenizer, texts: Sequence[str], max_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """Token ids for texts as (flat int32 ids, int32 lengths): compact to pass between processes."""
    max_chars = CHARS_PER_TOKEN_CUT * max_tokens
    cut = [cut_text(t, max_chars) for t in texts]
    ids = tok.encode_ids(cut)
    redo = [i for i, (c, t) in enumerate(zip(cut, texts, strict=True)) if len(ids[i]) < max_tokens and c is not t]
    if redo:
        for i, row in zip(redo, tok.encode_ids([texts[i] for i in redo]), strict=True):
            ids[i] = row
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int32, count=len(ids))
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int32, count=int(lengths.sum()))
    return flat, lengths


def plan_batches(
    lengths: np.ndarray, token_budget: int, bucket: int = 16, max_rows: int | None = None
) -> list[np.ndarray]:
    """Length-sorted batches whose padded size (rows x bucketed length) stays within the token budget and,
    when given, ``max_rows`` texts."""
    order = np.argsort(-lengths, kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    while start < len(order):
        padded = int(-(-int(lengths[order[start]]) // bucket) * bucket)  # longest first: sets the width
        rows = max(1, token_budget // max(padded, 1))
        if max_rows:
            rows = min(rows, max_rows)
        batches.append(order[start : start + rows])
        start += rows
    return batches


def pad_batch(flat: np.ndarray, offsets: np.ndarray, lengths: np.ndarray, idx: np.ndarray, bucket: int):
    """input_ids / attention_mask / token_type_ids (int64) for rows ``idx``, padded to the bucket (vectorised:
    at GPU speed a Python loop over rows would cost more than the model)."""
    rows_len = lengths[idx].astype(np.int64)
    width = int(-(-int(rows_len.max()) // bucket) * bucket)
    cols = np.arange(width, dtype=np.int64)
    mask = cols[None, :] < rows_len[:, None]
    gather = np.where(mask, offsets[idx][:, None] + cols[None, :], 0)
    ids = np.where(mask, flat[gather], 0).astype(np.int64)
    return ids, mask.astype(np.int64), np.zeros_like(ids)


# Tokenizer worker processes: each holds one single-threaded tokenizer (scales with cores, no GIL).
_WORKER_TOK: Any = None
_WORKER_MAX = 0


def _worker_init(path: str, max_tokens: int, engine: str = "auto") -> None:
    global _WORKER_TOK, _WORKER_MAX
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _WORKER_TOK = load_tokenizer(Path(path), max_tokens, engine)
    _WORKER_MAX = max_tokens


def _worker_tokenize(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    return tokenize(_WORKER_TOK, texts, _WORKER_MAX)


def _worker_time_tokenize(texts: list[str]) -> float:
    """Seconds one single-threaded tokenizer takes for texts (a parser replica's cost per core)."""
    import time

    start = time.perf_counter()
    tokenize(_WORKER_TOK, texts, _WORKER_MAX)
    return time.perf_counter() - start
