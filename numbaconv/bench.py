"""Side-by-side timing of numbaconv against the NumPy reference and the peers that are installed.

Every contender of a layer is timed in the same run, one block after the other: a warm-up
call, then ``repeat`` timed calls, of which the median is kept (this machine is shared and
noisy: only ratios measured together mean much).  numbaconv's first call of each kernel in
the process (the JIT compile, or the load from Numba's on-disk cache) is reported apart.

Contenders: numbaconv (``algorithm='auto'``), the reference, PyTorch CPU when installed
(NCHW and channels_last, the faster kept) and, for pointwise layers, the same GEMM through
NumPy's BLAS matmul.
"""

from __future__ import annotations

import platform
import statistics
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from . import api, cost, dispatch, reference, workloads


def _median_seconds(fn, repeat: int) -> float:
    fn()  # warm-up: caches, thread pools, page faults
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


@dataclass
class Row:
    layer: str
    kind: str  # the family
    shape: str
    kernel: str
    batch: int
    dtype: str
    flops: int
    bytes: int
    first_call_s: float
    time_s: float
    reference_s: float
    gflops: float
    gbps: float
    speedup_vs_reference: float
    torch_s: float | None = None
    torch_layout: str | None = None
    speedup_vs_torch: float | None = None
    blas_s: float | None = None
    fraction_of_blas: float | None = None
    extra: dict = field(default_factory=dict)


def bench_layer(layer: workloads.Layer, batch: int = 1, dtype="float32", repeat: int = 10,
                reference_repeat: int = 3, torch_module=None, seen_kernels: set | None = None) -> Row:
    spec = layer.spec(batch, dtype)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, layer.in_channels, layer.size, layer.size)).astype(dtype)
    weight = rng.standard_normal(spec.weight_shape).astype(dtype)
    bias = rng.standard_normal(spec.out_channels).astype(dtype)
    kwargs = dict(stride=layer.stride, padding=layer.padding, groups=layer.groups)
    chosen, _ = dispatch.select(spec)
    out = np.empty(spec.out_shape, dtype)

    start = time.perf_counter()
    api.conv2d(x, weight, bias, out=out, **kwargs)
    first = time.perf_counter() - start
    if seen_kernels is not None:
        first = first if chosen.name not in seen_kernels else float("nan")
        seen_kernels.add(chosen.name)
    ours = _median_seconds(lambda: api.conv2d(x, weight, bias, out=out, **kwargs), repeat)
    ref = _median_seconds(lambda: reference.conv2d(x, weight, bias, **kwargs), reference_repeat)

    flops, moved = cost.flops(spec), cost.min_bytes(spec)
    row = Row(layer=layer.key, kind=spec.family, shape=layer.describe(), kernel=chosen.name, batch=batch,
              dtype=str(np.dtype(dtype)), flops=flops, bytes=moved, first_call_s=first, time_s=ours,
              reference_s=ref, gflops=flops / ours / 1e9, gbps=moved / ours / 1e9, speedup_vs_reference=ref / ours)

    if torch_module is not None:
        torch = torch_module
        tx, tw, tb = torch.from_numpy(x), torch.from_numpy(weight), torch.from_numpy(bias)
        best = None
        with torch.no_grad():
            for name, tensor in (("NCHW", tx), ("channels_last", tx.contiguous(memory_format=torch.channels_last))):
                seconds = _median_seconds(lambda: torch.nn.functional.conv2d(tensor, tw, tb, **kwargs), repeat)
                if best is None or seconds < best[0]:
                    best = (seconds, name)
        row.torch_s, row.torch_layout = best
        row.speedup_vs_torch = best[0] / ours

    if spec.family == "pointwise":
        operand = x[:, :, :: layer.stride, :: layer.stride].reshape(batch, layer.in_channels, -1).copy()
        matrix = weight.reshape(layer.out_channels, layer.in_channels)
        product = np.empty((batch, layer.out_channels, operand.shape[2]), dtype)
        row.blas_s = _median_seconds(lambda: np.matmul(matrix, operand, out=product), repeat)
        row.fraction_of_blas = row.blas_s / ours
    return row


def machine_info() -> dict:
    import llvmlite
    import numba

    info = {
        "cpu": _cpu_model(),
        "machine": platform.machine(),
        "cores": _cores(),
        "numba_threads": numba.get_num_threads(),
        "threading_layer": _threading_layer(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "llvmlite": llvmlite.__version__,
    }
    torch = _torch()
    info["torch"] = None if torch is None else torch.__version__
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _threading_layer() -> str:
    import numba

    try:
        return numba.threading_layer()
    except ValueError:  # no parallel region has run yet
        return "not yet initialised"


def geometric_mean(values) -> float:
    values = [v for v in values if v and v > 0 and np.isfinite(v)]
    return float(np.exp(np.mean(np.log(values)))) if values else float("nan")


def summarize(rows: list[Row]) -> dict:
    summary = {}
    for kind in sorted({r.kind for r in rows}):
        subset = [r for r in rows if r.kind == kind]
        summary[kind] = {
            "layers": len(subset),
            "geomean_speedup_vs_reference": geometric_mean(r.speedup_vs_reference for r in subset),
            "geomean_speedup_vs_torch": geometric_mean(r.speedup_vs_torch for r in subset),
            "geomean_fraction_of_blas": geometric_mean(r.fraction_of_blas for r in subset),
        }
    return summary


def as_json(rows: list[Row], settings: dict) -> dict:
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_info(),
        "settings": settings,
        "summary": summarize(rows),
        "rows": [asdict(r) for r in rows],
    }
