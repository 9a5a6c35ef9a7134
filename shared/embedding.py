"""The embedding runtime both the embedder and the classifier use: ONNX Runtime + HF tokenizers.

Importable with only numpy, tokenizers and onnxruntime (the benchmark runs on bare GPU hosts), so the
pydantic ``EmbeddingManifest`` is imported lazily and the on-disk manifest is a plain dataclass.

Text policy (stated once, used everywhere): a paper is embedded as ``"<title>. <abstract>"`` with
whitespace collapsed, cut to ``max_tokens`` word pieces (the model's own limit, 256 for all-MiniLM-L6-v2)
including ``[CLS]``/``[SEP]``. Before tokenizing, texts are cut at the last space before ``7 * max_tokens``
characters (never inside a word; a text with no space there is not cut): the tokenizer then does less work and
the token ids are identical (a cut text that comes out shorter than ``max_tokens`` is tokenized again in full,
so the shortcut never changes a vector).
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import hashlib
import io
import itertools
import json
import logging
import os
import queue
import re
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from shared.events import EmbeddingManifest

log = logging.getLogger("paperwire.embedding")

MANIFEST_NAME = "manifest.json"
DEFAULT_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
PRECISIONS = ("fp32", "fp16", "int8")
CHARS_PER_TOKEN_CUT = 7
MIN_FAITHFUL_COSINE = 0.98
SPREAD_MIN_TEXTS = 64  # texts per tokenizer process below which spreading a list costs more than it saves


def default_model_dir(model_id: str = DEFAULT_MODEL_ID, data_dir: Path | None = None) -> Path:
    """Where ``paperwire model export`` writes and the services look: PAPERWIRE_MODEL_DIR, else
    <PAPERWIRE_DATA_DIR>/models/<id> (``data/models/<id>`` by default)."""
    env = os.environ.get("PAPERWIRE_MODEL_DIR")
    if env:
        return Path(env)
    return Path(data_dir or os.environ.get("PAPERWIRE_DATA_DIR") or "data") / "models" / model_id


class ModelError(RuntimeError):
    """The model directory cannot be used: missing files, hash or manifest mismatch. Refuse to start."""


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


# ------------------------------------------------------------------------------------- manifest


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class ModelFile:
    file: str
    sha256: str
    min_cosine: float | None = None  # measured against the fp32 reference on real abstracts at export
    mean_cosine: float | None = None


@dataclass
class ModelManifest:
    """What ``manifest.json`` in a model directory says: identity of the vector space plus file hashes."""

    model_id: str
    dims: int
    max_tokens: int
    tokenizer: ModelFile
    files: dict[str, ModelFile] = field(default_factory=dict)
    source_sha256: str = ""
    exporter_version: int = 1

    @classmethod
    def read(cls, model_dir: Path) -> ModelManifest:
        path = Path(model_dir) / MANIFEST_NAME
        if not path.is_file():
            raise ModelError(f"no {MANIFEST_NAME} in {model_dir}: run `paperwire model export --out {model_dir}`")
        try:
            raw = json.loads(path.read_text())
            return cls(
                model_id=raw["model_id"],
                dims=int(raw["dims"]),
                max_tokens=int(raw["max_tokens"]),
                tokenizer=ModelFile(**raw["tokenizer"]),
                files={k: ModelFile(**v) for k, v in raw.get("files", {}).items()},
                source_sha256=raw.get("source_sha256", ""),
                exporter_version=int(raw.get("exporter_version", 1)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"unreadable {path}: {exc!r}") from exc

    def write(self, model_dir: Path) -> None:
        path = Path(model_dir) / MANIFEST_NAME
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
        tmp.replace(path)

    def faithful(self, precision: str) -> bool:
        entry = self.files.get(precision)
        if entry is None:
            return False
        return precision != "int8" or (entry.min_cosine is not None and entry.min_cosine >= MIN_FAITHFUL_COSINE)


def check_model_id(info: ModelManifest, model_id: str, model_dir: Path) -> None:
    """Every service that uses the model refuses another one: vectors of two models must never be compared."""
    if info.model_id != model_id:
        raise ModelError(
            f"model/manifest mismatch: PAPERWIRE_MODEL_ID is {model_id!r} but {model_dir} holds {info.model_id!r}; "
            f"export it (`paperwire model export --model-dir <its sentence-transformers directory>`) or set "
            f"PAPERWIRE_MODEL_DIR to its export"
        )


def verify_file(model_dir: Path, entry: ModelFile) -> Path:
    path = Path(model_dir) / entry.file
    if not path.is_file():
        raise ModelError(f"model file {path} named in the manifest is missing")
    actual = sha256_file(path)
    if actual != entry.sha256:
        raise ModelError(
            f"model/manifest mismatch: {path} has sha256 {actual[:12]}..., the manifest says "
            f"{entry.sha256[:12]}...; re-export the model (`paperwire model export`)"
        )
    return path


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


# -------------------------------------------------------------------------------------- runtime


def cuda_loadable() -> bool:
    """True when ONNX Runtime's CUDA provider is present and the CUDA libraries it needs load.

    Checked with ctypes first so a host without CUDA gets one clear log line, not ONNX Runtime's loud
    "Failed to load libcublasLt" error before it falls back by itself.
    """
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return False
    if hasattr(ort, "preload_dlls"):
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # it prints install hints on failure
                ort.preload_dlls()
        except Exception as exc:  # noqa: BLE001 - any loader failure means: no CUDA here
            log.info("onnxruntime.preload_dlls failed: %r", exc)
    if sys.platform.startswith("linux"):
        major = _ort_cuda_major()
        for lib in (f"libcudart.so.{major}", f"libcublasLt.so.{major}") if major else ():
            try:
                ctypes.CDLL(lib)
            except OSError:
                log.warning("CUDA execution provider present but %s does not load: running ONNX Runtime on CPU", lib)
                return False
    return True


def _ort_cuda_major() -> str | None:
    try:
        from onnxruntime.capi import build_and_package_info

        return str(build_and_package_info.cuda_version).split(".")[0] or None
    except (ImportError, AttributeError):
        return None


def _make_session(path: Path, providers: list[Any], threads: int | None) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=providers)


@dataclass
class EmbedStats:
    texts: int = 0
    tokens: int = 0
    batches: int = 0


class Embedder:
    """Tokenize + infer. ``embed`` returns float32, L2-normalised rows in input order."""

    def __init__(
        self,
        model_dir: Path,
        info: ModelManifest,
        precision: str,
        session: Any,
        *,
        max_tokens: int | None = None,
        token_budget: int | None = None,
        bucket: int | None = None,
        parallel: int = 1,
        extra_sessions: Sequence[Any] = (),
        tokenizer_engine: str = "auto",
    ) -> None:
        self.model_dir = Path(model_dir)
        self.info = info
        self.precision = precision
        self.session = session
        self.provider = session.get_providers()[0]
        self.on_cuda = self.provider == "CUDAExecutionProvider"
        self.max_tokens = min(max_tokens or info.max_tokens, info.max_tokens)
        self.tokenizer_path = self.model_dir / info.tokenizer.file
        self.tokenizer = load_tokenizer(self.tokenizer_path, self.max_tokens, tokenizer_engine)
        # CUDA: big length-sorted batches padded to buckets of 16. CPU: one text per run (no padding at all,
        # activations stay in cache, int8 activation scales per text, so a vector never depends on its batch
        # neighbours) and ``parallel`` single-threaded runs at once, one per core: up to ~2x the throughput of
        # one 2-thread run of 32 texts, measured here. An explicit ``token_budget`` on CPU batches by budget.
        self.token_budget = token_budget or (256 * 1024 if self.on_cuda else self.max_tokens)
        self.bucket = bucket or (16 if self.on_cuda else 1)
        self.rows_per_run: int | None = None if self.on_cuda or token_budget else 1
        self.parallel = max(1, parallel)
        # CUDA: one session per runner thread (each its own CUDA stream), so one batch's copies overlap
        # another's kernels. CPU: one session shared by ``parallel`` single-threaded runs.
        self.sessions = [session, *extra_sessions]
        self.runners = len(self.sessions) if self.on_cuda else self.parallel
        self._local = threading.local()
        self._assign = threading.Lock()
        self._assigned = 0
        self._runners: ThreadPoolExecutor | None = None
        self.stats = EmbedStats()
        self._pool: Executor | None = None
        self._output = session.get_outputs()[0].name

    @property
    def dims(self) -> int:
        return self.info.dims

    @property
    def manifest(self) -> EmbeddingManifest:
        """The pydantic manifest carried in events (imported lazily: the bench host has no pydantic)."""
        from shared.events import EmbeddingManifest

        return EmbeddingManifest(
            model_id=self.info.model_id,
            dims=self.info.dims,
            max_tokens=self.max_tokens,
            precision=self.precision,
            sha256=self.info.files[self.precision].sha256,
        )

    def accepts(self, tokenizer_sha256: str, max_tokens: int) -> bool:
        """Whether token ids made elsewhere are exactly what this embedder's tokenizer would make."""
        return tokenizer_sha256 == self.info.tokenizer.sha256 and max_tokens == self.max_tokens

    # -- inference on token ids
    def _session(self) -> Any:
        session = getattr(self._local, "session", None)
        if session is None:
            with self._assign:
                session = self.sessions[self._assigned % len(self.sessions)]
                self._assigned += 1
            self._local.session = session
        return session

    def _run(self, ids: np.ndarray, mask: np.ndarray, types: np.ndarray | None = None) -> np.ndarray:
        if types is None:
            types = np.zeros_like(ids)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        session = self._session()
        if not self.on_cuda:
            return session.run([self._output], feeds)[0]
        binding = session.io_binding()
        for name, arr in feeds.items():
            binding.bind_cpu_input(name, arr)
        binding.bind_output(self._output, "cuda")
        session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]

    def _batches(self, flat: np.ndarray, lengths: np.ndarray) -> Iterator[tuple[np.ndarray, tuple]]:
        """(rows, padded inputs) per length-sorted batch within the token budget."""
        offsets = np.zeros(len(lengths), dtype=np.int64)
        np.cumsum(lengths[:-1], out=offsets[1:])
        for idx in plan_batches(lengths, self.token_budget, self.bucket, self.rows_per_run):
            yield idx, pad_batch(flat, offsets, lengths, idx, self.bucket)

    def embed_tokens(self, flat: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        out = np.empty((len(lengths), self.dims), dtype=np.float32)
        if len(lengths) == 0:
            return out

        def run(batch: tuple[np.ndarray, tuple]) -> None:
            idx, inputs = batch
            out[idx] = self._run(*inputs)

        batches = self._batches(flat, lengths)
        if self.runners > 1:
            # ONNX Runtime releases the GIL while it runs: padding the next batch overlaps the runs.
            done = list(self._runner_pool().map(run, batches))
        else:
            done = [run(batch) for batch in batches]
        self.stats.batches += len(done)
        self.stats.texts += len(lengths)
        self.stats.tokens += int(lengths.sum())
        return out

    def _runner_pool(self) -> ThreadPoolExecutor:
        if self._runners is None:
            self._runners = ThreadPoolExecutor(self.runners, thread_name_prefix="onnxruntime")
        return self._runners

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed_tokens(*tokenize(self.tokenizer, list(texts), self.max_tokens))

    def tokens_for(
        self, texts: Sequence[str], carried: Sequence[np.ndarray | None] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(flat ids, lengths) for texts, taking row i from ``carried[i]`` when given (ids the caller
        checked with ``accepts``) and tokenizing the rest (across the tokenizer processes when they run)."""
        rows: list[np.ndarray | None] = list(carried) if carried is not None else [None] * len(texts)
        missing = [i for i, ids in enumerate(rows) if ids is None]
        if len(missing) == len(rows):
            return self._tokenize_spread(list(texts))
        if missing:
            flat, lengths = self._tokenize_spread([texts[i] for i in missing])
            for i, part in zip(missing, np.split(flat, np.cumsum(lengths)[:-1]), strict=True):
                rows[i] = part
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int32, count=len(rows))  # type: ignore[arg-type]
        flat = np.concatenate(rows).astype(np.int32) if rows else np.empty(0, dtype=np.int32)  # type: ignore[arg-type]
        return flat, lengths

    def _tokenize_spread(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Tokenize here, or spread over the tokenizer processes when they run and the list is worth it
        (a service batch of 1024 texts without carried ids: one process would take ~140 ms, the GPU 25 ms)."""
        workers = getattr(self._pool, "_max_workers", 0) if self._pool is not None else 0
        if workers < 2 or len(texts) < 2 * SPREAD_MIN_TEXTS:
            return tokenize(self.tokenizer, texts, self.max_tokens)
        step = max(SPREAD_MIN_TEXTS, -(-len(texts) // workers))
        parts = list(self._pool.map(_worker_tokenize, [texts[i : i + step] for i in range(0, len(texts), step)]))
        return np.concatenate([f for f, _ in parts]), np.concatenate([n for _, n in parts])

    # -- large inputs: tokenizer processes feed a bounded queue while this thread runs the model
    def start_tokenizer_pool(self, workers: int) -> None:
        if self._pool is None and workers > 0:
            import multiprocessing as mp

            self._pool = ProcessPoolExecutor(
                workers,
                mp_context=mp.get_context("spawn"),  # never fork a process holding a CUDA context
                initializer=_worker_init,
                initargs=(str(self.tokenizer_path), self.max_tokens, self.tokenizer.engine),
            )
            list(self._pool.map(_worker_tokenize, [["warm up"]] * workers))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
        if self._runners is not None:
            self._runners.shutdown()
            self._runners = None

    def _chunks_tokenized(self, texts: Sequence[str], chunk: int) -> Iterator[tuple[np.ndarray, ...]]:
        for start in range(0, len(texts), chunk):
            yield tokenize(self.tokenizer, list(texts[start : start + chunk]), self.max_tokens)

    def embed_many(
        self,
        texts: Sequence[str],
        chunk: int | None = None,
        carried: Sequence[np.ndarray | None] | None = None,
    ) -> np.ndarray:
        """Embed a large list. With ``carried`` token ids (made upstream by the parsers) only the rows
        without ids are tokenized here. Otherwise, with the tokenizer pool started, worker processes
        tokenize, plan and pad whole chunks while runner threads keep the model busy."""
        out = np.empty((len(texts), self.dims), dtype=np.float32)
        if not texts:
            return out
        if carried is not None:
            return self.embed_tokens(*self.tokens_for(texts, carried))
        if self._pool is not None:
            return self._embed_prepared(texts, chunk or max(256, self.token_budget // self.max_tokens), out)
        if self.parallel > 1 and self._pool is None:
            # CPU: tokenizing costs ~3% of inference here; the runs themselves are what goes in parallel.
            step = chunk or 512
            for start in range(0, len(texts), step):
                out[start : start + step] = self.embed(texts[start : start + step])
            return out
        chunk = chunk or max(256, self.token_budget // self.max_tokens)
        ready: queue.Queue = queue.Queue(maxsize=4)
        stop = threading.Event()
        done = object()

        def put(item: object) -> None:
            while not stop.is_set():
                try:
                    ready.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue

        def produce() -> None:
            try:
                base = 0
                for flat, lengths in self._chunks_tokenized(texts, chunk):
                    for idx, inputs in self._batches(flat, lengths):
                        put((base + idx, inputs))
                    self.stats.texts += len(lengths)
                    self.stats.tokens += int(lengths.sum())
                    base += len(lengths)
                    if stop.is_set():
                        return
            except BaseException as exc:  # noqa: BLE001 - surfaced in the consumer thread
                put(exc)
            put(done)

        producer = threading.Thread(target=produce, name="tokenize", daemon=True)  # no pool: one thread
        producer.start()
        try:
            while (item := ready.get()) is not done:
                if isinstance(item, BaseException):
                    raise item
                rows, inputs = item
                out[rows] = self._run(*inputs)
                self.stats.batches += 1
        finally:
            stop.set()
            producer.join()
        return out

    def _embed_prepared(self, texts: Sequence[str], chunk: int, out: np.ndarray) -> np.ndarray:
        """Worker processes tokenize ahead, every chunk split across all of them; this thread joins each chunk's
        pieces, plans and pads its batches and hands them to the runners, up to two per runner in flight.

        Why pieces: with a whole chunk per process, the model got its first batch only when one process had
        tokenized a whole chunk (1024 texts, ~0.2 s at one process's rate), and that wait alone accounts for the
        H200 runs from text: 0.2 s + 32,768 texts at the from-ids rate gives ~32k texts/s (measured 32-35k), and
        2048-text chunks (a 512k budget) give ~26k (measured 27k). Split across 15 processes a chunk is ready in
        ~15 ms, and the batches keep the measured shapes (one chunk, one plan)."""
        assert self._pool is not None
        pool, runners = self._pool, self._runner_pool()
        workers = getattr(pool, "_max_workers", 1)
        piece = max(SPREAD_MIN_TEXTS, chunk // workers)  # whole pieces per chunk: one batch per chunk stays
        per_chunk = max(1, chunk // piece)
        starts = list(range(0, len(texts), piece))
        depth = 4 * max(workers, per_chunk)  # pieces in flight: the next few chunks

        def submit(n: int) -> Any:
            return pool.submit(_worker_tokenize, list(texts[starts[n] : starts[n] + piece]))

        def run(rows: np.ndarray, *inputs: np.ndarray) -> None:
            out[rows] = self._run(*inputs)

        pending = [submit(n) for n in range(min(depth, len(starts)))]
        inflight: collections.deque = collections.deque()
        try:
            for first in range(0, len(starts), per_chunk):
                parts = []
                for n in range(first, min(first + per_chunk, len(starts))):
                    parts.append(pending[n].result())
                    pending[n] = None  # free the arrays as soon as they are joined
                    if n + depth < len(starts):
                        pending.append(submit(n + depth))
                flat = np.concatenate([ids for ids, _ in parts])
                lengths = np.concatenate([piece_lengths for _, piece_lengths in parts])
                for idx, inputs in self._batches(flat, lengths):
                    inflight.append(runners.submit(run, idx + starts[first], *inputs))
                    self.stats.batches += 1
                    while len(inflight) > 2 * self.runners:
                        inflight.popleft().result()
                self.stats.texts += len(lengths)
                self.stats.tokens += int(lengths.sum())
            while inflight:
                inflight.popleft().result()
        finally:
            for fut in (*pending, *inflight):
                if fut is not None:
                    fut.cancel()
        return out


def pick_precision(info: ModelManifest, on_cuda: bool, precision: str = "auto") -> str:
    """``auto``: fp16 on CUDA; on CPU int8 when the export measured it faithful, else fp32."""
    if precision != "auto":
        if precision not in info.files:
            raise ModelError(f"precision {precision!r} was not exported (have: {', '.join(info.files)})")
        return precision
    if on_cuda and "fp16" in info.files:
        return "fp16"
    if not on_cuda and info.faithful("int8"):
        return "int8"
    if "fp32" in info.files:
        return "fp32"
    raise ModelError(f"no usable precision in the manifest (have: {', '.join(info.files)})")


def load_embedder(
    model_dir: str | Path,
    precision: str = "auto",
    providers: Iterable[str] | None = None,
    *,
    model_id: str | None = None,
    max_tokens: int | None = None,
    threads: int | None = None,
    token_budget: int | None = None,
    verify: bool = True,
    cuda_sessions: int = 2,
    tokenizer_engine: str = "auto",
) -> Embedder:
    """Load a model directory written by the exporter; refuse with a clear ModelError on any mismatch."""
    model_dir = Path(model_dir)
    info = ModelManifest.read(model_dir)
    if model_id is not None:
        check_model_id(info, model_id, model_dir)
    wanted = list(providers) if providers is not None else ["CUDAExecutionProvider", "CPUExecutionProvider"]
    use_cuda = "CUDAExecutionProvider" in wanted and cuda_loadable()
    if "CUDAExecutionProvider" in wanted and not use_cuda:
        log.warning("CUDA not available to ONNX Runtime: running on CPU (CPUExecutionProvider)")
    chosen = pick_precision(info, use_cuda, precision)
    entry = info.files[chosen]
    path = verify_file(model_dir, entry) if verify else model_dir / entry.file
    if verify:
        verify_file(model_dir, info.tokenizer)
    session = None
    if use_cuda:
        session = _try_cuda_session(path, threads)
        if session is None and precision == "auto" and chosen == "fp16":
            chosen = pick_precision(info, False, "auto")
            entry = info.files[chosen]
            path = verify_file(model_dir, entry) if verify else model_dir / entry.file
    parallel = 1
    extra: list[Any] = []
    if session is not None:
        # More sessions on the same GPU: each has its own CUDA stream, so runs overlap each other's copies.
        extra = [
            _make_session(path, [("CUDAExecutionProvider", {}), "CPUExecutionProvider"], threads)
            for _ in range(max(1, cuda_sessions) - 1)
        ]
    if session is None:
        # CPU: ``threads`` single-threaded runs side by side (default: one per core).
        parallel = threads or os.cpu_count() or 1
        session = _make_session(path, ["CPUExecutionProvider"], 1)
    _check_dims(session, info)
    embedder = Embedder(
        model_dir,
        info,
        chosen,
        session,
        max_tokens=max_tokens,
        token_budget=token_budget,
        parallel=parallel,
        extra_sessions=extra,
        tokenizer_engine=tokenizer_engine,
    )
    log.info(
        "embedder loaded: model %s, precision %s, provider %s, max tokens %d, tokenizer %s",
        info.model_id,
        chosen,
        embedder.provider,
        embedder.max_tokens,
        embedder.tokenizer.engine,
    )
    return embedder


def _try_cuda_session(path: Path, threads: int | None) -> Any:
    try:
        session = _make_session(path, [("CUDAExecutionProvider", {}), "CPUExecutionProvider"], threads)
    except Exception as exc:  # noqa: BLE001 - a CUDA failure is a fallback, not a crash
        log.warning("CUDA session failed (%r): running ONNX Runtime on CPU", exc)
        return None
    if session.get_providers()[0] != "CUDAExecutionProvider":
        log.warning("CUDA libraries did not load (see onnxruntime's message): running ONNX Runtime on CPU")
        return None
    return session


def _check_dims(session: Any, info: ModelManifest) -> None:
    shape = session.get_outputs()[0].shape
    if len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != info.dims):
        raise ModelError(
            f"model/manifest mismatch: the model outputs shape {shape}, the manifest says {info.dims} dims"
        )
