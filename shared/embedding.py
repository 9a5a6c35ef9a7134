"""The embedding runtime both the embedder and the classifier use: ONNX Runtime sessions fed with token ids.

Loads a model directory (checked against its manifest, ``shared.model_files``), tokenizes with
``shared.text_tokens`` and runs the model on CUDA or CPU, returning L2-normalised float32 vectors.

Importable with only numpy, tokenizers and onnxruntime (the benchmark runs on bare GPU hosts), so the
pydantic ``EmbeddingManifest`` is imported lazily.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import io
import logging
import os
import queue
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shared.model_files import ModelError, ModelManifest, check_model_id, pick_precision, verify_file
from shared.text_tokens import _worker_init, _worker_tokenize, load_tokenizer, pad_batch, plan_batches, tokenize

if TYPE_CHECKING:
    from shared.events import EmbeddingManifest

log = logging.getLogger("paperwire.embedding")

SPREAD_MIN_TEXTS = 64  # texts per tokenizer process below which spreading a list costs more than it saves


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
