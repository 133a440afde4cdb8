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


def test_cupy_windows_of_every_kind(rng):
    """The windows' copies on CuPy blocks: zeros of zero padding, replicate/circular borders, a stride-5 1x1
    and a dilation of a million (windows of the taps' positions only, gathered), and a separable layer."""
    if not cupy.is_available():
        pytest.skip("no CUDA device for CuPy")
    x = rng.standard_normal((2, 4, 23, 19)).astype(np.float32)
    lazy = da.from_array(cupy.asarray(x), chunks=(1, 4, 7, 20), asarray=False)
    cases = [(rng.standard_normal((4, 1, 3, 3)).astype(np.float32), dict(padding=2, groups=4)),
             (rng.standard_normal((4, 1, 3, 3)).astype(np.float32), dict(padding=1, groups=4,
                                                                         padding_mode="circular")),
             (rng.standard_normal((5, 4, 1, 1)).astype(np.float32), dict(stride=5)),
             (rng.standard_normal((4, 1, 3, 3)).astype(np.float32), dict(padding=10**6, dilation=10**6,
                                                                         groups=4))]
    for w, kwargs in cases:
        got = nd.conv2d(lazy, w, **kwargs).compute(scheduler="threads")
        assert isinstance(got, cupy.ndarray)
        np.testing.assert_allclose(cupy.asnumpy(got), numbaconv.conv2d(x, w, **kwargs), rtol=1e-5, atol=1e-5)
    dw = rng.standard_normal((4, 1, 3, 3)).astype(np.float32)
    pw = rng.standard_normal((6, 4, 1, 1)).astype(np.float32)
    got = nd.separable_conv2d(lazy, dw, pw, padding=1, padding_mode="replicate").compute(scheduler="threads")
    np.testing.assert_allclose(cupy.asnumpy(got), numbaconv.separable_conv2d(x, dw, pw, padding=1,
                                                                             padding_mode="replicate"),
                               rtol=1e-5, atol=1e-5)
