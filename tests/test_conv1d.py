"""conv1d (torch.nn.functional.conv1d semantics on the 2-D kernels) against reference.conv1d, which is the
1-D definition written out (not the 2-D path), with conftest's tolerance (K = C_in/G * K taps);
against torch when it is installed.  Every CPU kernel that serves a case is forced once."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import numbaconv
from numbaconv import reference

from conftest import DTYPES


def assert_matches(got, x, weight, bias=None, **kwargs):
    up = lambda a: None if a is None else np.asarray(a, np.float64)  # noqa: E731
    plain = {k: v for k, v in kwargs.items() if k != "activation"}
    exact = reference.conv1d(up(x), up(weight), up(bias), **kwargs)
    magnitude = reference.conv1d(np.abs(up(x)), np.abs(up(weight)), None if bias is None else np.abs(up(bias)),
                                 **plain)
    eps = np.finfo(got.dtype).eps / 2
    bound = 2 * (weight.shape[1] * weight.shape[2] + 2) * eps * magnitude + np.finfo(got.dtype).tiny
    assert got.shape == exact.shape and got.dtype == x.dtype
    error = np.abs(got.astype(np.float64) - exact)
    assert (error <= bound).all(), f"max error {error.max():.3e}, bound {bound.max():.3e}"


CASES = [  # (x shape NCL, weight shape, keyword arguments)
    ((2, 6, 17), (8, 6, 1), {}),                                               # pointwise
    ((1, 6, 17), (8, 6, 1), dict(stride=2)),
    ((2, 6, 17), (6, 1, 3), dict(groups=6, padding=1)),                        # depthwise
    ((2, 4, 19), (8, 1, 5), dict(groups=4, padding="same", dilation=2)),       # depthwise, multiplier 2
    ((1, 4, 16), (4, 1, 4), dict(groups=4, padding=(3,), stride=(3,))),        # 1-tuples
    ((2, 6, 15), (6, 2, 3), dict(groups=3, padding=2, stride=2, dilation=3)),  # grouped
    ((1, 5, 12), (7, 5, 3), dict(padding="valid")),                            # dense
    ((1, 3, 9), (3, 3, 9), dict(padding=4)),                                   # kernel as long as the input
]


@pytest.mark.parametrize("layout", ["NCL", "NLC"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape, w_shape, kwargs", CASES)
def test_matches_the_1d_definition(rng, x_shape, w_shape, kwargs, dtype, layout):
    x = rng.standard_normal(x_shape).astype(dtype)
    if layout == "NLC":
        x = np.ascontiguousarray(x.transpose(0, 2, 1))
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    assert_matches(numbaconv.conv1d(x, w, b, layout=layout, **kwargs), x, w, b, layout=layout, **kwargs)


@pytest.mark.parametrize("x_shape, w_shape, kwargs", CASES)
def test_every_serving_cpu_kernel(rng, x_shape, w_shape, kwargs):
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    served = 0
    for algorithm in numbaconv.algorithms():
        if algorithm.device != "cpu":
            continue
        try:
            got = numbaconv.conv1d(x, w, algorithm=algorithm.name, **kwargs)
        except ValueError as error:
            assert "algorithm" in str(error) or "needs" in str(error) or "takes" in str(error)
            continue
        served += 1
        assert_matches(got, x, w, **kwargs)
    assert served >= 2  # the reference and at least one kernel


@pytest.mark.parametrize("padding_mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("activation", [None, "relu6", "silu"])
def test_padding_modes_and_activations(rng, padding_mode, activation):
    x = rng.standard_normal((2, 4, 11)).astype(np.float32)
    w = rng.standard_normal((4, 1, 3)).astype(np.float32)
    kwargs = dict(groups=4, padding=2, dilation=2, padding_mode=padding_mode, activation=activation)
    assert_matches(numbaconv.conv1d(x, w, **kwargs), x, w, **kwargs)


def test_unbatched_views_out_and_inputs_untouched(rng):
    wide = rng.standard_normal((3, 8, 20)).astype(np.float64)
    x = wide[:, ::2, 1::2]  # non-contiguous in channels and length
    w = rng.standard_normal((4, 2, 3)).astype(np.float64)
    before = x.copy(), w.copy()
    assert_matches(numbaconv.conv1d(x, w, groups=2, padding=1), x, w, groups=2, padding=1)
    assert_matches(numbaconv.conv1d(x[0], w, groups=2, padding=1), x[0], w, groups=2, padding=1)
    out = np.empty((3, 4, 10))
    assert numbaconv.conv1d(x, w, groups=2, padding=1, out=out) is out
    assert_matches(out, x, w, groups=2, padding=1)
    assert np.array_equal(x, before[0]) and np.array_equal(w, before[1])


@given(data=st.data())
def test_random_configurations(data):
    groups = data.draw(st.integers(1, 3))
    cig, cog = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    kernel, dilation = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 3))
    stride = data.draw(st.integers(1, 3))
    padding = data.draw(st.one_of(st.integers(0, 3), st.sampled_from(["same", "valid"])))
    if padding == "same":
        stride = 1
    mode = data.draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"]))
    length = (kernel - 1) * dilation + 1 + data.draw(st.integers(0, 6))
    if not isinstance(padding, str):
        length = max(length, padding + 1)
    dtype = data.draw(st.sampled_from(DTYPES))
    layout = data.draw(st.sampled_from(["NCL", "NLC"]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    shape = (data.draw(st.integers(1, 2)), groups * cig, length)
    x = rng.standard_normal(shape if layout == "NCL" else (shape[0], length, shape[1])).astype(dtype)
    w = rng.standard_normal((groups * cog, cig, kernel)).astype(dtype)
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, padding_mode=mode, layout=layout)
    assert_matches(numbaconv.conv1d(x, w, **kwargs), x, w, **kwargs)


@given(data=st.data())
def test_matches_torch(data):
    torch = pytest.importorskip("torch")
    groups = data.draw(st.integers(1, 4))
    cig, cog = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    kernel, dilation, stride = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    padding = data.draw(st.one_of(st.integers(0, 3), st.sampled_from(["same", "valid"])))
    if padding == "same":
        stride = 1
    length = (kernel - 1) * dilation + 1 + data.draw(st.integers(0, 9))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((2, groups * cig, length))
    w = rng.standard_normal((groups * cog, cig, kernel))
    b = rng.standard_normal(groups * cog)
    ours = numbaconv.conv1d(x, w, b, stride, padding, dilation, groups)
    theirs = torch.nn.functional.conv1d(*map(torch.from_numpy, (x, w, b)), stride=stride, padding=padding,
                                        dilation=dilation, groups=groups).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(layout="NCHW"), ValueError, r"layout must be one of \('NCL', 'NLC'\) for conv1d, got 'NCHW'"),
    (dict(stride=(1, 2)), ValueError, r"stride must be an int or a 1-element tuple for conv1d, got \(1, 2\)"),
    (dict(stride=0), ValueError, "stride must be >= 1, got 0"),
    (dict(dilation=1.5), TypeError, "dilation must be an int for conv1d, got float 1.5"),
    (dict(padding=-1), ValueError, "padding must be >= 0, got -1"),
    (dict(padding=True), TypeError, "padding must be an int for conv1d, got bool True"),
    (dict(padding="full"), ValueError, "padding"),
    (dict(groups=3), ValueError, "divisible by groups"),
])
def test_bad_arguments_name_the_parameter(rng, kwargs, error, message):
    x = rng.standard_normal((1, 4, 9)).astype(np.float32)
    w = rng.standard_normal((4, 4, 3)).astype(np.float32)
    with pytest.raises(error, match=message):
        numbaconv.conv1d(x, w, **kwargs)


def test_bad_shapes_name_the_array(rng):
    x = rng.standard_normal((1, 4, 9)).astype(np.float32)
    w = rng.standard_normal((4, 4, 3)).astype(np.float32)
    with pytest.raises(ValueError, match=r"x must be 2-D \(C, L\) or \(N, C, L\) for conv1d, got a 4-D array"):
        numbaconv.conv1d(x[None], w)
    with pytest.raises(ValueError, match=r"weight must be 3-D \(C_out, C_in/groups, K\) for conv1d, got a 4-D"):
        numbaconv.conv1d(x, w[..., None])
    with pytest.raises(ValueError, match="out must have x's number of dimensions"):
        numbaconv.conv1d(x, w, out=np.empty((4, 7), np.float32))
    with pytest.raises(ValueError, match=r"weight.shape\[1\] \(3\) x groups \(1\) must equal the input's channels "
                                         r"\(4\).*one-row image"):
        numbaconv.conv1d(x, w[:, :3])
