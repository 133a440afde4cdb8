"""numbaconv: Numba-compiled pointwise, grouped and depthwise convolutions.

commands:
  bench   time real network layers against the NumPy reference and the peer libraries
  report  show a saved bench report (--json): its table, Markdown tables or roofline chart
  info    versions, threading layer, CPU features, CUDA devices and the kernels
  warmup  compile every kernel now and keep it in Numba's cache (the first calls then take milliseconds)

Run "numbaconv COMMAND --help" for a command's options."""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import sys
import textwrap

from . import algorithms, bench, limits, peers, plot, timing, workloads
from . import report as report_module


def _print_table(report: dict, wide: bool = False) -> None:
    """The report's table, notes, roofs and summary.  On a terminal: a rich table, compact (`report.compact_cells`,
    within 100 columns) unless ``wide``; into a pipe or file: the same columns as plain aligned text."""
    rows = report["rows"]
    header = report_module.COLUMNS if wide else report_module.COMPACT_COLUMNS
    text_columns = report_module.TEXT_COLUMNS if wide else report_module.COMPACT_TEXT_COLUMNS
    body = [(report_module.cells if wide else report_module.compact_cells)(row) for row in rows]
    notes = report_module.NOTES if wide else report_module.COMPACT_NOTES
    width = shutil.get_terminal_size((100, 24)).columns
    console = None
    if sys.stdout.isatty():
        try:
            from rich.console import Console
        except ImportError:
            pass
        else:
            console = Console()
            width = console.width
    trailer = [report_module.limits_line(report)] + report_module.summary_lines(report)
    if console is None:
        print(report_module.title(report))
        print("\n".join(report_module.plain_table(header, body, text_columns)))
        print(textwrap.fill(notes, width=max(60, min(width, 120))))
        for line in trailer:
            print(line)
        return
    console.print(render_table(header, body, text_columns, report_module.title(report), wide))
    for line in [notes] + trailer:
        console.print(line, highlight=False, markup=False)


def render_table(header, body, text_columns, title: str, wide: bool = False):
    """A rich table of the rows: no box, one space between columns, nothing wrapped or cut in the compact view
    (its columns fit 100 characters; `tests/test_cli.py` renders it at that width)."""
    from rich import box
    from rich.table import Table

    table = Table(title=title, box=None if not wide else box.SIMPLE_HEAD, padding=(0, 1, 0, 0) if not wide else (0, 1),
                  header_style="bold", title_justify="left")
    for column in header:
        table.add_column(column, justify="left" if column in text_columns else "right", no_wrap=not wide)
    for cells in body:
        table.add_row(*cells)
    return table


def _run_layers(layers, run_one):
    """Call ``run_one(layer)`` for each layer under a progress bar naming the current layer."""
    try:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    except ImportError:
        return [run_one(layer) for layer in layers]
    rows = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task("", total=len(layers))
        for layer in layers:
            progress.update(task, description=f"{layer.key:45s}")
            rows.append(run_one(layer))
            progress.advance(task)
    return rows


def _check_writable(path: str | None, option: str) -> None:
    """Fail before a long run, not after it: ``path`` can be created (or overwritten)."""
    if not path:
        return
    target = pathlib.Path(path)
    existed = target.exists()
    if target.is_dir():
        raise ValueError(f"{option} {path}: is a directory")
    try:
        with open(target, "a"):
            pass
    except OSError as error:
        raise ValueError(f"{option} {path}: cannot be written ({error.strerror or error})") from None
    if not existed:
        target.unlink()


def _wanted_peers(args) -> list[str]:
    if args.peers in ("none", ""):
        return []
    names = list(peers.NAMES) if args.peers == "all" else [n.strip() for n in args.peers.split(",") if n.strip()]
    unknown = [n for n in names if n not in peers.NAMES]
    if unknown:
        raise ValueError(f"--peers: unknown {', '.join(unknown)}; choose from {', '.join(peers.NAMES)}, all or none")
    return [n for n in names if not (args.no_torch and n == "torch")]


