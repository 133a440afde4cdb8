"""Kernel times on a real GPU: numbaconv's CUDA kernels beside cuDNN (torch, TF32 off) and cuBLAS (CuPy).

``numbaconv bench --device cuda`` times whole calls (Python, launch and a synchronisation each),
which at batch 1 measures the host more than the GPU.  This script separates the two, per layer:

* ``--time``: CUDA events around ``calls`` back-to-back calls with no synchronisation between them
  (the per-call time is max(host launch cost, kernel time)), and the synchronised wall time of one
  call; each contender's result is first checked against numbaconv's float32 result on the GPU
  and numbaconv's against the float64 host reference.
* ``--ncu``: one call per contender between ``cuda.profile_start()``/``profile_stop()``, with a
  marker kernel before each, for ``ncu --profile-from-start off`` to read each kernel's duration,
  SM and DRAM throughput and achieved occupancy (the ORDER lines say which contender each run of
  kernels between markers belongs to).
* ``--summarize-ncu FILE... --csv OUT``: one row per profiled kernel from such ncu output.

Usage (on the GPU machine, repository root on PYTHONPATH):
    python benchmarks/gpu_kernels.py --suite default --batch 1,32 --time --json out.json
    ncu --clock-control none --profile-from-start off --csv --metrics ... \\
        python benchmarks/gpu_kernels.py --suite default --batch 1,32 --ncu
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

import numpy as np


def contenders(layer, batch, dtype, torch, cupy):
    """name -> call (asynchronous: no synchronisation inside) on device arrays of one problem."""
    from numba import cuda

    import numbaconv
    from numbaconv import bench

    spec, x, weight, bias, kwargs = bench.problem(layer, batch, dtype)
    d_x, d_w, d_b = cuda.to_device(x), cuda.to_device(weight), cuda.to_device(bias)
    d_out = cuda.device_array(spec.out_shape, dtype)
    calls = {"numbaconv": lambda: numbaconv.conv2d(d_x, d_w, d_b, out=d_out, **kwargs)}
    results = {"numbaconv": lambda: d_out.copy_to_host()}
    if torch is not None:
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        for layout in ("NCHW", "channels_last"):
            tx, tw, tb = (torch.from_numpy(a).cuda() for a in (x, weight, bias))
            if layout == "channels_last":
                tx, tw = (t.contiguous(memory_format=torch.channels_last) for t in (tx, tw))
            holder = {}

            def call(tx=tx, tw=tw, tb=tb, holder=holder):
                with torch.no_grad():
                    holder["y"] = torch.nn.functional.conv2d(tx, tw, tb, **kwargs)

            name = f"cudnn_{layout.lower()}"
            calls[name] = call
            results[name] = lambda holder=holder: holder["y"].float().contiguous().cpu().numpy()
    if cupy is not None and spec.family == "pointwise" and layer.stride == 1 and layer.padding == 0:
        operand = cupy.asarray(x.reshape(batch, layer.in_channels, -1))
        matrix = cupy.asarray(weight.reshape(layer.out_channels, layer.in_channels))
        cupy_bias = cupy.asarray(bias.reshape(1, -1, 1))
        holder = {}

        def gemm(holder=holder):  # the GEMM plus the bias, as cuBLAS + one elementwise kernel
            holder["y"] = cupy.matmul(matrix, operand) + cupy_bias

        calls["cublas"] = gemm
        results["cublas"] = lambda holder=holder: cupy.asnumpy(holder["y"]).reshape(spec.out_shape)
    return spec, (x, weight, bias, kwargs), calls, results


def relative_error(value, expected) -> float:
    value, expected = np.asarray(value, np.float64), np.asarray(expected, np.float64)
    if not np.all(np.isfinite(value)):
        return float("inf")
    return float(np.linalg.norm(value - expected) / max(np.linalg.norm(expected), 1e-300))


def event_seconds(fn, calls: int, rounds: int = 5) -> float:
    """Median over rounds of (events around ``calls`` unsynchronised calls) / calls."""
    from numba import cuda

    times = []
    for _ in range(rounds):
        start, end = cuda.event(), cuda.event()
        cuda.synchronize()
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3 / calls)
    return statistics.median(times)


def synced_seconds(fn, repeat: int = 20) -> float:
    import time

    from numba import cuda

    times = []
    for _ in range(repeat):
        cuda.synchronize()
        begin = time.perf_counter()
        fn()
        cuda.synchronize()
        times.append(time.perf_counter() - begin)
    return statistics.median(times)


NCU_COLUMNS = {"duration_ns": "Duration", "sm_throughput_pct": "Compute (SM) Throughput",
               "dram_throughput_pct": "DRAM Throughput", "memory_throughput_pct": "Memory Throughput",
               "achieved_occupancy_pct": "Achieved Occupancy", "theoretical_occupancy_pct": "Theoretical Occupancy",
               "registers_per_thread": "Registers Per Thread", "grid_size": "Grid Size", "block_size": "Block Size"}


def summarize_ncu(paths, destination) -> None:
    """One CSV row per profiled kernel (layer, batch, contender, kernel, NCU_COLUMNS) from the output of
    ``ncu --csv ... gpu_kernels.py --ncu`` (the program's ORDER lines and ncu's rows, interleaved); a run
    that a time limit cut off (no duration) is left out."""
    import collections
    import csv
    import io

    with open(destination, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["layer", "batch", "contender", "kernel", *NCU_COLUMNS])
        for path in paths:
            with open(path) as source:
                lines = source.read().splitlines()
            orders = [line.split()[1:] for line in lines if line.startswith("ORDER ")]
            kernels = collections.OrderedDict()
            for row in csv.DictReader(io.StringIO("\n".join(line for line in lines if line.startswith('"')))):
                kernel = kernels.setdefault(row["ID"], {"name": row["Kernel Name"]})
                kernel[row["Metric Name"]] = row["Metric Value"].replace(",", "")
            index = -1
            for kernel in kernels.values():
                name = kernel["name"]
                if "marker" in name:  # the marker before each contender's call
                    index += 1
                    continue
                if not 0 <= index < len(orders) or "Duration" not in kernel:
                    continue
                layer, batch, contender = orders[index]
                short = name.split("[")[0] if "[abi:" in name else name.split("(")[0][:80]
                writer.writerow([layer, batch[1:], contender, short,
                                 *(kernel.get(metric, "") for metric in NCU_COLUMNS.values())])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default="default")
    parser.add_argument("--batch", default="1,32")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--time", action="store_true")
    parser.add_argument("--ncu", action="store_true")
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--only", help="comma list of contenders to keep (numbaconv, cudnn_nchw, "
                                       "cudnn_channels_last, cublas); default all")
    parser.add_argument("--json")
    parser.add_argument("--summarize-ncu", nargs="+", metavar="NCU_OUTPUT",
                        help="only condense these ncu outputs (see --ncu) into the CSV named by --csv")
    parser.add_argument("--csv", help="where --summarize-ncu writes")
    args = parser.parse_args(argv)
    if args.summarize_ncu:
        summarize_ncu(args.summarize_ncu, args.csv or "ncu-summary.csv")
        return 0
    from numba import cuda

    from numbaconv import cost, reference, workloads

    try:
        import torch
        torch = torch if torch.cuda.is_available() else None
    except ImportError:
        torch = None
    try:
        import cupy
    except ImportError:
        cupy = None
    batches = [int(b) for b in args.batch.split(",")]
    problems = [(layer, batch) for batch in batches for layer in workloads.suite(args.suite)]

    @cuda.jit
    def marker(out):  # a kernel ncu sees between contenders
        out[0] = 1

    flag = cuda.device_array(1, np.int32)
    rows = []
    for layer, batch in problems:
        spec, (x, weight, bias, kwargs), calls, results = contenders(layer, batch, args.dtype, torch, cupy)
        if args.only:
            calls = {name: call for name, call in calls.items() if name in args.only.split(",")}
        for call in calls.values():  # compile, plan, cuDNN's algorithm search
            call()
        cuda.synchronize()
        row = {"network": layer.network, "layer": layer.name, "family": spec.family, "batch": batch,
               "shape": f"{spec.in_channels}x{spec.in_height}x{spec.in_width}->{spec.out_channels}"
                        f" k{spec.kernel_height} s{spec.stride[0]} g{spec.groups}",
               "flops": cost.flops(spec), "min_bytes": cost.min_bytes(spec)}
        if args.time:
            ours = results["numbaconv"]()
            row["error_vs_reference"] = relative_error(ours, reference.conv2d(x.astype(np.float64),
                                                                              weight.astype(np.float64),
                                                                              bias.astype(np.float64), **kwargs))
            for name, call in calls.items():
                if name != "numbaconv":
                    call()
                    cuda.synchronize()
                    row[f"error_{name}"] = relative_error(results[name](), ours)
                row[f"{name}_event_s"] = event_seconds(call, args.calls)
                row[f"{name}_synced_s"] = synced_seconds(call)
            print(json.dumps(row), flush=True)
        rows.append((layer, batch, spec, calls, row))
    if args.ncu:
        getattr(cuda, "profile_start", lambda: None)()  # (the simulator has no profiler API)
        for layer, batch, spec, calls, row in rows:
            for name, call in calls.items():
                print(f"ORDER {layer.network}/{layer.name} b{batch} {name}", flush=True)
                marker[1, 1](flag)
                call()
                cuda.synchronize()
        getattr(cuda, "profile_stop", lambda: None)()
    if args.json:
        with open(args.json, "w") as handle:
            json.dump([row for *_, row in rows], handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
