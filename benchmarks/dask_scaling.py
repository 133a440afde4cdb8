"""numbaconv.dask against the in-memory call on the same data: the graph's overhead and 1 -> 2 worker scaling.

The workload is numbaconv dask-demo's filter bank (3x3 depthwise with reflect padding and relu6, then a
pointwise bank with relu, NHWC) on a random ``size x size x channels`` float32 raster in chunks of
``chunk x chunk`` pixels (all bands: 128 MiB per chunk at the defaults).  Timed, each the median of
``--repeat`` runs, in one process, side by side:

* in memory: `numbaconv.separable_conv2d` on the whole NumPy array, Numba on 1 and on 2 threads;
* Dask's threaded scheduler with one thread (``threads_per_task=1``): the overhead of the graph itself
  (each task copies its window, halos included, from the chunks) against in memory on 1 thread;
* the threaded scheduler with two threads, each task's kernels on 1 thread (the default) and on 2
  (oversubscribed: 4 threads on the cores);
* `distributed.LocalCluster` with 1 and with 2 worker processes of one thread, the raster generated and
  persisted on the workers first (no transfer timed);
* in memory on 1 thread again, last: the ratios' baseline is the mean of its two medians (this shared VM
  drifts over a run).  Each contender is timed in a block of its own runs, not alternately: on this VM freed
  memory goes back to the host after a few seconds (the balloon's free page reporting), and touching it
  again costs up to ten times the first-touch cost, so alternating contenders lends each the other's frees.

Every contender also sums its result (so Dask neither gathers nor keeps the output; the sum reads the
output once, a few percent of a run).

Usage: python benchmarks/dask_scaling.py [--size 4096] [--chunk 2048] [--channels 8] [--filters 8]
                                         [--repeat 7] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import time

import numpy as np


def median_seconds(fn, repeat: int) -> float:
    fn()  # warm-up: compilation, pools, page faults
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    import dask
    import dask.array as da
    import distributed
    import numba

    import numbaconv
    import numbaconv.dask as nd
    from numbaconv.dask_demo import filter_bank

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--chunk", type=int, default=2048)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--filters", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json")
    args = parser.parse_args()

    shape, chunks = (1, args.size, args.size, args.channels), (1, args.chunk, args.chunk, args.channels)
    dw, db, pw, pb = filter_bank(args.channels, args.filters, np.float32)
    options = dict(padding=1, padding_mode="reflect", depthwise_activation="relu6", activation="relu", layout="NHWC")
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    chunk_mib = args.chunk * args.chunk * args.channels * 4 / 2**20
    results: dict = {"size": args.size, "chunk": args.chunk, "chunk_mib": chunk_mib, "channels": args.channels,
                     "filters": args.filters, "repeat": args.repeat, "cpu": platform.processor() or platform.machine(),
                     "numba_threads": numba.config.NUMBA_NUM_THREADS, "dask": dask.__version__,
                     "distributed": distributed.__version__, "numbaconv": numbaconv.__version__}
    expected = numbaconv.separable_conv2d(x, dw, pw, db, pb, **options)
    for threads in (1, 2):
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        results[f"in_memory_{threads}_thread_s"] = median_seconds(
            lambda: numbaconv.separable_conv2d(x, dw, pw, db, pb, **options).sum(), args.repeat)
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    lazy = nd.separable_conv2d(da.from_array(x, chunks=chunks), dw, pw, db, pb, **options)
    got = lazy.compute(scheduler="threads", num_workers=1)
    results["threaded_max_difference"] = float(np.abs(got - expected).max())
    total = lazy.sum()
    results["threaded_1_thread_s"] = median_seconds(lambda: total.compute(scheduler="threads", num_workers=1),
                                                    args.repeat)
    # threads per task inside a 2-thread pool: 1 (the default: Dask's threads are the parallelism) against 2
    # (each task's kernels on both cores while the other task does the same: 4 threads on the cores)
    for per_task in (1, 2):
        oversubscribed = nd.separable_conv2d(da.from_array(x, chunks=chunks), dw, pw, db, pb,
                                             threads_per_task=per_task, **options).sum()
        results[f"threaded_2_threads_{per_task}_per_task_s"] = median_seconds(
            lambda: oversubscribed.compute(scheduler="threads", num_workers=2), args.repeat)
    for workers in (1, 2):
        with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                      dashboard_address=None, silence_logs=logging.ERROR) as cluster, \
                distributed.Client(cluster) as client:
            raster = da.random.default_rng(0).standard_normal(shape, dtype=np.float32, chunks=chunks).persist()
            distributed.wait(raster)
            filtered = nd.separable_conv2d(raster, dw, pw, db, pb, **options)

            total = filtered.sum()

            def run():
                client.compute(total).result()

            results[f"cluster_{workers}_workers_s"] = median_seconds(run, args.repeat)
    numba.set_num_threads(1)
    results["in_memory_1_thread_again_s"] = median_seconds(
        lambda: numbaconv.separable_conv2d(x, dw, pw, db, pb, **options).sum(), args.repeat)
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    base = (results["in_memory_1_thread_s"] + results["in_memory_1_thread_again_s"]) / 2
    results["overhead_ratio_threaded"] = base / results["threaded_1_thread_s"]
    results["overhead_ratio_1_worker"] = base / results["cluster_1_workers_s"]
    results["scaling_1_to_2_workers"] = results["cluster_1_workers_s"] / results["cluster_2_workers_s"]
    results["in_memory_scaling_1_to_2_threads"] = base / results["in_memory_2_thread_s"]
    gib = (x.nbytes + expected.nbytes) / 2**30
    print(f"{args.size} x {args.size} x {args.channels} float32 -> {args.filters} filters, chunks of {args.chunk}^2 "
          f"({chunk_mib:.0f} MiB), {gib:.2f} GiB in + out, median of {args.repeat}")
    for key in ("in_memory_1_thread_s", "in_memory_2_thread_s", "threaded_1_thread_s",
                "threaded_2_threads_1_per_task_s", "threaded_2_threads_2_per_task_s", "cluster_1_workers_s",
                "cluster_2_workers_s", "in_memory_1_thread_again_s"):
        print(f"  {key:34s} {results[key] * 1e3:9.1f} ms   {gib / results[key]:6.2f} GiB/s")
    print(f"  Dask / in memory (1 thread, the mean of its two blocks): threaded scheduler {results['overhead_ratio_threaded']:.2f}x, "
          f"1 worker process {results['overhead_ratio_1_worker']:.2f}x; 1 -> 2 workers "
          f"{results['scaling_1_to_2_workers']:.2f}x (in memory 1 -> 2 threads "
          f"{results['in_memory_scaling_1_to_2_threads']:.2f}x); max |difference| "
          f"{results['threaded_max_difference']:.1e}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()
