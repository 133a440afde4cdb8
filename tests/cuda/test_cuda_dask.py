"""numbaconv.dask on CuPy-backed Dask arrays: the CUDA kernels run on the blocks, CuPy comes back (a real GPU:
CuPy is not simulated)."""

from __future__ import annotations

import numpy as np
import pytest

import numbaconv

cupy = pytest.importorskip("cupy", reason="CuPy is not installed")
da = pytest.importorskip("dask.array", reason="the dask extra is not installed")
pytestmark = pytest.mark.cuda

import numbaconv.dask as nd  # noqa: E402


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_cupy_backed_dask_arrays_run_the_cuda_kernels(rng, layout):
    if not cupy.is_available():
        pytest.skip("no CUDA device for CuPy")
    x = rng.standard_normal((2, 6, 21, 17)).astype(np.float32)
    if layout == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    w = rng.standard_normal((6, 2, 3, 3)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    chunks = (1, 6, 8, 9) if layout == "NCHW" else (1, 8, 9, 6)
    kwargs = dict(stride=2, padding=(1, 2), groups=3, padding_mode="reflect", activation="relu", layout=layout)
    lazy = nd.conv2d(da.from_array(cupy.asarray(x), chunks=chunks, asarray=False), w, b, **kwargs)
    assert isinstance(lazy._meta, cupy.ndarray)
    got = lazy.compute(scheduler="threads")
    assert isinstance(got, cupy.ndarray)
    expected = numbaconv.conv2d(x, w, b, **kwargs)
    np.testing.assert_allclose(cupy.asnumpy(got), expected, rtol=1e-5, atol=1e-5)
