#!/usr/bin/env bash
# The whole GPU run in one command, for a machine with an NVIDIA GPU whose image already has
# numba, numba-cuda, numpy and (optional peers) torch with CUDA and CuPy; it installs nothing.
#   1. the CUDA tests for real (pytest -m cuda tests/cuda, and the torch bridge trained on CUDA
#      tensors), when pytest and hypothesis are there;
#   2. numbaconv bench --device cuda on the full suite against torch/cuDNN (TF32 off) and CuPy,
#      written to benchmarks/results/gpu-<device>-<date>.json (+ the roofline PNG with matplotlib).
# Usage: benchmarks/run_gpu.sh [suite] [batch]       (defaults: all 1)
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/gpu_env.sh
suite="${1:-all}"
batch="${2:-1}"
python3 -c "from numba import cuda; assert cuda.is_available(), 'no CUDA device'; print(cuda.get_current_device().name)"
if python3 -c "import pytest, hypothesis" 2>/dev/null; then
    python3 -m pytest -q -p no:cacheprovider -m cuda tests/cuda tests/test_torch_bridge.py
else
    echo "pytest or hypothesis missing: CUDA tests skipped"
fi
slug=$(python3 -c "from numbaconv.bench import _gpu_name; import re; print(re.sub('[^a-z0-9]+', '-', (_gpu_name() or 'gpu').lower()).strip('-'))")
out="benchmarks/results/gpu-${slug}-batch${batch}-$(date +%F)"
plot=()
if python3 -c "import matplotlib" 2>/dev/null; then plot=(--plot "$out-roofline.png"); fi
python3 -m numbaconv bench --device cuda --suite "$suite" --batch "$batch" --json "$out.json" "${plot[@]}"
