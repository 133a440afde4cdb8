"""Every kernel against the NumPy reference: parametrized grids and hypothesis configurations."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DTYPES, MEMORY_LAYOUTS, assert_matches_reference, with_memory_layout
from hypothesis import given, settings
from hypothesis import strategies as st

import numbaconv

# every registered CPU kernel but the oracle itself: a newly registered kernel is tested without edits here
CPU_KERNELS = [a.name for a in numbaconv.algorithms() if a.device == "cpu" and a.name != "reference"]


def random_problem(rng, n, c_in, c_out, groups, kernel, size, dtype, bias=True):
    x = rng.standard_normal((n, c_in) + size).astype(dtype)
    weight = rng.standard_normal((c_out, c_in // groups) + kernel).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype) if bias else None
    return x, weight, b


def serving_kernels(x_shape, weight_shape, **kwargs):
    """Every registered CPU kernel that accepts this problem (the test runs each of them)."""
    names = []
    for name in CPU_KERNELS:
        try:
            numbaconv.plan(x_shape, weight_shape, algorithm=name, **kwargs)
        except ValueError:
            continue
        names.append(name)
    return names


def conv2d_in_layout(x, weight, bias, layout, **kwargs):
    """numbaconv.conv2d on x (NCHW) handed over in ``layout``; the result back in NCHW to compare.
    Channels-last data runs the kernels' NHWC variants where they have one."""
    if layout == "NCHW":
        return numbaconv.conv2d(x, weight, bias, **kwargs)
    got = numbaconv.conv2d(np.ascontiguousarray(np.moveaxis(x, -3, -1)), weight, bias, layout="NHWC", **kwargs)
    return np.moveaxis(got, -1, -3)


# ---- parametrized grid: family x stride x padding x dilation x dtype x layout ----------------------------
FAMILIES = {
    # name: (c_in, c_out, groups, kernel)
    "pointwise": (6, 9, 1, (1, 1)),
    "depthwise": (5, 5, 5, (3, 3)),
    "depthwise_multiplier": (3, 6, 3, (3, 2)),
    "grouped": (6, 8, 2, (3, 3)),
    "dense": (3, 5, 1, (2, 3)),
    "grouped_1x1": (6, 9, 3, (1, 1)),
}


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("stride", [1, 2, (1, 3)])
@pytest.mark.parametrize("padding", [0, 1, (2, 0), "same", "valid"])
@pytest.mark.parametrize("dilation", [1, (2, 1)])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_grid_against_reference(rng, family, stride, padding, dilation, dtype, layout):
    c_in, c_out, groups, kernel = FAMILIES[family]
    x, weight, bias = random_problem(rng, 2, c_in, c_out, groups, kernel, (9, 11), dtype)
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    if padding == "same" and stride != 1:  # torch's rule: 'same' is defined for stride 1 only
        with pytest.raises(ValueError, match="padding='same' is only supported with stride 1"):
            numbaconv.conv2d(x, weight, bias, **kwargs)
        return
    kernels = serving_kernels(x.shape, weight.shape, bias=True, dtype=dtype, **kwargs)
    assert kernels, "at least the grouped kernel serves every convolution"
    for name in kernels:
        got = conv2d_in_layout(x, weight, bias, layout, algorithm=name, **kwargs)
        assert_matches_reference(got, x, weight, bias, **kwargs)


