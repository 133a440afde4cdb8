"""Shared set-up of the pytest-benchmark files: the layers come from ``numbaconv.workloads``
and the contenders from ``numbaconv.bench.contenders`` (the registry ``numbaconv bench`` uses),
so these benchmarks, the CLI and the docs time the same calls on the same data.

Each benchmark's group is ``family|layer shape``: every contender of one layer lands in one
group, so ``pytest benchmarks --benchmark-compare`` and the group tables compare like with
like.  ``pytest benchmarks --benchmark-disable`` runs each call once (the CI smoke test).
"""

from __future__ import annotations

import pytest

from numbaconv import bench, workloads

DTYPE = "float32"
BATCH = 1


@pytest.fixture(scope="session")
def torch_module():
    torch = bench.torch_or_none()
    if torch is not None:
        import numba

        torch.set_num_threads(numba.get_num_threads())  # the same threads on both sides
    return torch


def pytest_generate_tests(metafunc):
    """A test marked ``@pytest.mark.layers(list_of_layers)`` runs once per (layer, contender),
    with ids ``network/layer-contender``; BLAS only for pointwise layers."""
    marker = metafunc.definition.get_closest_marker("layers")
    if marker is None:
        return
    pairs = [(layer, contender) for layer in marker.args[0] for contender in bench.CONTENDERS
             if contender != "blas" or layer.family == "pointwise"]
    metafunc.parametrize("layer, contender", pairs, ids=[f"{layer.key}-{contender}" for layer, contender in pairs])


@pytest.fixture
def run(benchmark, torch_module):
    """``run(layer, contender)``: benchmark that contender's call (after an untimed first call)."""

    def run_one(layer: workloads.Layer, contender: str) -> None:
        if contender.startswith("torch") and torch_module is None:
            pytest.skip("torch is not installed (an optional peer)")
        calls = bench.contenders(layer, BATCH, DTYPE, torch_module)
        time_it(benchmark, layer, calls[contender])

    return run_one


def time_it(benchmark, layer: workloads.Layer, call) -> None:
    benchmark.group = f"{layer.family}|{layer.key} {layer.describe()}"
    benchmark.extra_info.update(family=layer.family, shape=layer.describe(), flops=bench.cost.flops(layer.spec()),
                                bytes=bench.cost.min_bytes(layer.spec()))
    call()  # the first call (compile or cache load) is not part of the timing
    benchmark(call)
