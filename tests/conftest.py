"""Shared fixtures and THE tolerance of the test suite.

Tolerance (documented once, used by every comparison):

    |got - exact| <= 2 * (K + 2) * eps(dtype) * (|w| (*) |x| + |bias|)     elementwise

where ``exact`` is the NumPy reference evaluated in float64, ``K = C_in/groups * kH * kW``
is the length of each output's sum, ``(*)`` is the same convolution applied to absolute
values, and eps is the unit roundoff of the dtype being tested.  ``(K + 2) * eps * |w||x|``
is the classic worst-case forward-error bound of a K-term dot product plus the bias add
(Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., section 3.1), which
holds for any summation order, FMA or not; the factor 2 covers the fused activation,
whose slope is at most 1.5 (hardswish).  Any indexing mistake (wrong tap, wrong
channel, wrong padding) gives errors of the order of the values themselves, far above
this bound, so the comparison keeps its power to fail.  NaN and +-Inf must match exactly.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import numbaconv
from numbaconv import reference

settings.register_profile(
    "default", deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.register_profile("thorough", deadline=None, max_examples=400, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

DTYPES = [np.float32, np.float64]
# the CPU kernels of the grouped family (each serves every convolution): what tune() times for a grouped layer
GROUPED_KERNELS = {a.name for a in numbaconv.algorithms() if a.device == "cpu" and a.family == "grouped"}


def reference_float64(x, weight, bias=None, **kwargs):
    """The oracle's exact-as-possible answer: every input promoted to float64."""
    def up(a):
        return None if a is None else np.asarray(a, dtype=np.float64)
    kwargs.pop("out", None)
    kwargs.pop("algorithm", None)
    return reference.conv2d(up(x), up(weight), up(bias), **kwargs)


def tolerance(x, weight, bias=None, dtype=np.float32, **kwargs):
    """The elementwise error bound above, in the result's shape."""
    kwargs = {k: v for k, v in kwargs.items() if k not in ("activation", "out", "algorithm")}
    magnitude = reference_float64(np.abs(np.nan_to_num(x, posinf=0, neginf=0)), np.abs(weight),
                                  None if bias is None else np.abs(bias), **kwargs)
    weight = np.asarray(weight)
    reduction = weight.shape[1] * weight.shape[2] * weight.shape[3]
    eps = np.finfo(dtype).eps / 2
    return 2 * (reduction + 2) * eps * magnitude + np.finfo(dtype).tiny


def assert_matches_reference(got, x, weight, bias=None, **kwargs):
    """``got`` equals the float64 reference within :func:`tolerance`; NaN/Inf where it has them."""
    expected = reference_float64(x, weight, bias, **kwargs)
    assert got.shape == expected.shape, f"shape {got.shape} != reference {expected.shape}"
    assert got.dtype == np.asarray(x).dtype, f"dtype {got.dtype} != input dtype {np.asarray(x).dtype}"
    got64 = got.astype(np.float64)
    special = ~np.isfinite(expected)
    assert np.array_equal(np.isnan(got64), np.isnan(expected)), "NaN positions differ from the reference"
    assert np.array_equal(got64[special & ~np.isnan(expected)], expected[special & ~np.isnan(expected)]), \
        "Inf values differ from the reference"
    bound = tolerance(x, weight, bias, dtype=got.dtype, **kwargs)
    finite = ~special
    error = np.abs(got64[finite] - expected[finite])
    excess = error - bound[finite]
    assert excess.size == 0 or excess.max() <= 0, (
        f"max error {error.max():.3e} exceeds the documented bound (worst margin {excess.max():.3e})"
    )


def with_memory_layout(array: np.ndarray, layout: str) -> np.ndarray:
    """The same values as ``array`` held with the given memory layout (never C-contiguous but for 'C')."""
    if layout == "C":
        return np.ascontiguousarray(array)
    if layout == "F":
        return np.asfortranarray(array)
    if layout == "transposed":  # a channels-last buffer seen through an NCHW view
        return np.moveaxis(np.ascontiguousarray(np.moveaxis(array, -3, -1)), -1, -3)
    if layout == "reversed":  # negative strides
        return np.ascontiguousarray(array[..., ::-1, ::-1])[..., ::-1, ::-1]
    if layout == "strided":  # every other element of a larger buffer
        big = np.zeros(array.shape[:-1] + (2 * array.shape[-1],), dtype=array.dtype)
        big[..., ::2] = array
        return big[..., ::2]
    raise ValueError(layout)


MEMORY_LAYOUTS = ["C", "F", "transposed", "reversed", "strided"]


