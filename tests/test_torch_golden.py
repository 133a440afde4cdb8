"""torch parity without torch: outputs of torch.nn.Conv2d 2.13 recorded by tests/data/make_torch_golden.py
for the configurations where conventions are easiest to get wrong ('same' with even kernels, padding
modes, dilation, groups, channel multipliers, fused activations)."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
from conftest import assert_matches_reference
from test_kernels import serving_kernels

import numbaconv

GOLDEN = np.load(pathlib.Path(__file__).with_name("data") / "torch_golden.npz")
META = json.loads(str(GOLDEN["meta"]))


@pytest.mark.parametrize("index", range(len(META["cases"])), ids=[json.dumps(c) for c in META["cases"]])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matches_recorded_torch_output(index, dtype):
    kwargs = META["cases"][index]
    x, weight, bias, expected = (GOLDEN[f"{k}{index}"] for k in "xwby")
    np.testing.assert_allclose(numbaconv.reference.conv2d(x, weight, bias, **kwargs), expected, rtol=1e-12, atol=1e-12)
    x, weight, bias = x.astype(dtype), weight.astype(dtype), bias.astype(dtype)
    for name in ["auto"] + serving_kernels(x.shape, weight.shape, bias=True, dtype=dtype, **kwargs):
        got = numbaconv.conv2d(x, weight, bias, algorithm=name, **kwargs)
        assert got.shape == expected.shape
        assert_matches_reference(got, x, weight, bias, **kwargs)
        if dtype == np.float64:
            np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)
