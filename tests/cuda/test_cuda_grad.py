"""The CUDA backward kernels (conv2d_grad_input / _weight / _bias on device arrays) against the float64
NumPy references, with test_grad.py's tolerance.  Runs under the simulator in CI (tiny shapes;
tiles shrink there so the inputs span several blocks and several reduction pieces) and on a GPU."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DTYPES, check_grads

import numbaconv
from numbaconv import cuda as numbaconv_cuda

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not numbaconv_cuda.available(), reason="no CUDA device and the simulator is off")]

if numbaconv_cuda.available():
    from numba import cuda

# (x shape, weight shape, keyword arguments): each family, stride, padding, dilation, multiplier
CASES = [
    ((2, 4, 5, 7), (6, 4, 1, 1), {}),                                                      # pointwise
    ((1, 4, 5, 7), (6, 4, 1, 1), dict(stride=2)),                                          # pointwise, strided
    ((2, 4, 6, 5), (4, 1, 3, 3), dict(groups=4, padding=1)),                               # depthwise
    ((1, 3, 7, 6), (6, 1, 3, 2), dict(groups=3, padding=(1, 2), stride=(2, 1), dilation=(1, 2))),  # multiplier 2
    ((1, 2, 9, 8), (2, 1, 5, 5), dict(groups=2, padding=2, stride=2)),                     # 5x5, stride 2
    ((2, 4, 6, 6), (6, 2, 3, 3), dict(groups=2, padding=1, stride=2)),                     # grouped
    ((1, 6, 5, 5), (9, 2, 1, 1), dict(groups=3)),                                          # grouped 1x1
    ((1, 3, 8, 7), (5, 3, 3, 3), dict(padding="same", dilation=2)),                        # dense, 'same'
    ((1, 2, 7, 7), (4, 2, 2, 3), dict(padding="valid", stride=(3, 2))),                    # stride not dividing
]


def problem(rng, x_shape, w_shape, dtype, **kwargs):
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    gy = rng.standard_normal(numbaconv.conv2d(x, w, **kwargs).shape).astype(dtype)
    return x, w, gy


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape, w_shape, kwargs", CASES)
def test_gradients_match_the_reference(rng, x_shape, w_shape, kwargs, dtype):
    x, w, gy = problem(rng, x_shape, w_shape, dtype, **kwargs)
    check_grads(x, w, gy, to_device=cuda.to_device, **kwargs)


@pytest.mark.parametrize("padding_mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("x_shape, w_shape, kwargs", [
    ((1, 3, 6, 5), (3, 1, 3, 3), dict(groups=3, padding=(2, 1), stride=2)),
    ((1, 2, 5, 6), (3, 2, 3, 2), dict(padding=1, dilation=(1, 2))),
])
def test_padding_modes_fold_the_border_back(rng, padding_mode, x_shape, w_shape, kwargs):
    x, w, gy = problem(rng, x_shape, w_shape, np.float64, padding_mode=padding_mode, **kwargs)
    check_grads(x, w, gy, to_device=cuda.to_device, padding_mode=padding_mode, **kwargs)


@pytest.mark.parametrize("x_shape, w_shape, kwargs", [
    ((2, 5, 4, 4), (4, 1, 3, 3), dict(groups=4, padding=1)),   # NHWC (N, H, W, C): depthwise
    ((1, 4, 5, 6), (6, 3, 2, 2), dict(groups=2, stride=2)),    # NHWC grouped
])
def test_channels_last(rng, x_shape, w_shape, kwargs):
    x, w, gy = problem(rng, x_shape, w_shape, np.float32, layout="NHWC", **kwargs)
    check_grads(x, w, gy, layout="NHWC", to_device=cuda.to_device, **kwargs)


def test_unbatched_and_strided_views(rng):
    x, w, gy = problem(rng, (3, 6, 5), (6, 1, 3, 3), np.float32, groups=3, padding=1)
    check_grads(x, w, gy, to_device=cuda.to_device, groups=3, padding=1)
    # device views with non-unit strides: every other channel of a wider array
    wide_x = rng.standard_normal((1, 8, 6, 5)).astype(np.float32)
    x = wide_x[:, ::2]
    wide_gy = rng.standard_normal((1, 8, 6, 5)).astype(np.float32)
    gy = wide_gy[:, 1::2]
    got = numbaconv.conv2d_grad_weight(cuda.to_device(wide_x)[:, ::2], (4, 4, 1, 1), cuda.to_device(wide_gy)[:, 1::2])
    np.testing.assert_allclose(got.copy_to_host(), numbaconv.conv2d_grad_weight(x, (4, 4, 1, 1), gy), rtol=1e-5,
                               atol=1e-5)


def test_random_configurations(rng):
    """A seeded random sample over every option (the simulator is too slow for hypothesis's count)."""
    for _ in range(8):
        groups = int(rng.choice([1, 2, 3]))
        depthwise = bool(rng.integers(2))
        cin = groups * (1 if depthwise else int(rng.integers(1, 3)))
        cout = groups * int(rng.integers(1, 3))
        kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        kwargs = dict(groups=groups, stride=(int(rng.integers(1, 3)), int(rng.integers(1, 3))),
                      dilation=(int(rng.integers(1, 3)), int(rng.integers(1, 3))),
                      padding=(int(rng.integers(0, 3)), int(rng.integers(0, 3))),
                      padding_mode=str(rng.choice(["zeros", "reflect", "replicate", "circular"])))
        height = (kh - 1) * kwargs["dilation"][0] + 1 + int(rng.integers(0, 4))
        width = (kw - 1) * kwargs["dilation"][1] + 1 + int(rng.integers(0, 4))
        height, width = max(height, kwargs["padding"][0] + 1), max(width, kwargs["padding"][1] + 1)
        dtype = rng.choice(DTYPES)
        x, w, gy = problem(rng, (int(rng.integers(1, 3)), cin, height, width), (cout, cin // groups, kh, kw), dtype,
                           **kwargs)
        check_grads(x, w, gy, to_device=cuda.to_device, **kwargs)


def test_deterministic_and_inputs_untouched(rng):
    x, w, gy = problem(rng, (1, 4, 4, 4), (4, 2, 3, 3), np.float32, groups=2, padding=1)
    dx, dw, dgy = cuda.to_device(x), cuda.to_device(w), cuda.to_device(gy)
    first = numbaconv.conv2d_grad_weight(dx, w.shape, dgy, groups=2, padding=1).copy_to_host()
    second = numbaconv.conv2d_grad_weight(dx, w.shape, dgy, groups=2, padding=1).copy_to_host()
    assert np.array_equal(first, second)
    numbaconv.conv2d_grad_input(x.shape, dw, dgy, groups=2, padding=1)
    for device, host in ((dx, x), (dw, w), (dgy, gy)):
        assert np.array_equal(device.copy_to_host(), host)


def test_empty_problems_give_zeros(rng):
    x = np.zeros((0, 2, 4, 4), np.float32)
    w = rng.standard_normal((2, 1, 3, 3)).astype(np.float32)
    gy = np.zeros((0, 2, 2, 2), np.float32)
    gw = numbaconv.conv2d_grad_weight(cuda.to_device(x), w.shape, cuda.to_device(gy), groups=2).copy_to_host()
    assert gw.shape == w.shape and not gw.any()
    gi = numbaconv.conv2d_grad_input(x.shape, cuda.to_device(w), cuda.to_device(gy), groups=2).copy_to_host()
    assert gi.shape == x.shape
    gb = numbaconv.conv2d_grad_bias(cuda.to_device(gy)).copy_to_host()
    assert gb.shape == (2,) and not gb.any()


def test_bad_input_is_refused_before_any_kernel(rng):
    x, w, gy = problem(rng, (1, 2, 5, 5), (2, 1, 3, 3), np.float32, groups=2)
    with pytest.raises(TypeError, match="on the GPU: grad_output is a CUDA array but weight is not"):
        numbaconv.conv2d_grad_input(x.shape, w, cuda.to_device(gy), groups=2)
    with pytest.raises(ValueError, match="grad_output must have the convolution's output shape"):
        short = cuda.to_device(np.ascontiguousarray(gy[:, :, :2]))
        numbaconv.conv2d_grad_weight(cuda.to_device(x), w.shape, short, groups=2)
    with pytest.raises(TypeError, match="grad_output and weight must have the same dtype, got grad_output float64 and weight float32"):
        numbaconv.conv2d_grad_input(x.shape, cuda.to_device(w), cuda.to_device(gy.astype(np.float64)), groups=2)
    with pytest.raises(ValueError, match="groups"):
        numbaconv.conv2d_grad_weight(cuda.to_device(x), w.shape, cuda.to_device(gy), groups=3)


@pytest.mark.parametrize("kwargs", [dict(groups=2, stride=2**40), dict(groups=2, dilation=(40, 1), padding=(20, 1)),
                                    dict(groups=1, stride=(1, 30), padding=(1, 40), padding_mode="replicate")])
def test_degenerate_geometry_gradients(rng, kwargs):
    x = rng.standard_normal((2, 2, 3, 4)).astype(np.float32)
    weight = rng.standard_normal((2, 2 // kwargs["groups"], 2, 3)).astype(np.float32)
    out_shape = numbaconv.plan(x.shape, weight.shape, **kwargs).out_shape
    check_grads(x, weight, rng.standard_normal(out_shape).astype(np.float32), to_device=cuda.to_device, **kwargs)
