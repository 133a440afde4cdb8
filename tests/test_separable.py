"""separable_conv2d: the fused depthwise -> activation -> pointwise against the NumPy reference
(two reference convolutions), over the options, both layouts, chunk sizes down to one row, and
random configurations.

Tolerance: the two stages' bounds of conftest.py composed.  With K1 = kH*kW (depthwise) and
K2 = C_mid (pointwise), |got - exact| <= 4 * (K1 + K2 + 4) * eps * (|Wp| (*) (|Wd| (*) |x| + |bd|) + |bp|):
each stage's rounding error is carried through the next stage's weights, and the factor 4 covers
both activations (slopes at most 1.5).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import numbaconv
from numbaconv import reference, separable

from conftest import DTYPES


def up(a):
    return None if a is None else np.asarray(a, dtype=np.float64)


def assert_matches(got, x, dw, pw, db, pb, **kwargs):
    exact = reference.separable_conv2d(up(x), up(dw), up(pw), up(db), up(pb), **kwargs)
    assert got.shape == exact.shape and got.dtype == np.asarray(x).dtype
    plain = {k: v for k, v in kwargs.items() if k not in ("activation", "depthwise_activation")}
    magnitude = reference.separable_conv2d(np.abs(up(x)), np.abs(up(dw)), np.abs(up(pw)),
                                           None if db is None else np.abs(up(db)),
                                           None if pb is None else np.abs(up(pb)), **plain)
    eps = np.finfo(got.dtype).eps / 2
    bound = 4 * (dw.shape[2] * dw.shape[3] + pw.shape[1] + 4) * eps * magnitude + np.finfo(got.dtype).tiny
    assert np.array_equal(np.isnan(got), np.isnan(exact))
    finite = np.isfinite(exact)
    error = np.abs(got.astype(np.float64)[finite] - exact[finite])
    assert error.size == 0 or (error - bound[finite]).max() <= 0, f"max error {error.max():.3e}"


def problem(rng, n, c, m, c_out, kernel, size, dtype, bias=True, layout="NCHW"):
    x = rng.standard_normal((n, c) + size).astype(dtype)
    if layout == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    dw = rng.standard_normal((c * m, 1) + kernel).astype(dtype)
    pw = rng.standard_normal((c_out, c * m, 1, 1)).astype(dtype)
    db = rng.standard_normal(c * m).astype(dtype) if bias else None
    pb = rng.standard_normal(c_out).astype(dtype) if bias else None
    return x, dw, pw, db, pb


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("budget", [None, 64, 1])  # whole batch / bands of a few rows / one row per band
@pytest.mark.parametrize("stride, padding, dilation", [(1, 1, 1), (2, 1, 1), ((1, 2), "valid", (2, 1)),
                                                       (1, "same", 2), (2, (2, 0), 1)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_two_reference_convolutions(rng, monkeypatch, layout, budget, stride, padding, dilation, dtype):
    if budget is not None:
        monkeypatch.setattr(separable, "SEPARABLE_CHUNK_ELEMENTS", budget)
    x, dw, pw, db, pb = problem(rng, 2, 5, 1, 7, (3, 3), (9, 11), dtype, layout=layout)
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, layout=layout,
                  depthwise_activation="relu6", activation="hardswish")
    assert_matches(numbaconv.separable_conv2d(x, dw, pw, db, pb, **kwargs), x, dw, pw, db, pb, **kwargs)


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_padding_modes_multiplier_and_bands(rng, monkeypatch, padding_mode, layout):
    monkeypatch.setattr(separable, "SEPARABLE_CHUNK_ELEMENTS", 50)
    x, dw, pw, db, pb = problem(rng, 2, 3, 2, 4, (5, 3), (8, 7), np.float64, layout=layout)
    kwargs = dict(stride=(2, 1), padding=(2, 1), padding_mode=padding_mode, layout=layout, activation="silu")
    assert_matches(numbaconv.separable_conv2d(x, dw, pw, db, pb, **kwargs), x, dw, pw, db, pb, **kwargs)


def test_chunks_cover_the_output_once():
    for n_images, height, row, budget in [(3, 10, 7, 1000), (3, 10, 7, 70), (2, 10, 7, 20), (1, 5, 100, 1),
                                          (4, 1, 1, 2)]:
        covered = np.zeros((n_images, height), int)
        for n0, n1, oh0, oh1 in separable.chunks(n_images, height, row, budget):
            covered[n0:n1, oh0:oh1] += 1
            assert (n1 - n0) * (oh1 - oh0) * row <= max(budget, row)
        assert (covered == 1).all()


def test_unbatched_out_and_untouched_inputs(rng):
    x, dw, pw, db, pb = problem(rng, 1, 4, 1, 6, (3, 3), (7, 7), np.float32)
    copies = [a.copy() for a in (x, dw, pw, db, pb)]
    single = numbaconv.separable_conv2d(x[0], dw, pw, db, pb, padding=1)
    assert single.shape == (6, 7, 7)
    assert_matches(single, x[0], dw, pw, db, pb, padding=1)
    out = np.full((1, 6, 4, 4), np.nan, np.float32)
    assert numbaconv.separable_conv2d(x, dw, pw, db, pb, stride=2, padding=1, out=out) is out
    assert_matches(out, x, dw, pw, db, pb, stride=2, padding=1)
    for before, after in zip(copies, (x, dw, pw, db, pb)):
        np.testing.assert_array_equal(before, after)
    # a non-contiguous input view and no biases
    view = np.asfortranarray(x)[:, :, ::-1]
    assert_matches(numbaconv.separable_conv2d(view, dw, pw), view, dw, pw, None, None)


def test_large_filter_falls_back_to_two_calls(rng):
    x, dw, pw, db, pb = problem(rng, 1, 3, 1, 2, (9, 9), (12, 12), np.float64)  # 81 taps > the kernel's 64
    assert_matches(numbaconv.separable_conv2d(x, dw, pw, db, pb, padding=4), x, dw, pw, db, pb, padding=4)


def test_bad_arguments_raise_before_running(rng):
    x, dw, pw, db, pb = problem(rng, 1, 4, 1, 6, (3, 3), (7, 7), np.float32)
    with pytest.raises(ValueError, match="depthwise_weight"):
        numbaconv.separable_conv2d(x, np.zeros((4, 2, 3, 3), np.float32), pw)
    with pytest.raises(ValueError, match="pointwise_weight"):
        numbaconv.separable_conv2d(x, dw, pw.reshape(6, 2, 2, 1))
    with pytest.raises(ValueError, match=r"weight.shape\[1\] \(5\)"):
        numbaconv.separable_conv2d(x, dw, np.zeros((6, 5, 1, 1), np.float32))
    with pytest.raises(TypeError, match="pointwise_weight must have the dtype of x"):
        numbaconv.separable_conv2d(x, dw, pw.astype(np.float64))
    with pytest.raises(TypeError, match="pointwise_bias"):
        numbaconv.separable_conv2d(x, dw, pw, db, pb.astype(np.float64))
    with pytest.raises(ValueError, match="out must have shape"):
        numbaconv.separable_conv2d(x, dw, pw, out=np.empty((1, 6, 7, 7), np.float32))
    with pytest.raises(ValueError, match="activation"):
        numbaconv.separable_conv2d(x, dw, pw, depthwise_activation="tanh")
    with pytest.raises(ValueError, match="device"):
        numbaconv.separable_conv2d(x, dw, pw, device="tpu")


@given(st.data())
def test_random_configurations(data):
    draw = data.draw
    c, m, c_out = draw(st.integers(1, 6)), draw(st.integers(1, 2)), draw(st.integers(1, 9))
    kernel = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    span = [d * (k - 1) + 1 for d, k in zip(dilation, kernel)]
    size = (draw(st.integers(max(1, span[0] - 2 * padding[0]), span[0] + 10)),
            draw(st.integers(max(1, span[1] - 2 * padding[1]), span[1] + 20)))
    layout = draw(st.sampled_from(["NCHW", "NHWC"]))
    dtype = draw(st.sampled_from(DTYPES))
    budget = draw(st.sampled_from([None, 1, 30, 400]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x, dw, pw, db, pb = problem(rng, draw(st.integers(0, 3)), c, m, c_out, kernel, size, dtype,
                                bias=draw(st.booleans()), layout=layout)
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, layout=layout,
                  depthwise_activation=draw(st.sampled_from([None, "relu", "silu"])),
                  activation=draw(st.sampled_from([None, "relu6", "hardswish"])))
    original = separable.SEPARABLE_CHUNK_ELEMENTS
    separable.SEPARABLE_CHUNK_ELEMENTS = budget or original
    try:
        got = numbaconv.separable_conv2d(x, dw, pw, db, pb, **kwargs)
    finally:
        separable.SEPARABLE_CHUNK_ELEMENTS = original
    assert_matches(got, x, dw, pw, db, pb, **kwargs)


@given(st.data())
def test_a_padded_window_is_the_whole_padded_input_cut(data):
    """arrays.padded_band and padded_window (a non-zero padding mode's rows or window, padded as they are cut)
    equal the same part of the input padded as a whole, for every mode, layout, padding, band and window;
    x left untouched."""
    from numbaconv import arrays
    from numbaconv.spec import ConvSpec

    mode = data.draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"]))
    layout = data.draw(st.sampled_from(["NCHW", "NHWC"]))
    height, width = data.draw(st.integers(1, 9)), data.draw(st.integers(1, 9))
    limit = (lambda size: size - 1) if mode == "reflect" else (lambda size: size)
    padding = tuple(data.draw(st.integers(0, limit(size))) for size in (height, width))  # torch's: per axis
    channels = data.draw(st.integers(1, 3))
    shape = (2, channels, height, width) if layout == "NCHW" else (2, height, width, channels)
    x = np.random.default_rng(data.draw(st.integers(0, 99))).standard_normal(shape)
    if data.draw(st.booleans()):  # a non-contiguous view
        x = np.repeat(x, 2, axis=0)[::2]
    weight_shape = (channels, 1, 1, 1)
    spec = ConvSpec.from_shapes(x.shape, weight_shape, None, padding=padding, groups=channels, dtype=np.float64,
                                padding_mode=mode, layout=layout)
    whole = arrays.pad_input_nhwc(x, spec) if layout == "NHWC" else arrays.pad_input(arrays.to_nchw(x, spec), spec)
    padded_height, padded_width = height + 2 * padding[0], width + 2 * padding[1]
    first = data.draw(st.integers(0, padded_height - 1))
    rows = data.draw(st.integers(1, padded_height - first))
    before = x.copy()
    if data.draw(st.booleans()):  # a band of rows
        band = arrays.padded_band(x, spec, first, rows, layout)
        first_column, columns = 0, padded_width
    else:  # a window of rows and columns
        first_column = data.draw(st.integers(0, padded_width - 1))
        columns = data.draw(st.integers(1, padded_width - first_column))
        band = arrays.padded_window(x, spec, first, rows, first_column, columns, layout)
    window = (slice(None), slice(first, first + rows), slice(first_column, first_column + columns))
    expected = whole[window] if layout == "NHWC" else whole[(slice(None),) + window]
    assert band.flags.c_contiguous
    np.testing.assert_array_equal(band, expected)
    np.testing.assert_array_equal(x, before)
