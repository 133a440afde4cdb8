#!/usr/bin/env bash
# The lean CUDA launch (numbaconv/cuda/fastlaunch.py) on a GPU machine, in one command: the CUDA tests with it,
# then the host time per call (benchmarks/gpu_host_profile.py) and numbaconv bench --device cuda on the default
# suite at batch 1, each with the lean launch off (NUMBACONV_CUDA_FAST_LAUNCH=0) and on, side by side.
# Usage: benchmarks/gpu_fastlaunch_check.sh OUTDIR   (writes log.txt, bench-b1-numba.json, bench-b1-lean.json)
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: gpu_fastlaunch_check.sh OUTDIR}"
mkdir -p "$out"
log="$out/log.txt"
source benchmarks/gpu_env.sh >> "$log"
step 20 environment bash -c 'nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; date -u
    python3 -m pip list 2>/dev/null | grep -iE "^(numba|numba-cuda|cuda-core|numpy|torch) "'
step 170 tests python3 -m pytest -q -p no:cacheprovider -m cuda tests/cuda -x
for mode in numba lean; do
    flag=$([ "$mode" = lean ] && echo 1 || echo 0)
    step 60 "host-$mode" env NUMBACONV_CUDA_FAST_LAUNCH=$flag python3 benchmarks/gpu_host_profile.py --calls 300
    step 90 "bench-b1-$mode" env NUMBACONV_CUDA_FAST_LAUNCH=$flag python3 -m numbaconv bench --device cuda \
        --suite default --batch 1 --gap-rounds 0 --json "$out/bench-b1-$mode.json"
done
grep -E "===|passed|failed|error|us per call|empty kernel" "$log" | tail -30
