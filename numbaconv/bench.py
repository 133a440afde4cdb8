"""Side-by-side timing of numbaconv against the NumPy reference, the peers that are installed
and this machine's roofline.

Every contender of a layer is timed in the same run, one block after the other: a warm-up
call, then ``repeat`` timed calls, of which the median is kept (this machine is shared and
noisy: only ratios measured together mean much).  numbaconv's first call of each kernel in
the process (the JIT compile, or the load from Numba's on-disk cache) is reported apart from
the steady state.

Contenders: numbaconv (``algorithm='auto'``), the reference, PyTorch CPU when installed
(NCHW and channels_last, the faster kept) and, for pointwise layers, the same GEMM through
NumPy's BLAS matmul.  ``backward=True`` times the backward pass instead (grad input, grad weight
and grad bias from one grad_output; torch through ``autograd.grad``).  The roofline bound of each layer comes from `numbaconv.cost`
with the roofs of `numbaconv.limits`, measured in the same run (after the layers, so that
the first call of the first kernel pays what it pays in a fresh process).
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, replace

import numpy as np

from . import api, cost, dispatch, peers, reference, timing, workloads


def median_seconds(fn, repeat: int) -> float:
    """A warm-up call, then the median of ``repeat`` back-to-back samples (no settle pause, no extra samples:
    the references and in-process comparisons, not the contenders of the ratios' headline)."""
    return statistics.median(timing.back_to_back(fn, repeat, settle_s=0, budget_s=0))


def torch_or_none():
    try:
        import torch
    except ImportError:
        return None
    return torch


@dataclass
class Row:
    layer: str  # network/name, a key of workloads.layer()
    network: str
    kind: str  # the family: pointwise, depthwise or grouped
    shape: str
    count: int  # how often the network runs this shape
    kernel: str
    batch: int
    dtype: str
    flops: int
    bytes: int  # minimum bytes moved (cost.min_bytes)
    intensity: float  # FLOP per byte
    first_call_s: float  # this kernel's first call in the process (compile or cache load); NaN if loaded before
    time_s: float  # median steady-state time
    reference_s: float
    gflops: float
    gbps: float
    roofline_s: float  # the least time the machine's roofs allow
    roofline_fraction: float  # roofline_s / time_s: 1 = at the roof
    speedup_vs_reference: float
    torch_s: float | None = None
    torch_layout: str | None = None
    speedup_vs_torch: float | None = None
    blas_s: float | None = None
    fraction_of_blas: float | None = None  # BLAS time / ours on the same GEMM: 1 = as fast as BLAS
    direction: str = "forward"  # or "backward": grad input + grad weight + grad bias from grad_output
    layout: str = "NCHW"  # numbaconv's data layout in this row
    p99_s: float | None = None  # 99th percentile of the back-to-back calls
    gap_s: float | None = None  # median time of a call after an idle gap (`numbaconv.timing`)
    gap_p99_s: float | None = None
    error: float | None = None  # numbaconv's largest error / the largest |output| (float64 reference)
    # every peer library and layout timed in its own process: "<peer>_<layout>" -> {median_s, p99_s,
    # gap_median_s, gap_p99_s, error, setting}; median_s is None for a peer whose output was wrong
    peers: dict | None = None
    best_peer: str | None = None  # the fastest correct peer and layout ("openvino_nhwc")
    best_peer_s: float | None = None
    speedup_vs_best_peer: float | None = None  # best peer's time / ours: above 1, numbaconv faster
    best_peer_gap_s: float | None = None  # that peer's median after an idle gap
    gap_speedup_vs_best_peer: float | None = None  # after a gap: that peer's time / ours
    notes: str | None = None  # peers left out and why, wrong outputs (numbaconv's included)
    dispersion: float | None = None  # numbaconv's back-to-back samples: interquartile range / median (worst pass)
    min_s: float | None = None  # numbaconv's fastest sample
    samples: int | None = None  # numbaconv's samples (first pass) and calls per sample
    loops: int | None = None
    other_load: float | None = None  # share of the cores other work took while numbaconv was timed (worst pass)
    noisy: bool = False  # numbaconv's or the best peer's spread above timing.NOISY_DISPERSION, or other work above
    # timing.OTHER_LOAD_LIMIT of the cores while numbaconv was timed: the machine was busy


def problem(layer: workloads.Layer, batch: int, dtype):
    """The layer's input, weight and bias (seeded), and the keyword arguments of its call."""
    spec = layer.spec(batch, dtype)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, layer.in_channels, layer.size, layer.size)).astype(dtype)
    weight = rng.standard_normal(spec.weight_shape).astype(dtype)
    bias = rng.standard_normal(spec.out_channels).astype(dtype)
    return spec, x, weight, bias, dict(stride=layer.stride, padding=layer.padding, groups=layer.groups)


