"""Grouped (and dense, groups=1) convolution as an implicit GEMM per group, NCHW.

For group g the product is  out_g[C_out/G, pixels] = W_g[C_out/G, K] x X_g[K, pixels]
with K = C_in/G * kH * kW; the K x pixels operand is never built (no im2col buffer):
the kernel reads it straight from the padded input.

Loop nest of one parallel task (image n, group g, output row oh, pixel tile,
channel block), the channel block varying fastest between tasks:

    for each run of TILE_PIXELS output pixels in the tile:       # register tile
        acc[TILE_CO][TILE_PIXELS] = 0
        for ci in C_in/G:  for kh:  for kw:                        # the K reduction
            w0..w3 = packed[g, block, k, 0..3]                     # one contiguous load
            for p in TILE_PIXELS:                                  # unrolled, SIMD
                acc[i][p] += w_i * x[n, c, oh*sh + kh*dh, (ow+p)*sw + kw*dw]
        out = activate(acc + bias)

The accumulator tile stays in vector registers for the whole reduction (LLVM
unrolls the fixed TILE_PIXELS loop and promotes the small array), so each input
vector loaded feeds TILE_CO fused multiply-adds and the output is written once.
Weights are packed (G, blocks, K, TILE_CO) with zero rows past C_out/G, so a
partial channel block needs no special case; a partial pixel run uses the same
code with a run-time trip count.  The input arrives padded, so no index is tested.
"""

import numpy as np
from numba import njit, prange

from ..config import FASTMATH, TASK_PIXELS, TILE_PIXELS
from .epilogue import activate

# Output channels per register tile; the unrolled body of _accumulate_run names all four.
TILE_CO = 4


def pack_weights(weight: np.ndarray, groups: int) -> np.ndarray:
    """(C_out, C_in/G, kH, kW) -> (G, blocks, C_in/G*kH*kW, TILE_CO), zero-filled past C_out/G."""
    out_channels = weight.shape[0]
    per_group = out_channels // groups
    reduction = weight.shape[1] * weight.shape[2] * weight.shape[3]
    blocks = -(-per_group // TILE_CO)
    packed = np.zeros((groups, blocks * TILE_CO, reduction), dtype=weight.dtype)
    packed[:, :per_group] = weight.reshape(groups, per_group, reduction)
    return np.ascontiguousarray(packed.reshape(groups, blocks, TILE_CO, reduction).transpose(0, 1, 3, 2))


@njit(inline="always", fastmath=FASTMATH, cache=True)
def _accumulate_run(acc, x, packed, n, g, block, c_first, c_per_group, oh, ow, count, kh_n, kw_n, sh, sw, dh, dw):
    # acc[i, p] += sum over (ci, kh, kw) of w[i] * x[...]; ``count`` is TILE_PIXELS for full runs.
    for ci in range(c_per_group):
        c = c_first + ci
        for kh in range(kh_n):
            ih = oh * sh + kh * dh
            k_row = (ci * kh_n + kh) * kw_n
            for kw in range(kw_n):
                k = k_row + kw
                w0 = packed[g, block, k, 0]
                w1 = packed[g, block, k, 1]
                w2 = packed[g, block, k, 2]
                w3 = packed[g, block, k, 3]
                base = ow * sw + kw * dw
                for p in range(count):
                    value = x[n, c, ih, base + p * sw]
                    acc[0, p] += w0 * value
                    acc[1, p] += w1 * value
                    acc[2, p] += w2 * value
                    acc[3, p] += w3 * value


@njit(inline="always", fastmath=FASTMATH, cache=True)
def _store_run(acc, out, bias, n, co_first, rows, oh, ow, count, act):
    for i in range(rows):
        b = bias[co_first + i]
        for p in range(count):
            out[n, co_first + i, oh, ow + p] = activate(acc[i, p] + b, act)


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def grouped_conv_nchw(x, packed, bias, out, groups, kernel_height, kernel_width,
                      stride_h, stride_w, dilation_h, dilation_w, act):
    """out = activate(conv(x, W) + bias); x is the zero/mode-padded input, all C-contiguous NCHW."""
    n_images = x.shape[0]
    in_per_group = x.shape[1] // groups
    out_channels, out_height, out_width = out.shape[1], out.shape[2], out.shape[3]
    out_per_group = out_channels // groups
    blocks = packed.shape[1]
    pixel_tiles = (out_width + TASK_PIXELS - 1) // TASK_PIXELS
    n_tasks = n_images * groups * out_height * pixel_tiles * blocks
    for task in prange(n_tasks):
        block = task % blocks
        rest = task // blocks
        tile = rest % pixel_tiles
        rest //= pixel_tiles
        oh = rest % out_height
        rest //= out_height
        g = rest % groups
        n = rest // groups
        co_first = g * out_per_group + block * TILE_CO
        rows = min(TILE_CO, out_per_group - block * TILE_CO)
        c_first = g * in_per_group
        ow = tile * TASK_PIXELS
        ow_end = min(out_width, ow + TASK_PIXELS)
        acc = np.empty((TILE_CO, TILE_PIXELS), dtype=out.dtype)
        while ow < ow_end:
            count = min(TILE_PIXELS, ow_end - ow)
            acc[:] = 0
            if count == TILE_PIXELS:  # constant trip count: unrolled and vectorized
                _accumulate_run(acc, x, packed, n, g, block, c_first, in_per_group, oh, ow, TILE_PIXELS,
                                kernel_height, kernel_width, stride_h, stride_w, dilation_h, dilation_w)
            else:
                _accumulate_run(acc, x, packed, n, g, block, c_first, in_per_group, oh, ow, count,
                                kernel_height, kernel_width, stride_h, stride_w, dilation_h, dilation_w)
            _store_run(acc, out, bias, n, co_first, rows, oh, ow, count, act)
            ow += count
