"""grouped_gemm (cpu/implicit.py): the implicit GEMM on the register tile, against the NumPy reference.

The shapes here are chosen to reach each of its paths, which the generic grids of test_kernels (a few
channels per group) do not: thin groups (2, 4, 8 channels per group, whole groups to a vector, shuffled
inputs), block-diagonal super groups, several channel blocks of the reduction, partial column blocks, both
register tiles, the tap runs of every stride and dilation, and the packed weights kept for frozen arrays.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import MEMORY_LAYOUTS, assert_matches_reference, with_memory_layout
from hypothesis import given, settings
from hypothesis import strategies as st

import numbaconv
from numbaconv import arrays
from numbaconv.cpu import implicit, packcache


def _run(rng, x_shape, weight_shape, dtype=np.float32, layout="NCHW", bias=True, **kwargs):
    x = rng.standard_normal(x_shape).astype(dtype)
    weight = rng.standard_normal(weight_shape).astype(dtype)
    b = rng.standard_normal(weight_shape[0]).astype(dtype) if bias else None
    x_caller = x if layout == "NCHW" else np.ascontiguousarray(np.moveaxis(x, 1, -1))
    got = numbaconv.conv2d(x_caller, weight, b, algorithm="grouped_gemm", layout=layout, **kwargs)
    if layout == "NHWC":
        got = np.moveaxis(got, -1, 1)
    assert_matches_reference(got, x, weight, b, **kwargs)
    return got


def _spec(x_shape, weight_shape, dtype=np.float32, **kwargs):
    return numbaconv.plan(x_shape, weight_shape, dtype=dtype, **kwargs).spec


@pytest.mark.parametrize("per_group", [2, 4, 8])
@pytest.mark.parametrize("kernel, stride, dilation", [
    ((3, 3), 1, 1), ((3, 3), 2, 1), ((3, 3), 1, 2), ((5, 5), 1, 1), ((5, 5), 2, 1), ((3, 2), (2, 3), (1, 2)),
    ((1, 1), 1, 1), ((1, 4), 1, 1), ((7, 7), 3, 1),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_thin_groups(rng, per_group, kernel, stride, dilation, dtype, layout):
    """As many input as output channels per group, whole groups to a vector: the shuffled thin tile (for
    float64's 8 lanes, 8 per group is one group per vector: the block tile)."""
    lanes = 64 // np.dtype(dtype).itemsize
    groups = 2 * lanes // per_group  # two vectors of groups: two super groups
    channels = groups * per_group
    x_shape, weight_shape = (2, channels, 11, 13), (channels, per_group) + kernel
    kwargs = dict(stride=stride, dilation=dilation, padding=(kernel[0] // 2, kernel[1] // 2), groups=groups,
                  activation="relu6")
    spec = _spec(x_shape, weight_shape, dtype, **kwargs)
    assert implicit.thin(spec) == (per_group < lanes)
    _run(rng, x_shape, weight_shape, dtype, layout, **kwargs)


@pytest.mark.parametrize("c_in, c_out, groups, kernel", [
    (32, 128, 1, (3, 3)),     # dense, the 12 x 2 tile, one channel block
    (96, 40, 1, (3, 3)),      # 864-long reduction: three channel blocks; 40 columns: the 24 x 1 tile, partial block
    (64, 48, 2, (3, 3)),      # 24 per group: two super groups of 24 columns
    (12, 16, 2, (3, 3)),      # 6 in, 8 out per group: block-diagonal super groups of 2
    (480, 120, 3, (1, 1)),    # ShuffleNet's grouped 1x1
    (3, 32, 1, (7, 7)),       # a stem: 3 input channels, 49 taps
    (40, 36, 4, (2, 5)),      # 10 in, 9 out per group
])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_block_tiles(rng, c_in, c_out, groups, kernel, stride, layout):
    kwargs = dict(stride=stride, padding=(kernel[0] // 2, kernel[1] // 2), groups=groups, activation="silu")
    spec = _spec((1, c_in, 15, 9), (c_out, c_in // groups) + kernel, **kwargs)
    assert not implicit.thin(spec)
    _run(rng, (1, c_in, 15, 9), (c_out, c_in // groups) + kernel, layout=layout, **kwargs)


def test_tile_and_block_choices():
    """What the shapes above are meant to reach."""
    assert implicit.tile_shape(_spec((1, 32, 8, 8), (128, 32, 3, 3))) == (implicit.WIDE_ROWS, 2)
    assert implicit.tile_shape(_spec((1, 96, 8, 8), (40, 96, 3, 3))) == (implicit.NARROW_ROWS, 1)
    assert implicit.channel_block(_spec((1, 96, 8, 8), (40, 96, 3, 3))) == 32  # 3 blocks of 288
    assert implicit.super_group(_spec((1, 12, 8, 8), (16, 6, 3, 3), groups=2)) == 2
    assert implicit.super_group(_spec((1, 128, 8, 8), (128, 4, 3, 3), groups=32)) == 4
    assert implicit.super_group(_spec((1, 24, 8, 8), (24, 4, 3, 3), groups=6)) == 1  # 6 groups: no whole vector
    assert implicit.thin(_spec((1, 128, 8, 8), (128, 4, 3, 3), groups=32))
    assert not implicit.thin(_spec((1, 64, 8, 8), (128, 2, 3, 3), groups=32))  # 2 in, 4 out: not thin


@pytest.mark.parametrize("stride, dilation, width, runs", [
    (1, 1, 3, [3, 3, 3]),
    (2, 1, 3, [2, 1] * 3),          # columns 0, 2 in phase 0 (pixels 0, 1), column 1 in phase 1
    (1, 2, 3, [1, 1, 1] * 3),       # dilated: taps two pixels apart, one per run
    (1, 1, 5, [3, 2] * 3),          # runs of at most 3
])
def test_tap_runs(stride, dilation, width, runs):
    spec = _spec((1, 16, 20, 20), (16, 4, 3, width), groups=4, stride=stride, dilation=dilation)
    _, plane_width, halo, slack = implicit.geometry(spec)
    plane_rows = 5 + halo + slack  # a band of 5 output rows
    starts, lengths, order = implicit.tap_runs(spec, plane_rows, plane_width)
    assert list(lengths) == runs
    assert sorted(order) == list(range(3 * width))
    offsets = implicit.tap_offsets(spec, plane_rows, plane_width)
    position = 0
    for start, length in zip(starts, lengths):  # a run's taps read consecutive pixels from its start
        for j in range(length):
            assert offsets[order[position + j]] == start + j * implicit.channel_block(spec)
        position += length


def test_block_diagonal_packing(rng):
    """Each output column's weights sit in its own group's input rows, zero in the other groups' rows."""
    spec = _spec((1, 12, 8, 8), (16, 6, 3, 3), groups=2)
    weight = rng.standard_normal((16, 6, 3, 3)).astype(np.float32)
    packed = implicit.pack_weights(weight, spec)
    step = implicit.channel_block(spec)  # the whole 12 channels x 9 taps: one block
    width = 16
    panel = packed.reshape(1, 1, 1, 9, step, width)[0, 0, 0]  # [tap, channel, column]
    for column in range(16):
        group = column // 8
        for channel in range(12):
            expected = weight[column, channel - 6 * group].reshape(9) if channel // 6 == group else np.zeros(9)
            np.testing.assert_array_equal(panel[:, channel, column], expected)


@pytest.mark.parametrize("shape, weight_shape, groups", [
    ((1, 128, 9, 9), (128, 4, 3, 3), 32),   # thin
    ((1, 32, 9, 9), (64, 32, 3, 3), 1),     # block
])
def test_frozen_weights_are_packed_once(rng, shape, weight_shape, groups):
    packcache.clear()
    x = rng.standard_normal(shape).astype(np.float32)
    weight = rng.standard_normal(weight_shape).astype(np.float32)
    fresh = numbaconv.conv2d(x, weight, padding=1, groups=groups, algorithm="grouped_gemm")
    assert packcache.held_bytes() == 0  # a writeable weight is packed per call, never kept
    weight.setflags(write=False)
    first = numbaconv.conv2d(x, weight, padding=1, groups=groups, algorithm="grouped_gemm")
    held = packcache.held_bytes()
    assert held > 0
    again = numbaconv.conv2d(x, weight, padding=1, groups=groups, algorithm="grouped_gemm")
    assert packcache.held_bytes() == held
    np.testing.assert_array_equal(first, fresh)
    np.testing.assert_array_equal(again, fresh)
    packcache.clear()


@pytest.mark.parametrize("memory_layout", MEMORY_LAYOUTS)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_any_strides_and_inputs_untouched(rng, memory_layout, layout):
    x = rng.standard_normal((2, 64, 10, 7)).astype(np.float32)
    weight = rng.standard_normal((64, 4, 3, 3)).astype(np.float32)
    x_caller = x if layout == "NCHW" else np.ascontiguousarray(np.moveaxis(x, 1, -1))
    view = with_memory_layout(x_caller, memory_layout)
    before = view.copy()
    got = numbaconv.conv2d(view, weight, padding=1, groups=16, layout=layout, algorithm="grouped_gemm")
    np.testing.assert_array_equal(view, before)
    assert_matches_reference(got if layout == "NCHW" else np.moveaxis(got, -1, 1), x, weight, padding=1, groups=16)


def test_outputs_start_on_a_cache_line():
    for shape in [(3,), (2, 5, 7), (0,)]:
        array = arrays.aligned_empty(shape, np.float32)
        assert array.shape == shape and array.dtype == np.float32 and array.flags.c_contiguous
        assert array.ctypes.data % 64 == 0 or array.size == 0


def test_scratch_slots_are_separate_and_bounded():
    first = arrays.scratch("test_a", (100,), np.float32)
    second = arrays.scratch("test_b", (100,), np.float32)
    assert not np.shares_memory(first, second)
    assert first.ctypes.data % 64 == 0 and first.flags.c_contiguous
    again = arrays.scratch("test_a", (50, 2), np.float64)  # the same slot, grown: a new buffer
    assert again.shape == (50, 2) and again.dtype == np.float64
    from numbaconv.config import SCRATCH_BYTES
    big = arrays.scratch("test_a", (SCRATCH_BYTES // 4 + 1,), np.float32)  # past the bound: its own array
    assert not np.shares_memory(big, arrays.scratch("test_a", (10,), np.float32))


@st.composite
def grouped_problems(draw):
    per_group_in = draw(st.sampled_from([1, 2, 3, 4, 8, 16, 24]))
    per_group_out = draw(st.sampled_from([per_group_in, per_group_in, 2, 4, 8, 12, 40]))
    groups = draw(st.sampled_from([1, 2, 3, 4, 8, 16]))
    kernel = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    span = [d * (k - 1) + 1 for d, k in zip(dilation, kernel)]
    height = draw(st.integers(max(1, span[0] - 2 * padding[0]), span[0] + 9))
    width = draw(st.integers(max(1, span[1] - 2 * padding[1]), span[1] + 30))
    return dict(x_shape=(draw(st.integers(1, 2)), groups * per_group_in, height, width),
                weight_shape=(groups * per_group_out, per_group_in) + kernel,
                kwargs=dict(stride=stride, dilation=dilation, padding=padding, groups=groups,
                            padding_mode=draw(st.sampled_from(["zeros", "zeros", "replicate", "circular"])),
                            activation=draw(st.sampled_from([None, "relu", "hardswish"]))),
                dtype=draw(st.sampled_from([np.float32, np.float64])), layout=draw(st.sampled_from(["NCHW", "NHWC"])),
                bias=draw(st.booleans()), seed=draw(st.integers(0, 2**32 - 1)))


@settings(max_examples=60, deadline=None)
@given(grouped_problems())
def test_random_grouped_configurations(problem):
    kwargs = problem["kwargs"]
    if kwargs["padding_mode"] == "circular" and (kwargs["padding"][0] > problem["x_shape"][2]
                                                 or kwargs["padding"][1] > problem["x_shape"][3]):
        kwargs["padding_mode"] = "zeros"
    _run(np.random.default_rng(problem["seed"]), problem["x_shape"], problem["weight_shape"], problem["dtype"],
         problem["layout"], problem["bias"], **kwargs)