def run_bench(args) -> int:
    layers = workloads.suite(args.suite)
    if not layers:
        raise ValueError(f"--suite {args.suite!r} names no layers")
    if args.limit < 0:
        raise ValueError(f"--limit must be >= 1 (or 0 for every layer), got {args.limit}")
    if args.limit:
        layers = layers[: args.limit]
    _check_writable(args.json, "--json")
    _check_writable(args.plot, "--plot")
    if args.batch < 1:
        raise ValueError(f"--batch must be >= 1, got {args.batch}")
    if args.repeat < 0:
        raise ValueError(f"--repeat must be >= 1, got {args.repeat}")
    if args.device == "cuda":
        from . import cuda as numbaconv_cuda

        if not numbaconv_cuda.available():
            raise ValueError("--device cuda: no CUDA device is available here (numba.cuda.is_available() is "
                             "False); install numba-cuda on a machine with an NVIDIA GPU, or use --device cpu")
    if args.plot:
        plot._require_matplotlib()  # fail before the run, not after it
    if args.gap_rounds < 0:
        raise ValueError(f"--gap-rounds must be >= 0, got {args.gap_rounds}")
    repeat = args.repeat or (3 if args.quick else 10)
    if args.layout == "NHWC" and args.device == "cuda":
        raise ValueError("--layout NHWC: the CUDA benchmark runs NCHW only")
    import numba

    threads = numba.get_num_threads()
    wanted = _wanted_peers(args)
    installed = peers.available()
    # a CPU forward pass times the peers in processes of their own; the backward and CUDA benches
    # time torch in this process (autograd, cuDNN)
    isolated = args.device == "cpu" and not args.backward
    torch = None
    if not isolated and "torch" in wanted:
        torch = bench.torch_or_none()
        if torch is not None and args.device == "cpu":
            torch.set_num_threads(threads)  # same threads for both sides
    gap_rounds = 0 if args.backward or args.device == "cuda" else args.gap_rounds
    settings = {"suite": args.suite, "device": args.device, "batch": args.batch, "dtype": args.dtype,
                "layout": args.layout, "direction": "backward" if args.backward else "forward",
                "repeat": repeat, "quick": args.quick, "gap_rounds": gap_rounds, "gap_s": timing.GAP_S,
                "sampling": {"min_sample_s": timing.MIN_SAMPLE_S, "target_dispersion": timing.TARGET_DISPERSION,
                             "budget_s": timing.BUDGET_S, "noisy_dispersion": timing.NOISY_DISPERSION,
                             "other_load_limit": timing.OTHER_LOAD_LIMIT},
                "peers": ["reference", "blas"] + (["torch"] if torch is not None else []),
                "peer_versions": {}, "peer_notes": {}}
    processes = {}
    if isolated:
        for name in wanted:
            if name in installed:
                settings["peer_versions"][name] = installed[name]
                settings["peers"].append(name)
            else:
                settings["peer_notes"][name] = "not installed"
        processes = {name: peers.PeerProcess(name, threads) for name in settings["peer_versions"]}
        for process in processes.values():
            process.ready()  # loaded before the first timed call
    first_calls: dict = {}
    # the machine's state before and after the layers: a GEMM rate that moved says other work shared the cores
    # (NumPy's BLAS, so that numbaconv's first kernel still pays Numba's thread-pool start-up as a user's would)
    # (tolerance 25%: on an idle 2-core VM the rate moved by up to 20% between two such checks; a busy loop on one
    # core cut it 3-7x)
    check = {"tolerance": 0.25}
    if args.device == "cpu":
        limits.gemm_flops_per_s(args.dtype, size=768, repeat=3)  # BLAS's threads started, the clock ramped up
        check["gemm_before_flops_per_s"] = limits.gemm_flops_per_s(args.dtype, size=768, repeat=7)
    settings["machine_check"] = check
    try:
        rows = _run_layers(layers, lambda layer: bench.bench_layer(
            layer, args.batch, args.dtype, repeat, 1 if args.quick else 3, torch, None, first_calls, args.device,
            args.layout, args.backward, processes, gap_rounds))
    finally:
        for process in processes.values():
            process.close()
    if args.device == "cpu":
        check["gemm_after_flops_per_s"] = limits.gemm_flops_per_s(args.dtype, size=768, repeat=7)
    # the roofs after the layers, so that a first call is what a fresh process pays (Numba's start-up included)
    print("measuring this machine's roofs (BLAS GEMM, memory copy) ...", flush=True)
    machine_limits = (limits.measure_cuda if args.device == "cuda" else limits.measure)(args.dtype, quick=args.quick)
    bench.add_roofline(rows, machine_limits)
    report = bench.as_json(rows, settings, machine_limits, first_calls)
    _print_table(report, args.wide)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=1, allow_nan=False)
        print(f"wrote {args.json}")
    if args.plot:
        print(f"wrote {plot.roofline(report, args.plot)}")
    return 0


def _load_report(path: str) -> dict:
    """A report written by ``numbaconv bench --json``; ValueError (one line) for anything else."""
    try:
        with open(path) as handle:
            report = json.load(handle)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not JSON ({error})") from None
    rows = report.get("rows") if isinstance(report, dict) else None
    needed = {"layer", "network", "kind", "shape", "kernel", "time_s", "gflops", "gbps", "roofline_fraction"}
    if not isinstance(rows, list) or not all(isinstance(row, dict) and needed <= set(row) for row in rows) \
            or not isinstance(report.get("settings"), dict) or not isinstance(report.get("limits"), dict):
        raise ValueError(f"{path} is not a report of numbaconv bench --json (it needs 'settings', 'limits' and "
                         "'rows' with each layer's times)")
    return report


