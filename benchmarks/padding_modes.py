"""Reflect padding without a padded copy of the input, side by side: zero padding, reflect by the border paths
(the default), and reflect with the whole input padded first (the border paths switched off), for depthwise
layers in both layouts (separable_conv2d pads band by band with no switch to compare against: it is measured
against the previous commit in docs/performance.md).  Each mode runs in a process of its own (the plans cache
their border rectangles), the three alternating over ``--rounds`` rounds; the median of each mode's medians.

Usage: python benchmarks/padding_modes.py [--rounds 3] [--repeat 15] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

CASES = [("depthwise", "NHWC", (8, 112, 112, 32)), ("depthwise", "NHWC", (1, 56, 56, 144)),
         ("depthwise", "NHWC", (8, 28, 28, 192)), ("depthwise", "NHWC", (1, 512, 512, 16)),
         ("depthwise", "NHWC", (1, 4096, 4096, 8)), ("depthwise", "NCHW", (1, 16, 512, 512)),
         ("depthwise", "NCHW", (1, 8, 4096, 4096))]


def measure(mode: str, repeat: int) -> dict:
    """Median milliseconds per case in this process, ``mode`` one of zeros, border, whole."""
    import numpy as np

    import numbaconv
    from numbaconv import dispatch, spec

    if mode == "whole":  # the border paths off: every non-zero mode pads the whole input first
        dispatch.DEPTHWISE_BORDER_SHARE = spec.BORDER_SHARE = sys.maxsize
    rng = np.random.default_rng(0)
    times = {}
    for family, layout, shape in CASES:
        x = rng.standard_normal(shape).astype(np.float32)
        channels = shape[1] if layout == "NCHW" else shape[3]
        w = rng.standard_normal((channels, 1, 3, 3)).astype(np.float32)
        padding_mode = "zeros" if mode == "zeros" else "reflect"

        def call():
            numbaconv.depthwise_conv2d(x, w, padding=1, padding_mode=padding_mode, layout=layout)

        call()
        samples = []
        for _ in range(repeat):
            start = time.perf_counter()
            call()
            samples.append(time.perf_counter() - start)
        times[f"{family} {layout} {'x'.join(map(str, shape))}"] = statistics.median(samples) * 1e3
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--json")
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(measure(args.mode, args.repeat)))
        return
    runs: dict = {"zeros": [], "border": [], "whole": []}
    for _ in range(args.rounds):
        for mode in runs:
            output = subprocess.run([sys.executable, __file__, "--mode", mode, "--repeat", str(args.repeat)],
                                    check=True, capture_output=True, text=True, env=os.environ).stdout
            runs[mode].append(json.loads(output.strip().splitlines()[-1]))
    import numba

    import numbaconv
    rows = []
    print(f"{'case':34s} {'zeros':>9s} {'whole pad':>10s} {'border':>9s}  border vs whole pad  border / zeros")
    for case in runs["zeros"][0]:
        zeros, whole, border = (statistics.median(run[case] for run in runs[mode])
                                for mode in ("zeros", "whole", "border"))
        rows.append(dict(case=case, zeros_ms=zeros, whole_pad_ms=whole, border_ms=border,
                         speedup_vs_whole_pad=whole / border, border_over_zeros=border / zeros))
        print(f"{case:34s} {zeros:9.3f} {whole:10.3f} {border:9.3f}  {whole / border:18.2f}x {border / zeros:14.2f}x")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(dict(date=time.strftime("%Y-%m-%d"), cpu=platform.processor() or platform.machine(),
                           numba_threads=numba.config.NUMBA_NUM_THREADS, numbaconv=numbaconv.__version__,
                           rounds=args.rounds, repeat=args.repeat, padding=1, kernel="3x3", dtype="float32",
                           rows=rows), handle, indent=1)


if __name__ == "__main__":
    main()
