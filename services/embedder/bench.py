"""``paperwire bench embed``: paperwire's embedder against sentence-transformers on the same real texts.

Runs with numpy, tokenizers and onnxruntime (plus torch, and transformers or sentence-transformers, for
the baseline): no faststream, pydantic or typer, so it runs on a bare GPU host. Both sides are timed
end to end (tokenize + infer) on the same texts after a warm-up; the baseline is sentence-transformers
when importable, else the same math in plain torch + transformers (mean pooling, L2 norm), fp32 on CPU
and fp16 on CUDA (what a user would pick).
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from services.embedder.export import bundled_model_dir, default_out_dir, export_model, real_abstracts
from shared.embedding import load_embedder
from shared.model_files import PRECISIONS
from shared.text_tokens import _worker_init, _worker_time_tokenize


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def bench_texts(n: int) -> list[str]:
    """n real title+abstract texts (the labeled fixtures, repeated in order when n exceeds them)."""
    base = real_abstracts()
    if not base:
        raise SystemExit("no labeled fixtures found under tests/fixtures/labeled: run from the repository")
    return [base[i % len(base)] for i in range(n)]


class Baseline:
    """What a user would run: sentence-transformers, or the same math in torch when it is missing."""

    def __init__(self, src: Path, device: str, max_tokens: int, batch_size: int, impl: str = "auto") -> None:
        import torch

        self.device = device
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.half = device == "cuda"
        try:
            if impl == "torch":
                raise ImportError("torch baseline asked for")
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(str(src), device=device)
            model.max_seq_length = max_tokens
            if self.half:
                model = model.half()
            self.st = model
            self.name = "sentence-transformers"
        except ImportError:
            from transformers import AutoTokenizer

            from services.embedder.export import load_bert

            self.st = None
            self.tokenizer = AutoTokenizer.from_pretrained(str(src))
            model = load_bert(src, "sdpa", torch.float32).to(device).eval()
            self.model = model.half() if self.half else model
            self.name = "torch+transformers (sentence-transformers math)"
        self.name += f" {'fp16' if self.half else 'fp32'} {device}"
        self.torch = torch

    def encode(self, texts: list[str]) -> np.ndarray:
        if self.st is not None:
            return self.st.encode(
                texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True
            ).astype(np.float32)
        torch = self.torch
        out = []
        order = np.argsort([-len(t) for t in texts], kind="stable")  # sentence-transformers sorts too
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                chunk = [texts[i] for i in order[start : start + self.batch_size]]
                enc = self.tokenizer(
                    chunk, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
                ).to(self.device)
                hidden = self.model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled.float(), p=2, dim=1)
                out.append(pooled.cpu().numpy())
        result = np.empty((len(texts), out[0].shape[1]), dtype=np.float32)
        result[order] = np.concatenate(out)
        return result


def ensure_export(model_dir: Path, precision: str) -> float:
    """Export the precisions the bench needs into ``model_dir`` unless already there; seconds it took."""
    started = time.perf_counter()
    export_model(bundled_model_dir(), model_dir, PRECISIONS if precision == "auto" else ("fp32", precision))
    return time.perf_counter() - started


def _timed(fn, *args, **kwargs) -> tuple[Any, float]:  # noqa: ANN001
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - start


def parser_tokenize_rate(tokenizer_path: Path, max_tokens: int, texts: list[str], engine: str = "auto") -> float:
    """Texts/s one parser core tokenizes (a single-threaded tokenizer in its own process, best of 2)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(
        1,
        mp_context=mp.get_context("spawn"),
        initializer=_worker_init,
        initargs=(str(tokenizer_path), max_tokens, engine),
    ) as pool:
        pool.submit(_worker_time_tokenize, texts[:64]).result()
        best = min(pool.submit(_worker_time_tokenize, texts).result() for _ in range(2))
    return len(texts) / best


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def run_bench(
    n: int | None = None,
    precision: str = "auto",
    *,
    model_dir: Path | None = None,
    workers: int | None = None,
    baseline: bool = True,
    baseline_batch: int | None = None,
    token_budget: int | None = None,
    baseline_impl: str = "auto",
    repeats: int | None = None,
    cuda_sessions: int = 2,
    tokenizer_engine: str = "auto",
) -> dict[str, Any]:
    """Embed the same real texts three ways, best of ``repeats`` alternating runs each: paperwire from text
    (tokenize + infer), paperwire from token ids carried in the events (the service path when parsers
    tokenize), and the warmed-up baseline; return throughput, ratios and fidelity."""
    model_dir = Path(model_dir) if model_dir else default_out_dir()
    export_s = ensure_export(model_dir, precision)

    embedder = load_embedder(
        model_dir, precision, token_budget=token_budget, cuda_sessions=cuda_sessions, tokenizer_engine=tokenizer_engine
    )
    on_cuda = embedder.on_cuda
    n = n or (16384 if on_cuda else 256)
    repeats = max(1, repeats or (2 if on_cuda else 1))
    texts = bench_texts(n)
    if workers is None:
        workers = max(1, (os.cpu_count() or 2) - 1) if on_cuda else 0
    embedder.start_tokenizer_pool(workers)
    # What the parsers would carry: ids made ahead (not timed here; their rate per core is measured below).
    flat, lengths = embedder.tokens_for(texts)
    carried = np.split(flat, np.cumsum(lengths)[:-1])
    base = None
    if baseline:
        device = "cuda" if on_cuda else "cpu"
        base = Baseline(
            bundled_model_dir(), device, embedder.max_tokens, baseline_batch or (1024 if on_cuda else 32), baseline_impl
        )
    # Alternating runs, best of each: on a shared machine the load moves between runs.
    ours_s = ids_s = ref_s = float("inf")
    try:
        # Warm-up, both sides alike: CUDA kernels for several batch shapes, ORT arenas, worker processes,
        # torch's allocator and cuDNN/cuBLAS handles (the first baseline call alone cost seconds on the H200).
        warm = texts[: min(n, 3 * (base.batch_size if base else 64), 4096)]
        embedder.embed_many(warm)
        embedder.embed_many(warm, carried=carried[: len(warm)])
        if base is not None:
            base.encode(warm)
        for _ in range(repeats):
            ours, seconds = _timed(embedder.embed_many, texts)
            ours_s = min(ours_s, seconds)
            from_ids, seconds = _timed(embedder.embed_many, texts, carried=carried)
            ids_s = min(ids_s, seconds)
            if base is not None:
                ref, seconds = _timed(base.encode, texts)
                ref_s = min(ref_s, seconds)
    finally:
        embedder.close()
    sample = texts[: min(n, 2048)]
    per_core = parser_tokenize_rate(embedder.tokenizer_path, embedder.max_tokens, sample, embedder.tokenizer.engine)
    per_core_hf = parser_tokenize_rate(embedder.tokenizer_path, embedder.max_tokens, sample, "hf")
    result: dict[str, Any] = {
        "n": n,
        "unique_texts": len(set(texts)),
        "mean_tokens": round(float(lengths.mean()), 1),
        "max_tokens": embedder.max_tokens,
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "gpu": _gpu_name() if on_cuda else None,
        "model_id": embedder.info.model_id,
        "precision": embedder.precision,
        "provider": embedder.provider,
        "tokenizer": embedder.tokenizer.engine,
        "tokenizer_workers": workers,
        "cuda_sessions": len(embedder.sessions) if on_cuda else 0,
        "repeats": repeats,
        "token_budget": embedder.token_budget,
        "export_s": round(export_s, 1),
        "paperwire_s": round(ours_s, 3),
        "paperwire_texts_per_s": round(n / ours_s, 1),
        "from_ids_s": round(ids_s, 3),
        "from_ids_texts_per_s": round(n / ids_s, 1),
        "from_ids_vs_text_max_abs_diff": float(np.abs(from_ids - ours).max()),
        "parser_tokenize_per_core_texts_per_s": round(per_core, 1),
        "hf_tokenize_per_core_texts_per_s": round(per_core_hf, 1),
        "parser_cores_to_feed": round(n / ids_s / per_core, 4),
    }
    if base is not None:
        cos = _cosines(ours, ref)
        cos_ids = _cosines(from_ids, ref)
        result.update(
            {
                "baseline": base.name,
                "baseline_batch": base.batch_size,
                "baseline_s": round(ref_s, 3),
                "baseline_texts_per_s": round(n / ref_s, 1),
                "ratio": round(ref_s / ours_s, 2),
                "ratio_from_ids": round(ref_s / ids_s, 2),
                "min_cosine": round(float(cos.min()), 5),
                "mean_cosine": round(float(cos.mean()), 5),
                "from_ids_min_cosine": round(float(cos_ids.min()), 5),
                "from_ids_mean_cosine": round(float(cos_ids.mean()), 5),
            }
        )
    return result