def run_report(args) -> int:
    if args.peers:
        reports = [_load_report(path) for path in args.file]
        print(report_module.markdown_peers(reports))
        return 0
    if len(args.file) > 1:
        raise ValueError("several reports: only --peers reads more than one (the others show one report)")
    report = _load_report(args.file[0])
    _check_writable(args.plot, "--plot")
    if args.layers:
        wanted = args.layers.split(",")
        by_key = {row["layer"]: row for row in report["rows"]}
        missing = [key for key in wanted if key not in by_key]
        if missing:
            raise ValueError(f"--layers: {', '.join(missing)} not in {args.file[0]}")
        report = {**report, "rows": [by_key[key] for key in wanted]}
    if args.markdown and args.rows:
        print(report_module.markdown_rows(report))
    elif args.markdown:
        print(report_module.markdown_summary(report, short=args.short))
    elif not args.plot:
        _print_table(report, args.wide)
    if args.plot:
        print(f"wrote {plot.roofline(report, args.plot)}")
    return 0


def run_cuda_kernels(cc: str) -> int:
    """``numbaconv info --cuda-kernels``: the compiled-code inventory and its gate (numbaconv.cuda.inventory)."""
    try:
        major, minor = (int(part) for part in cc.split("."))
    except ValueError:
        raise ValueError(f"--cc must be a compute capability such as 9.0, got {cc!r}") from None
    try:
        from .cuda import inventory
    except ImportError as exc:
        raise ImportError(f"--cuda-kernels needs numba-cuda (pip install -e '.[cuda]'): {exc}") from None
    if inventory.ptxas_path() is None:
        raise ImportError("--cuda-kernels needs NVIDIA's compilers: pip install nvidia-cuda-nvcc-cu12 "
                          "nvidia-cuda-nvrtc-cu12")
    rows = inventory.report((major, minor))
    print(f"CUDA kernels compiled for sm_{major}{minor} (no GPU needed):")
    print(inventory.table(rows))
    broken = inventory.failures(rows)
    print(f"gate: {'passed' if not broken else f'{len(broken)} failures'}")
    for line in broken:
        print(f"  {line}")
    return 1 if broken else 0


def run_info(args) -> int:
    if args.cuda_kernels:
        return run_cuda_kernels(args.cc)
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
    width = max(map(len, info))
    for key, value in info.items():
        print(f"{key:{width}s}  {value}")
    print("kernels:")
    for algorithm in algorithms():
        print(f"  {algorithm.name:15s} {algorithm.device:4s} {algorithm.family:10s} {algorithm.description}")
    return 0


def run_warmup(args) -> int:
    from . import warmup

    dtypes = [name.strip() for name in args.dtype.split(",") if name.strip()]
    unknown = [name for name in dtypes if name not in ("float32", "float64")]
    if unknown or not dtypes:
        raise ValueError(f"--dtype: float32 and/or float64 (comma-separated), got {args.dtype!r}")
    layouts = ["NCHW", "NHWC"] if args.layout == "both" else [args.layout]

    def report(name: str, seconds: float) -> None:
        print(f"  {name:45s} {seconds * 1e3:9.1f} ms", flush=True)

    print(f"compiling numbaconv's kernels into Numba's cache ({', '.join(dtypes)}; {', '.join(layouts)}"
          f"{'; gradients' if args.backward else ''}) ...", flush=True)
    total = warmup.warmup(dtypes, layouts, args.backward, report)
    print(f"done in {total:.1f} s; later processes load these kernels from the cache")
    return 0


def run_dask_demo(args) -> int:
    from . import dask_demo

    dask_demo.run(size=args.size, channels=args.channels, filters=args.filters, chunk=args.chunk,
                  workers=args.workers, threads_per_worker=args.threads_per_worker, memory_limit=args.memory_limit,
                  zarr_in=args.zarr_in, out=args.out, dtype=args.dtype, progress=not args.no_progress)
    return 0


