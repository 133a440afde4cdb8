"""Grouped (and dense, groups=1) convolution as an implicit GEMM per group, NCHW.

For group g the product is  out_g[C_out/G, pixels] = W_g[C_out/G, K] x X_g[K, pixels]
with K = C_in/G * kH * kW; the K x pixels operand is never built (no im2col buffer):
the kernel reads it straight from the prepared input.

Prepared input ("phase-split rows"): the padded input with each row's columns split by
the horizontal stride s into s phases, phase j holding columns j, j+s, j+2s, ...  Tap kw
of output column ow reads padded column ow*s + kw*d = s*(ow + (kw*d)//s) + (kw*d) % s,
i.e. element ow + (kw*d)//s of phase (kw*d) % s: consecutive output pixels read
consecutive memory for every stride, so the kernel has one unit-stride inner loop.
For s = 1 the prepared input is the padded input itself.

Loop nest of one parallel task (image n, group g, output row oh, pixel tile, channel
block of 4), the channel block varying fastest so consecutive tasks of a thread reuse the
same input rows from cache:

    for each run of TILE_PIXELS output pixels in the tile:       # register tile
        acc[4][TILE_PIXELS] = 0
        for ci in C_in/G:  for kh:  for kw:                        # the K reduction
            w0..w3 = packed[g, block, k, 0..3]                     # one contiguous load
            for p in TILE_PIXELS:                                  # unrolled, SIMD
                acc[i][p] += w_i * row[ow + p]
        out = activate(acc + bias)

The accumulator tile stays in vector registers for the whole reduction (LLVM fully
unrolls the constant TILE_PIXELS loop and promotes the small array), so each input vector
feeds 4 fused multiply-adds and each output is written once.  Weights are packed
(G, blocks, K, 4) with zero rows past C_out/G, so a partial channel block needs no
special case; a partial pixel run uses the same code with a run-time trip count.

Indexing is on flat views with unsigned indices: Numba must otherwise guard every
signed index against negative wraparound, which stops LLVM from vectorizing the loads.
"""

import numpy as np
from numba import njit, prange

from ..config import FASTMATH, TASK_PIXELS, TILE_PIXELS
from .epilogue import activate

# Output channels per register tile; the unrolled body of _accumulate_run names all four.
TILE_CO = 4

_U = np.uint64


def pack_weights(weight: np.ndarray, groups: int) -> np.ndarray:
    """(C_out, C_in/G, kH, kW) -> (G, blocks, C_in/G*kH*kW, TILE_CO), zero-filled past C_out/G."""
    out_channels = weight.shape[0]
    per_group = out_channels // groups
    reduction = weight.shape[1] * weight.shape[2] * weight.shape[3]
    blocks = -(-per_group // TILE_CO)
    packed = np.zeros((groups, blocks * TILE_CO, reduction), dtype=weight.dtype)
    packed[:, :per_group] = weight.reshape(groups, per_group, reduction)
    return np.ascontiguousarray(packed.reshape(groups, blocks, TILE_CO, reduction).transpose(0, 1, 3, 2))


def split_phases(padded: np.ndarray, stride_w: int) -> np.ndarray:
    """(N, C, Hp, Wp) -> (N, C, Hp, stride_w, ceil(Wp/stride_w)): each row's columns by phase."""
    if stride_w == 1:
        return np.ascontiguousarray(padded)[:, :, :, np.newaxis, :]
    n, c, hp, wp = padded.shape
    width = -(-wp // stride_w)
    phased = np.zeros((n, c, hp, stride_w, width), dtype=padded.dtype)
    for phase in range(stride_w):
        columns = padded[:, :, :, phase::stride_w]
        phased[:, :, :, phase, : columns.shape[3]] = columns
    return phased


@njit(inline="always", fastmath=FASTMATH, cache=True)
def _accumulate_run(acc, x, packed, x_first, packed_first, channel_size, row_size, phase_size,
                    in_per_group, kernel_height, kernel_width, stride_w, dilation_h, dilation_w, count):
    # acc[i, p] += sum over (ci, kh, kw) of packed[.., k, i] * x[.., ow + p + column offset of kw]
    # x_first: flat index of (n, first channel of the group, oh*sh, phase 0, ow)
    k = packed_first
    for ci in range(in_per_group):
        for kh in range(kernel_height):
            row = x_first + ci * channel_size + kh * dilation_h * row_size
            for kw in range(kernel_width):
                column = kw * dilation_w
                src = _U(row + (column % stride_w) * phase_size + column // stride_w)
                w0 = packed[_U(k)]
                w1 = packed[_U(k + 1)]
                w2 = packed[_U(k + 2)]
                w3 = packed[_U(k + 3)]
                for p in range(count):
                    value = x[src + _U(p)]
                    acc[0, p] += w0 * value
                    acc[1, p] += w1 * value
                    acc[2, p] += w2 * value
                    acc[3, p] += w3 * value
                k += TILE_CO


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def grouped_conv_nchw(x, packed, bias, out, groups, kernel_height, kernel_width,
                      stride_h, stride_w, dilation_h, dilation_w, act):
    """out = activate(conv(x, W) + bias).

    x: the padded input split by phases, C-contiguous (N, C_in, Hp, stride_w, Wq);
    packed: pack_weights(W); out: C-contiguous (N, C_out, H_out, W_out).
    """
    n_images, in_channels, padded_height, _, phase_size = x.shape
    in_per_group = in_channels // groups
    out_channels, out_height, out_width = out.shape[1], out.shape[2], out.shape[3]
    out_per_group = out_channels // groups
    blocks, reduction = packed.shape[1], packed.shape[2]
    row_size = stride_w * phase_size
    channel_size = padded_height * row_size
    x_flat = x.reshape(-1)
    packed_flat = packed.reshape(-1)
    out_flat = out.reshape(-1)
    pixel_tiles = (out_width + TASK_PIXELS - 1) // TASK_PIXELS
    for task in prange(n_images * groups * out_height * pixel_tiles * blocks):
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
        packed_first = (g * blocks + block) * reduction * TILE_CO
        ow = tile * TASK_PIXELS
        ow_end = min(out_width, ow + TASK_PIXELS)
        acc = np.empty((TILE_CO, TILE_PIXELS), dtype=out.dtype)
        while ow < ow_end:
            count = min(TILE_PIXELS, ow_end - ow)
            acc[:] = 0
            x_first = ((n * in_channels + g * in_per_group) * padded_height + oh * stride_h) * row_size + ow
            if count == TILE_PIXELS:  # constant trip count: unrolled and vectorized
                _accumulate_run(acc, x_flat, packed_flat, x_first, packed_first, channel_size, row_size,
                                phase_size, in_per_group, kernel_height, kernel_width, stride_w,
                                dilation_h, dilation_w, TILE_PIXELS)
            else:
                _accumulate_run(acc, x_flat, packed_flat, x_first, packed_first, channel_size, row_size,
                                phase_size, in_per_group, kernel_height, kernel_width, stride_w,
                                dilation_h, dilation_w, count)
            for i in range(rows):
                b = bias[co_first + i]
                o = ((n * out_channels + co_first + i) * out_height + oh) * out_width + ow
                for p in range(count):
                    out_flat[_U(o + p)] = activate(acc[i, p] + b, act)
            ow += count
