"""numbaconv against torch.nn.functional.conv2d / torch.nn.Conv2d (float64 ground truth).

PyTorch is optional: these tests run where it is installed (``pip install torch==2.13.0``)
and are skipped, saying so, where it is not."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_matches_reference
from hypothesis import given, settings
from test_kernels import conv_problems, serving_kernels

import numbaconv

torch = pytest.importorskip("torch", reason="PyTorch is not installed (optional peer)")
F = torch.nn.functional


def torch_conv(x, weight, bias, stride, padding, dilation, groups, padding_mode="zeros", activation=None):
    conv = torch.nn.Conv2d(x.shape[1], weight.shape[0], weight.shape[2:], stride, padding, dilation, groups,
                           bias is not None, padding_mode, dtype=torch.float64)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(weight))
        if bias is not None:
            conv.bias.copy_(torch.from_numpy(bias))
        y = conv(torch.from_numpy(x))
        y = {None: lambda t: t, "relu": F.relu, "relu6": F.relu6, "silu": F.silu, "hardswish": F.hardswish}[activation](y)
    return y.numpy()


@settings(max_examples=150)
@given(conv_problems())
def test_matches_torch(problem):
    rng = np.random.default_rng(problem.pop("seed"))
    shape, weight_shape = problem.pop("shape"), problem.pop("weight_shape")
    problem.pop("memory_layout"), problem.pop("dtype")
    layout = problem.pop("layout")
    if shape[0] == 0:
        shape = (1,) + shape[1:]
    with_bias = problem.pop("bias")
    x = rng.standard_normal(shape)
    weight = rng.standard_normal(weight_shape)
    bias = rng.standard_normal(weight_shape[0]) if with_bias else None
    expected = torch_conv(x, weight, bias, **problem)
    # the reference agrees with torch to float64 rounding ...
    np.testing.assert_allclose(numbaconv.reference.conv2d(x, weight, bias, **problem), expected, rtol=1e-10, atol=1e-10)
    # ... and every kernel agrees with torch within the documented bound, in both dtypes
    for dtype in (np.float64, np.float32):
        xd, wd, bd = x.astype(dtype), weight.astype(dtype), None if bias is None else bias.astype(dtype)
        for name in ["auto"] + serving_kernels(shape, weight_shape, bias=with_bias, dtype=dtype, **problem):
            if layout == "NHWC":  # channels-last data: the NHWC kernels, compared back in NCHW
                got = np.moveaxis(numbaconv.conv2d(np.ascontiguousarray(np.moveaxis(xd, 1, -1)), wd, bd,
                                                   algorithm=name, layout="NHWC", **problem), -1, 1)
            else:
                got = numbaconv.conv2d(xd, wd, bd, algorithm=name, **problem)
            assert_matches_reference(got, xd, wd, bd, **problem)
            if dtype == np.float64:
                np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)


def test_empty_batch_and_unbatched_like_torch():
    weight = np.ones((4, 2, 3, 3))
    for shape in [(0, 4, 5, 5), (4, 5, 5)]:
        x = np.ones(shape)
        expected = F.conv2d(torch.from_numpy(x), torch.from_numpy(weight), groups=2, padding=1).numpy()
        got = numbaconv.conv2d(x, weight, groups=2, padding=1)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected)