def torch_call(torch, x, weight, bias, kwargs, layout):
    """A no-grad torch call on the same data, NCHW or channels_last (the weight follows the input)."""
    tx, tw, tb = torch.from_numpy(x), torch.from_numpy(weight), torch.from_numpy(bias)
    if layout == "channels_last":
        tx, tw = tx.contiguous(memory_format=torch.channels_last), tw.contiguous(memory_format=torch.channels_last)

    def call():
        with torch.no_grad():
            return torch.nn.functional.conv2d(tx, tw, tb, **kwargs)

    return call


def blas_call(layer: workloads.Layer, x, weight, dtype):
    """The pointwise layer's GEMM, (C_out x C_in) @ (C_in x pixels) per image, through NumPy's matmul."""
    operand = np.ascontiguousarray(x[:, :, :: layer.stride, :: layer.stride]).reshape(x.shape[0], layer.in_channels, -1)
    matrix = weight.reshape(layer.out_channels, layer.in_channels)
    product = np.empty((x.shape[0], layer.out_channels, operand.shape[2]), dtype)
    return lambda: np.matmul(matrix, operand, out=product)


CONTENDERS = ("numbaconv", "reference", "torch_nchw", "torch_channels_last", "blas")


def contenders(layer: workloads.Layer, batch: int = 1, dtype="float32", torch_module=None,
               layout: str = "NCHW") -> dict:
    """The registry of comparisons, shared by ``numbaconv bench`` and the pytest-benchmark files:
    contender name -> a no-argument call on the same seeded data.  torch appears only when a
    module is given, BLAS only for pointwise layers (the one peer doing the same GEMM).
    ``layout='NHWC'`` hands numbaconv the same data channels-last (its NHWC kernels); the peers
    are unchanged (torch is timed in both of its layouts anyway)."""
    spec, x, weight, bias, kwargs = problem(layer, batch, dtype)
    if layout == "NHWC":
        x_ours = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        out = np.empty((batch, spec.out_height, spec.out_width, spec.out_channels), dtype)
    else:
        x_ours, out = x, np.empty(spec.out_shape, dtype)
    frozen = weight.copy()  # numbaconv gets the weights read-only, as a deployed model holds them: it then keeps
    frozen.setflags(write=False)  # their packing (cpu/packcache.py), as OpenVINO and ONNX Runtime pack theirs once
    calls = {
        "numbaconv": lambda: api.conv2d(x_ours, frozen, bias, out=out, layout=layout, **kwargs),
        "reference": lambda: reference.conv2d(x, weight, bias, **kwargs),
    }
    if torch_module is not None:
        calls["torch_nchw"] = torch_call(torch_module, x, weight, bias, kwargs, "NCHW")
        calls["torch_channels_last"] = torch_call(torch_module, x, weight, bias, kwargs, "channels_last")
    if spec.family == "pointwise":
        calls["blas"] = blas_call(layer, x, weight, dtype)
    return calls


def grad_output_for(spec, dtype):
    rng = np.random.default_rng(1)
    return rng.standard_normal(spec.nchw_out_shape).astype(dtype)


def backward_kernel(spec) -> str:
    """What runs numbaconv's backward: grad input's forward kernel (on the flipped, transposed weight)
    and grad weight's method."""
    cog = spec.out_channels_per_group
    transposed = spec.from_shapes((spec.batch, spec.out_channels, spec.in_height, spec.in_width),
                                  (spec.in_channels, cog, spec.kernel_height, spec.kernel_width), None, 1,
                                  ((spec.kernel_height - 1) * spec.dilation[0], (spec.kernel_width - 1) * spec.dilation[1]),
                                  spec.dilation, spec.groups, dtype=spec.dtype)
    chosen, _ = dispatch.select(transposed)
    return f"{chosen.name} + {'depthwise_reduction' if spec.is_depthwise else 'im2col_blas'}"


