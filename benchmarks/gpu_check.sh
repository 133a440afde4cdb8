#!/usr/bin/env bash
# A short GPU re-check after a kernel change, in one command of about 4 minutes (each step under its
# own time limit): the CUDA tests at full size, kernel times with CUDA events beside cuDNN/cuBLAS at
# batch 1 and 32, Nsight Compute on numbaconv's own kernels at batch 1, numbaconv bench at batch 1.
# Usage: benchmarks/gpu_check.sh OUTDIR   (writes log.txt, kernels.json, ncu.csv, bench-b1.json there)
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: gpu_check.sh OUTDIR}"
mkdir -p "$out"
log="$out/log.txt"
source benchmarks/gpu_env.sh >> "$log"
step 10 environment bash -c 'nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv; date -u'
step 80 tests python3 -m pytest -q -p no:cacheprovider -m cuda tests/cuda tests/test_torch_bridge.py
step 70 kernels python3 benchmarks/gpu_kernels.py --suite default --batch 1,32 --time --json "$out/kernels.json"
step 50 ncu bash -c "ncu --clock-control none --profile-from-start off --csv --section SpeedOfLight \
    --section Occupancy --section LaunchStats python3 benchmarks/gpu_kernels.py --suite default --batch 1 --ncu \
    --only numbaconv > '$out/ncu.csv' 2>&1"
step 30 bench-b1 python3 -m numbaconv bench --device cuda --suite default --batch 1 --json "$out/bench-b1.json"
grep -E "passed|failed" "$log" | tail -2
