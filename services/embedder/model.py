"""Opening the configured model: a check when the router is built (refuse to start on a mismatch or a file
whose sha256 is not the manifest's), the ONNX session itself on first use (``paperwire run`` builds every
router more than once)."""

from __future__ import annotations

import asyncio
import os

from services.embedder.settings import EmbedderSettings
from shared.embedding import Embedder, cuda_loadable, load_embedder
from shared.model_files import ModelError, ModelManifest, check_model_id, pick_precision, verify_file


def check_model(settings: EmbedderSettings) -> tuple[ModelManifest, bool]:
    """(manifest, on CUDA); raise ModelError with what to do when the model directory does not fit the settings."""
    model_dir = settings.resolved_model_dir()
    info = ModelManifest.read(model_dir)
    check_model_id(info, settings.model_id, model_dir)
    if settings.max_tokens and settings.max_tokens > info.max_tokens:
        raise ModelError(f"EMBEDDER_MAX_TOKENS={settings.max_tokens} exceeds the model's {info.max_tokens}")
    on_cuda = settings.device != "cpu" and cuda_loadable()
    if settings.device == "cuda" and not on_cuda:
        raise ModelError("EMBEDDER_DEVICE=cuda but ONNX Runtime's CUDA provider is not available")
    chosen = pick_precision(info, on_cuda, settings.precision)
    # A corrupt file would pass everything above, then fail every batch into the dead letters: refuse now.
    verify_file(model_dir, info.files[chosen])
    verify_file(model_dir, info.tokenizer)
    return info, on_cuda


def open_embedder(settings: EmbedderSettings) -> Embedder:
    embedder = load_embedder(
        settings.resolved_model_dir(),
        settings.precision,
        settings.providers(),
        model_id=settings.model_id,
        max_tokens=settings.max_tokens,
        threads=settings.threads,
        token_budget=settings.token_budget,
        tokenizer_engine=settings.tokenizer,
    )
    workers = settings.tokenizer_workers
    if workers is None:
        workers = max(1, (os.cpu_count() or 2) - 1) if embedder.on_cuda else 0
    embedder.start_tokenizer_pool(workers)
    return embedder


class LazyEmbedder:
    """Loads once, on the first batch, off the event loop."""

    def __init__(self, settings: EmbedderSettings) -> None:
        self.settings = settings
        self._embedder: Embedder | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> Embedder:
        if self._embedder is None:
            async with self._lock:
                if self._embedder is None:
                    self._embedder = await asyncio.to_thread(open_embedder, self.settings)
        return self._embedder

    def close(self) -> None:
        if self._embedder is not None:
            self._embedder.close()
            self._embedder = None
