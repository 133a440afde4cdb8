"""Fill Numba's on-disk cache before the first real call: ``numbaconv warmup``.

Every kernel is compiled by Numba the first time a process calls it with new argument types, and kept in
Numba's cache (``__pycache__`` beside the module, or ``NUMBA_CACHE_DIR``); later processes load it in
milliseconds.  The first compile costs seconds per kernel (docs/performance.md, "First call"), paid by
whoever calls first -- a server's first request, a benchmark's first layer.  `warmup` pays it up front: it
runs each family's kernels on small problems that take each compiled path -- the serial and the parallel
compilation of each kernel (`numbaconv.cpu.twins`), each specialised filter width and stride of the
depthwise tiles, NCHW and NHWC data, optionally the gradients -- and reports what each step cost.  Run it
once after installing, or in a container image's build.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import numpy as np

from . import api, grad

# (name, x shape NCHW, weight shape, conv2d options): small problems (serial kernels) and ones above the
# parallel threshold (parallel kernels) for each family and each compile-time case of the depthwise tiles
PROBLEMS: list[tuple[str, tuple, tuple, dict]] = [
    ("pointwise", (1, 16, 8, 8), (16, 16, 1, 1), {}),
    ("pointwise", (1, 128, 28, 28), (128, 128, 1, 1), {}),
    ("pointwise", (1, 64, 1, 1), (128, 64, 1, 1), {}),  # one pixel: the matrix-vector kernel
    *[("depthwise", (1, channels, size, size), (channels, 1, kernel, kernel), {"groups": channels, "stride": stride,
                                                                             "padding": kernel // 2})
      for kernel, stride in ((3, 1), (3, 2), (5, 1), (5, 2), (7, 1))
      for channels, size in ((16, 8), (128, 40))],
    ("depthwise", (1, 16, 8, 8), (32, 1, 3, 3), {"groups": 16, "padding": 1}),  # a channel multiplier
    ("depthwise", (1, 64, 16, 16), (64, 1, 3, 3), {"groups": 64, "padding": 2, "dilation": 2}),  # generic tile
    ("grouped", (1, 32, 8, 8), (32, 4, 3, 3), {"groups": 8, "padding": 1}),
    ("grouped", (1, 128, 28, 28), (128, 4, 3, 3), {"groups": 32, "padding": 1}),
    ("grouped", (1, 240, 14, 14), (120, 80, 1, 1), {"groups": 3}),
    ("grouped", (1, 256, 28, 28), (256, 8, 3, 3), {"groups": 32, "padding": 1, "stride": 2}),
]


def steps(dtypes: Iterable[str] = ("float32",), layouts: Iterable[str] = ("NCHW", "NHWC"),
          backward: bool = False) -> list[tuple[str, Callable[[], object]]]:
    """``(description, call)`` for each warm-up call."""
    found = []
    rng = np.random.default_rng(0)
    for dtype in dtypes:
        for layout in layouts:
            for family, x_shape, weight_shape, options in PROBLEMS:
                x = rng.standard_normal(x_shape).astype(dtype)
                if layout == "NHWC":
                    x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
                weight = rng.standard_normal(weight_shape).astype(dtype)
                bias = np.zeros(weight_shape[0], dtype)
                kernel = f"{weight_shape[2]}x{weight_shape[3]}"
                stride = options.get("stride", 1)
                name = f"{family} {kernel}{f' s{stride}' if stride > 1 else ''} {x_shape[1]}ch@{x_shape[2]} " \
                       f"{layout} {dtype}"
                found.append((name, lambda x=x, weight=weight, bias=bias, options=options, layout=layout:
                              api.conv2d(x, weight, bias, layout=layout, **options)))
                if backward and layout == "NCHW":
                    output = api.conv2d(x, weight, bias, **options)

                    def gradients(x=x, weight=weight, output=output, options=options):
                        grad.conv2d_grad_input(x.shape, weight, output, **options)
                        grad.conv2d_grad_weight(x, weight.shape, output, **options)

                    found.append((f"{name} backward", gradients))
    return found


def warmup(dtypes: Iterable[str] = ("float32",), layouts: Iterable[str] = ("NCHW", "NHWC"), backward: bool = False,
           report: Callable[[str, float], None] | None = None) -> float:
    """Run every warm-up step (`steps`), calling ``report(description, seconds)`` after each; the total
    seconds.  A second run in a later process only loads the cache (milliseconds per step)."""
    total = 0.0
    for name, call in steps(dtypes, layouts, backward):
        start = time.perf_counter()
        call()
        seconds = time.perf_counter() - start
        total += seconds
        if report is not None:
            report(name, seconds)
    return total