def _replica(
    index: int,
    replicas: int,
    n: int,
    model_dir: str,
    options: dict[str, Any],
    barrier: Any,
    results: Any,
) -> None:
    """One embedder replica (its own process, CUDA session(s) and tokenizer processes) on its share of the texts.

    Every timed run starts at a barrier shared by all replicas, so the runs overlap as when ``docker compose
    up --scale embedder=R`` puts R replicas on one GPU host."""
    try:
        embedder = load_embedder(
            model_dir,
            options["precision"],
            cuda_sessions=options["cuda_sessions"],
            tokenizer_engine=options["tokenizer_engine"],
            token_budget=options["token_budget"],
        )
        texts = bench_texts(n)[index::replicas]
        embedder.start_tokenizer_pool(options["workers"])
        flat, lengths = embedder.tokens_for(texts)
        carried = np.split(flat, np.cumsum(lengths)[:-1])
        warm = texts[: min(len(texts), 4096)]
        embedder.embed_many(warm)
        embedder.embed_many(warm, carried=carried[: len(warm)])
        for repeat in range(options["repeats"]):
            barrier.wait()
            t0 = time.monotonic()
            embedder.embed_many(texts)
            t1 = time.monotonic()
            barrier.wait()
            t2 = time.monotonic()
            embedder.embed_many(texts, carried=carried)
            t3 = time.monotonic()
            results.put((index, repeat, t0, t1, t2, t3, embedder.provider))
        embedder.close()
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which aborts the barrier
        results.put((index, -1, repr(exc)))
        barrier.abort()


