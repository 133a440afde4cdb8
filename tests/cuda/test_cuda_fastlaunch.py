"""numbaconv.cuda.fastlaunch: the lean launch gives Numba's own launch's results, bit for bit, and is taken after
a kernel's first launch (real GPU); its parameter packing follows each overload's argument types (anywhere)."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from numbaconv import cuda as numbaconv_cuda

pytestmark = pytest.mark.cuda


def test_scalars_are_packed_as_the_overloads_types():
    from numba.cuda import types

    from numbaconv.cuda import fastlaunch

    class Overload:
        argument_types = (types.Array(types.float32, 4, "C"), types.int64, types.int32, types.uint8, types.float32,
                          types.float64)

    assert fastlaunch._packers(Overload, types) == (None, ctypes.c_int64, ctypes.c_int32, ctypes.c_uint8,
                                                    ctypes.c_float, ctypes.c_double)
    Overload.argument_types = (types.boolean,)  # a type this path leaves to Numba
    assert fastlaunch._packers(Overload, types) is None


@pytest.mark.skipif(numbaconv_cuda.simulated() or not numbaconv_cuda.available(), reason="a real GPU only")
@pytest.mark.parametrize("case", [
    ((1, 32, 14, 14), (64, 32, 1, 1), {}),                                            # pointwise
    ((1, 64, 7, 7), (512, 64, 1, 1), {}),                                             # split-K: two kernels
    ((2, 16, 15, 13), (16, 1, 3, 3), dict(groups=16, padding=1, stride=2)),           # depthwise
    ((1, 12, 9, 9), (12, 4, 3, 3), dict(groups=3, padding=1, padding_mode="reflect")),  # grouped, pad_copy first
])
def test_the_lean_launch_equals_numbas(rng, case):
    from numba import cuda

    import numbaconv
    from numbaconv.cuda import fastlaunch

    shape, weight_shape, kwargs = case
    x = cuda.to_device(rng.standard_normal(shape).astype(np.float32))
    w = cuda.to_device(rng.standard_normal(weight_shape).astype(np.float32))
    b = cuda.to_device(rng.standard_normal(weight_shape[0]).astype(np.float32))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fastlaunch, "ENABLED", False)
        expected = numbaconv.conv2d(x, w, b, **kwargs).copy_to_host()
    numbaconv.conv2d(x, w, b, **kwargs)  # the first launch of each kernel with these types: Numba's, observed
    calls = []
    original = fastlaunch._parts()[0]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fastlaunch, "_PARTS", (lambda *a: (calls.append(a), original(*a))[1],) + fastlaunch._PARTS[1:])
        for _ in range(3):  # prepared calls, and fresh outputs each time
            got = numbaconv.conv2d(x, w, b, **kwargs).copy_to_host()
            np.testing.assert_array_equal(got, expected)
    assert len(calls) >= 3  # every kernel of these calls went the lean way
