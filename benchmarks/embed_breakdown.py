"""Where embedding time goes: tokenization alone (in-process Rust threads, or a process pool), inference
alone on pre-tokenized ids (what the embedder does when the parser carries token ids), and end to end.

``python benchmarks/embed_breakdown.py --model-dir DIR [--precision fp16] [--n 16384] [--json]``; needs only
numpy, tokenizers and onnxruntime, like ``bench_embed.py``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

try:  # a CUDA build of torch loads the CUDA libraries onnxruntime-gpu needs
    import torch  # noqa: F401
except ImportError:
    pass

import numpy as np  # noqa: E402

from services.embedder.export import real_abstracts  # noqa: E402
from shared.embedding import load_embedder  # noqa: E402
from shared.text_tokens import _worker_init, _worker_tokenize, load_tokenizer, tokenize  # noqa: E402


def timed(fn, repeats: int = 2) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--n", type=int, default=16384)
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--cuda-sessions", type=int, default=2, help="ONNX Runtime sessions (CUDA streams)")
    parser.add_argument("--tokenizer", default="auto", choices=["auto", "flash", "hf"], help="engine end to end")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    base = real_abstracts()
    texts = [base[i % len(base)] + ("" if i < len(base) else f" [{i // len(base)}]") for i in range(args.n)]
    embedder = load_embedder(
        args.model_dir, args.precision, cuda_sessions=args.cuda_sessions, tokenizer_engine=args.tokenizer
    )
    tok, max_tokens = embedder.tokenizer, embedder.max_tokens
    n = len(texts)
    result: dict[str, object] = {
        "n": n,
        "cores": os.cpu_count(),
        "provider": embedder.provider,
        "precision": embedder.precision,
        "cuda_sessions": len(embedder.sessions) if embedder.on_cuda else 0,
        "tokenizer": embedder.tokenizer.engine,
    }

    chunk = 512
    tokenizer_path = args.model_dir / "tokenizer.json"
    spawn = mp.get_context("spawn")  # never fork a process holding a CUDA context
    for engine in dict.fromkeys(("hf", embedder.tokenizer.engine)):
        os.environ["TOKENIZERS_PARALLELISM"] = "true"
        engine_tok = load_tokenizer(tokenizer_path, max_tokens, engine)
        s, _ = timed(lambda t=engine_tok: tokenize(t, texts, max_tokens))
        result[f"{engine}_tokenize_in_process_texts_per_s"] = round(n / s, 1)
        with ProcessPoolExecutor(
            args.workers, mp_context=spawn, initializer=_worker_init, initargs=(str(tokenizer_path), max_tokens, engine)
        ) as pool:
            list(pool.map(_worker_tokenize, [texts[:64]] * args.workers))  # warm the workers
            parts = [texts[i : i + chunk] for i in range(0, n, chunk)]
            s, _ = timed(lambda p=pool, parts=parts: list(p.map(_worker_tokenize, parts)))
            result[f"{engine}_tokenize_{args.workers}_processes_texts_per_s"] = round(n / s, 1)
    flat, lengths = tokenize(tok, texts, max_tokens)

    embedder.embed_tokens(flat[: int(lengths[:256].sum())], lengths[:256])  # warm-up
    s, vectors = timed(lambda: embedder.embed_tokens(flat, lengths))
    result["infer_pretokenized_texts_per_s"] = round(n / s, 1)
    result["mean_tokens"] = round(float(lengths.mean()), 1)

    embedder.start_tokenizer_pool(args.workers)
    s, again = timed(lambda: embedder.embed_many(texts))
    result["end_to_end_texts_per_s"] = round(n / s, 1)
    result["end_to_end_vs_pretokenized_max_abs_diff"] = float(np.abs(np.asarray(again) - vectors).max())
    embedder.close()
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