def run_replicas(
    n: int,
    replicas: int,
    precision: str = "auto",
    *,
    model_dir: Path | None = None,
    workers: int | None = None,
    token_budget: int | None = None,
    repeats: int = 2,
    cuda_sessions: int = 1,
    tokenizer_engine: str = "auto",
) -> dict[str, Any]:
    """Aggregate texts/s of ``replicas`` embedder processes sharing one host (and its GPU), from text and from
    carried ids: total texts over the span from the first start to the last finish, best of ``repeats``."""
    import multiprocessing as mp

    model_dir = Path(model_dir) if model_dir else default_out_dir()
    ensure_export(model_dir, precision)
    if workers is None:
        workers = max(1, ((os.cpu_count() or 2) - replicas) // replicas)
    options = {
        "precision": precision,
        "cuda_sessions": cuda_sessions,
        "tokenizer_engine": tokenizer_engine,
        "token_budget": token_budget,
        "workers": workers,
        "repeats": repeats,
    }
    ctx = mp.get_context("spawn")  # never fork a process that may hold a CUDA context
    barrier, results = ctx.Barrier(replicas), ctx.Queue()
    procs = [
        ctx.Process(target=_replica, args=(i, replicas, n, str(model_dir), options, barrier, results))
        for i in range(replicas)
    ]
    for proc in procs:
        proc.start()
    rows: list[tuple] = []
    try:
        while len(rows) < replicas * repeats:
            row = results.get(timeout=600)
            if row[1] == -1:
                raise RuntimeError(f"embedder replica {row[0]} failed: {row[2]}")
            rows.append(row)
    finally:
        for proc in procs:
            proc.join(timeout=60)
            if proc.is_alive():
                proc.terminate()
    text_s = min(max(r[3] for r in rows if r[1] == k) - min(r[2] for r in rows if r[1] == k) for k in range(repeats))
    ids_s = min(max(r[5] for r in rows if r[1] == k) - min(r[4] for r in rows if r[1] == k) for k in range(repeats))
    return {
        "n": n,
        "replicas": replicas,
        "tokenizer_workers_per_replica": workers,
        "cuda_sessions_per_replica": cuda_sessions,
        "provider": rows[0][6],
        "precision": precision,
        "cpu_count": os.cpu_count(),
        "gpu": _gpu_name(),
        "repeats": repeats,
        "paperwire_s": round(text_s, 3),
        "paperwire_texts_per_s": round(n / text_s, 1),
        "from_ids_s": round(ids_s, 3),
        "from_ids_texts_per_s": round(n / ids_s, 1),
    }


def _gpu_name() -> str | None:
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001 - informational only
        return None


def format_result(result: dict[str, Any]) -> str:
    lines = [
        f"texts: {result['n']} real title+abstract ({result['unique_texts']} unique), "
        f"mean {result['mean_tokens']} tokens, max {result['max_tokens']}",
        f"host: {result['cpu']} x{result['cpu_count']}" + (f", GPU {result['gpu']}" if result.get("gpu") else ""),
        f"paperwire: {result['paperwire_texts_per_s']:.1f} texts/s ({result['precision']} on "
        f"{result['provider']}, {result['tokenizer']} tokenizer "
        + (
            f"in {result['tokenizer_workers']} processes"
            if result["tokenizer_workers"]
            else "in the embedder's threads"
        )
        + ", tokenize + infer)",
        f"from ids:  {result['from_ids_texts_per_s']:.1f} texts/s (token ids carried from the parsers; they "
        f"tokenize {result['parser_tokenize_per_core_texts_per_s']:.0f} texts/s per core, so "
        f"{result['parser_cores_to_feed']} parser cores feed this)",
        f"tokenizer: {result['tokenizer']} {result['parser_tokenize_per_core_texts_per_s']:.0f} texts/s per core, "
        f"HF tokenizers {result['hf_tokenize_per_core_texts_per_s']:.0f}",
    ]
    if "baseline" in result:
        lines += [
            f"baseline:  {result['baseline_texts_per_s']:.1f} texts/s ({result['baseline']}, "
            f"batch {result['baseline_batch']})",
            f"ratio:     {result['ratio']:.2f}x from text, {result['ratio_from_ids']:.2f}x from ids",
            f"cosine to baseline: min {result['min_cosine']:.5f}, mean {result['mean_cosine']:.5f}",
            f"cosine from ids:    min {result['from_ids_min_cosine']:.5f}, mean {result['from_ids_mean_cosine']:.5f}",
        ]
    return "\n".join(lines)
