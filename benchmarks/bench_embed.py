"""Standalone embedding benchmark: ``python benchmarks/bench_embed.py [--n N] [--precision P] [--json]``.

Same as ``paperwire bench embed`` but needs only numpy, tokenizers, onnxruntime and torch (+ transformers
or sentence-transformers for the baseline), so it runs on a bare GPU host with the repository copied.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

try:  # before onnxruntime: a CUDA build of torch loads the CUDA libraries onnxruntime-gpu needs
    import torch  # noqa: F401
except ImportError:
    pass

from services.embedder.bench import format_result, run_bench, run_replicas  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=None, help="texts (default 256 on CPU, 16384 on CUDA)")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "int8"])
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--workers", type=int, default=None, help="tokenizer processes (default: cores-1 on CUDA)")
    parser.add_argument("--token-budget", type=int, default=None, help="padded tokens per inference batch")
    parser.add_argument("--baseline-batch", type=int, default=None)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument(
        "--baseline-impl",
        default="auto",
        choices=["auto", "torch"],
        help="torch: same math without sentence-transformers",
    )
    parser.add_argument("--repeats", type=int, default=None, help="alternating runs, best kept (default 2 on CUDA)")
    parser.add_argument("--cuda-sessions", type=int, default=2, help="ONNX Runtime sessions (CUDA streams)")
    parser.add_argument("--tokenizer", default="auto", choices=["auto", "flash", "hf"], help="tokenizer engine")
    parser.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="R > 1: R embedder processes share the host and its GPU (as `--scale embedder=R`); aggregate texts/s, "
        "no baseline; --workers and --cuda-sessions are per replica",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    if args.replicas > 1:
        result = run_replicas(
            args.n or 32768,
            args.replicas,
            args.precision,
            model_dir=args.model_dir,
            workers=args.workers,
            token_budget=args.token_budget,
            repeats=args.repeats or 2,
            cuda_sessions=args.cuda_sessions,
            tokenizer_engine=args.tokenizer,
        )
        print(json.dumps(result, indent=2))
        return 0
    result = run_bench(
        args.n,
        args.precision,
        model_dir=args.model_dir,
        workers=args.workers,
        baseline=not args.no_baseline,
        baseline_batch=args.baseline_batch,
        token_budget=args.token_budget,
        baseline_impl=args.baseline_impl,
        repeats=args.repeats,
        cuda_sessions=args.cuda_sessions,
        tokenizer_engine=args.tokenizer,
    )
    print(json.dumps(result, indent=2) if args.json else format_result(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
