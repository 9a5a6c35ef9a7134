"""The on-disk model contract: what a model directory written by ``paperwire model export`` holds.

``manifest.json`` names the vector space (model id, dims, max_tokens) and the sha256 of every file; the exporter
writes it, and every service that loads the model (embedder, parser, classifier) reads and checks it here before
using a file, refusing another model or a changed file. Kept apart from the runtime so the exporter and the
services' start-up checks need neither ONNX Runtime nor a tokenizer.

Importable with only the standard library (the benchmark runs on bare GPU hosts): the on-disk manifest is a plain
dataclass, not the pydantic ``EmbeddingManifest`` events carry.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

MANIFEST_NAME = "manifest.json"
DEFAULT_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
PRECISIONS = ("fp32", "fp16", "int8")
MIN_FAITHFUL_COSINE = 0.98


def default_model_dir(model_id: str = DEFAULT_MODEL_ID, data_dir: Path | None = None) -> Path:
    """Where ``paperwire model export`` writes and the services look: PAPERWIRE_MODEL_DIR, else
    <PAPERWIRE_DATA_DIR>/models/<id> (``data/models/<id>`` by default)."""
    env = os.environ.get("PAPERWIRE_MODEL_DIR")
    if env:
        return Path(env)
    return Path(data_dir or os.environ.get("PAPERWIRE_DATA_DIR") or "data") / "models" / model_id


class ModelError(RuntimeError):
    """The model directory cannot be used: missing files, hash or manifest mismatch. Refuse to start."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class ModelFile:
    file: str
    sha256: str
    min_cosine: float | None = None  # measured against the fp32 reference on real abstracts at export
    mean_cosine: float | None = None


@dataclass
class ModelManifest:
    """What ``manifest.json`` in a model directory says: identity of the vector space plus file hashes."""

    model_id: str
    dims: int
    max_tokens: int
    tokenizer: ModelFile
    files: dict[str, ModelFile] = field(default_factory=dict)
    source_sha256: str = ""
    exporter_version: int = 1

    @classmethod
    def read(cls, model_dir: Path) -> ModelManifest:
        path = Path(model_dir) / MANIFEST_NAME
        if not path.is_file():
            raise ModelError(f"no {MANIFEST_NAME} in {model_dir}: run `paperwire model export --out {model_dir}`")
        try:
            raw = json.loads(path.read_text())
            return cls(
                model_id=raw["model_id"],
                dims=int(raw["dims"]),
                max_tokens=int(raw["max_tokens"]),
                tokenizer=ModelFile(**raw["tokenizer"]),
                files={k: ModelFile(**v) for k, v in raw.get("files", {}).items()},
                source_sha256=raw.get("source_sha256", ""),
                exporter_version=int(raw.get("exporter_version", 1)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"unreadable {path}: {exc!r}") from exc

    def write(self, model_dir: Path) -> None:
        path = Path(model_dir) / MANIFEST_NAME
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
        tmp.replace(path)

    def faithful(self, precision: str) -> bool:
        entry = self.files.get(precision)
        if entry is None:
            return False
        return precision != "int8" or (entry.min_cosine is not None and entry.min_cosine >= MIN_FAITHFUL_COSINE)


def check_model_id(info: ModelManifest, model_id: str, model_dir: Path) -> None:
    """Every service that uses the model refuses another one: vectors of two models must never be compared."""
    if info.model_id != model_id:
        raise ModelError(
            f"model/manifest mismatch: PAPERWIRE_MODEL_ID is {model_id!r} but {model_dir} holds {info.model_id!r}; "
            f"export it (`paperwire model export --model-dir <its sentence-transformers directory>`) or set "
            f"PAPERWIRE_MODEL_DIR to its export"
        )


def verify_file(model_dir: Path, entry: ModelFile) -> Path:
    path = Path(model_dir) / entry.file
    if not path.is_file():
        raise ModelError(f"model file {path} named in the manifest is missing")
    actual = sha256_file(path)
    if actual != entry.sha256:
        raise ModelError(
            f"model/manifest mismatch: {path} has sha256 {actual[:12]}..., the manifest says "
            f"{entry.sha256[:12]}...; re-export the model (`paperwire model export`)"
        )
    return path


def pick_precision(info: ModelManifest, on_cuda: bool, precision: str = "auto") -> str:
    """``auto``: fp16 on CUDA; on CPU int8 when the export measured it faithful, else fp32."""
    if precision != "auto":
        if precision not in info.files:
            raise ModelError(f"precision {precision!r} was not exported (have: {', '.join(info.files)})")
        return precision
    if on_cuda and "fp16" in info.files:
        return "fp16"
    if not on_cuda and info.faithful("int8"):
        return "int8"
    if "fp32" in info.files:
        return "fp32"
    raise ModelError(f"no usable precision in the manifest (have: {', '.join(info.files)})")
