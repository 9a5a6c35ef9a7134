"""The classifier embeds interest texts with the exported ONNX model its own settings name."""

from __future__ import annotations

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
