"""``numbaconv dask-demo``: a depthwise-separable filter bank over a raster larger than each worker's memory.

A raster of ``size x size`` pixels and ``channels`` bands (the layout of satellite and microscopy images:
height, width, channels) is read from Zarr (``--zarr-in``, or a random one written to Zarr first), filtered
by `numbaconv.dask.separable_conv2d` (3x3 depthwise with reflect padding and relu6, then a pointwise bank
of ``filters`` outputs with relu) on a `distributed.LocalCluster` of worker processes, and written to Zarr,
chunk by chunk, with Dask's progress bar.  It prints the throughput and each worker's peak memory against
its ``memory_limit``, and checks one corner tile against the in-memory call.
"""

from __future__ import annotations

import logging
import pathlib
import shutil
import tempfile
import time

import numpy as np

from . import dask as numbaconv_dask
from . import separable


def _peak_rss_bytes() -> int:
    """This process's peak resident memory (VmHWM); runs on each worker."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reset_peak() -> None:
    """Start this process's VmHWM afresh (Linux: 5 to /proc/self/clear_refs), so that the peak read after the
    filtering is the filtering's own, not the input writing's; runs on each worker."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:  # not Linux: the peak is the process's whole life
        pass


def _spilled_bytes(dask_worker) -> int:
    """The bytes this worker has spilled to disk since it started (its SpillBuffer's cumulative count)."""
    metrics = getattr(dask_worker.data, "cumulative_metrics", {})
    return int(metrics.get(("disk-write", "bytes"), 0))


def filter_bank(channels: int, filters: int, dtype, seed: int = 0):
    """The demo's weights: a 3x3 depthwise filter per band and a pointwise bank of ``filters`` outputs."""
    rng = np.random.default_rng(seed)
    depthwise = (rng.standard_normal((channels, 1, 3, 3)) / 3).astype(dtype)
    pointwise = (rng.standard_normal((filters, channels, 1, 1)) / np.sqrt(channels)).astype(dtype)
    return depthwise, rng.standard_normal(channels).astype(dtype), pointwise, rng.standard_normal(filters).astype(dtype)


