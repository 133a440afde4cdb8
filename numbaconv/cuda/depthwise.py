"""Depthwise CUDA kernel (groups = C_in, any channel multiplier).

Thread mapping (launch.depthwise_tile, launch.depthwise): a block owns ``block_channels``
consecutive output channels of one image and a tile of ``row_groups * DEPTHWISE_ROWS`` output
rows x ``tile_columns`` columns of each; ``blockIdx.x`` enumerates (image, spatial tile),
``blockIdx.y`` the channel groups.  A thread owns one (channel, column, row group): a vertical
strip of DEPTHWISE_ROWS outputs.  Small planes (7x7) put many channels in one block instead of
leaving most of its threads idle.

The block stages each channel's input tile plus halo (zeros for the padding) and filter in
shared memory; consecutive threads read consecutive columns (coalesced along NCHW rows), and
the staging loop walks its (channel, row, column) index as a mixed-radix counter: no division
in a loop.  Then for each tap a thread reads the tap weight once (a broadcast) and applies it
to its DEPTHWISE_ROWS outputs (registers, a fully unrolled loop), from shared memory at
offsets that advance by additions.  Bias and activation, in the input precision, are fused
into the stores, coalesced along the columns.
"""

from __future__ import annotations

from numba import cuda, float32, float64, int64

from .epilogue import activation, advance, digits
from .launch import (DEPTHWISE_MIN_BLOCKS, DEPTHWISE_PATCH, DEPTHWISE_ROWS, DEPTHWISE_TAPS, DEPTHWISE_THREADS,
                     bounds)


def _build(scalar):
    activate = activation(scalar)
    zero = scalar(0)

    @cuda.jit(cache=True, **bounds(DEPTHWISE_THREADS, DEPTHWISE_MIN_BLOCKS))
    def depthwise(x, weight, bias, out, multiplier, stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w,
                  activation, tile_columns, row_groups, block_channels):
        out_channels, out_height, out_width = out.shape[1], out.shape[2], out.shape[3]
        in_height, in_width = x.shape[2], x.shape[3]
        kernel_h, kernel_w = weight.shape[2], weight.shape[3]
        taps = kernel_h * kernel_w
        tile_rows = row_groups * DEPTHWISE_ROWS
        tiles_across = (out_width + tile_columns - 1) // tile_columns
        tiles = tiles_across * ((out_height + tile_rows - 1) // tile_rows)
        image = cuda.blockIdx.x // tiles
        tile = cuda.blockIdx.x - image * tiles
        row0 = (tile // tiles_across) * tile_rows
        column0 = (tile - (tile // tiles_across) * tiles_across) * tile_columns
        channel0 = cuda.blockIdx.y * block_channels
        thread = cuda.threadIdx.x

        patch_rows = (tile_rows - 1) * stride_h + (kernel_h - 1) * dilation_h + 1
        patch_columns = (tile_columns - 1) * stride_w + (kernel_w - 1) * dilation_w + 1
        plane = patch_rows * patch_columns
        patch = cuda.shared.array(DEPTHWISE_PATCH, scalar)
        filters = cuda.shared.array(DEPTHWISE_TAPS, scalar)
        sources = cuda.shared.array(DEPTHWISE_THREADS, int64)  # input channel of each channel slot
        if thread < block_channels:  # block_channels <= DEPTHWISE_THREADS (launch.depthwise_tile)
            sources[thread] = (channel0 + thread) // multiplier

        # the filters of the block's channels: (channel slot, tap) walked with one counter each
        slot, tap_row, tap_column = digits(thread, taps, kernel_w)
        step_slot, step_row, step_column = digits(DEPTHWISE_THREADS, taps, kernel_w)
        for e in range(thread, block_channels * taps, DEPTHWISE_THREADS):
            channel = channel0 + slot
            value = zero
            if channel < out_channels:
                value = weight[channel, 0, tap_row, tap_column]
            filters[e] = value
            slot, tap_row, tap_column = advance(slot, tap_row, tap_column, step_slot, step_row, step_column,
                                                kernel_h, kernel_w)

        cuda.syncthreads()  # the source-channel table, before the staging reads it
        # the input tiles: (channel slot, patch row, patch column), the same way
        top = row0 * stride_h - pad_top
        left = column0 * stride_w - pad_left
        slot, row, column = digits(thread, plane, patch_columns)
        step_slot, step_row, step_column = digits(DEPTHWISE_THREADS, plane, patch_columns)
        for e in range(thread, block_channels * plane, DEPTHWISE_THREADS):
            channel = channel0 + slot
            ih, iw = top + row, left + column
            value = zero
            if channel < out_channels and 0 <= ih < in_height and 0 <= iw < in_width:
                value = x[image, sources[slot], ih, iw]
            patch[e] = value
            slot, row, column = advance(slot, row, column, step_slot, step_row, step_column, patch_rows,
                                        patch_columns)
        cuda.syncthreads()

        # this thread's strip: channel slot, column, DEPTHWISE_ROWS rows from row group * DEPTHWISE_ROWS
        c = thread % tile_columns
        rest = thread // tile_columns
        group = rest % row_groups
        slot = rest // row_groups
        channel = channel0 + slot
        ow = column0 + c
        if slot >= block_channels or channel >= out_channels or ow >= out_width:
            return
        acc = cuda.local.array(DEPTHWISE_ROWS, scalar)
        for r in range(DEPTHWISE_ROWS):
            acc[r] = zero
        base = slot * plane + group * DEPTHWISE_ROWS * stride_h * patch_columns + c * stride_w
        row_step = stride_h * patch_columns
        first_tap = slot * taps
        i = 0
        j = 0
        offset = 0
        for t in range(taps):
            w = filters[first_tap + t]
            for r in range(DEPTHWISE_ROWS):
                acc[r] += w * patch[base + r * row_step + offset]
            j += 1
            offset += dilation_w
            if j == kernel_w:
                j = 0
                i += 1
                offset = i * dilation_h * patch_columns
        b = bias[channel]
        oh0 = row0 + group * DEPTHWISE_ROWS
        for r in range(DEPTHWISE_ROWS):
            if oh0 + r < out_height:
                out[image, channel, oh0 + r, ow] = activate(acc[r] + b, activation)

    return depthwise


KERNELS = {"float32": _build(float32), "float64": _build(float64)}
