#!/usr/bin/env bash
# benchmarks/gpu.sh : on a machine with a CUDA GPU, a few TRU unlearning steps on randomly initialised
# Llama-3.2-1B- and Llama-3-8B-shaped models, full and LoRA, bf16; prints tokens/s, MFU, peak memory.
# No download: shapes come from conf/model/*.yaml. Usage: bash benchmarks/gpu.sh [--steps 4 --seq 512]
#   [--checkpointing on|off|both] [--fused-ce off|on|both] [--packing off|on|both] [--batches 4,8,16]
# --fused-ce needs the `gpu` extra: pip install -e '.[gpu]' (Liger Kernel).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
HF_HUB_OFFLINE=1 WANDB_MODE=disabled "$PY" benchmarks/gpu.py --device cuda "$@"