def run(size: int = 12000, channels: int = 8, filters: int = 8, chunk: int = 1024, workers: int = 2,
        threads_per_worker: int = 1, memory_limit: str = "1536MiB", zarr_in: str | None = None,
        out: str | None = None, dtype: str = "float32", progress: bool = True, echo=print) -> dict:
    """Run the demo; returns what it printed as numbers (seconds, bytes, peaks per worker, the check's error)."""
    try:
        import dask.array as da
        import distributed
        import zarr  # noqa: F401  (dask.array.to_zarr needs it)
    except ImportError as error:
        raise ImportError("numbaconv dask-demo needs the dask extra and Zarr: pip install 'numbaconv[dask]'") \
            from error
    if size < 8 or channels < 1 or filters < 1 or chunk < 8 or workers < 1 or threads_per_worker < 1:
        raise ValueError(f"dask-demo: size, chunk >= 8 and channels, filters, workers, threads >= 1, got size={size} "
                         f"chunk={chunk} channels={channels} filters={filters} workers={workers} "
                         f"threads={threads_per_worker}")
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="numbaconv-dask-demo-"))
    result: dict = {}
    try:
        with distributed.LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker, processes=True,
                                      memory_limit=memory_limit, dashboard_address=None,
                                      silence_logs=logging.ERROR) as cluster, distributed.Client(cluster) as client:
            limit = min(worker["memory_limit"] for worker in client.scheduler_info()["workers"].values())
            source = zarr_in
            if source is None:  # a random raster, written to Zarr chunk by chunk on the workers
                source = str(scratch / "input.zarr")
                raster = da.random.default_rng(0).standard_normal((size, size, channels), dtype=dtype,
                                                                 chunks=(chunk, chunk, channels))
                echo(f"writing a random {size} x {size} x {channels} {dtype} raster "
                     f"({raster.nbytes / 2**30:.2f} GiB) to {source} ...")
                start = time.perf_counter()
                _compute(client, da.to_zarr(raster, source, compute=False), progress, distributed)
                result["write_input_s"] = time.perf_counter() - start
            x = da.from_zarr(source)
            if x.ndim == 3:
                x = x[None]  # one image, NHWC
            if x.ndim != 4:
                raise ValueError(f"--zarr-in: a (height, width, channels) or (1, height, width, channels) array, got "
                                 f"shape {x.shape}")
            channels = x.shape[-1]
            weights = filter_bank(channels, filters, x.dtype)
            # the filter bank's kernels compiled once here, into Numba's cache on disk, before any task runs: the
            # local workers load them instead of each compiling them (a cold start cost each worker ~10 s of CPU on
            # the 2-core VM); the call each task makes, on a window already padded
            separable.separable_conv2d(np.zeros((1, 16, 16, channels), x.dtype), weights[0], weights[2], weights[1],
                                       weights[3], depthwise_activation="relu6", activation="relu", layout="NHWC")
            options = dict(padding=1, padding_mode="reflect", depthwise_activation="relu6", activation="relu",
                           layout="NHWC")
            y = numbaconv_dask.separable_conv2d(x, weights[0], weights[2], weights[1], weights[3], **options)[0]
            target = out or str(scratch / "output.zarr")
            in_bytes, out_bytes = x.nbytes, y.nbytes
            echo(f"filtering {tuple(x.shape)} -> {tuple(y.shape)} ({in_bytes / 2**30:.2f} GiB in, "
                 f"{out_bytes / 2**30:.2f} GiB out) on {workers} worker processes x {threads_per_worker} threads, "
                 f"memory_limit {memory_limit} each, chunks {x.chunksize} ...")
            client.run(_reset_peak)
            spilled_before = client.run(_spilled_bytes)
            start = time.perf_counter()
            _compute(client, da.to_zarr(y, target, compute=False, overwrite=True), progress, distributed)
            seconds = time.perf_counter() - start
            peaks = client.run(_peak_rss_bytes)
            spilled = sum(client.run(_spilled_bytes).values()) - sum(spilled_before.values())
            tile = min(256, x.shape[1] - 1, x.shape[2] - 1)
            corner = np.asarray(x[:, :tile + 1, :tile + 1].compute())
            expected = separable.separable_conv2d(corner, weights[0], weights[2], weights[1], weights[3], **options)
            got = np.asarray(da.from_zarr(target)[:tile, :tile].compute())
            error = float(np.abs(got - expected[0, :tile, :tile]).max())
            result.update(seconds=seconds, in_bytes=in_bytes, out_bytes=out_bytes, pixels=x.shape[1] * x.shape[2],
                          peak_rss_bytes=sorted(peaks.values()), memory_limit_bytes=limit, spilled_bytes=spilled,
                          corner_error=error,
                          output=target)
        echo(f"done in {seconds:.1f} s: {result['pixels'] / seconds / 1e6:.1f} Mpixel/s, "
             f"{(in_bytes + out_bytes) / seconds / 1e9:.2f} GB/s read + written")
        echo("peak memory per worker: " + ", ".join(f"{peak / 2**20:.0f} MiB" for peak in result["peak_rss_bytes"])
             + (f" (memory_limit {limit / 2**20:.0f} MiB)" if limit else "")
             + f"; spilled to disk while filtering: {spilled / 2**20:.0f} MiB")
        echo(f"corner tile {tile} x {tile} against numbaconv.separable_conv2d in memory: max |difference| {error:.2e}")
        if out:
            echo(f"output: {out}")
        return result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _compute(client, store, progress: bool, distributed) -> None:
    future = client.compute(store)
    if progress:
        distributed.progress(future)  # a text bar in a terminal
        print()
    future.result()
