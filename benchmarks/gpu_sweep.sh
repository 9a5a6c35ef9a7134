#!/usr/bin/env bash
# GPU sweep: token budget x CUDA sessions for the carried-ids path and from text (no baseline).
set -u
export PYTHONPATH="${ORT_GPU_PATH:-/tmp/ortgpu}:$PWD" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=true
export PAPERWIRE_SOURCE_MODEL_DIR="${PAPERWIRE_SOURCE_MODEL_DIR:-$PWD/.device/srcfp16}" PAPERWIRE_MODEL_DIR=/tmp/pwm
python3 -c "import torch; from services.embedder.export import export_model; export_model(precisions=('fp16',))" >/dev/null 2>&1 || echo export failed
for sessions in 1 2; do
  for budget in 262144 524288 1048576; do
    out=$(timeout 120 python3 benchmarks/bench_embed.py --json --precision fp16 --n 32768 --repeats 2 --no-baseline \
      --cuda-sessions $sessions --token-budget $budget --model-dir /tmp/pwm 2>/dev/null)
    echo "$out" | python3 -c "import json,sys; d=json.load(sys.stdin); print('sessions', $sessions, 'budget', $budget, 'text', d['paperwire_texts_per_s'], 'ids', d.get('from_ids_texts_per_s'))" 2>/dev/null || echo "sessions $sessions budget $budget failed"
  done
done