def backward_contenders(layer: workloads.Layer, batch: int = 1, dtype="float32", torch_module=None,
                        layout: str = "NCHW") -> dict:
    """The backward registry: each call computes grad input, grad weight and grad bias of the layer
    from one seeded grad_output.  numbaconv (``conv2d_grad_*``), the NumPy references, torch's
    autograd (``torch.autograd.grad`` on a recorded forward, NCHW and channels_last) and, for
    pointwise layers, the two GEMMs through NumPy's matmul (W^T @ dY and dY @ X^T)."""
    from . import grad

    spec, x, weight, bias, kwargs = problem(layer, batch, dtype)
    gy = grad_output_for(spec, dtype)
    if layout == "NHWC":
        x_ours, gy_ours = (np.ascontiguousarray(a.transpose(0, 2, 3, 1)) for a in (x, gy))
        shape_ours = x_ours.shape
    else:
        x_ours, gy_ours, shape_ours = x, gy, x.shape

    def ours():
        grad.conv2d_grad_input(shape_ours, weight, gy_ours, layout=layout, **kwargs)
        grad.conv2d_grad_weight(x_ours, weight.shape, gy_ours, layout=layout, **kwargs)
        grad.conv2d_grad_bias(gy_ours, layout=layout)

    def theirs():
        reference.conv2d_grad_input(x.shape, weight, gy, **kwargs)
        reference.conv2d_grad_weight(x, weight.shape, gy, **kwargs)
        gy.sum(axis=(0, 2, 3))

    calls = {"numbaconv": ours, "reference": theirs}
    if torch_module is not None:
        for name in ("NCHW", "channels_last"):
            calls[f"torch_{name.lower()}"] = torch_backward_call(torch_module, x, weight, bias, gy, kwargs, name)
    if spec.family == "pointwise":
        operand = np.ascontiguousarray(x[:, :, :: layer.stride, :: layer.stride]).reshape(batch, layer.in_channels, -1)
        matrix = weight.reshape(layer.out_channels, layer.in_channels)
        gy_flat = gy.reshape(batch, layer.out_channels, -1)

        def gemms():
            np.matmul(matrix.T, gy_flat)
            np.matmul(gy_flat, operand.transpose(0, 2, 1))

        calls["blas"] = gemms
    return calls


def torch_backward_call(torch, x, weight, bias, gy, kwargs, layout, device=None):
    """torch's backward of the layer alone: a forward recorded once, then ``autograd.grad`` for
    (x, weight, bias) given grad_output, the graph retained between calls."""
    tx, tw, tb, tgy = (torch.from_numpy(a) for a in (x, weight, bias, gy))
    if device is not None:
        tx, tw, tb, tgy = (t.to(device) for t in (tx, tw, tb, tgy))
    if layout == "channels_last":
        tx, tw, tgy = (t.contiguous(memory_format=torch.channels_last) for t in (tx, tw, tgy))
    tx, tw, tb = (t.detach().requires_grad_() for t in (tx, tw, tb))
    y = torch.nn.functional.conv2d(tx, tw, tb, **kwargs)

    def call():
        torch.autograd.grad(y, (tx, tw, tb), tgy, retain_graph=True)
        if device is not None:
            torch.cuda.synchronize()

    return call