# ---- gradients (tolerance: tests/test_grad.py's docstring) ------------------------------------------
def up(a):
    return np.asarray(a, dtype=np.float64)


def bound(magnitude, terms, dtype):
    return 2 * (terms + 2) * (np.finfo(dtype).eps / 2) * magnitude + np.finfo(dtype).tiny


def check_grads(x, weight, grad_output, layout="NCHW", *, to_device=None, **kwargs):
    """numbaconv's grad input / weight / bias of this problem against the float64 references, with the
    tolerance of test_grad.py's docstring.  ``to_device`` (e.g. numba.cuda.to_device) runs them on
    device copies of the arrays; the results are brought back with ``copy_to_host``."""
    dtype = x.dtype
    move = to_device or (lambda a: a)
    back = (lambda a: a.copy_to_host()) if to_device else (lambda a: a)
    gi = back(numbaconv.conv2d_grad_input(x.shape, move(weight), move(grad_output), layout=layout, **kwargs))
    gw = back(numbaconv.conv2d_grad_weight(move(x), weight.shape, move(grad_output), layout=layout, **kwargs))
    gb = back(numbaconv.conv2d_grad_bias(move(grad_output), layout=layout))
    assert gi.shape == x.shape and gi.dtype == dtype
    assert gw.shape == weight.shape and gw.dtype == dtype
    exact_i = reference.conv2d_grad_input(x.shape, up(weight), up(grad_output), layout=layout, **kwargs)
    size_i = reference.conv2d_grad_input(x.shape, np.abs(up(weight)), np.abs(up(grad_output)), layout=layout, **kwargs)
    exact_w = reference.conv2d_grad_weight(up(x), weight.shape, up(grad_output), layout=layout, **kwargs)
    size_w = reference.conv2d_grad_weight(np.abs(up(x)), weight.shape, np.abs(up(grad_output)), layout=layout,
                                          **kwargs)
    groups = kwargs.get("groups", 1)
    terms_i = 4 * (weight.shape[0] // groups) * weight.shape[2] * weight.shape[3]
    channel_axis = -1 if layout == "NHWC" else -3
    terms_w = max(1, grad_output.size // max(grad_output.shape[channel_axis], 1))
    assert (np.abs(gi - exact_i) <= bound(size_i, terms_i, dtype)).all(), np.abs(gi - exact_i).max()
    assert (np.abs(gw - exact_w) <= bound(size_w, terms_w, dtype)).all(), np.abs(gw - exact_w).max()
    axes = tuple(a for a in range(grad_output.ndim) if a != grad_output.ndim + channel_axis)
    np.testing.assert_allclose(gb, up(grad_output).sum(axis=axes), rtol=10 * np.finfo(dtype).eps,
                               atol=np.finfo(dtype).eps * np.abs(up(grad_output)).sum(axis=axes).max(initial=0))


if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    # Numba's CUDA simulator runs every thread of a block as a Python thread; the threads hand the GIL to each
    # other at barriers and between statements, and CPython's default switch interval (5 ms) leaves the
    # waiting ones idle that long: 0.1 ms ran tests/cuda 4.5x faster (a 50 ms interval, 7x slower).
    sys.setswitchinterval(1e-4)

@pytest.fixture
def rng():
    return np.random.default_rng(20261125)


# The runs in a subprocess, each a minute or more on a cold cache: collected first, so that pytest-xdist hands them
# out at the start and the short tests fill the cores around them (collected last, they ran alone at the end).
LONG_RUNS = ("test_bounds.py::test_kernels_stay_in_bounds", "test_cuda_simulator.py::",
             "test_fuzz.py::")


def pytest_configure(config):
    """Under pytest-xdist, a worker gets one test at a time (``--maxschedchunk 1`` unless given): its default first
    hands each worker a quarter of its share in one block, which put every long run on the first worker."""
    if getattr(config.option, "maxschedchunk", False) is None:
        config.option.maxschedchunk = 1


def pytest_collection_modifyitems(config, items):
    """The long subprocess runs first (`LONG_RUNS`); NUMBACONV_TEST_SHARD=i/n keeps every n-th collected test
    starting at the i-th: the CUDA simulator's run is split into shards that pytest-xdist spreads over the cores
    (``-n auto`` in the README's test command)."""
    items.sort(key=lambda item: not any(name in item.nodeid for name in LONG_RUNS))  # stable: order kept otherwise
    shard = os.environ.get("NUMBACONV_TEST_SHARD")
    if not shard:
        return
    index, count = (int(part) for part in shard.split("/"))
    kept = [item for position, item in enumerate(items) if position % count == index]
    config.hook.pytest_deselected(items=[item for item in items if item not in kept])
    items[:] = kept
