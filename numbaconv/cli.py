"""The ``numbaconv`` command: ``bench`` (time real network layers) and ``info`` (versions, threads)."""

from __future__ import annotations

import argparse
import json
import math
import sys

from . import bench, workloads


def _fmt_ratio(value) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.2f}x"


def _fmt_ms(seconds) -> str:
    return "-" if seconds is None or not math.isfinite(seconds) else f"{seconds * 1e3:.3f}"


COLUMNS = ["layer", "family", "shape", "kernel", "first call ms", "ms", "GFLOP/s", "GB/s",
           "vs reference", "vs torch", "vs BLAS"]


def _cells(row: bench.Row) -> list[str]:
    return [row.layer, row.kind, row.shape, row.kernel, _fmt_ms(row.first_call_s), _fmt_ms(row.time_s),
            f"{row.gflops:.1f}", f"{row.gbps:.1f}", _fmt_ratio(row.speedup_vs_reference),
            _fmt_ratio(row.speedup_vs_torch), _fmt_ratio(row.fraction_of_blas)]


def _print_table(rows, summary, info, settings) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        Console = None
    title = (f"numbaconv bench: suite {settings['suite']}, batch {settings['batch']}, {settings['dtype']}, "
             f"{info['numba_threads']} threads, {info['cpu']}")
    notes = ("ms: median of the repeats; first call: compile or cache load of that kernel (blank when already "
             "loaded); vs X: X's time / numbaconv's time (>1: numbaconv faster); vs BLAS: the same GEMM through "
             "NumPy's matmul.")
    if Console is None:
        print(title)
        print(" | ".join(COLUMNS))
        for row in rows:
            print(" | ".join(_cells(row)))
    else:
        table = Table(title=title, caption=notes, caption_justify="left")
        for column in COLUMNS:
            table.add_column(column, justify="left" if column in ("layer", "family", "shape", "kernel") else "right")
        for row in rows:
            table.add_row(*_cells(row))
        Console(width=None if sys.stdout.isatty() else 200).print(table)
    print("geometric means per family:")
    for kind, values in summary.items():
        print(f"  {kind:10s} {values['layers']:3d} layers  vs reference {_fmt_ratio(values['geomean_speedup_vs_reference'])}"
              f"  vs torch {_fmt_ratio(values['geomean_speedup_vs_torch'])}"
              f"  vs BLAS {_fmt_ratio(values['geomean_fraction_of_blas'])}")


def _progress(layers):
    try:
        from rich.progress import track
    except ImportError:
        return layers
    return track(layers, description="benchmarking", transient=True)


def run_bench(args) -> int:
    layers = workloads.suite(args.suite)
    if args.limit:
        layers = layers[: args.limit]
    repeat = args.repeat or (3 if args.quick else 10)
    torch = None if args.no_torch else bench._torch()
    if torch is not None:
        import numba

        torch.set_num_threads(numba.get_num_threads())  # same threads for both sides
    settings = {"suite": args.suite, "batch": args.batch, "dtype": args.dtype, "repeat": repeat,
                "peers": ["reference", "blas"] + (["torch"] if torch is not None else [])}
    seen: set = set()
    rows = [bench.bench_layer(layer, args.batch, args.dtype, repeat, 1 if args.quick else 3, torch, seen)
            for layer in _progress(layers)]
    report = bench.as_json(rows, settings)
    _print_table(rows, report["summary"], report["machine"], settings)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=1, default=str)
        print(f"wrote {args.json}")
    return 0


def run_info(args) -> int:
    import numba

    info = bench.machine_info()
    import numpy as np

    from . import api
    api.conv2d(np.zeros((1, 1, 3, 3), np.float32), np.zeros((1, 1, 1, 1), np.float32), algorithm="grouped")
    info["threading_layer"] = numba.threading_layer()
    try:
        from numba import cuda

        info["cuda_available"] = bool(cuda.is_available())
    except Exception as exc:  # numba-cuda absent or broken: say so, do not fail
        info["cuda_available"] = f"no ({type(exc).__name__})"
    from . import algorithms

    width = max(map(len, info))
    for key, value in info.items():
        print(f"{key:{width}s}  {value}")
    print("kernels:")
    for algorithm in algorithms():
        print(f"  {algorithm.name:15s} {algorithm.device:4s} {algorithm.family:10s} {algorithm.description}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="numbaconv", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    b = commands.add_parser("bench", help="time real network layers against the reference and peers")
    b.add_argument("--suite", default="default",
                   help="default, all, a family (pointwise/depthwise/grouped) or a network: "
                        + ", ".join(sorted(workloads.NETWORKS)))
    b.add_argument("--batch", type=int, default=1)
    b.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    b.add_argument("--repeat", type=int, default=0, help="timed calls per contender (default 10, 3 with --quick)")
    b.add_argument("--quick", action="store_true", help="fewer repeats")
    b.add_argument("--limit", type=int, default=0, help="only the first N layers of the suite")
    b.add_argument("--no-torch", action="store_true", help="leave PyTorch out even when installed")
    b.add_argument("--json", metavar="FILE", help="write every row and the machine description as JSON")
    b.set_defaults(run=run_bench)
    i = commands.add_parser("info", help="versions, threading layer, CPU, CUDA devices, kernels")
    i.set_defaults(run=run_info)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except ValueError as exc:
        parser.error(str(exc))


if __name__ == "__main__":
    sys.exit(main())
