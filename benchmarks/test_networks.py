"""Every layer of every network (``workloads.NETWORKS``), numbaconv against the reference and
the peers.  One network: ``pytest benchmarks/test_networks.py -k shufflenet_v2``."""

from __future__ import annotations

import pytest

from numbaconv import workloads


@pytest.mark.layers(workloads.suite("all"))
def test_network_layer(run, layer, contender):
    run(layer, contender)