def main(argv=None) -> int:
    from . import __version__

    parser = argparse.ArgumentParser(prog="numbaconv", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"numbaconv {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    b = commands.add_parser("bench", help="time real network layers against the reference and peers")
    b.add_argument("--suite", default="default",
                   help="default, all, a family (pointwise/depthwise/grouped), a network ("
                        + ", ".join(sorted(workloads.NETWORKS)) + ") or a layer (network/name); "
                        "several joined by commas")
    b.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    b.add_argument("--batch", type=int, default=1)
    b.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    b.add_argument("--layout", choices=["NCHW", "NHWC"], default="NCHW",
                   help="numbaconv's input layout (NHWC runs its channels-last kernels; torch is timed in both)")
    b.add_argument("--backward", action="store_true",
                   help="time the backward pass (grad input + grad weight + grad bias) against the references, "
                        "torch autograd and BLAS; roofline columns count 2x the forward's FLOPs")
    b.add_argument("--repeat", type=int, default=0, help="timed calls per contender (default 10, 3 with --quick)")
    b.add_argument("--quick", action="store_true", help="fewer repeats, smaller roof measurements")
    b.add_argument("--limit", type=int, default=0, help="only the first N layers of the suite")
    b.add_argument("--peers", default="all", metavar="LIST",
                   help="peer libraries to time, each in a process of its own, when installed: all (default), none, "
                        "or a comma list of " + ", ".join(peers.NAMES))
    b.add_argument("--no-torch", action="store_true", help="leave PyTorch out even when installed")
    b.add_argument("--gap-rounds", type=int, default=15, metavar="N",
                   help=f"also time numbaconv and each peer after N idle gaps of {timing.GAP_S * 1e3:.0f} ms "
                        "(one call, then the timed one; 0: off)")
    b.add_argument("--json", metavar="FILE", help="write every row, the roofs and the machine description as JSON")
    b.add_argument("--plot", metavar="FILE", help="draw the roofline chart (PNG/SVG/PDF; needs matplotlib)")
    b.add_argument("--wide", action="store_true", help="every column of the table (about 200 characters wide)")
    b.set_defaults(run=run_bench)
    r = commands.add_parser("report", help="the table, Markdown summary or roofline chart of a saved --json report")
    r.add_argument("file", nargs="+", help="a JSON file written by numbaconv bench --json (several with --peers)")
    r.add_argument("--peers", action="store_true",
                   help="Markdown: numbaconv against the best peer, per family, batch and layout, over the reports given")
    r.add_argument("--markdown", action="store_true", help="Markdown summary tables (for README and docs)")
    r.add_argument("--short", action="store_true", help="with --markdown: per family only, not per network")
    r.add_argument("--rows", action="store_true", help="with --markdown: every row instead of the summary")
    r.add_argument("--layers", metavar="KEY,KEY", help="only these layers (network/name keys), in this order")
    r.add_argument("--plot", metavar="FILE", help="draw the roofline chart")
    r.add_argument("--wide", action="store_true", help="every column of the table (about 200 characters wide)")
    r.set_defaults(run=run_report)
    i = commands.add_parser("info", help="versions, threading layer, CPU, CUDA devices, kernels")
    i.add_argument("--cuda-kernels", action="store_true",
                   help="compile every CUDA kernel for --cc without a GPU and report registers, shared memory, "
                        "spills, local memory, 64-bit divisions, float64 instructions and occupancy; exit status 1 "
                        "when the gate fails (needs numba-cuda and nvidia-cuda-nvcc-cu12/nvrtc-cu12)")
    i.add_argument("--cc", default="9.0", help="compute capability for --cuda-kernels (default 9.0, Hopper)")
    i.set_defaults(run=run_info)
    w = commands.add_parser("warmup", help="compile every kernel now (fills Numba's cache for later processes)")
    w.add_argument("--dtype", default="float32", help="float32, float64 or both comma-separated (default float32)")
    w.add_argument("--layout", choices=["NCHW", "NHWC", "both"], default="both")
    w.add_argument("--backward", action="store_true", help="also the gradients' kernels (NCHW)")
    w.set_defaults(run=run_warmup)
    d = commands.add_parser("dask-demo", help="a separable filter bank over a raster larger than memory, on a local "
                                              "Dask cluster, Zarr in and out (needs the dask extra)")
    d.add_argument("--size", type=int, default=12000, help="raster height and width in pixels (default 12000)")
    d.add_argument("--channels", type=int, default=8, help="bands of the random raster (default 8)")
    d.add_argument("--filters", type=int, default=8, help="outputs of the pointwise bank (default 8)")
    d.add_argument("--chunk", type=int, default=1024,
                   help="chunk height and width in pixels (default 1024: 32 MiB of 8 bands)")
    d.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    d.add_argument("--threads-per-worker", type=int, default=1)
    d.add_argument("--memory-limit", default="1536MiB", help="each worker's memory_limit (default 1536MiB)")
    d.add_argument("--zarr-in", metavar="PATH", help="read this (H, W, C) Zarr array instead of a random raster")
    d.add_argument("--out", metavar="PATH", help="keep the result in this Zarr store (default: a temporary one)")
    d.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    d.add_argument("--no-progress", action="store_true", help="no progress bar")
    d.set_defaults(run=run_dask_demo)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except BrokenPipeError:  # `numbaconv bench | head`: the reader has gone; stop quietly, status 1 (as rich does)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python would report the pipe again when it flushes at exit
        return 1
    except (ValueError, OSError, ImportError) as exc:  # bad arguments, unreadable files, a missing extra
        print(f"numbaconv {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