def cuda_backward_contenders(layer: workloads.Layer, batch: int = 1, dtype="float32", torch_module=None) -> dict:
    """The GPU backward registry: numbaconv's CUDA gradients on Numba device arrays, the host
    references, torch/cuDNN autograd (TF32 off) when torch has CUDA; each call synchronizes."""
    from numba import cuda

    from . import grad

    spec, x, weight, bias, kwargs = problem(layer, batch, dtype)
    gy = grad_output_for(spec, dtype)
    d_x, d_w, d_gy = cuda.to_device(x), cuda.to_device(weight), cuda.to_device(gy)

    def ours():
        grad.conv2d_grad_input(x.shape, d_w, d_gy, **kwargs)
        grad.conv2d_grad_weight(d_x, weight.shape, d_gy, **kwargs)
        grad.conv2d_grad_bias(d_gy)
        cuda.synchronize()

    calls = {"numbaconv": ours, "reference": backward_contenders(layer, batch, dtype)["reference"]}
    if torch_module is not None and torch_module.cuda.is_available():
        torch_module.backends.cudnn.allow_tf32 = False
        torch_module.backends.cuda.matmul.allow_tf32 = False
        for name in ("NCHW", "channels_last"):
            calls[f"torch_{name.lower()}"] = torch_backward_call(torch_module, x, weight, bias, gy, kwargs, name,
                                                                 "cuda")
    return calls


def cuda_contenders(layer: workloads.Layer, batch: int = 1, dtype="float32", torch_module=None) -> dict:
    """The GPU registry: numbaconv on Numba device arrays, the host reference, torch/cuDNN (TF32 off,
    NCHW and channels_last) when torch has CUDA, and for pointwise layers the same GEMM through
    CuPy's cuBLAS when CuPy is installed.  Every call ends with a device synchronisation, so a
    time is the kernel's, without transfers."""
    from numba import cuda

    spec, x, weight, bias, kwargs = problem(layer, batch, dtype)
    d_x, d_w, d_b = cuda.to_device(x), cuda.to_device(weight), cuda.to_device(bias)
    d_out = cuda.device_array(spec.out_shape, dtype)

    def ours():
        api.conv2d(d_x, d_w, d_b, out=d_out, **kwargs)
        cuda.synchronize()

    calls = {"numbaconv": ours, "reference": lambda: reference.conv2d(x, weight, bias, **kwargs)}
    if torch_module is not None and torch_module.cuda.is_available():
        torch = torch_module
        torch.backends.cudnn.allow_tf32 = False  # fair float32: no TF32 tensor cores
        torch.backends.cuda.matmul.allow_tf32 = False
        for layout in ("NCHW", "channels_last"):
            tx, tw, tb = (torch.from_numpy(a).cuda() for a in (x, weight, bias))
            if layout == "channels_last":
                tx, tw = (t.contiguous(memory_format=torch.channels_last) for t in (tx, tw))

            def call(tx=tx, tw=tw, tb=tb):
                with torch.no_grad():
                    torch.nn.functional.conv2d(tx, tw, tb, **kwargs)
                torch.cuda.synchronize()

            calls[f"torch_{layout.lower()}"] = call
    if spec.family == "pointwise":
        try:
            import cupy
        except ImportError:
            cupy = None
        if cupy is not None:
            operand = cupy.asarray(np.ascontiguousarray(x[:, :, :: layer.stride, :: layer.stride]).reshape(
                batch, layer.in_channels, -1))
            matrix = cupy.asarray(weight.reshape(layer.out_channels, layer.in_channels))

            def gemm():
                cupy.matmul(matrix, operand)
                cupy.cuda.get_current_stream().synchronize()

            calls["blas"] = gemm
    return calls


