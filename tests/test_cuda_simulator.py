"""Runs tests/cuda under Numba's CUDA simulator in a fresh process (the simulator must be
switched on before numba.cuda is imported), so CI checks the CUDA kernels without a GPU."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


SHARDS = 2  # the simulator's run split so that pytest-xdist spreads it over the cores (tests/conftest.py)


@pytest.mark.parametrize("shard", range(SHARDS))
def test_cuda_kernels_under_the_simulator(shard):
    pytest.importorskip("numba.cuda", reason="numba-cuda is not installed")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", NUMBACONV_TEST_SHARD=f"{shard}/{SHARDS}")
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
                             str(ROOT / "tests" / "cuda")], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and " failed" not in result.stdout