@pytest.mark.parametrize("memory_layout", MEMORY_LAYOUTS)
@pytest.mark.parametrize("family", ["pointwise", "depthwise", "grouped"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_any_strides_and_inputs_untouched(rng, memory_layout, family, dtype):
    c_in, c_out, groups, kernel = FAMILIES[family]
    x, weight, bias = random_problem(rng, 2, c_in, c_out, groups, kernel, (8, 7), dtype)
    x_view = with_memory_layout(x, memory_layout)
    w_view = with_memory_layout(weight, memory_layout)
    b_view = bias[::-1].copy()[::-1]
    copies = [a.copy() for a in (x_view, w_view, b_view)]
    kwargs = dict(stride=(2, 1), padding=1, groups=groups)
    for name in serving_kernels(x.shape, weight.shape, bias=True, dtype=dtype, **kwargs):
        got = numbaconv.conv2d(x_view, w_view, b_view, algorithm=name, **kwargs)
        assert_matches_reference(got, x, weight, bias, **kwargs)
    for before, after in zip(copies, (x_view, w_view, b_view)):
        np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("activation", [None, "relu", "relu6", "silu", "hardswish"])
@pytest.mark.parametrize("family", ["pointwise", "depthwise", "grouped"])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_padding_modes_and_activations(rng, padding_mode, activation, family, layout):
    c_in, c_out, groups, kernel = FAMILIES[family]
    x, weight, bias = random_problem(rng, 1, c_in, c_out, groups, kernel, (6, 7), np.float32)
    x *= 4  # spread values over the activations' interesting ranges (relu6 clips at 6)
    padding = (2, 1) if kernel != (1, 1) else 0
    kwargs = dict(padding=padding, groups=groups, padding_mode=padding_mode, activation=activation)
    for name in serving_kernels(x.shape, weight.shape, bias=True, **kwargs):
        got = conv2d_in_layout(x, weight, bias, layout, algorithm=name, **kwargs)
        assert_matches_reference(got, x, weight, bias, **kwargs)


def test_activation_is_applied_after_bias(rng):
    x, weight, _ = random_problem(rng, 1, 4, 4, 4, (3, 3), (5, 5), np.float64, bias=False)
    bias = np.full(4, -1e3)
    np.testing.assert_array_equal(numbaconv.conv2d(x, weight, bias, groups=4, activation="relu"), 0)
    np.testing.assert_array_equal(numbaconv.conv2d(x, weight, -bias, groups=4, activation="relu6"), 6)


@pytest.mark.parametrize("family", ["pointwise", "depthwise", "grouped"])
def test_unbatched_empty_batch_and_nhwc(rng, family):
    c_in, c_out, groups, kernel = FAMILIES[family]
    x, weight, bias = random_problem(rng, 3, c_in, c_out, groups, kernel, (7, 6), np.float32)
    kwargs = dict(groups=groups, padding=kernel[0] // 2)
    # unbatched (C, H, W) -> (C_out, H_out, W_out), equal to the batched result of that image
    single = numbaconv.conv2d(x[1], weight, bias, **kwargs)
    assert single.ndim == 3
    assert_matches_reference(single, x[1], weight, bias, **kwargs)
    # empty batch -> empty result of the right shape
    empty = numbaconv.conv2d(x[:0], weight, bias, **kwargs)
    assert empty.shape == (0,) + numbaconv.conv2d(x, weight, bias, **kwargs).shape[1:]
    # channels-last in and out
    x_nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    got = numbaconv.conv2d(x_nhwc, weight, bias, layout="NHWC", **kwargs)
    assert got.shape == numbaconv.conv2d(x, weight, bias, **kwargs).transpose(0, 2, 3, 1).shape
    assert_matches_reference(got.transpose(0, 3, 1, 2), x, weight, bias, **kwargs)
    assert got.flags.c_contiguous


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("contiguous", [True, False])
def test_out_parameter(rng, layout, contiguous):
    x, weight, bias = random_problem(rng, 2, 4, 6, 2, (3, 3), (6, 6), np.float64)
    if layout == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    expected = numbaconv.conv2d(x, weight, bias, padding=1, groups=2, layout=layout)
    if contiguous:
        out = np.full(expected.shape, np.nan)
    else:
        out = np.full(expected.shape[:-1] + (2 * expected.shape[-1],), np.nan)[..., ::2]
    result = numbaconv.conv2d(x, weight, bias, padding=1, groups=2, layout=layout, out=out)
    assert result is out
    np.testing.assert_array_equal(out, expected)


def test_zero_channel_edge_cases(rng):
    x = rng.standard_normal((1, 0, 5, 5)).astype(np.float32)
    got = numbaconv.conv2d(x, np.zeros((3, 0, 3, 3), np.float32), np.arange(3, dtype=np.float32))
    np.testing.assert_array_equal(got, np.broadcast_to(np.arange(3, dtype=np.float32)[:, None, None], (1, 3, 3, 3)))
    got = numbaconv.conv2d(rng.standard_normal((1, 4, 5, 5)), np.zeros((0, 4, 1, 1)))
    assert got.shape == (1, 0, 5, 5)


@pytest.mark.parametrize("family", ["pointwise", "depthwise", "grouped"])
def test_nan_and_inf_propagate(rng, family):
    c_in, c_out, groups, kernel = FAMILIES[family]
    x, weight, bias = random_problem(rng, 1, c_in, c_out, groups, kernel, (8, 8), np.float32)
    x[0, 0, 3, 3] = np.nan
    x[0, c_in - 1, 6, 1] = np.inf
    kwargs = dict(groups=groups, padding=kernel[0] // 2)
    for name in serving_kernels(x.shape, weight.shape, bias=True, **kwargs):
        got = numbaconv.conv2d(x, weight, bias, algorithm=name, **kwargs)
        assert np.isnan(got).any()
        assert_matches_reference(got, x, weight, bias, **kwargs)


def test_family_entry_points(rng):
    x = rng.standard_normal((2, 6, 9, 9)).astype(np.float32)
    w_pw = rng.standard_normal((4, 6, 1, 1)).astype(np.float32)
    w_dw = rng.standard_normal((12, 1, 3, 3)).astype(np.float32)
    w_gr = rng.standard_normal((9, 2, 3, 3)).astype(np.float32)
    np.testing.assert_array_equal(numbaconv.pointwise_conv2d(x, w_pw, stride=2), numbaconv.conv2d(x, w_pw, stride=2))
    np.testing.assert_array_equal(numbaconv.depthwise_conv2d(x, w_dw, padding="same"),
                                  numbaconv.conv2d(x, w_dw, padding="same", groups=6))
    np.testing.assert_array_equal(numbaconv.grouped_conv2d(x, w_gr, None, 1, 1, 1, 3),
                                  numbaconv.conv2d(x, w_gr, padding=1, groups=3))
    x_nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    assert_matches_reference(numbaconv.depthwise_conv2d(x_nhwc, w_dw, layout="NHWC").transpose(0, 3, 1, 2),
                             x, w_dw, groups=6)


def test_large_real_layers_match(rng):
    """A few real-network shapes at full size (tails of the 16-pixel runs, many channel blocks)."""
    from numbaconv import workloads

    for key in ["mobilenet_v2/b4_dw_x4", "resnext50_32x4d/conv5_grouped_x2", "mobilenet_v2/b6_project"]:
        layer = workloads.layer(key)
        spec = layer.spec()
        x, weight, bias = random_problem(rng, 1, layer.in_channels, layer.out_channels, layer.groups,
                                         (layer.kernel,) * 2, (layer.size,) * 2, np.float32)
        kwargs = dict(stride=layer.stride, padding=layer.padding, groups=layer.groups)
        assert spec.out_shape == numbaconv.plan(x.shape, weight.shape, True, **kwargs).out_shape
        for name in serving_kernels(x.shape, weight.shape, bias=True, **kwargs):
            assert_matches_reference(numbaconv.conv2d(x, weight, bias, algorithm=name, **kwargs), x, weight, bias,
                                     **kwargs)


# ---- hypothesis: random configurations over every option -----------------------------------------------
@st.composite
def conv_problems(draw):
    family = draw(st.sampled_from(["pointwise", "depthwise", "grouped", "dense"]))
    groups = {"pointwise": 1, "dense": 1}.get(family) or draw(st.integers(1, 4))
    if family == "depthwise":
        c_in = groups
        c_out = groups * draw(st.integers(1, 3))
    else:
        c_in = groups * draw(st.integers(1, 3))
        c_out = groups * draw(st.integers(1, 5))
    kernel = (1, 1) if family == "pointwise" else (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (1, 1) if family == "pointwise" else (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    use_same = draw(st.booleans()) and stride == (1, 1)
    padding = "same" if use_same else (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    pad = (0, 0) if use_same else padding
    span = [d * (k - 1) + 1 for d, k in zip(dilation, kernel)]
    height = draw(st.integers(max(1, span[0] - 2 * pad[0]), span[0] + 12))
    width = draw(st.integers(max(1, span[1] - 2 * pad[1]), span[1] + 40))
    padding_mode = draw(st.sampled_from(["zeros", "zeros", "reflect", "replicate", "circular"]))
    if padding_mode == "reflect" and (max(pad) >= min(height, width) or use_same):
        padding_mode = "zeros"
    if padding_mode == "circular" and use_same:
        padding_mode = "replicate"
    if padding_mode == "circular" and (pad[0] > height or pad[1] > width):
        padding_mode = "zeros"
    return dict(
        shape=(draw(st.integers(0, 3)), c_in, height, width), weight_shape=(c_out, c_in // groups) + kernel,
        stride=stride, padding=padding, dilation=dilation, groups=groups, padding_mode=padding_mode,
        activation=draw(st.sampled_from([None, "relu", "relu6", "silu", "hardswish"])),
        dtype=draw(st.sampled_from(DTYPES)), bias=draw(st.booleans()),
        memory_layout=draw(st.sampled_from(MEMORY_LAYOUTS)), layout=draw(st.sampled_from(["NCHW", "NHWC"])),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


@given(conv_problems())
def test_random_configurations(problem):
    rng = np.random.default_rng(problem.pop("seed"))
    shape, weight_shape, dtype = problem.pop("shape"), problem.pop("weight_shape"), problem.pop("dtype")
    memory_layout, with_bias, layout = problem.pop("memory_layout"), problem.pop("bias"), problem.pop("layout")
    x = rng.standard_normal(shape).astype(dtype)
    weight = rng.standard_normal(weight_shape).astype(dtype)
    bias = rng.standard_normal(weight_shape[0]).astype(dtype) if with_bias else None
    # the caller's array in the caller's layout, with arbitrary strides
    x_caller = x if layout == "NCHW" else np.ascontiguousarray(np.moveaxis(x, 1, -1))
    x_view = with_memory_layout(x_caller, memory_layout)
    for name in ["auto"] + serving_kernels(shape, weight_shape, bias=with_bias, dtype=dtype, **problem):
        got = numbaconv.conv2d(x_view, weight, bias, algorithm=name, layout=layout, **problem)
        if layout == "NHWC":
            got = np.moveaxis(got, -1, 1)
        assert_matches_reference(got, x, weight, bias, **problem)
    np.testing.assert_array_equal(x_view, x_caller)


def test_grouped_kernel_walks_planes_both_ways():
    """Both ways of walking an output plane occur on real layers (and so in the tests above)."""
    from numbaconv.cpu.grouped import plane_segments

    # ResNeXt conv5 3x3 at 7x7, stride 1: one segment over the padded width (9) of 7 rows
    assert plane_segments(7, 7, 1, 9) == (1, 6 * 9 + 7)
    # ResNeXt conv3 first 3x3, stride 2 from 56: rows of 28 from a phase-split row of 58
    assert plane_segments(28, 28, 2, 58) == (28, 28)
    # stride 2 to 7x7: 7 row runs beat 13 plane runs
    assert plane_segments(7, 7, 2, 16) == (7, 7)


# ---- the channels-last depthwise register tiles: every specialized filter width and stride, and the rest ----
@pytest.mark.parametrize("kernel_width,stride", [(3, 1), (3, 2), (5, 1), (5, 2), (7, 1), (7, 2), (4, 1), (1, 3)])
@pytest.mark.parametrize("width", [1, 7, 8, 9, 19, 40])
@pytest.mark.parametrize("channels", [8, 16, 24, 40])
@pytest.mark.parametrize("layout", ["NCHW", "NCHW-blocked", "NHWC"])
def test_depthwise_register_tiles(rng, monkeypatch, kernel_width, stride, width, channels, layout):
    """The depthwise register tiles against the float64 reference, channels last (`depthwise_nhwc_tiled`) and
    through blocks of channels (`depthwise_nchw_blocked`): the row tiles of each (filter width, stride) with a
    case of their own (whole tiles without masks, tiles at the rows' ends and rows shorter than a tile with
    masks), the generic tile for the others, whole and partial channel vectors, rows shorter than the filter,
    top and bottom padding beyond the input, and the activation in the epilogue.  'NCHW-blocked' sends every
    NCHW layer through the blocks (by default some stride-1 3x3 layers take the planes' kernel)."""
    if layout == "NCHW-blocked":
        from numbaconv.cpu import depthwise

        monkeypatch.setattr(depthwise, "blocked_serves", lambda multiplier, *args: multiplier == 1)
        layout = "NCHW"
    x = rng.standard_normal((2, channels, 5, width)).astype(np.float32)
    weight = rng.standard_normal((channels, 1, 3, kernel_width)).astype(np.float32)
    bias = rng.standard_normal(channels).astype(np.float32)
    for padding in [(1, kernel_width // 2), (2, 0), (0, kernel_width - 1)]:
        if width + 2 * padding[1] < kernel_width:
            continue
        kwargs = dict(stride=(1, stride), padding=padding, groups=channels, activation="relu6")
        assert_matches_reference(conv2d_in_layout(x, weight, bias, layout, **kwargs), x, weight, bias, **kwargs)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dilation", [1, 2])
@pytest.mark.parametrize("layout", ["NCHW", "NCHW-blocked", "NHWC"])
def test_depthwise_register_tiles_dtypes_and_dilation(rng, monkeypatch, dtype, dilation, layout):
    """Both dtypes (a float64 vector holds 8 channels) and a dilated filter (the generic tile, checked at the
    rows' ends), at a real layer's channel count with a partial last vector (728 = 45.5 x 16)."""
    if layout == "NCHW-blocked":
        from numbaconv.cpu import depthwise

        monkeypatch.setattr(depthwise, "blocked_serves", lambda multiplier, *args: multiplier == 1)
        layout = "NCHW"
    for channels, size, kernel, stride in [(728, 19, 3, 1), (96, 23, 3, 2), (20, 14, 5, 1)]:
        x, weight, bias = random_problem(rng, 1, channels, channels, channels, (kernel, kernel), (size, size), dtype)
        kwargs = dict(stride=stride, padding=kernel // 2 * dilation, dilation=dilation, groups=channels)
        assert_matches_reference(conv2d_in_layout(x, weight, bias, layout, **kwargs), x, weight, bias, **kwargs)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.data())
def test_border_recomputed_from_its_padded_window(data):
    """Depthwise and implicit-GEMM (grouped_gemm: dense and grouped) layers under a reflect/replicate/circular
    border by the border paths (the zero-padded pass over the whole output, then the border recomputed: by
    the depthwise border kernel, or each rectangle from its padded window; their size rules relaxed here so
    that small planes take them) against the reference: strides, dilations, 'same' padding, multipliers, both
    layouts and dtypes, non-contiguous inputs."""
    from numbaconv import dispatch
    from numbaconv import spec as spec_module

    mode = data.draw(st.sampled_from(["reflect", "replicate", "circular"]))
    layout = data.draw(st.sampled_from(["NCHW", "NHWC"]))
    dtype = data.draw(st.sampled_from(DTYPES))
    kernel = (data.draw(st.integers(1, 5)), data.draw(st.integers(1, 5)))
    stride = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2)))
    dilation = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2)))
    same = all(s == 1 for s in stride) and data.draw(st.booleans())
    padding = "same" if same else tuple(data.draw(st.integers(0, 2)) for _ in kernel)
    algorithm = data.draw(st.sampled_from(["depthwise", "grouped_gemm"]))
    channels, multiplier = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 2))
    groups = channels if algorithm == "depthwise" else data.draw(st.sampled_from([1, channels]))
    height, width = data.draw(st.integers(24, 48)), data.draw(st.integers(24, 48))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x = rng.standard_normal((data.draw(st.integers(1, 2)), channels, height, width)).astype(dtype)
    if layout == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    if data.draw(st.booleans()):
        x = np.repeat(x, 2, axis=0)[::2]  # a non-contiguous view
    weight = rng.standard_normal((channels * multiplier, channels // groups) + kernel).astype(dtype)
    bias = rng.standard_normal(channels * multiplier).astype(dtype)
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, padding_mode=mode)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(spec_module, "BORDER_SHARE", 2)  # the implicit GEMM's border rectangles
        patch.setattr(dispatch, "DEPTHWISE_BORDER_SHARE", 1)  # the depthwise border kernel, whatever the frame
        spec = numbaconv.plan(x.shape, weight.shape, True, dtype=dtype, layout=layout, **kwargs).spec
        kernel_frame = algorithm == "depthwise" and layout == "NHWC"  # the depthwise border kernel's
        bordered = (spec.border_rectangles(1) if kernel_frame else spec.border_regions) is not None
        got = numbaconv.conv2d(x, weight, bias, layout=layout, algorithm=algorithm, **kwargs)
    nchw = x if layout == "NCHW" else x.transpose(0, 3, 1, 2)
    assert_matches_reference(got if layout == "NCHW" else got.transpose(0, 3, 1, 2), nchw, weight, bias, **kwargs)
    assert bordered or not spec.has_padding  # the path under test ran


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("groups", [2, 1])
def test_border_path_at_its_own_size_rule(rng, mode, layout, groups):
    """A 512 x 600 plane takes the border path by the default rule (dense layers by the implicit GEMM; a
    depthwise layer's frame is within its own rule at any size here); small planes pad the whole input."""
    x = rng.standard_normal((1, 2, 512, 600)).astype(np.float32)
    weight = rng.standard_normal((4, 2 // groups, 3, 3)).astype(np.float32)
    kwargs = dict(padding=1, groups=groups, padding_mode=mode)
    assert numbaconv.plan(x.shape, weight.shape, dtype=np.float32, **kwargs).spec.border_regions
    assert numbaconv.plan((1, 2, 64, 64), weight.shape, dtype=np.float32, **kwargs).spec.border_regions is None
    if layout == "NHWC":
        got = numbaconv.conv2d(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), weight, layout="NHWC", **kwargs)
        got = got.transpose(0, 3, 1, 2)
    else:
        got = numbaconv.conv2d(x, weight, **kwargs)
    assert_matches_reference(got, x, weight, **kwargs)