def bench_layer(layer: workloads.Layer, batch: int = 1, dtype="float32", repeat: int = 10,
                reference_repeat: int = 3, torch_module=None, limits: dict | None = None,
                first_calls: dict | None = None, device: str = "cpu", layout: str = "NCHW",
                backward: bool = False, peer_processes: dict | None = None, gap_rounds: int = 0) -> Row:
    """Time one layer on every contender (its backward pass with ``backward``).  ``first_calls``
    (kernel name -> seconds) collects each kernel's first call across a run; ``limits`` (from
    `numbaconv.limits.measure`) gives the roofs.  ``peer_processes`` (`peers.PeerProcess` by name)
    times the peer libraries of a CPU forward pass, each in its own process, after checking their
    output against the float64 reference; ``torch_module`` times torch in this process instead (the
    backward and CUDA benches).  ``gap_rounds`` > 0 also times numbaconv and the best peer after
    idle gaps (`numbaconv.timing`)."""
    spec = layer.spec(batch, dtype)
    # the kernel the timed call runs: the dispatcher's choice for the data's layout
    chosen, _ = dispatch.select(spec if layout == "NCHW" else replace(spec, layout=layout), device=device)
    kernel = chosen.name
    if backward:
        kernel = backward_kernel(spec) if device == "cpu" else "cuda_grad"
        calls = (cuda_backward_contenders(layer, batch, dtype, torch_module) if device == "cuda"
                 else backward_contenders(layer, batch, dtype, torch_module, layout))
    elif device == "cuda":
        calls = cuda_contenders(layer, batch, dtype, torch_module)
    else:
        calls = contenders(layer, batch, dtype, torch_module, layout)

    start = time.perf_counter()
    output = calls["numbaconv"]()
    first = time.perf_counter() - start
    if first_calls is not None:
        if kernel in first_calls:
            first = float("nan")
        else:
            first_calls[kernel] = first
    expected = None
    if not backward and device == "cpu":  # every contender of a CPU forward pass is checked, numbaconv too
        _, x, weight, bias, kwargs = problem(layer, batch, dtype)
        expected = reference.conv2d(x.astype(np.float64), weight.astype(np.float64), bias.astype(np.float64),
                                    **kwargs)
    measured = timing.measure(calls["numbaconv"], repeat, gap_rounds)
    seconds, p99 = measured.median_s, measured.p99_s
    spread, fastest, others = measured.dispersion, measured.min_s, measured.other_load
    peer_results = None
    if expected is not None and peer_processes:
        # two passes, A B A B: numbaconv, every peer, numbaconv again, every peer again; each contender's time is
        # the mean of its two medians, so that a drift of the shared machine's speed reaches every one alike
        pass_one = time_peers(peer_processes, x, weight, bias, kwargs, expected, repeat, gap_rounds)
        again = timing.measure(calls["numbaconv"], repeat)
        pass_two = time_peers(peer_processes, x, weight, bias, kwargs, expected, repeat, 0)
        peer_results = merge_passes(pass_one, pass_two)
        seconds, p99 = (seconds + again.median_s) / 2, (p99 + again.p99_s) / 2
        spread, fastest = max(spread, again.dispersion), min(fastest, again.min_s)
        others = max((load for load in (others, again.other_load) if not math.isnan(load)), default=math.nan)
    reference_seconds = median_seconds(calls["reference"], reference_repeat)

    if backward:
        flops, moved = cost.backward_flops(spec), cost.backward_min_bytes(spec)
    else:
        flops, moved = cost.flops(spec), cost.min_bytes(spec)
    row = Row(layer=layer.key, network=layer.network, kind=spec.family, shape=layer.describe(), count=layer.count,
              kernel=kernel, batch=batch, dtype=str(np.dtype(dtype)), flops=flops, bytes=moved,
              intensity=flops / moved, first_call_s=first, time_s=seconds,
              reference_s=reference_seconds, gflops=flops / seconds / 1e9, gbps=moved / seconds / 1e9,
              roofline_s=math.nan, roofline_fraction=math.nan, speedup_vs_reference=reference_seconds / seconds,
              direction="backward" if backward else "forward", layout=layout, p99_s=p99,
              gap_s=measured.gap_median_s, gap_p99_s=measured.gap_p99_s, dispersion=spread, min_s=fastest,
              samples=measured.samples, loops=measured.loops, other_load=None if math.isnan(others) else others,
              noisy=spread > timing.NOISY_DISPERSION or others > timing.OTHER_LOAD_LIMIT)
    if limits:
        add_roofline([row], limits)

    if "torch_nchw" in calls:
        times = {layout: median_seconds(calls[f"torch_{layout.lower()}"], repeat)
                 for layout in ("NCHW", "channels_last")}
        row.torch_layout = min(times, key=times.get)
        row.torch_s = times[row.torch_layout]
        row.speedup_vs_torch = row.torch_s / seconds
    if "blas" in calls:
        row.blas_s = median_seconds(calls["blas"], repeat)
        row.fraction_of_blas = row.blas_s / seconds
    if expected is not None:
        ours = output.transpose(0, 3, 1, 2) if layout == "NHWC" else output
        row.error = peers.verify(ours, expected)
        add_peers(row, *(peer_results or ({}, [])))
        if not row.error <= peers.tolerance(dtype):
            row.notes = "; ".join(filter(None, [f"numbaconv: wrong output (error {row.error:.1e})", row.notes]))
    return row


