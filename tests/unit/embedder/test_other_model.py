"""PAPERWIRE_MODEL_ID: any sentence-transformers BERT directory goes through the same export and runtime, and every
service that uses the model (embedder, parser, classifier) is given it by that one setting.

The other model is a small BERT made here (2 layers, 64 dims, random weights, the bundled tokenizer): nothing can be
downloaded, and what is tested is the path, not the quality of the vectors. The reference is sentence-transformers
loading the same directory."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from paperwire.cli import app as paperwire_cli
from services.classifier.embedding import embed_cached, text_model
from services.classifier.settings import ClassifierSettings
from services.embedder.export import bundled_model_dir, real_abstracts
from services.embedder.model import check_model
from services.embedder.settings import EmbedderSettings
from services.parser.settings import ParserSettings
from services.parser.tokens import open_tokenizer
from shared.embedding import load_embedder
from shared.model_files import ModelManifest
from tests.unit.embedder.model_cache import exported_model_dir

TINY_ID = "paperwire-tests/tiny-bert"


@pytest.fixture(scope="module")
def tiny_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sentence-transformers directory (mean pooling, normalised, 128 tokens) around a small random BERT."""
    import torch
    from transformers import BertConfig, BertModel

    bundled = bundled_model_dir()
    src = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=json.loads((bundled / "config.json").read_text())["vocab_size"],
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(src, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json", "modules.json"):
        shutil.copyfile(bundled / name, src / name)
    (src / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 128, "do_lower_case": False}))
    (src / "1_Pooling").mkdir()
    pooling = json.loads((bundled / "1_Pooling" / "config.json").read_text()) | {"word_embedding_dimension": 64}
    (src / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    return src


@pytest.fixture(scope="module")
def tiny_export(tiny_source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny-export")
    result = CliRunner().invoke(
        paperwire_cli,
        ["model", "export", "--model-dir", str(tiny_source), "--out", str(out), "--precision", "fp32"],
        env={"PAPERWIRE_MODEL_ID": TINY_ID},
    )
    assert result.exit_code == 0, result.output
    return out


def test_another_bert_directory_exports_faithfully(tiny_source: Path, tiny_export: Path) -> None:
    from sentence_transformers import SentenceTransformer

    manifest = ModelManifest.read(tiny_export)
    assert (manifest.model_id, manifest.dims, manifest.max_tokens) == (TINY_ID, 64, 128)
    texts = real_abstracts(24)
    reference = SentenceTransformer(str(tiny_source), device="cpu").encode(texts, normalize_embeddings=True)
    ours = load_embedder(tiny_export, "fp32", ["CPUExecutionProvider"], model_id=TINY_ID).embed(texts)
    assert ours.shape == (24, 64)
    assert float(np.sum(ours * reference, axis=1).min()) >= 0.9999


def test_one_setting_gives_every_service_the_model(
    tiny_export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAPERWIRE_MODEL_ID", TINY_ID)
    monkeypatch.setenv("PAPERWIRE_MODEL_DIR", str(tiny_export))
    monkeypatch.setenv("PAPERWIRE_DATA_DIR", str(tmp_path))
    embedder, parser, classifier = EmbedderSettings(device="cpu"), ParserSettings(), ClassifierSettings()
    assert {embedder.model_id, parser.model_id, classifier.model_id} == {TINY_ID}
    manifest, on_cuda = check_model(embedder)
    assert manifest.model_id == TINY_ID and not on_cuda
    tokenizer = open_tokenizer(True, parser.resolved_model_dir(), parser.max_tokens, model_id=parser.model_id)
    assert tokenizer is not None and tokenizer.max_tokens == 128
    model = text_model(classifier.resolved_model_dir(), classifier.model_id)
    assert model.space == f"{TINY_ID}:64"  # what the embedder stamps on its events: papers are scored, not skipped
    vectors = embed_cached(["graph neural networks for molecules"], tmp_path / "cache.sqlite", model)
    assert vectors.shape == (1, 64)


def test_cached_interest_vectors_belong_to_the_model_that_made_them(
    tiny_export: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The classifier's cache was keyed by the MiniLM constant: after a switch of model, MiniLM's vectors of the
    same interest texts came back."""
    minilm = text_model(exported_model_dir(tmp_path_factory))
    tiny = text_model(tiny_export, TINY_ID)
    cache, texts = tmp_path / "cache.sqlite", ["graph neural networks for molecules", "robot grasping"]
    before = embed_cached(texts, cache, minilm)
    cached = embed_cached(texts, cache, tiny)
    assert before.shape == (2, 384) and cached.shape == (2, 64)
    assert np.allclose(cached, embed_cached(texts, None, tiny), atol=1e-6)
    assert np.array_equal(embed_cached(texts, cache, minilm), before)


def test_the_bundled_model_cannot_be_exported_under_another_id(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        paperwire_cli, ["model", "export", "--out", str(tmp_path)], env={"PAPERWIRE_MODEL_ID": TINY_ID}
    )
    assert result.exit_code == 2
    assert f"the bundled model is sentence-transformers/all-MiniLM-L6-v2, not '{TINY_ID}'" in result.output
    assert not (tmp_path / "manifest.json").exists()
