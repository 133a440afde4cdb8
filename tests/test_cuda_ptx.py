"""The CUDA kernels compile for a real GPU (PTX for Hopper, sm_90) with NVIDIA's compiler, which
the simulator never runs: typing errors of the device code show up here without a GPU.
Needs numba-cuda and NVVM/NVRTC (``pip install nvidia-cuda-nvcc-cu12 nvidia-cuda-nvrtc-cu12``)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="module")
def compile_ptx():
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        pytest.skip("the simulator compiles nothing")
    cuda = pytest.importorskip("numba.cuda", reason="numba-cuda is not installed")
    from numba.core import types

    try:
        cuda.compile_ptx(lambda a: None, (types.float32[:],), cc=(9, 0))
    except Exception as exc:  # no NVVM/NVRTC here
        pytest.skip(f"NVIDIA's compiler libraries are not installed ({type(exc).__name__})")
    return cuda.compile_ptx


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_kernels_compile_to_ptx(compile_ptx, dtype):
    from numba.core import types

    from numbaconv.cuda import depthwise, epilogue, gemm

    scalar = getattr(types, dtype)
    array, vector = types.Array(scalar, 4, "A"), types.Array(scalar, 1, "A")
    for function, integers in ((gemm.KERNELS[dtype], 8), (depthwise.KERNELS[dtype], 10)):
        ptx, _ = compile_ptx(function.py_func, (array, array, vector, array) + (types.int64,) * integers, cc=(9, 0))
        assert ".entry" in ptx
    ptx, _ = compile_ptx(epilogue.pad_copy.py_func, (array, array) + (types.int64,) * 3, cc=(9, 0))
    assert ".entry" in ptx
    index = types.Array(types.int64, 1, "A")
    ptx, _ = compile_ptx(epilogue.gather_copy.py_func, (array, array, index, index), cc=(9, 0))
    assert ".entry" in ptx
