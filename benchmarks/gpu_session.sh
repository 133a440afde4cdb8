#!/usr/bin/env bash
# One lease of a GPU machine in one command, each step under its own time limit so that whatever
# finished comes back (the device tool returns at most 8 files): the machine and versions, the CUDA
# tests, numbaconv bench --device cuda on the default suite at batch 1 and 32 (as run_gpu.sh), the
# kernel times with CUDA events beside cuDNN and cuBLAS (benchmarks/gpu_kernels.py), and Nsight
# Compute's speed-of-light, occupancy and launch sections for every kernel of the default suite.
# Usage: benchmarks/gpu_session.sh OUTDIR      (writes log.txt, bench-b1.json, bench-b32.json,
#                                               kernels.json, ncu.csv, ncu-b32.csv there)
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: gpu_session.sh OUTDIR}"
mkdir -p "$out"
log="$out/log.txt"
source benchmarks/gpu_env.sh >> "$log"
step 20 environment bash -c 'nvidia-smi; date -u; python3 -m pip list 2>/dev/null |
    grep -iE "^(numba|numba-cuda|llvmlite|numpy|torch|cupy-cuda13x|pytest|hypothesis) "; ncu --version
    python3 -c "import sitecustomize; print(\"sitecustomize:\", sitecustomize.__file__)"'
step 150 tests python3 -m pytest -q -p no:cacheprovider -m cuda tests/cuda tests/test_torch_bridge.py
step 90 bench-b1 python3 -m numbaconv bench --device cuda --suite default --batch 1 --json "$out/bench-b1.json"
step 100 kernels python3 benchmarks/gpu_kernels.py --suite default --batch 1,32 --time --json "$out/kernels.json"
ncu_sections="--section SpeedOfLight --section Occupancy --section LaunchStats"
step 100 ncu bash -c "ncu --clock-control none --profile-from-start off --csv $ncu_sections \
    python3 benchmarks/gpu_kernels.py --suite default --batch 1 --ncu > '$out/ncu.csv' 2>&1"
step 60 ncu-b32 bash -c "ncu --clock-control none --profile-from-start off --csv $ncu_sections \
    python3 benchmarks/gpu_kernels.py --batch 32 --ncu --suite mobilenet_v2/b2_expand,mobilenet_v2/b2_dw,\
resnext50_32x4d/conv2_grouped_x3,xception/middle_sep_pw_x25 > '$out/ncu-b32.csv' 2>&1"
step 80 bench-b32 python3 -m numbaconv bench --device cuda --suite default --batch 32 --quick --repeat 10 \
    --json "$out/bench-b32.json"
grep -E "passed|failed|error" "$log" | tail -3
python3 benchmarks/gpu_kernels.py --summarize-ncu "$out/ncu.csv" "$out/ncu-b32.csv" --csv "$out/ncu-summary.csv"