def time_peers(peer_processes: dict, x, weight, bias, kwargs, expected, repeat: int, gap_rounds: int):
    """Every peer process's results on the layer (``peers.time_calls``'s entries by '<peer>_<layout>') and
    notes: peers that could not run, wrong outputs."""
    results, notes = {}, []
    for name, process in peer_processes.items():
        found, note = process.time(x, weight, bias, kwargs, expected, repeat, gap_rounds)
        results.update(found)
        if note:
            notes.append(f"{name}: {note}")
        notes += [f"{key}: wrong output (error {entry['error']:.1e})" for key, entry in found.items()
                  if entry["median_s"] is None]
    return results, notes


def merge_passes(first, second):
    """Two passes of `time_peers` as one: each timed entry's back-to-back median and p99 the mean of the two
    (its gap timing from the first pass, the only one that measures it); the notes of both."""
    (results, notes), (again, more) = first, second
    merged = {}
    for key, entry in results.items():
        entry = dict(entry)
        other = again.get(key)
        if entry["median_s"] is not None and other is not None and other["median_s"] is not None:
            entry["median_s"] = (entry["median_s"] + other["median_s"]) / 2
            entry["p99_s"] = (entry["p99_s"] + other["p99_s"]) / 2
            entry["dispersion"] = max(entry.get("dispersion") or 0.0, other.get("dispersion") or 0.0)
        merged[key] = entry
    return merged, list(dict.fromkeys(notes + more))


def add_peers(row: Row, results: dict, notes: list) -> None:
    """Fill the row's peer columns from `time_peers`'s (or `merge_passes`') results and notes."""
    row.peers = results
    timed = {key: entry for key, entry in row.peers.items() if entry["median_s"] is not None}
    if timed:
        row.best_peer = min(timed, key=lambda key: timed[key]["median_s"])
        best = timed[row.best_peer]
        row.best_peer_s = best["median_s"]
        row.speedup_vs_best_peer = row.best_peer_s / row.time_s
        row.best_peer_gap_s = best["gap_median_s"]
        if row.best_peer_gap_s and row.gap_s:
            row.gap_speedup_vs_best_peer = row.best_peer_gap_s / row.gap_s
        row.noisy = row.noisy or (best.get("dispersion") or 0.0) > timing.NOISY_DISPERSION
    torch_times = {key: entry["median_s"] for key, entry in timed.items() if key.startswith("torch_")}
    if torch_times and row.torch_s is None:
        fastest = min(torch_times, key=torch_times.get)
        row.torch_layout = "NCHW" if fastest == "torch_nchw" else "channels_last"
        row.torch_s = torch_times[fastest]
        row.speedup_vs_torch = row.torch_s / row.time_s
    row.notes = "; ".join(notes) or None


def add_roofline(rows: list[Row], limits: dict) -> None:
    """Fill each row's roofline bound and fraction from the measured roofs."""
    for row in rows:
        row.roofline_s = cost.roofline_seconds(workloads.layer(row.layer).spec(row.batch, row.dtype),
                                               limits["peak_flops_per_s"], limits["bandwidth_bytes_per_s"],
                                               backward=row.direction == "backward")
        row.roofline_fraction = row.roofline_s / row.time_s


# ---- the machine -------------------------------------------------------------------------------------
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
        "numpy_blas": _numpy_blas(),
        "numba": numba.__version__,
        "llvmlite": llvmlite.__version__,
    }
    info["torch"] = peers.available().get("torch")  # its version, without loading it here
    info["gpu"] = _gpu_name()
    if info["gpu"]:
        info.update(_cuda_versions())
    return info


def _cuda_versions() -> dict:
    from importlib import metadata

    versions = {}
    try:
        versions["numba_cuda"] = metadata.version("numba-cuda")
    except metadata.PackageNotFoundError:
        versions["numba_cuda"] = None
    try:
        from numba import cuda

        versions["cuda_driver"] = ".".join(map(str, cuda.cudadrv.driver.driver.get_version()))
    except Exception:
        versions["cuda_driver"] = None
    try:
        import cupy

        versions["cupy"] = cupy.__version__
    except ImportError:
        versions["cupy"] = None
    return versions


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
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _threading_layer() -> str:
    import numba

    try:
        return numba.threading_layer()
    except ValueError:  # no parallel region has run yet
        return "not yet initialised"


