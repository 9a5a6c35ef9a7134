"""Speed and faithfulness of other dynamic int8 quantizations of the exported model on this CPU (a screen, not a
test): each variant is written to /tmp/int8_variants/<name>, loaded as the service loads int8, and run on 256 real
texts (best of 2); the cosine is against the fp32 ONNX model (0.9999 to sentence-transformers).

    PAPERWIRE_MODEL_DIR=~/.cache/paperwire/models/all-MiniLM-L6-v2 python benchmarks/int8_variants.py base norr u8
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from onnx import TensorProto
from onnxruntime.quantization import QuantType, quantize_dynamic

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.classifier.dataset import load_dataset  # noqa: E402
from shared.embedding import load_embedder  # noqa: E402
from shared.model_files import default_model_dir  # noqa: E402

SHIPPED = {"weight_type": QuantType.QInt8, "per_channel": True, "reduce_range": True}  # services/embedder/export.py
VARIANTS: dict[str, dict[str, object]] = {
    "base": {},
    "norr": {"reduce_range": False},
    "u8": {"weight_type": QuantType.QUInt8},
    "mmonly": {"op_types_to_quantize": ["MatMul"]},
    "attonly": {"op_types_to_quantize": ["Attention"]},
}


def measure(name: str, source: Path, texts: list[str], reference: np.ndarray) -> tuple[float, float]:
    """Texts/s (best of 2) and the minimum cosine to ``reference`` of one quantization variant."""
    folder = Path("/tmp/int8_variants") / name
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(source, folder)
    options = SHIPPED | VARIANTS[name] | {"extra_options": {"DefaultTensorType": TensorProto.FLOAT}}
    quantize_dynamic(str(source / "model.fp32.onnx"), str(folder / "model.int8.onnx"), **options)
    embedder = load_embedder(folder, "int8", ["CPUExecutionProvider"], verify=False)
    embedder.embed(texts[:16])
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        out = embedder.embed(texts)
        best = min(best, time.perf_counter() - start)
    cosines = np.sum(out * reference, 1) / np.linalg.norm(out, axis=1) / np.linalg.norm(reference, axis=1)
    return len(texts) / best, float(cosines.min())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("variants", nargs="+", choices=sorted(VARIANTS))
    parser.add_argument(
        "--model-dir", type=Path, default=Path(os.environ.get("PAPERWIRE_MODEL_DIR") or default_model_dir())
    )
    args = parser.parse_args()
    papers = load_dataset(Path("tests/fixtures/labeled/daily_arxiv_ai_enhanced"))[:256]
    texts = [p.text for p in papers]
    reference = load_embedder(args.model_dir, "fp32", ["CPUExecutionProvider"]).embed(texts)
    for name in args.variants:
        rate, min_cosine = measure(name, args.model_dir, texts, reference)
        print(f"{name:8s} {rate:6.1f} texts/s  min cosine {min_cosine:.5f}", flush=True)


if __name__ == "__main__":
    main()
