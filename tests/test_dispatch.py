"""The dispatcher's choices, forcing a kernel, algorithms() and plan()."""

from __future__ import annotations

import numpy as np
import pytest

import numbaconv
from numbaconv import workloads


@pytest.mark.parametrize("x_shape, weight_shape, groups, kernel, family", [
    ((1, 32, 56, 56), (64, 32, 1, 1), 1, "pointwise_gemm", "pointwise"),
    ((1, 32, 56, 56), (32, 1, 3, 3), 32, "depthwise", "depthwise"),
    ((1, 32, 56, 56), (64, 1, 5, 5), 32, "depthwise", "depthwise"),  # channel multiplier 2
    ((1, 128, 56, 56), (128, 4, 3, 3), 32, "grouped_gemm", "grouped"),  # ResNeXt: thin groups, shuffled
    ((1, 512, 14, 14), (512, 16, 3, 3), 32, "grouped_gemm", "grouped"),  # ResNeXt: 16 per group, one vector
    ((1, 64, 56, 56), (32, 2, 3, 3), 32, "grouped", "grouped"),  # 2 in, 1 out per group
    ((1, 240, 28, 28), (240, 80, 1, 1), 3, "grouped_blas", "grouped"),  # ShuffleNet grouped 1x1, NCHW: in place
    ((1, 3, 224, 224), (32, 3, 3, 3), 1, "grouped_gemm", "grouped"),  # dense stem
    ((1, 512, 7, 7), (512, 512, 3, 3), 1, "grouped_blas", "grouped"),  # weights outweigh the output
    ((1, 128, 56, 56), (128, 128, 3, 3), 1, "grouped_gemm", "grouped"),  # 1.5x as many weights: still packed
    ((1, 1024, 7, 7), (1024, 32, 3, 3), 32, "grouped_gemm", "grouped"),  # grouped: BLAS would run 32 small GEMMs
    ((1, 8, 9, 9), (8, 1, 9, 9), 8, "grouped", "depthwise"),  # more taps than the depthwise kernel takes
    ((1, 1, 8, 8), (1, 1, 1, 1), 1, "pointwise_gemm", "pointwise"),  # 1x1 with groups = C_in = 1: pointwise first
])
def test_auto_choice(x_shape, weight_shape, groups, kernel, family):
    plan = numbaconv.plan(x_shape, weight_shape, groups=groups, padding="same")
    assert (plan.kernel, plan.family) == (kernel, family)
    assert plan.reason and "forced" not in plan.reason


def test_every_workload_layer_gets_its_family_kernel():
    for layer in workloads.suite("all"):
        spec = layer.spec()
        plan = numbaconv.plan((1, layer.in_channels, layer.size, layer.size), spec.weight_shape, True,
                              layer.stride, layer.padding, 1, layer.groups)
        assert numbaconv.dispatch.get(plan.kernel).family in (spec.family, "any"), layer.key
        assert plan.family == spec.family
        assert plan.out_shape == spec.out_shape


def test_forcing_a_kernel_and_its_refusal():
    plan = numbaconv.plan((1, 16, 8, 8), (16, 16, 1, 1), algorithm="grouped")
    assert plan.kernel == "grouped" and "forced" in plan.reason
    with pytest.raises(ValueError, match="algorithm='pointwise' cannot serve this convolution: it needs a 1x1 kernel"):
        numbaconv.plan((1, 16, 8, 8), (16, 16, 3, 3), algorithm="pointwise")


def test_algorithms_lists_every_kernel_with_its_scope():
    names = {a.name: a for a in numbaconv.algorithms()}
    assert {"pointwise", "pointwise_blas", "pointwise_gemm", "depthwise", "grouped", "reference"} <= set(names)
    assert names["depthwise"].family == "depthwise" and names["depthwise"].device == "cpu"
    assert all(a.description for a in names.values())


def test_forced_reference_algorithm_runs_the_oracle():
    rng = np.random.default_rng(0)
    x, weight = rng.standard_normal((1, 4, 6, 6)), rng.standard_normal((4, 2, 3, 3))
    np.testing.assert_array_equal(numbaconv.conv2d(x, weight, groups=2, algorithm="reference"),
                                  numbaconv.reference.conv2d(x, weight, groups=2))


def test_plan_reports_the_cost_model():
    # MobileNetV2 expand 1x1: 16 -> 96 at 112x112
    plan = numbaconv.plan((1, 16, 112, 112), (96, 16, 1, 1), bias=True)
    assert plan.params == 96 * 16 + 96
    assert plan.flops == 2 * 96 * 16 * 112 * 112
    assert plan.bytes == 4 * (16 * 112 * 112 + plan.params + 96 * 112 * 112)
    assert plan.arithmetic_intensity == pytest.approx(plan.flops / plan.bytes)
    assert plan.out_shape == (1, 96, 112, 112)
    nhwc = numbaconv.plan((112, 112, 16), (96, 16, 1, 1), layout="NHWC", dtype=np.float64)
    assert nhwc.out_shape == (112, 112, 96) and nhwc.bytes == 8 * (16 * 112 * 112 + 96 * 16 + 96 * 112 * 112)


def test_latency_mode_keeps_large_products_off_blas(monkeypatch):
    """NUMBACONV_LATENCY=1: a per-group product large enough for BLAS to thread runs the implicit GEMM
    (BLAS's workers would wait for Numba's spinning ones); small products keep grouped_blas."""
    from numbaconv import runtime

    heavy = dict(x_shape=(1, 512, 7, 7), weight_shape=(512, 512, 3, 3), padding=1)
    small = dict(x_shape=(1, 240, 14, 14), weight_shape=(240, 80, 1, 1), groups=3)
    assert numbaconv.plan(**heavy).kernel == "grouped_blas" and numbaconv.plan(**small).kernel == "grouped_blas"
    monkeypatch.setattr(runtime, "LATENCY_MODE", True)
    chosen = numbaconv.plan(**heavy)
    assert chosen.kernel == "grouped_gemm" and "latency mode" in chosen.reason
    assert numbaconv.plan(**small).kernel == "grouped_blas"
