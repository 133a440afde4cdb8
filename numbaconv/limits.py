"""This machine's two roofs, measured: the FMA peak and memory-copy bandwidth (and BLAS as a peer).

A roofline needs a peak compute rate and a peak memory bandwidth.  Datasheet numbers are
of little use on a shared VM, so ``numbaconv bench`` measures both in each run:

* **compute roof**: the FMA peak -- a Numba kernel of independent fused multiply-add chains on
  64-byte vectors (`numbaconv.cpu.simd.fma_chains`, 8 chains per thread: enough to cover the FMA
  latency on two ports) on all of Numba's threads, per dtype.  This is what the cores can do;
  numbaconv's GEMM tiles run the same instructions.  NumPy's BLAS is measured beside it as a
  **peer** (``blas_flops_per_s``): a wheel's BLAS may run narrower kernels than the host has
  (AVX2 on an AVX-512 machine when ``OPENBLAS_CORETYPE`` pins it), so it is no roof.
* **memory roof**: the best rate of copying an array far larger than the last-level cache,
  counted as STREAM does (bytes read + bytes written), the larger of NumPy's single-threaded
  ``copyto`` and a Numba ``prange`` copy on all of Numba's threads.

Best rather than median: a roof is what the machine can do, and noise only slows it down.
"""

from __future__ import annotations

import time

import numpy as np
import numba
from numba import njit, prange

from .cpu.simd import VECTOR_BYTES, fma_chains

FMA_CHAINS = 8  # per thread: 2 FMA ports x latency 4 (measured here: 8 chains 459, 16 449, 24 424 GFLOP/s)


@njit(parallel=True, cache=True)
def _parallel_copy(source, destination):
    for i in prange(source.size):
        destination[i] = source[i]


@njit(parallel=True, cache=True)
def _fma_kernel(out, iterations):
    for t in prange(out.shape[0]):
        fma_chains(out[t], iterations, FMA_CHAINS)


def fma_flops_per_s(dtype="float32", seconds: float = 0.05, repeat: int = 5) -> float:
    """The best FLOP/s of independent vector FMA chains on all of Numba's threads (one task per thread)."""
    threads = numba.get_num_threads()
    out = np.zeros((threads, FMA_CHAINS), dtype)
    lanes = VECTOR_BYTES // np.dtype(dtype).itemsize
    per_iteration = 2 * lanes * FMA_CHAINS * threads
    _fma_kernel(out, 1000)  # compile or load, wake the threads
    iterations = 1000
    while True:  # calibrate so that a run lasts about ``seconds``
        start = time.perf_counter()
        _fma_kernel(out, iterations)
        elapsed = time.perf_counter() - start
        if elapsed > seconds / 4:
            break
        iterations *= 4
    iterations = max(1000, int(iterations * seconds / elapsed))
    return per_iteration * iterations / _best_seconds(lambda: _fma_kernel(out, iterations), repeat)


def _best_seconds(fn, repeat: int) -> float:
    fn()  # warm-up: page faults, thread pools, compile
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def gemm_flops_per_s(dtype="float32", size: int = 2048, repeat: int = 5) -> float:
    """The best FLOP/s of an n x n by n x n product through NumPy's BLAS (2 n^3 FLOPs)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size)).astype(dtype)
    b = rng.standard_normal((size, size)).astype(dtype)
    c = np.empty((size, size), dtype)
    return 2.0 * size**3 / _best_seconds(lambda: np.matmul(a, b, out=c), repeat)


def copy_bytes_per_s(megabytes: int = 256, repeat: int = 5) -> dict:
    """Copy bandwidth (read + write bytes per second) on arrays of ``megabytes`` each."""
    source = np.ones(megabytes * (1 << 20) // 8, np.float64)
    destination = np.empty_like(source)
    moved = 2.0 * source.nbytes
    numpy_rate = moved / _best_seconds(lambda: np.copyto(destination, source), repeat)
    numba_rate = moved / _best_seconds(lambda: _parallel_copy(source, destination), repeat)
    return {"numpy_copyto": numpy_rate, "numba_prange_copy": numba_rate}


def measure(dtype="float32", quick: bool = False) -> dict:
    """Both roofs for ``dtype``: ``peak_flops_per_s``, ``bandwidth_bytes_per_s`` and how each was measured."""
    size, megabytes, repeat = (1536, 128, 3) if quick else (2048, 256, 5)
    blas = gemm_flops_per_s(dtype, size, repeat)
    copies = copy_bytes_per_s(megabytes, repeat)
    return {
        "peak_flops_per_s": fma_flops_per_s(dtype, repeat=repeat),
        "bandwidth_bytes_per_s": max(copies.values()),
        "fma": f"{FMA_CHAINS} independent {VECTOR_BYTES}-byte FMA chains per thread, {numba.get_num_threads()} "
               f"threads, {np.dtype(dtype).name}, best of {repeat}",
        "blas_flops_per_s": blas,
        "gemm": f"np.matmul {size}x{size} {np.dtype(dtype).name}, best of {repeat}",
        "copy": f"{megabytes} MiB array, best of {repeat}, read + write bytes",
        "copy_bytes_per_s": copies,
    }


def measure_cuda(dtype="float32", quick: bool = False) -> dict:
    """The GPU's roofs: device-to-device copy bandwidth (read + write bytes) on a large array, and
    the GEMM rate of cuBLAS (through torch with TF32 off, or CuPy) when either is installed,
    else of numbaconv's own CUDA GEMM kernel (then labelled so)."""
    from numba import cuda

    from . import api

    megabytes = 256 if quick else 1024
    source = cuda.to_device(np.ones(megabytes * (1 << 20) // 8, np.float64))
    destination = cuda.device_array_like(source)

    def copy():
        destination.copy_to_device(source)
        cuda.synchronize()

    bandwidth = 2.0 * source.nbytes / _best_seconds(copy, 5)
    size = 4096
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size)).astype(dtype)
    how = None
    try:
        import torch

        if torch.cuda.is_available():
            torch.backends.cuda.matmul.allow_tf32 = False
            ta, tb = torch.from_numpy(a).cuda(), torch.from_numpy(a).cuda()
            seconds = _best_seconds(lambda: (torch.matmul(ta, tb), torch.cuda.synchronize()), 5)
            how = f"torch.matmul (cuBLAS, TF32 off) {size}x{size} {np.dtype(dtype).name}, best of 5"
    except ImportError:
        pass
    if how is None:
        x = cuda.to_device(a.reshape(1, size, size, 1))
        w = cuda.to_device(a.reshape(size, size, 1, 1))
        seconds = _best_seconds(lambda: (api.conv2d(x, w), cuda.synchronize()), 3)
        how = f"numbaconv cuda_pointwise {size}x{size} {np.dtype(dtype).name} (no cuBLAS peer installed), best of 3"
    return {
        "peak_flops_per_s": 2.0 * size**3 / seconds,
        "bandwidth_bytes_per_s": bandwidth,
        "gemm": how,
        "copy": f"{megabytes} MiB device-to-device copy, best of 5, read + write bytes",
    }