def _numpy_blas() -> str:
    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version', '')}".strip()
    except Exception:  # old NumPy or an unusual build: not worth failing over
        return "unknown"


def _gpu_name() -> str | None:
    """The first CUDA device's name, or None; never initialises CUDA when numba-cuda is absent."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return None
    try:
        from numba import cuda

        if not cuda.is_available():
            return None
        name = cuda.get_current_device().name
        return name.decode() if isinstance(name, bytes) else str(name)
    except Exception:
        return None


# ---- summaries -----------------------------------------------------------------------------------------
def geometric_mean(values) -> float:
    values = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
    return float(np.exp(np.mean(np.log(values)))) if values else float("nan")


def _stats(rows: list[Row]) -> dict:
    against_best = [r.speedup_vs_best_peer for r in rows if r.speedup_vs_best_peer]
    return {
        "layers": len(rows),
        "geomean_speedup_vs_reference": geometric_mean(r.speedup_vs_reference for r in rows),
        "geomean_speedup_vs_torch": geometric_mean(r.speedup_vs_torch for r in rows),
        "geomean_fraction_of_blas": geometric_mean(r.fraction_of_blas for r in rows),
        "geomean_roofline_fraction": geometric_mean(r.roofline_fraction for r in rows),
        "geomean_speedup_vs_best_peer": geometric_mean(against_best),
        "worst_speedup_vs_best_peer": min(against_best) if against_best else None,
        "geomean_gap_speedup_vs_best_peer": geometric_mean(r.gap_speedup_vs_best_peer for r in rows),
        # after an idle gap / back to back, numbaconv's median and p99 (1 = no penalty)
        "geomean_gap_slowdown": geometric_mean(r.gap_s / r.time_s for r in rows if r.gap_s),
        "geomean_gap_p99_slowdown": geometric_mean(r.gap_p99_s / r.time_s for r in rows if r.gap_p99_s),
    }


def summarize(rows: list[Row]) -> dict:
    """Geometric means per family, over all rows and per network."""
    kinds = [k for k in workloads.FAMILIES if any(r.kind == k for r in rows)]
    networks = list(dict.fromkeys(r.network for r in rows))
    return {
        "noisy_rows": sum(1 for r in rows if r.noisy),
        "families": {k: _stats([r for r in rows if r.kind == k]) for k in kinds},
        "networks": {net: {k: _stats(subset) for k in kinds
                           if (subset := [r for r in rows if r.network == net and r.kind == k])}
                     for net in networks},
    }


def network_totals(rows: list[Row]) -> dict:
    """Per network: the time of all its convolutions in one forward (or backward) pass (each shape times its
    count), for numbaconv and each contender measured on every one of its layers."""
    totals = {}
    for net in dict.fromkeys(r.network for r in rows):
        subset = [r for r in rows if r.network == net]
        entry = {"layers": len(subset), "convolutions": sum(r.count for r in subset),
                 "complete": len(subset) == len(workloads.NETWORKS.get(net, ())),
                 "numbaconv_s": sum(r.count * r.time_s for r in subset),
                 "reference_s": sum(r.count * r.reference_s for r in subset)}
        if all(r.torch_s is not None for r in subset):
            entry["torch_s"] = sum(r.count * r.torch_s for r in subset)
        totals[net] = entry
    return totals


def _finite_or_none(value):
    """Strict JSON has no NaN: a missing measurement is null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return value


def as_json(rows: list[Row], settings: dict, limits: dict | None = None, first_calls: dict | None = None) -> dict:
    """The whole report as plain JSON types (NaN as null)."""
    return _finite_or_none({
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_info(),
        "limits": limits,
        "settings": settings,
        "first_call_s": first_calls or {},
        "summary": summarize(rows),
        "network_totals": network_totals(rows),
        "rows": [asdict(r) for r in rows],
    })
