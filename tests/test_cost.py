"""The cost model against hand counts (the network tables against published totals: test_workloads)."""

from __future__ import annotations

import pytest

from numbaconv import cost
from numbaconv.spec import ConvSpec


def spec(x_shape, weight_shape, bias=False, **kwargs):
    return ConvSpec.from_shapes(x_shape, weight_shape, (weight_shape[0],) if bias else None, **kwargs)


def test_grouping_divides_params_and_flops_by_g():
    dense = spec((1, 128, 56, 56), (128, 128, 3, 3), padding=1)
    for groups in (2, 4, 32, 128):
        grouped = spec((1, 128, 56, 56), (128, 128 // groups, 3, 3), padding=1, groups=groups)
        assert cost.parameter_count(dense) == groups * cost.parameter_count(grouped)
        assert cost.flops(dense) == groups * cost.flops(grouped)


def test_depthwise_counts():
    s = spec((8, 32, 112, 112), (32, 1, 3, 3), bias=True, padding=1, groups=32)
    assert cost.parameter_count(s) == 32 * 9 + 32
    assert cost.flops(s) == 2 * 8 * 32 * 9 * 112 * 112
    assert cost.min_bytes(s) == 4 * (2 * 8 * 32 * 112 * 112 + 32 * 9 + 32)
    assert cost.arithmetic_intensity(s) == pytest.approx(cost.flops(s) / cost.min_bytes(s))


def test_roofline():
    s = spec((1, 32, 112, 112), (32, 1, 3, 3), padding=1, groups=32)  # ~2.2 FLOP/byte: memory-bound
    peak, bandwidth = 1e12, 1e11
    assert cost.roofline_flops_per_s(s, peak, bandwidth) == pytest.approx(cost.arithmetic_intensity(s) * bandwidth)
    assert cost.roofline_seconds(s, peak, bandwidth) == pytest.approx(cost.min_bytes(s) / bandwidth)
    big = spec((1, 1024, 14, 14), (1024, 1024, 3, 3), padding=1)  # compute-bound
    assert cost.roofline_flops_per_s(big, peak, bandwidth) == peak
    assert cost.roofline_seconds(big, peak, bandwidth) == pytest.approx(cost.flops(big) / peak)
