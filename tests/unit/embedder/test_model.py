"""The exported model against the reference (sentence-transformers on the same weights), the manifest
guarding against mismatches, the export's idempotence, and the CLI commands."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from paperwire.cli import app as paperwire_cli
from services.embedder.export import bundled_model_dir, export_model, real_abstracts
from services.embedder.model import check_model
from services.embedder.settings import EmbedderSettings
from shared.embedding import load_embedder
from shared.model_files import ModelError, ModelManifest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return real_abstracts(40)


@pytest.fixture(scope="module")
def reference(texts: list[str]) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(bundled_model_dir()), device="cpu")
    assert model.max_seq_length == 256
    return model.encode(texts, batch_size=16, normalize_embeddings=True)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_fp32_matches_sentence_transformers(model_dir: Path, texts: list[str], reference: np.ndarray) -> None:
    embedder = load_embedder(model_dir, "fp32", providers=["CPUExecutionProvider"])
    vectors = embedder.embed(texts)
    assert vectors.shape == (40, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert cosines(vectors, reference).min() >= 0.9999


def test_int8_is_faithful_and_auto_picks_it_on_cpu(model_dir: Path, texts: list[str], reference: np.ndarray) -> None:
    embedder = load_embedder(model_dir, "auto", providers=["CPUExecutionProvider"])
    assert embedder.precision == "int8" and embedder.provider == "CPUExecutionProvider"
    cos = cosines(embedder.embed(texts), reference)
    assert cos.min() >= 0.98 and cos.mean() >= 0.99
    info = ModelManifest.read(model_dir)
    assert info.files["int8"].min_cosine >= 0.98  # measured at export, on real abstracts
    manifest = embedder.manifest
    assert (manifest.model_id, manifest.dims, manifest.max_tokens, manifest.precision) == (
        "sentence-transformers/all-MiniLM-L6-v2",
        384,
        256,
        "int8",
    )
    assert manifest.sha256 == info.files["int8"].sha256


def test_embed_many_overlapped_equals_embed(model_dir: Path, texts: list[str]) -> None:
    """Chunks tokenized in a thread while the model runs come back in input order (fp32: batching changes
    only float rounding; int8's dynamic activation scales depend on the batch, so it is not compared here)."""
    embedder = load_embedder(model_dir, "fp32", providers=["CPUExecutionProvider"], token_budget=1024)
    many, one = embedder.embed_many(texts, chunk=7), embedder.embed(texts)
    assert cosines(many, one).min() > 0.99999
    assert cosines(many[::-1], one).max() < 0.99


def test_on_cpu_a_short_texts_vector_does_not_depend_on_its_neighbours(model_dir: Path) -> None:
    """int8's activation scales are per run: short texts sharing one padded run changed each other's vectors
    (cosine 0.99). On CPU every text runs alone, so a vector is the same in any batch."""
    embedder = load_embedder(model_dir, "int8", providers=["CPUExecutionProvider"], threads=2)
    a = "Graph neural networks for molecule property prediction. We study message passing."
    neighbours = [
        "Short title. A longer abstract about transformers, attention, scaling laws and optimisation.",
        "Tiny.",
        "Diffusion models for audio. We denoise.",
    ]
    alone = embedder.embed([a])[0]
    together = embedder.embed([neighbours[0], a, *neighbours[1:]])
    np.testing.assert_array_equal(together[1], alone)
    np.testing.assert_array_equal(embedder.embed_many([neighbours[1], a])[1], alone)
    np.testing.assert_array_equal(together[0], embedder.embed([neighbours[0]])[0])


def test_tokenizer_processes_feed_the_model_in_order(model_dir: Path) -> None:
    """The GPU path on CPU: 2 processes, 200-text chunks each tokenized as two 100-text pieces and joined again
    (300 texts: a chunk of two pieces, then one of one): same vectors, same order."""
    texts = real_abstracts(300)
    embedder = load_embedder(model_dir, "fp32", providers=["CPUExecutionProvider"], token_budget=2048)
    embedder.start_tokenizer_pool(2)
    try:
        many = embedder.embed_many(texts, chunk=200)
    finally:
        embedder.close()
    one = embedder.embed(texts)
    assert embedder.stats.texts >= 300
    assert cosines(many, one).min() > 0.99999
    assert cosines(many[::-1], one).max() < 0.99  # order kept, not just the same set


def _copy_model(model_dir: Path, dest: Path) -> Path:
    dest.mkdir()
    for path in model_dir.iterdir():
        if path.name == "manifest.json":
            shutil.copyfile(path, dest / path.name)
        else:
            (dest / path.name).symlink_to(path.resolve())
    return dest


def test_a_changed_model_file_refuses_to_load(model_dir: Path, tmp_path: Path) -> None:
    copy = _copy_model(model_dir, tmp_path / "m")
    raw = json.loads((copy / "manifest.json").read_text())
    raw["files"]["fp32"]["sha256"] = "0" * 64
    (copy / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ModelError, match=r"model/manifest mismatch: .*model.fp32.onnx has sha256"):
        load_embedder(copy, "fp32", providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("corrupt", ["int8", "tokenizer"])
def test_a_corrupt_file_refuses_to_start(model_dir: Path, tmp_path: Path, corrupt: str) -> None:
    """One flipped byte in the chosen precision's model or in the tokenizer: the service does not start (before,
    it started and every batch failed into the dead letters)."""
    copy = _copy_model(model_dir, tmp_path / "m")
    info = ModelManifest.read(copy)
    name = info.tokenizer.file if corrupt == "tokenizer" else info.files[corrupt].file
    data = bytearray((copy / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / name).unlink()  # a symlink to the shared export: replace it, never write through it
    (copy / name).write_bytes(bytes(data))
    settings = EmbedderSettings(model_dir=copy, device="cpu", precision="int8")
    with pytest.raises(ModelError, match=rf"model/manifest mismatch: .*{name} has sha256 .*re-export"):
        check_model(settings)
    check_model(settings.model_copy(update={"model_dir": model_dir}))


def test_a_different_model_id_refuses_to_start(model_dir: Path) -> None:
    settings = EmbedderSettings(model_dir=model_dir, model_id="BAAI/bge-small-en-v1.5", device="cpu")
    with pytest.raises(ModelError, match="PAPERWIRE_MODEL_ID is 'BAAI/bge-small-en-v1.5' but .* holds"):
        check_model(settings)
    with pytest.raises(ModelError, match="PAPERWIRE_MODEL_ID is 'BAAI"):
        load_embedder(model_dir, providers=["CPUExecutionProvider"], model_id="BAAI/bge-small-en-v1.5")
    assert check_model(settings.model_copy(update={"model_id": "sentence-transformers/all-MiniLM-L6-v2"}))


def test_missing_model_says_how_to_export(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="paperwire model export"):
        check_model(EmbedderSettings(model_dir=tmp_path, device="cpu"))


def test_export_again_is_a_no_op(model_dir: Path) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in model_dir.iterdir()}
    manifest = export_model(out=model_dir)
    assert {p.name: p.stat().st_mtime_ns for p in model_dir.iterdir()} == before
    assert set(manifest.files) == {"fp32", "fp16", "int8"}


def test_cli_model_export_reports_the_files(model_dir: Path) -> None:
    result = CliRunner().invoke(paperwire_cli, ["model", "export", "--out", str(model_dir)])
    assert result.exit_code == 0, result.output
    assert "int8: model.int8.onnx sha256" in result.output and "min cosine to fp32 0.9" in result.output
    bad = CliRunner().invoke(paperwire_cli, ["model", "export", "--out", str(model_dir), "--precision", "fp8"])
    assert bad.exit_code == 2 and "unknown precision" in bad.output


def test_cli_bench_embed_json(model_dir: Path) -> None:
    result = CliRunner().invoke(paperwire_cli, ["bench", "embed", "--n", "12", "--json", "--model-dir", str(model_dir)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # the logs (JSON lines too) go to stderr
    assert report["n"] == 12 and report["precision"] == "int8"
    assert report["baseline"].startswith("sentence-transformers fp32 cpu")
    assert report["min_cosine"] >= 0.98 and report["paperwire_texts_per_s"] > 0 and report["ratio"] > 0
    # from carried ids: the same vectors (same ids, same runs), and a parser-side rate per core
    assert report["from_ids_vs_text_max_abs_diff"] == 0.0
    assert report["from_ids_min_cosine"] == report["min_cosine"]
    assert report["from_ids_texts_per_s"] > 0 and report["parser_tokenize_per_core_texts_per_s"] > 0
    assert report["parser_cores_to_feed"] > 0


def test_bench_replicas_share_the_texts_and_report_the_aggregate(model_dir: Path) -> None:
    """`bench_embed.py --replicas 2`: two embedder processes, each with its tokenizer process, on half the texts."""
    from services.embedder.bench import run_replicas

    report = run_replicas(20, 2, "fp32", model_dir=model_dir, workers=1, repeats=1)
    assert report["replicas"] == 2 and report["provider"] == "CPUExecutionProvider"
    # the aggregate is all texts over the wall time (not a sum of per-replica rates); both fields are rounded
    assert report["paperwire_texts_per_s"] > 0
    assert abs(report["paperwire_texts_per_s"] / (20 / report["paperwire_s"]) - 1) < 0.01
    assert report["from_ids_texts_per_s"] > 0


def test_batch_without_carried_ids_is_tokenized_across_the_tokenizer_processes(model_dir: Path) -> None:
    """A service batch whose events carry no ids: spread over the processes, same ids in the same order."""
    from services.embedder.export import real_abstracts
    from shared.text_tokens import tokenize

    texts = real_abstracts(300)
    embedder = load_embedder(model_dir, "fp32", providers=["CPUExecutionProvider"])
    expected_flat, expected_lengths = tokenize(embedder.tokenizer, texts, embedder.max_tokens)
    embedder.start_tokenizer_pool(2)
    embedder.tokenizer = None  # in-process tokenizing would now fail: only the processes can do it
    try:
        flat, lengths = embedder.tokens_for(texts, [None] * len(texts))
        carried = [None if i % 3 else np.array([101, 7592, 102], dtype=np.int32) for i in range(len(texts))]
        mixed_flat, mixed_lengths = embedder.tokens_for(texts, carried)
    finally:
        embedder.close()
    assert np.array_equal(lengths, expected_lengths) and np.array_equal(flat, expected_flat)
    assert mixed_lengths[0] == 3 and np.array_equal(mixed_lengths[1:3], expected_lengths[1:3])
    assert mixed_flat[:3].tolist() == [101, 7592, 102]
