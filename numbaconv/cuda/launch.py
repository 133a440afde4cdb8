"""Launch configuration of the CUDA kernels, chosen from the shape in one place.

Tiles are compile-time constants (shared and local arrays need them); they are picked once
per process: full size on a GPU, tiny under the simulator so that small test inputs still
span several blocks and every edge case (partial tiles, several channel and pixel blocks)
is reached.

Index arithmetic: Numba types integer locals as 64-bit, and every array access goes through
4-D indexing with 64-bit strides, so no product of sizes is formed in 32 bits.  Grid
dimensions: (image, group, pixel tile) share ``blockIdx.x`` (limit 2^31 - 1); y and z stay
far under their 65535 limit.
"""

from __future__ import annotations

import math

from . import simulated

# implicit GEMM (pointwise and grouped): a block computes GEMM_CHANNELS output channels x
# GEMM_PIXELS output pixels, each thread GEMM_THREAD_CHANNELS x GEMM_THREAD_PIXELS of them in
# registers, over the reduction C_in/G * kH * kW in steps of GEMM_DEPTH staged in shared memory.
if simulated():
    GEMM_CHANNELS, GEMM_PIXELS, GEMM_DEPTH, GEMM_THREAD_CHANNELS, GEMM_THREAD_PIXELS = 4, 8, 4, 2, 2
    DEPTHWISE_THREADS, DEPTHWISE_SMEM_HEIGHT, DEPTHWISE_SMEM_WIDTH = (4, 2), 12, 12
else:
    GEMM_CHANNELS, GEMM_PIXELS, GEMM_DEPTH, GEMM_THREAD_CHANNELS, GEMM_THREAD_PIXELS = 64, 64, 16, 4, 4
    DEPTHWISE_THREADS, DEPTHWISE_SMEM_HEIGHT, DEPTHWISE_SMEM_WIDTH = (32, 8), 40, 136
GEMM_BLOCK = (GEMM_PIXELS // GEMM_THREAD_PIXELS, GEMM_CHANNELS // GEMM_THREAD_CHANNELS)
# backward (cuda/grad.py): the grad-weight GEMM tiles GRAD_CHANNELS output channels x GRAD_DEPTH
# reduction indices (C_in/G * kH * kW) per block, GRAD_THREAD_* of them per thread, over steps of
# GRAD_PIXELS (image, pixel) pairs; reductions and element-wise kernels use REDUCE_THREADS /
# ELEMENT_THREADS threads per block; a reduction is split into pieces of at least
# GRAD_MIN_PIECE (image, pixel) pairs until there are about GRAD_TARGET_BLOCKS blocks.
if simulated():
    GRAD_CHANNELS, GRAD_DEPTH, GRAD_PIXELS, GRAD_THREAD_CHANNELS, GRAD_THREAD_DEPTH = 4, 4, 4, 2, 2
    REDUCE_THREADS, ELEMENT_THREADS, GRAD_MIN_PIECE, GRAD_TARGET_BLOCKS = 4, 32, 8, 4
else:
    GRAD_CHANNELS, GRAD_DEPTH, GRAD_PIXELS, GRAD_THREAD_CHANNELS, GRAD_THREAD_DEPTH = 64, 64, 16, 4, 4
    REDUCE_THREADS, ELEMENT_THREADS, GRAD_MIN_PIECE, GRAD_TARGET_BLOCKS = 256, 256, 4096, 1024
GRAD_BLOCK = (GRAD_DEPTH // GRAD_THREAD_DEPTH, GRAD_CHANNELS // GRAD_THREAD_CHANNELS)
# depthwise: the filter is staged in shared memory; larger kernels go to the GEMM kernel
DEPTHWISE_MAX_TAPS = 64
MAX_GRID_Y = 65535


def gemm(n_images: int, groups: int, out_channels_per_group: int, out_pixels: int):
    """(grid, block) of the implicit-GEMM kernel."""
    pixel_tiles = math.ceil(out_pixels / GEMM_PIXELS)
    return (n_images * groups * pixel_tiles, math.ceil(out_channels_per_group / GEMM_CHANNELS)), GEMM_BLOCK


def depthwise_tile(out_height, out_width, kernel, stride, dilation):
    """The output tile (rows, columns) of one depthwise block: as wide as the output or as the
    shared input tile allows, then as many rows as fit; None if not even one output fits."""
    def fits(limit, k, s, d):
        return (limit - (k - 1) * d - 1) // s + 1

    columns = min(out_width, fits(DEPTHWISE_SMEM_WIDTH, kernel[1], stride[1], dilation[1]))
    rows = min(out_height, fits(DEPTHWISE_SMEM_HEIGHT, kernel[0], stride[0], dilation[0]))
    if columns < 1 or rows < 1:
        return None
    return rows, columns


def depthwise(n_images: int, out_channels: int, out_height: int, out_width: int, tile):
    """(grid, block) of the depthwise kernel: x = (image, spatial tile), y = output channel."""
    rows, columns = tile
    tiles = math.ceil(out_height / rows) * math.ceil(out_width / columns)
    return (n_images * tiles, out_channels), DEPTHWISE_THREADS


def elements(count: int):
    """(grid, block) of a one-thread-per-element kernel."""
    return max(1, math.ceil(count / ELEMENT_THREADS)), ELEMENT_THREADS


def reduction_pieces(length: int, blocks: int) -> tuple[int, int]:
    """(pieces, piece length) splitting a reduction of ``length`` terms computed by ``blocks``
    blocks each, so that the grid has about GRAD_TARGET_BLOCKS blocks and no piece is shorter than
    GRAD_MIN_PIECE (the pieces' partial sums are added in float64 by a second kernel)."""
    wanted = max(1, min(math.ceil(GRAD_TARGET_BLOCKS / max(blocks, 1)), math.ceil(length / GRAD_MIN_PIECE)))
    piece = math.ceil(length / wanted)
    return math.ceil(length / piece), piece
