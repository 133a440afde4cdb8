"""Where the host time of a CUDA call goes, on a machine with a GPU: numbaconv.conv2d on Numba
device arrays issued back to back without synchronisation (one layer per family, batch 1), against
Numba's launch of an empty kernel with 3 and with 14 arguments (the floor any Numba kernel pays),
then cProfile's top entries of 300 numbaconv calls.

Usage: python3 benchmarks/gpu_host_profile.py [--calls N]
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import time

import numpy as np


def per_call(fn, calls: int) -> float:
    """Seconds per call of ``fn`` issued back to back, the device drained before and after."""
    from numba import cuda

    for _ in range(20):
        fn()
    cuda.synchronize()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    cuda.synchronize()
    return (time.perf_counter() - start) / calls


def main() -> None:
    from numba import cuda

    import numbaconv
    from numbaconv import workloads
    from numbaconv.bench import problem

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args()

    @cuda.jit
    def empty3(a, b, c):
        pass

    @cuda.jit
    def empty14(a, b, c, d, e, i0, i1, i2, i3, i4, i5, i6, i7, i8):
        pass

    arrays = [cuda.device_array(1024, np.float32) for _ in range(5)]
    print(f"empty kernel, 3 array arguments:        {per_call(lambda: empty3[1, 32](*arrays[:3]), args.calls) * 1e6:7.1f} us")
    print(f"empty kernel, 5 arrays + 9 integers:    "
          f"{per_call(lambda: empty14[1, 32](*arrays, 1, 2, 3, 4, 5, 6, 7, 8, 9), args.calls) * 1e6:7.1f} us")
    calls = {}
    for key in ("mobilenet_v2/b6_project", "xception/middle_sep_dw_x26", "shufflenet_v1_g8/s3_gconv2_x7"):
        layer = workloads.suite(key)[0]
        spec, x, weight, bias, kwargs = problem(layer, 1, "float32")
        d_x, d_w, d_b = cuda.to_device(x), cuda.to_device(weight), cuda.to_device(bias)
        d_out = cuda.device_array(spec.out_shape, np.float32)

        def call(d_x=d_x, d_w=d_w, d_b=d_b, d_out=d_out, kwargs=kwargs):
            numbaconv.conv2d(d_x, d_w, d_b, out=d_out, **kwargs)

        calls[key] = call
        print(f"{key:40s} {per_call(call, args.calls) * 1e6:7.1f} us per call (no synchronisation)")
    profile = cProfile.Profile()
    call = calls["xception/middle_sep_dw_x26"]
    profile.enable()
    for _ in range(300):
        call()
    profile.disable()
    cuda.synchronize()
    pstats.Stats(profile).sort_stats("tottime").print_stats(22)


if __name__ == "__main__":
    main()
