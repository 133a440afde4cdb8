"""Fuzzing every public function with hypothesis-generated calls (run by tests/test_fuzz.py in a guarded
subprocess, so that a crash or a hang fails a test instead of killing the run).

Arguments are drawn as a hostile user would pass them: shapes with zero sizes, dtypes that differ or are
not floats, strides, dilations, paddings and groups from small values to integers beyond int64,
negative ones, 'same'/'valid', every padding mode, activation and layout, and inputs of any memory
layout.  Every call must either

* match the NumPy reference (within the documented tolerance, conftest.py), or
* raise ValueError, TypeError or MemoryError with a message, exactly when the reference raises too
  (they share the argument checks; a kernel may not refuse what the definition computes).

Outputs are bounded: a call whose result (or the reference's work) would be larger than OUTPUT_LIMIT is
skipped before anything runs.  The number of calls made is printed at exit ("fuzz calls: N").
"""

from __future__ import annotations

import atexit
import os
import pathlib
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests/conftest.py's helpers
from conftest import MEMORY_LAYOUTS, assert_matches_reference, check_grads, with_memory_layout  # noqa: E402

import numbaconv  # noqa: E402
from numbaconv import reference  # noqa: E402

OUTPUT_LIMIT = 20_000  # elements of a result; the reference's work is bounded by this x the taps x C_in/G
ERRORS = (ValueError, TypeError, MemoryError)
CALLS = {"count": 0, "computed": 0}


def _report():
    print(f"\nfuzz calls: {CALLS['count']} ({CALLS['computed']} computed a result that matched the reference, the "
          "rest were refused with a message where the reference refused them too)")


atexit.register(_report)

FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "150")), deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck),
                # the shrinker re-runs a failure hundreds of times: off with FUZZ_SHRINK=0 to see one quickly
                phases=[p for p in Phase if p != Phase.shrink or os.environ.get("FUZZ_SHRINK", "1") == "1"])

EXTREME = [2**31, 2**62, 2**63 - 1, 2**63, 2**64, -1, -(2**63), 0, 10**4]
HUGE_VALID = [2**31, 2**62, 2**63 - 1, 10**4, 30000]  # legal values that once crashed, hung or ate memory


def pair(draw, low, high, huge=()):
    """An int or a pair: mostly small, sometimes a huge legal value."""
    values = st.one_of(st.integers(low, high), st.integers(low, high), st.integers(low, high),
                       st.sampled_from(list(huge) or [low]))
    return draw(st.one_of(values, st.tuples(values, values)))


