"""Gradients: the NumPy references checked by finite differences, numbaconv's gradients against the
references over a grid and random configurations, and against torch.autograd when torch is installed.

Tolerance (the forward's bound of conftest.py, applied to each gradient's own sum):
grad input   |got - exact| <= 2 (K + 2) eps (|w| adjoint-conv |gy|),  K = 4 * C_out/G * kH * kW
             (each input pixel sums C_out/G*kH*kW terms, up to 4 times over for border pixels
             that padding modes copy);
grad weight  |got - exact| <= 2 (K + 2) eps (|gy| correlated with |x|),  K = N * H_out * W_out.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import numbaconv
from numbaconv import reference

from conftest import DTYPES, check_grads


# ---- the references are the derivative of reference.conv2d: finite differences ----------------------
@pytest.mark.parametrize("kwargs, shape, weight_shape", [
    (dict(stride=2, padding=1, groups=2), (2, 4, 7, 6), (6, 2, 3, 3)),
    (dict(stride=(1, 2), padding=(2, 0), dilation=(2, 1), groups=3), (1, 3, 9, 7), (6, 1, 3, 2)),
    (dict(padding="same", dilation=2, groups=5), (2, 5, 6, 6), (5, 1, 3, 3)),
    (dict(stride=2, padding=(2, 1), padding_mode="reflect", groups=1), (1, 2, 6, 7), (3, 2, 3, 2)),
    (dict(padding=2, padding_mode="circular", groups=2), (1, 4, 5, 4), (2, 2, 3, 3)),
    (dict(stride=(2, 3), padding=(1, 2), padding_mode="replicate", groups=2), (2, 2, 7, 8), (4, 1, 2, 3)),
])
def test_references_match_finite_differences(rng, kwargs, shape, weight_shape):
    x, weight = rng.standard_normal(shape), rng.standard_normal(weight_shape)
    y = reference.conv2d(x, weight, **kwargs)
    grad_output = rng.standard_normal(y.shape)
    step = 1e-6
    for _ in range(3):  # directional derivatives <gy, d conv> along random directions of x and of w
        dx, dw = rng.standard_normal(shape), rng.standard_normal(weight_shape)
        slope_x = np.sum(grad_output * (reference.conv2d(x + step * dx, weight, **kwargs)
                                        - reference.conv2d(x - step * dx, weight, **kwargs))) / (2 * step)
        slope_w = np.sum(grad_output * (reference.conv2d(x, weight + step * dw, **kwargs)
                                        - reference.conv2d(x, weight - step * dw, **kwargs))) / (2 * step)
        grad_x = reference.conv2d_grad_input(shape, weight, grad_output, **kwargs)
        grad_w = reference.conv2d_grad_weight(x, weight_shape, grad_output, **kwargs)
        assert np.sum(grad_x * dx) == pytest.approx(slope_x, rel=1e-6, abs=1e-6)
        assert np.sum(grad_w * dw) == pytest.approx(slope_w, rel=1e-6, abs=1e-6)


# ---- numbaconv's gradients over a grid of every family and option --------------------------------------
FAMILIES = {  # (c_in, c_out, groups, kernel)
    "pointwise": (6, 9, 1, (1, 1)), "depthwise": (5, 5, 5, (3, 3)), "depthwise_multiplier": (3, 6, 3, (3, 2)),
    "grouped": (6, 8, 2, (3, 3)), "dense": (3, 5, 1, (2, 3)),
}


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("stride, padding, dilation", [(1, 0, 1), (2, 1, 1), ((1, 3), (2, 0), (2, 1)),
                                                       (1, "same", 2), (3, 2, 1)])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_grid_against_reference(rng, family, stride, padding, dilation, dtype, layout):
    c_in, c_out, groups, kernel = FAMILIES[family]
    x = rng.standard_normal((2, c_in, 9, 11)).astype(dtype)
    weight = rng.standard_normal((c_out, c_in // groups) + kernel).astype(dtype)
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    grad_output = rng.standard_normal(reference.conv2d(x, weight, **kwargs).shape).astype(dtype)
    if layout == "NHWC":
        x, grad_output = (np.ascontiguousarray(np.moveaxis(a, 1, -1)) for a in (x, grad_output))
    check_grads(x, weight, grad_output, layout=layout, **kwargs)


@pytest.mark.parametrize("padding_mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("family", ["depthwise", "grouped"])
def test_padding_modes(rng, padding_mode, family):
    c_in, c_out, groups, kernel = FAMILIES[family]
    x = rng.standard_normal((2, c_in, 6, 7))
    weight = rng.standard_normal((c_out, c_in // groups) + kernel)
    kwargs = dict(stride=(2, 1), padding=(2, 1), groups=groups, padding_mode=padding_mode)
    grad_output = rng.standard_normal(reference.conv2d(x, weight, **kwargs).shape)
    check_grads(x, weight, grad_output, **kwargs)


def test_unbatched_empty_and_non_contiguous(rng):
    x = rng.standard_normal((4, 8, 8)).astype(np.float32)
    weight = rng.standard_normal((4, 1, 3, 3)).astype(np.float32)
    grad_output = rng.standard_normal((4, 8, 8)).astype(np.float32)
    check_grads(x, weight, grad_output, padding=1, groups=4)
    view = np.asfortranarray(rng.standard_normal((2, 4, 9, 8)).astype(np.float32))[:, :, ::-1]
    gy_view = rng.standard_normal((2, 7, 8, 8)).astype(np.float32).transpose(0, 3, 1, 2)
    copies = view.copy(), gy_view.copy()
    check_grads(view, rng.standard_normal((8, 2, 3, 3)).astype(np.float32), gy_view, padding=(0, 1), groups=2)
    np.testing.assert_array_equal(copies[0], view)
    np.testing.assert_array_equal(copies[1], gy_view)
    empty = numbaconv.conv2d_grad_input((0, 4, 8, 8), weight, np.zeros((0, 4, 8, 8), np.float32), padding=1,
                                        groups=4)
    assert empty.shape == (0, 4, 8, 8)
    np.testing.assert_array_equal(numbaconv.conv2d_grad_weight(np.zeros((0, 4, 8, 8), np.float32), weight.shape,
                                                               np.zeros((0, 4, 8, 8), np.float32), padding=1,
                                                               groups=4), 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kwargs, x_shape, w_shape", [
    (dict(stride=2, padding=1, groups=4), (2, 4, 9, 8), (4, 1, 3, 3)),
    (dict(stride=(3, 2), padding=(2, 0), dilation=(1, 2), groups=3), (1, 3, 11, 12), (6, 1, 3, 2)),  # multiplier 2
    (dict(stride=4, padding=(0, 3), groups=2), (1, 2, 7, 9), (2, 1, 2, 2)),  # stride beyond the kernel
    (dict(stride=(1, 2), padding=2, dilation=2, groups=5), (1, 5, 6, 13), (5, 1, 3, 3)),
])
def test_strided_depthwise_input_gradient_runs_in_one_pass(monkeypatch, rng, kwargs, x_shape, w_shape, dtype):
    """Strided depthwise layers with zero padding take the one-pass kernel (no zero-upsampled gradient), in both
    layouts, and match the float64 reference."""
    from numbaconv import grad

    calls = []
    original = grad._depthwise_grad_input
    monkeypatch.setattr(grad, "_depthwise_grad_input", lambda *args: calls.append(1) or original(*args))
    weight = rng.standard_normal(w_shape).astype(dtype)
    out_shape = numbaconv.plan(x_shape, w_shape, **kwargs).out_shape
    grad_output = rng.standard_normal(out_shape).astype(dtype)
    expected = reference.conv2d_grad_input(x_shape, weight.astype(np.float64), grad_output.astype(np.float64), **kwargs)
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    got = numbaconv.conv2d_grad_input(x_shape, weight, grad_output, **kwargs)
    np.testing.assert_allclose(got, expected, rtol=tolerance, atol=tolerance)
    n, c, h, w = x_shape
    got = numbaconv.conv2d_grad_input((n, h, w, c), weight, np.ascontiguousarray(grad_output.transpose(0, 2, 3, 1)),
                                      layout="NHWC", **kwargs)
    np.testing.assert_allclose(got.transpose(0, 3, 1, 2), expected, rtol=tolerance, atol=tolerance)
    assert len(calls) == 2


def test_depthwise_weight_gradient_accumulates_in_float64():
    """One million float32 products per weight: a float32 accumulator would drift by ~1e-3 relative."""
    x = np.full((1, 2, 1000, 1000), 1.1, np.float32)
    grad_output = np.full((1, 2, 1000, 1000), 0.3, np.float32)
    got = numbaconv.conv2d_grad_weight(x, (2, 1, 1, 1), grad_output, groups=2)
    exact = 1e6 * np.float64(np.float32(1.1)) * np.float64(np.float32(0.3))
    assert abs(got[0, 0, 0, 0] - exact) <= exact * np.finfo(np.float32).eps
    # (the claim above: a float32 running sum over the same 1e6 terms is visibly off)
    naive = np.cumsum(np.full(10**6, np.float32(1.1) * np.float32(0.3), np.float32), dtype=np.float32)[-1]
    assert abs(naive - exact) > 100 * exact * np.finfo(np.float32).eps


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("kwargs, shape, kernel", [
    (dict(stride=1, padding=1), (2, 40, 70, 66), (3, 3)),              # bands of rows, a partial channel vector
    (dict(stride=2, padding=(2, 1), dilation=2), (1, 24, 45, 38), (3, 3)),
    (dict(stride=(1, 2), padding=(2, 3)), (3, 17, 9, 12), (5, 7)),
    (dict(padding=1, padding_mode="reflect"), (1, 16, 33, 5), (3, 3)),
    (dict(stride=2, padding=2), (2, 20, 23, 21), (5, 5)),             # the row tiles' other cases
    (dict(padding=2), (1, 33, 12, 9), (5, 5)),
    (dict(padding=(3, 1)), (1, 16, 9, 30), (7, 7)),
    (dict(stride=(1, 2), padding=1), (1, 8, 11, 2), (3, 3)),         # an output row of one pixel
])
def test_depthwise_weight_gradient_through_channel_blocks(rng, dtype, layout, kwargs, shape, kernel):
    """`cpu.depthwise.weight_gradient` (channel blocks in SIMD lanes, float64 sums per task, one slot per task):
    many tasks over bands of rows and images, partial last vectors, strides, dilation, padding modes, both
    memory layouts; also from a non-contiguous view."""
    n, channels, height, width = shape
    x = rng.standard_normal(shape).astype(dtype)
    weight = rng.standard_normal((channels, 1) + kernel).astype(dtype)
    out_shape = numbaconv.plan(shape, weight.shape, groups=channels, **kwargs).out_shape
    grad_output = rng.standard_normal(out_shape).astype(dtype)
    if layout == "NHWC":
        x, grad_output = (np.ascontiguousarray(a.transpose(0, 2, 3, 1)) for a in (x, grad_output))
    check_grads(x, weight, grad_output, layout=layout, groups=channels, **kwargs)
    if layout == "NCHW":  # a strided view: copied into planes first
        wide = np.zeros((n, channels, height, 2 * width), dtype)
        wide[..., ::2] = x
        check_grads(wide[..., ::2], weight, grad_output, groups=channels, **kwargs)


def test_bad_arguments():
    weight = np.ones((4, 1, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"grad_output must have the convolution's output shape \(1, 4, 6, 6\)"):
        numbaconv.conv2d_grad_input((1, 4, 8, 8), weight, np.ones((1, 4, 8, 8), np.float32), groups=4)
    with pytest.raises(TypeError, match="same dtype"):
        numbaconv.conv2d_grad_input((1, 4, 8, 8), weight, np.ones((1, 4, 6, 6)), groups=4)
    with pytest.raises(TypeError, match="grad_output must have the dtype"):
        numbaconv.conv2d_grad_weight(np.ones((1, 4, 8, 8), np.float32), (4, 1, 3, 3), np.ones((1, 4, 6, 6)), groups=4)
    with pytest.raises(ValueError, match="groups"):
        numbaconv.conv2d_grad_weight(np.ones((1, 4, 8, 8), np.float32), (4, 1, 3, 3), np.ones((1, 4, 6, 6)), groups=3)
    with pytest.raises(ValueError, match="grad_output must be a 3-D or 4-D"):
        numbaconv.conv2d_grad_bias(np.ones((4, 4)))


@given(st.data())
def test_random_configurations_against_torch_autograd(data):
    torch = pytest.importorskip("torch")
    draw = data.draw
    family = draw(st.sampled_from(["pointwise", "depthwise", "grouped", "dense"]))
    groups = 1 if family in ("pointwise", "dense") else draw(st.integers(1, 4))
    c_in = groups if family == "depthwise" else groups * draw(st.integers(1, 3))
    c_out = groups * draw(st.integers(1, 3))
    kernel = (1, 1) if family == "pointwise" else (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    span = [d * (k - 1) + 1 for d, k in zip(dilation, kernel)]
    shape = (draw(st.integers(1, 3)), c_in, draw(st.integers(max(1, span[0] - 2 * padding[0]), span[0] + 8)),
             draw(st.integers(max(1, span[1] - 2 * padding[1]), span[1] + 12)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = torch.tensor(rng.standard_normal(shape), requires_grad=True)
    weight = torch.tensor(rng.standard_normal((c_out, c_in // groups) + kernel), requires_grad=True)
    bias = torch.zeros(c_out, dtype=torch.float64, requires_grad=True)
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    y = torch.nn.functional.conv2d(x, weight, bias, **kwargs)
    grad_output = torch.tensor(rng.standard_normal(tuple(y.shape)))
    y.backward(grad_output)
    gy = grad_output.numpy()
    for dtype, tol in ((np.float64, 1e-9), (np.float32, 2e-4)):
        scale = 1 + np.abs(gy).max() * np.abs(x.detach().numpy()).max() * gy[0, 0].size
        np.testing.assert_allclose(
            numbaconv.conv2d_grad_input(shape, weight.detach().numpy().astype(dtype), gy.astype(dtype), **kwargs),
            x.grad.numpy(), rtol=tol, atol=tol * scale)
        np.testing.assert_allclose(
            numbaconv.conv2d_grad_weight(x.detach().numpy().astype(dtype), tuple(weight.shape), gy.astype(dtype),
                                         **kwargs), weight.grad.numpy(), rtol=tol, atol=tol * scale)
        np.testing.assert_allclose(numbaconv.conv2d_grad_bias(gy.astype(dtype)), bias.grad.numpy(), rtol=tol,
                                   atol=tol * scale)
