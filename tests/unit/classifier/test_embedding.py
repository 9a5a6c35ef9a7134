"""The classifier embeds interest texts with the exported ONNX model its own settings name."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from services.classifier import embedding
from shared.model_files import ModelError
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
    model = embedding.configured_model()
    assert model.model_dir == model_dir
    vectors = embedding._load(model)(["graph neural networks for molecules"])
    assert vectors.shape == (1, embedding.DIMS)


def _other_export(exported: Path, folder: Path, model_id: str) -> Path:
    """A copy of the export whose manifest names another model (and other fp32 weights)."""
    manifest = json.loads((exported / "manifest.json").read_text())
    manifest["model_id"] = model_id
    manifest["files"]["fp32"]["sha256"] = "0" * 64
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_the_classifier_compares_vectors_in_the_exported_models_space(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """It was the constant MiniLM space: pointed at another export (as the embedder was), the classifier skipped
    every embedded paper as "other_vector_space"."""
    exported = exported_model_dir(tmp_path_factory)
    assert embedding.text_model(exported).space == "sentence-transformers/all-MiniLM-L6-v2:384"
    other = _other_export(exported, tmp_path / "e5", "intfloat/e5-small-v2")
    assert embedding.text_model(other, "intfloat/e5-small-v2").space == "intfloat/e5-small-v2:384"
    no_export = embedding.text_model(tmp_path / "none")  # the bundled weights, in development
    assert (no_export.space, no_export.model_dir) == ("sentence-transformers/all-MiniLM-L6-v2:384", None)


def test_another_models_export_or_none_refuses_to_start(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """PAPERWIRE_MODEL_ID names the model of every service: the classifier never embeds interests with another one
    (the bundled MiniLM included) than the embedder embeds papers with."""
    exported = exported_model_dir(tmp_path_factory)
    with pytest.raises(ModelError, match="PAPERWIRE_MODEL_ID is 'intfloat/e5-small-v2' but .* holds"):
        embedding.text_model(exported, "intfloat/e5-small-v2")
    with pytest.raises(ModelError, match="no export of PAPERWIRE_MODEL_ID 'intfloat/e5-small-v2'"):
        embedding.text_model(tmp_path / "none", "intfloat/e5-small-v2")