@st.composite
def convolution(draw, allow_strings=True):
    """A conv2d call: arrays and keyword arguments.  About two calls in three are valid problems (of every
    family, with legal extremes: huge strides, dilations and paddings, zero sizes); the others have one
    argument corrupted (an integer beyond int64 or negative, mismatched channels or dtypes, a bad rank...)."""
    family = draw(st.sampled_from(["pointwise", "depthwise", "grouped", "dense"]))
    empty = draw(st.integers(0, 9)) == 0  # zero channels (or, below, zero rows or images)
    if family == "depthwise":
        groups = c_in = 0 if empty else draw(st.integers(1, 4))
        c_out = c_in * draw(st.integers(1, 2))
        groups = groups or 1
    else:
        groups = 1 if family in ("pointwise", "dense") else draw(st.integers(1, 3))
        c_in = 0 if empty else groups * draw(st.integers(1, 3))
        c_out = groups * draw(st.integers(0 if empty else 1, 3))
    kernel = (1, 1) if family == "pointwise" else (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    layout = draw(st.sampled_from(["NCHW", "NHWC"]))
    spatial = (draw(st.integers(0 if draw(st.integers(0, 9)) == 0 else 1, 7)), draw(st.integers(1, 7)))
    batch = draw(st.sampled_from([None, 0, 1, 1, 2]))
    dtype = weight_dtype = draw(st.sampled_from([np.float32, np.float64]))
    padding_mode = draw(st.sampled_from(["zeros", "zeros", "reflect", "replicate", "circular"]))
    kwargs = dict(stride=pair(draw, 1, 3, HUGE_VALID), dilation=pair(draw, 1, 3, HUGE_VALID[3:]),
                  padding=(draw(st.sampled_from(["same", "valid"])) if allow_strings and draw(st.integers(0, 5)) == 0
                           else pair(draw, 0, 3, HUGE_VALID[3:] if padding_mode in ("zeros", "replicate") else ())),
                  groups=groups, padding_mode=padding_mode,
                  activation=draw(st.sampled_from([None, "relu", "relu6", "silu", "hardswish"])), layout=layout)
    weight_in = c_in // groups if groups else 0
    rank_4 = True
    if draw(st.integers(0, 2)) == 0:  # corrupt one argument
        what = draw(st.sampled_from(["stride", "padding", "dilation", "groups", "dtype", "weight_dtype", "channels",
                                     "kernel", "rank", "padding_mode", "activation", "layout"]))
        if what in ("stride", "padding", "dilation", "groups"):
            kwargs[what] = draw(st.one_of(st.sampled_from(EXTREME), st.tuples(st.sampled_from(EXTREME),
                                                                              st.integers(0, 3)),
                                          st.sampled_from([1.5, "2", None, (1, 2, 3), True])))
        elif what == "dtype":
            dtype = draw(st.sampled_from([np.float16, np.int32, np.complex64]))
        elif what == "weight_dtype":
            weight_dtype = np.float64 if dtype == np.float32 else np.float32
        elif what == "channels":
            weight_in += draw(st.integers(1, 2))
        elif what == "kernel":
            kernel = (0, draw(st.integers(0, 2)))
        elif what == "rank":
            rank_4 = False
        else:
            kwargs[what] = draw(st.sampled_from(["bogus", 3]))
    dims = (c_in,) + spatial if layout == "NCHW" else spatial + (c_in,)
    x_shape = dims if batch is None else (batch,) + dims
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x = with_memory_layout(rng.standard_normal(x_shape).astype(dtype), draw(st.sampled_from(MEMORY_LAYOUTS)))
    weight = rng.standard_normal((c_out, weight_in) + kernel if rank_4 else (c_out, weight_in)).astype(weight_dtype)
    bias = rng.standard_normal(c_out).astype(weight_dtype) if draw(st.booleans()) else None
    return x, weight, bias, kwargs


def bounded(x_shape, weight_shape, **kwargs) -> bool:
    """The call's result and the reference's work are small enough to run (checks raise as they would)."""
    try:
        plan = numbaconv.plan(x_shape, weight_shape, **{k: v for k, v in kwargs.items() if k != "activation"},
                              dtype=np.float64)
    except ERRORS:
        return True  # invalid: it must raise, cheaply
    size = int(np.prod(plan.out_shape, dtype=object))
    return size <= OUTPUT_LIMIT and size * int(np.prod(weight_shape[1:], dtype=object)) <= 50 * OUTPUT_LIMIT


def agree(run, expected):
    """Both raise one of ERRORS (with a message), or both return; then ``run``'s result is returned."""
    CALLS["count"] += 1
    try:
        wanted = expected()
    except ERRORS as error:
        assert str(error), f"{type(error).__name__} without a message"
        with pytest.raises(ERRORS) as raised:
            run()
        assert str(raised.value)
        return None, None
    CALLS["computed"] += 1
    return run(), wanted


@FUZZ
@given(convolution(), st.sampled_from(["auto", "auto", "grouped", "grouped_blas", "depthwise", "pointwise",
                                       "pointwise_blas"]))
def test_conv2d(call, algorithm):
    x, weight, bias, kwargs = call
    assume(bounded(np.shape(x), weight.shape, **kwargs))
    snapshot = x.copy()
    try:
        numbaconv.plan(x.shape, weight.shape, bias is not None, algorithm=algorithm,
                       **{k: v for k, v in kwargs.items()}, dtype=x.dtype if x.dtype in (np.float32, np.float64)
                       else np.float32)
    except ERRORS:
        algorithm = "auto"  # the forced kernel cannot serve it (or the call is invalid): the auto choice
    got, wanted = agree(lambda: numbaconv.conv2d(x, weight, bias, algorithm=algorithm, **kwargs),
                        lambda: reference.conv2d(x, weight, bias, **kwargs))
    if got is not None:
        assert_matches_reference(got, x, weight, bias, **kwargs)
    np.testing.assert_array_equal(x, snapshot)  # inputs are never modified


@FUZZ
@given(convolution(allow_strings=False), st.sampled_from(["pointwise", "depthwise", "grouped"]))
def test_family_functions(call, family):
    x, weight, bias, kwargs = call
    assume(bounded(np.shape(x), weight.shape, **kwargs))
    layout = kwargs["layout"]
    channels = np.shape(x)[-1 if layout == "NHWC" else -3]
    if family == "pointwise":
        options = dict(stride=kwargs["stride"], padding_mode=kwargs["padding_mode"], layout=layout)
        got, wanted = agree(lambda: numbaconv.pointwise_conv2d(x, weight, bias, **options),
                            lambda: (numbaconv.pointwise_conv2d(x, weight, bias, **options, algorithm="reference")))
        reference_kwargs = dict(options)
    elif family == "depthwise":
        options = {k: kwargs[k] for k in ("stride", "padding", "dilation", "padding_mode", "layout")}
        got, wanted = agree(lambda: numbaconv.depthwise_conv2d(x, weight, bias, **options),
                            lambda: numbaconv.depthwise_conv2d(x, weight, bias, **options, algorithm="reference"))
        reference_kwargs = dict(options, groups=channels)
    else:
        options = {k: kwargs[k] for k in ("stride", "padding", "dilation", "groups", "padding_mode", "layout")}
        got, wanted = agree(lambda: numbaconv.grouped_conv2d(x, weight, bias, **options),
                            lambda: reference.conv2d(x, weight, bias, **options))
        reference_kwargs = options
    if got is not None:
        assert_matches_reference(got, x, weight, bias, **reference_kwargs)


@FUZZ
@given(convolution(), st.integers(1, 4))
def test_separable_conv2d(call, out_channels):
    x, weight, bias, kwargs = call
    layout = kwargs["layout"]
    shape = np.shape(x)
    channels = shape[-1 if layout == "NHWC" else -3] if len(shape) in (3, 4) else 0
    depthwise = weight[:, :1] if weight.ndim == 4 else weight
    pointwise = np.ones((out_channels, depthwise.shape[0], 1, 1), depthwise.dtype)
    options = {k: kwargs[k] for k in ("stride", "padding", "dilation", "padding_mode", "layout")}
    assume(bounded(shape, depthwise.shape, groups=max(channels, 1), **options))
    got, wanted = agree(lambda: numbaconv.separable_conv2d(x, depthwise, pointwise, bias, None,
                                                           activation=kwargs["activation"], **options),
                        lambda: reference.separable_conv2d(x, depthwise, pointwise, bias, None,
                                                           activation=kwargs["activation"], **options))
    if got is not None:
        assert got.shape == wanted.shape and got.dtype == wanted.dtype
        scale = np.abs(wanted).max(initial=0) + 1
        np.testing.assert_allclose(got, wanted, rtol=1e-4, atol=1e-4 * scale)


@FUZZ
@given(convolution(allow_strings=True))
def test_conv1d(call):
    x, weight, bias, kwargs = call
    # rows and columns merged into one sequence axis: (N, C, L) or (N, L, C); the kernel's taps likewise
    shape = x.shape
    if kwargs["layout"] == "NCHW":
        x1 = x.reshape(shape[:-2] + (shape[-2] * shape[-1],))
    else:
        x1 = x.reshape(shape[:-3] + (shape[-3] * shape[-2], shape[-1]))
    w1 = weight.reshape(weight.shape[:2] + (int(np.prod(weight.shape[2:])),)) if weight.ndim >= 2 else weight
    options = {k: (v[1] if isinstance(v, tuple) else v) for k, v in kwargs.items()
               if k in ("stride", "padding", "dilation")}
    options.update(groups=kwargs["groups"], padding_mode=kwargs["padding_mode"], activation=kwargs["activation"],
                   layout="NCL" if kwargs["layout"] == "NCHW" else "NLC")
    if x1.ndim in (2, 3) and w1.ndim == 3:  # the one-row 2-D problem bounds the output
        row = x1.ndim - 1 if options["layout"] == "NCL" else x1.ndim - 2
        as_2d = {k: ((1, v) if k in ("stride", "dilation") else (0, v)) if isinstance(v, int) else v
                 for k, v in options.items() if k in ("stride", "padding", "dilation")}
        assume(bounded(np.expand_dims(x1, row).shape, w1[:, :, None].shape, groups=options["groups"],
                       layout=kwargs["layout"], **as_2d))
    got, wanted = agree(lambda: numbaconv.conv1d(x1, w1, bias, **options), lambda: reference.conv1d(x1, w1, bias, **options))
    if got is not None:
        assert got.shape == wanted.shape and got.dtype == wanted.dtype
        scale = np.abs(wanted).max(initial=0) + 1
        np.testing.assert_allclose(got, wanted, rtol=1e-4, atol=1e-4 * scale)


@FUZZ
@given(convolution(), st.integers(0, 2**16))
def test_gradients(call, seed):
    x, weight, bias, kwargs = call
    kwargs = {k: v for k, v in kwargs.items() if k != "activation"}
    assume(bounded(np.shape(x), weight.shape, **kwargs))
    try:
        out_shape = numbaconv.plan(np.shape(x), weight.shape, **kwargs, dtype=np.float64).out_shape
    except ERRORS:
        out_shape = (1, 1, 1, 1)
    grad_output = np.random.default_rng(seed).standard_normal(out_shape).astype(weight.dtype)
    gi, gi_exact = agree(lambda: numbaconv.conv2d_grad_input(np.shape(x), weight, grad_output, **kwargs),
                         lambda: reference.conv2d_grad_input(np.shape(x), weight, grad_output, **kwargs))
    gw, gw_exact = agree(lambda: numbaconv.conv2d_grad_weight(x, weight.shape, grad_output, **kwargs),
                         lambda: reference.conv2d_grad_weight(x, weight.shape, grad_output, **kwargs))
    if gi is not None and gw is not None:
        check_grads(np.asarray(x), weight, grad_output, **kwargs)  # the documented bounds, and the bias
        return
    for got, exact in ((gi, gi_exact), (gw, gw_exact)):
        if got is not None:
            assert got.shape == exact.shape and got.dtype == exact.dtype
            np.testing.assert_allclose(got, exact, rtol=1e-4, atol=1e-4 * (np.abs(exact).max(initial=0) + 1))


@FUZZ
@given(convolution(), st.sampled_from(["auto", "grouped", "depthwise", "reference", "winograd", 3]))
def test_plan(call, algorithm):
    x, weight, bias, kwargs = call
    dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.float32
    options = {k: v for k, v in kwargs.items()}
    CALLS["count"] += 1
    try:
        plan = numbaconv.plan(np.shape(x), weight.shape, bias is not None, algorithm=algorithm, dtype=dtype, **options)
    except ERRORS as error:
        assert str(error)
        return
    assert plan.workspace_bytes >= 0 and plan.flops >= 0
    CALLS["computed"] += 1
    if bounded(np.shape(x), weight.shape, **options) and x.dtype == weight.dtype == dtype:
        assert plan.out_shape == reference.conv2d(x, weight, None, **options).shape


@settings(FUZZ, max_examples=max(5, FUZZ.max_examples // 10))
@given(convolution())
def test_tune(call):
    x, weight, bias, kwargs = call
    assume(bounded(np.shape(x), weight.shape, **kwargs))
    dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.float32
    CALLS["count"] += 1
    try:
        tuned = numbaconv.tune(np.shape(x), weight.shape, bias is not None, dtype=dtype, repeat=1, use_cache=False,
                               **kwargs)
    except ERRORS as error:
        assert str(error)
        return
    assert tuned.kernel in tuned.seconds
    CALLS["computed"] += 1
    if x.dtype == weight.dtype == dtype and (bias is None or bias.dtype == dtype):
        CALLS["count"] += 1
        got = numbaconv.conv2d(x, weight, bias, algorithm=tuned.kernel, **kwargs)
        assert_matches_reference(got, x, weight, bias, **kwargs)
        CALLS["computed"] += 1


@FUZZ
@given(st.integers(0, 3), st.integers(0, 12), st.one_of(st.integers(-1, 6), st.sampled_from(EXTREME), st.just(2.0)),
       st.sampled_from(["NCHW", "NHWC", "NCW"]),
       st.sampled_from([np.float32, np.float64, np.int16]), st.booleans())
def test_channel_shuffle(batch, channels, groups, layout, dtype, unbatched):
    assume(0 <= channels < 100)
    shape = (max(channels, 0), 2, 3) if layout != "NHWC" else (2, 3, max(channels, 0))
    x = np.random.default_rng(channels).standard_normal(shape if unbatched else (batch,) + shape).astype(dtype)
    CALLS["count"] += 1
    try:
        got = numbaconv.channel_shuffle(x, groups, layout=layout)
    except ERRORS as error:
        assert str(error)
        valid = (layout in ("NCHW", "NHWC") and isinstance(groups, int) and 1 <= groups < 2**63
                 and channels % groups == 0)
        assert not valid, error
        return
    CALLS["computed"] += 1
    axis = x.ndim - 1 if layout == "NHWC" else x.ndim - 3
    per_group = channels // groups
    for position in range(channels):  # torch.nn.ChannelShuffle: channel g*(C/G) + i moves to i*G + g
        g, i = divmod(position, per_group)
        np.testing.assert_array_equal(np.take(got, i * groups + g, axis=axis), np.take(x, position, axis=axis))
