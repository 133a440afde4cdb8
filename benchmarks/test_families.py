"""Per family: for each network, its costliest layer of that family (FLOPs x count),
numbaconv against the reference and the peers.  ``pytest benchmarks/test_families.py -k depthwise``."""

from __future__ import annotations

import pytest

from numbaconv import cost, workloads


def costliest(family: str) -> list[workloads.Layer]:
    picks = []
    for layers in workloads.NETWORKS.values():
        candidates = [layer for layer in layers if layer.family == family]
        if candidates:
            picks.append(max(candidates, key=lambda layer: layer.count * cost.flops(layer.spec())))
    return picks


@pytest.mark.layers(costliest("pointwise"))
def test_pointwise(run, layer, contender):
    run(layer, contender)


@pytest.mark.layers(costliest("depthwise"))
def test_depthwise(run, layer, contender):
    run(layer, contender)


@pytest.mark.layers(costliest("grouped"))
def test_grouped(run, layer, contender):
    run(layer, contender)
