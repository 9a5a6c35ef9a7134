"""The classifier embeds interest texts with the exported ONNX model its own settings name."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from services.classifier import embedding
from tests.unit.embedder.model_cache import exported_model_dir


def test_classifier_model_dir_is_the_model_it_loads(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir = exported_model_dir(tmp_path_factory)
    monkeypatch.delenv("PAPERWIRE_MODEL_DIR", raising=False)
    monkeypatch.setenv("CLASSIFIER_MODEL_DIR", str(model_dir))
    monkeypatch.setenv("PAPERWIRE_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)  # no data/models/<id> to find by accident
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # the fallback would raise ImportError
    vectors = embedding._load()(["graph neural networks for molecules"])
    assert vectors.shape == (1, embedding.DIMS)


def test_the_classifier_compares_vectors_in_the_exported_models_space(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """It was the constant MiniLM space: pointed at another export (as the embedder was), the classifier skipped
    every embedded paper as "other_vector_space"."""
    from services.classifier.embedding import vector_space

    exported = exported_model_dir(tmp_path_factory)
    assert vector_space(exported) == "sentence-transformers/all-MiniLM-L6-v2:384"
    manifest = json.loads((exported / "manifest.json").read_text())
    other = tmp_path / "e5"
    other.mkdir()
    (other / "manifest.json").write_text(json.dumps(manifest | {"model_id": "intfloat/e5-small-v2"}))
    assert vector_space(other) == "intfloat/e5-small-v2:384"
    assert vector_space(tmp_path / "none") == "sentence-transformers/all-MiniLM-L6-v2:384"  # no export: bundled
