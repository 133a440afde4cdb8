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
# depthwise: launch bounds of 3 blocks per multiprocessor (at most 80 registers; it takes 72: 38% occupancy;
# 4 blocks' cap of 64 spilled)
DEPTHWISE_MIN_BLOCKS = 3
# depthwise: DEPTHWISE_THREADS threads per block, each DEPTHWISE_ROWS outputs of one column; tiles at most
# DEPTHWISE_COLUMNS wide; shared memory for DEPTHWISE_PATCH input elements and DEPTHWISE_TAPS filter taps
# (with the block's source-channel table: float64 46 KiB, under the 48 KiB of static shared memory a block may have)
if simulated():
    GEMM_CHANNELS, GEMM_PIXELS, GEMM_DEPTH, GEMM_THREAD_CHANNELS, GEMM_THREAD_PIXELS = 4, 8, 4, 2, 2
    DEPTHWISE_THREADS, DEPTHWISE_ROWS, DEPTHWISE_COLUMNS, DEPTHWISE_PATCH, DEPTHWISE_TAPS = 8, 2, 4, 160, 64
else:
    GEMM_CHANNELS, GEMM_PIXELS, GEMM_DEPTH, GEMM_THREAD_CHANNELS, GEMM_THREAD_PIXELS = 64, 64, 16, 4, 4
    DEPTHWISE_THREADS, DEPTHWISE_ROWS, DEPTHWISE_COLUMNS, DEPTHWISE_PATCH, DEPTHWISE_TAPS = 256, 4, 32, 5120, 512
GEMM_BLOCK = (GEMM_PIXELS // GEMM_THREAD_PIXELS, GEMM_CHANNELS // GEMM_THREAD_CHANNELS)
# blocks per multiprocessor the implicit GEMM's launch bounds ask ptxas to allow: 2 caps float32's registers
# at 128 (it needs ~140 unbounded); float64's 4x4 tile takes more than 128 without spilling
GEMM_MIN_BLOCKS = {"float32": 2, "float64": 1}
# split-K: blocks wanted per multiprocessor, the fewest reduction steps per slice, the most slices
# (each slice adds one output-sized partial buffer and its read in split_sum)
GEMM_FILL_WAVES, GEMM_MIN_SLICE_STEPS, GEMM_MAX_SLICES = (2, 4, 16) if not simulated() else (2, 1, 4)
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
# the grad-weight GEMM's launch bounds: one block per multiprocessor (it takes 165-192 registers: a cap of 128
# for two blocks spilled 88-168 bytes)
GRAD_MIN_BLOCKS = {"float32": 1, "float64": 1}
# depthwise: the filter is staged in shared memory; larger kernels go to the GEMM kernel
DEPTHWISE_MAX_TAPS = 64
MAX_GRID_Y = 65535


def bounds(threads: int, blocks: int) -> dict:
    """cuda.jit's launch bounds (at most ``threads`` per block, ``blocks`` resident per multiprocessor, which caps
    the registers); none under the simulator, whose jit has no such option."""
    return {} if simulated() else {"launch_bounds": (threads, blocks)}


def gemm(n_images: int, groups: int, out_channels_per_group: int, out_pixels: int, depth: int,
         multiprocessors: int):
    """(grid, block, reduction slice length) of the implicit-GEMM kernel.  A grid of fewer than
    GEMM_FILL_WAVES blocks per multiprocessor splits the reduction into slices (``gridDim.z``) of
    at least GEMM_MIN_SLICE_STEPS steps each, at most GEMM_MAX_SLICES of them, so that a
    7x7 layer with 512 input channels runs on the whole GPU, not on 3 of its multiprocessors."""
    tiles = n_images * groups * math.ceil(out_pixels / GEMM_PIXELS), math.ceil(out_channels_per_group / GEMM_CHANNELS)
    steps = max(1, math.ceil(depth / GEMM_DEPTH))
    blocks = tiles[0] * tiles[1]
    wanted = math.ceil(GEMM_FILL_WAVES * multiprocessors / blocks)
    slices = max(1, min(wanted, steps // GEMM_MIN_SLICE_STEPS, GEMM_MAX_SLICES))
    slice_steps = math.ceil(steps / slices)
    slices = math.ceil(steps / slice_steps)  # no empty slice
    return (tiles[0], tiles[1], slices), GEMM_BLOCK, slice_steps * GEMM_DEPTH


def depthwise_tile(out_height, out_width, kernel, stride, dilation, channels):
    """(tile columns, row groups, channels per block) of the depthwise kernel: as wide as the output
    (at most DEPTHWISE_COLUMNS), as many groups of DEPTHWISE_ROWS rows as the threads cover, then as
    many channels as the threads, the shared input tile and the filter store allow; the tile shrinks
    (rows first) until one channel's input tile fits.  None if not even one output's window fits."""
    (kernel_h, kernel_w), (stride_h, stride_w), (dilation_h, dilation_w) = kernel, stride, dilation

    def patch(rows, columns):
        return ((rows - 1) * stride_h + (kernel_h - 1) * dilation_h + 1) * \
            ((columns - 1) * stride_w + (kernel_w - 1) * dilation_w + 1)

    taps = kernel_h * kernel_w
    if taps > DEPTHWISE_TAPS:
        return None
    columns = max(1, min(out_width, DEPTHWISE_COLUMNS))
    groups = max(1, min(math.ceil(out_height / DEPTHWISE_ROWS), DEPTHWISE_THREADS // columns))
    while patch(groups * DEPTHWISE_ROWS, columns) > DEPTHWISE_PATCH:
        if groups > 1:
            groups -= 1
        elif columns > 1:
            columns -= 1
        else:
            return None
    per_block = min(channels, DEPTHWISE_THREADS // (columns * groups),
                    DEPTHWISE_PATCH // patch(groups * DEPTHWISE_ROWS, columns), DEPTHWISE_TAPS // taps)
    return columns, groups, max(1, per_block)


def depthwise(n_images: int, out_channels: int, out_height: int, out_width: int, tile):
    """(grid, block) of the depthwise kernel: x = (image, spatial tile), y = group of output channels."""
    columns, groups, per_block = tile
    tiles = math.ceil(out_height / (groups * DEPTHWISE_ROWS)) * math.ceil(out_width / columns)
    return (n_images * tiles, math.ceil(out_channels / per_block)), DEPTHWISE_THREADS


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
