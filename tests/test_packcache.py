"""Packed weights kept for frozen (read-only) weight arrays (cpu/packcache.py): which arrays count as frozen,
that a kept packing is used only while its array lives, that results are the same bit for bit, and that the
cache stays within its byte budget."""

from __future__ import annotations

import gc

import numpy as np
import pytest

import numbaconv
from numbaconv.cpu import packcache


def frozen_copy(array):
    copy = np.array(array)
    copy.setflags(write=False)
    return copy


def test_which_arrays_are_frozen():
    owner = np.ones((4, 3, 1, 1), np.float32)
    assert not packcache.frozen(owner)  # writeable
    view = owner.view()
    view.setflags(write=False)
    assert not packcache.frozen(view)  # read-only, but its base can change it
    frozen = frozen_copy(owner)
    assert packcache.frozen(frozen)
    assert packcache.frozen(frozen.reshape(4, 3))  # a view of a frozen array
    assert packcache.frozen(np.frombuffer(bytes(48), np.float32))  # over immutable bytes
    over_bytearray = np.frombuffer(bytearray(48), np.float32)
    over_bytearray.setflags(write=False)
    assert not packcache.frozen(over_bytearray)  # the bytearray can change


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("pixels, batch", [(7, 1), (7, 3), (1, 2)])
def test_frozen_weights_give_the_same_result_and_are_packed_once(layout, pixels, batch):
    packcache.clear()
    rng = np.random.default_rng(pixels + batch)
    shape = (batch, 70, pixels, pixels) if layout == "NCHW" else (batch, pixels, pixels, 70)
    x = rng.standard_normal(shape).astype(np.float32)
    weight = rng.standard_normal((40, 70, 1, 1)).astype(np.float32)
    bias = rng.standard_normal(40).astype(np.float32)
    wanted = numbaconv.conv2d(x, weight, bias, layout=layout, activation="relu", algorithm="pointwise_gemm")
    frozen = frozen_copy(weight)
    first = numbaconv.conv2d(x, frozen, bias, layout=layout, activation="relu", algorithm="pointwise_gemm")
    held = packcache.held_bytes()
    second = numbaconv.conv2d(x, frozen, bias, layout=layout, activation="relu", algorithm="pointwise_gemm")
    assert np.array_equal(first, wanted) and np.array_equal(second, wanted)
    assert packcache.held_bytes() == held  # the second call packed nothing new
    assert (held > 0) == (pixels > 1)  # one pixel per image: a matrix-vector product, nothing packed
    del frozen
    gc.collect()
    assert packcache.held_bytes() == 0  # the entry went with its array


def test_a_writeable_weight_is_packed_on_every_call():
    packcache.clear()
    x = np.ones((1, 8, 5, 5), np.float32)
    weight = np.ones((4, 8, 1, 1), np.float32)
    before = numbaconv.conv2d(x, weight, algorithm="pointwise_gemm")
    weight *= 2  # changed in place between calls
    after = numbaconv.conv2d(x, weight, algorithm="pointwise_gemm")
    assert np.array_equal(after, 2 * before)
    assert packcache.held_bytes() == 0


def test_the_cache_keeps_within_its_budget(monkeypatch):
    packcache.clear()
    monkeypatch.setattr(packcache, "PACKED_WEIGHTS_BYTES", 3 * 48 * 64 * 4)  # three packed 48x64 weights
    x = np.ones((1, 64, 6, 6), np.float32)
    weights = [frozen_copy(np.full((48, 64, 1, 1), value, np.float32)) for value in range(5)]
    for value, weight in enumerate(weights):
        assert np.array_equal(numbaconv.conv2d(x, weight, algorithm="pointwise_gemm"), np.full((1, 48, 6, 6),
                                                                                             64.0 * value))
        assert packcache.held_bytes() <= packcache.PACKED_WEIGHTS_BYTES
    assert packcache.held_bytes() > 0
    too_large = frozen_copy(np.ones((48 * 4, 64, 1, 1), np.float32))
    numbaconv.conv2d(x, too_large, algorithm="pointwise_gemm")  # larger than the budget: packed, not kept
    assert packcache.held_bytes() <= packcache.PACKED_WEIGHTS_BYTES


def test_a_weight_made_writeable_again_is_not_served_from_the_cache():
    packcache.clear()
    x = np.ones((1, 8, 5, 5), np.float32)
    weight = frozen_copy(np.ones((4, 8, 1, 1), np.float32))
    before = numbaconv.conv2d(x, weight, algorithm="pointwise_gemm")
    weight.setflags(write=True)  # it owns its memory, so NumPy allows this: the promise is broken
    weight *= 3
    assert np.array_equal(numbaconv.conv2d(x, weight, algorithm="pointwise_gemm"), 3 * before)
