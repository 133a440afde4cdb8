"""No kernel reads or writes out of bounds: the kernel tests rerun with Numba's bounds checking on.

The kernels index flat arrays with unchecked unsigned offsets (for speed), so this is the test
that their index arithmetic stays inside every array: in a subprocess with NUMBA_BOUNDSCHECK=1 (at
NUMBA_OPT=0: the same checks, compiled faster) and a private cache (so the kernels are compiled afresh
with the checks), the grid, hypothesis and golden tests run again, and a deliberately inconsistent
direct kernel call must raise."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

TESTS = pathlib.Path(__file__).resolve().parent

CANARY = """
import numpy as np
from numbaconv.cpu.grouped import grouped_conv_nchw, pack_weights
x = np.zeros((1, 1, 5, 1, 4), np.float32)  # a prepared 4x4 input (+1 slack row) ...
out = np.zeros((1, 1, 6, 6), np.float32)   # ... asked for a 6x6 result of a 3x3 kernel: reads past x
try:
    grouped_conv_nchw.parallel(x, pack_weights(np.ones((1, 1, 3, 3), np.float32), 1), np.zeros(1, np.float32),
                               out, 1, 3, 3, 1, 1, 1, 1, 1, 36, 0)
except IndexError:
    print("bounds checked")
except SystemError as error:  # inside prange, Numba re-raises the IndexError as the cause of a SystemError
    if isinstance(error.__cause__, IndexError):
        print("bounds checked")
"""


def run_checked(args, tmp_path):
    # NUMBA_OPT=0: the checks are inserted where each index is lowered, before LLVM's optimisation, so they are
    # the same at every level; level 0 compiles in about half the time (58 against 104 s for this run)
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_OPT="0", NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=TESTS.parent,
                          timeout=1200)


def test_bounds_checking_is_really_on(tmp_path):
    result = run_checked(["-c", CANARY], tmp_path)
    assert result.stdout.strip() == "bounds checked", result.stdout + result.stderr


def test_kernels_stay_in_bounds(tmp_path):
    result = run_checked(["-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", str(TESTS / "test_kernels.py"),
                          str(TESTS / "test_torch_golden.py")], tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " passed" in result.stdout.splitlines()[-1]
