"""Depthwise CUDA kernel (groups = C_in, any channel multiplier).

Thread mapping (launch.depthwise): a block owns one output channel of one image and a tile
of output rows x columns; ``blockIdx.x`` enumerates (image, spatial tile), ``blockIdx.y`` the
output channel.  The block stages the input tile plus its halo (zeros for the padding) and
the channel's filter in shared memory, then each thread computes several outputs of the
tile (strided by the block size, so consecutive threads write consecutive columns: coalesced
stores) from shared memory only.  Memory-bound: every input element is read from global
memory once per block (plus the halo), every output written once.
"""

from __future__ import annotations

from numba import cuda, float32, float64

from .epilogue import activate
from .launch import DEPTHWISE_MAX_TAPS, DEPTHWISE_SMEM_HEIGHT, DEPTHWISE_SMEM_WIDTH, DEPTHWISE_THREADS

THREADS = DEPTHWISE_THREADS[0] * DEPTHWISE_THREADS[1]


def _build(scalar):
    @cuda.jit(cache=True)
    def depthwise(x, weight, bias, out, multiplier, stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w,
                  activation, tile_rows, tile_columns):
        n_images, out_channels, out_height, out_width = out.shape
        in_height, in_width = x.shape[2], x.shape[3]
        kernel_h, kernel_w = weight.shape[2], weight.shape[3]
        tiles_across = (out_width + tile_columns - 1) // tile_columns
        tiles_down = (out_height + tile_rows - 1) // tile_rows
        tiles = tiles_across * tiles_down
        image = cuda.blockIdx.x // tiles
        tile = cuda.blockIdx.x - image * tiles
        row0 = (tile // tiles_across) * tile_rows
        column0 = (tile - (tile // tiles_across) * tiles_across) * tile_columns
        channel = cuda.blockIdx.y
        source_channel = channel // multiplier
        thread = cuda.threadIdx.y * DEPTHWISE_THREADS[0] + cuda.threadIdx.x

        patch = cuda.shared.array((DEPTHWISE_SMEM_HEIGHT, DEPTHWISE_SMEM_WIDTH), scalar)
        taps = cuda.shared.array(DEPTHWISE_MAX_TAPS, scalar)
        for e in range(thread, kernel_h * kernel_w, THREADS):
            r = e // kernel_w
            taps[e] = weight[channel, 0, r, e - r * kernel_w]
        patch_rows = (tile_rows - 1) * stride_h + (kernel_h - 1) * dilation_h + 1
        patch_columns = (tile_columns - 1) * stride_w + (kernel_w - 1) * dilation_w + 1
        top = row0 * stride_h - pad_top
        left = column0 * stride_w - pad_left
        for e in range(thread, patch_rows * patch_columns, THREADS):
            r = e // patch_columns
            c = e - r * patch_columns
            ih, iw = top + r, left + c
            value = scalar(0)
            if 0 <= ih < in_height and 0 <= iw < in_width:
                value = x[image, source_channel, ih, iw]
            patch[r, c] = value
        cuda.syncthreads()

        b = bias[channel]
        for e in range(thread, tile_rows * tile_columns, THREADS):
            r = e // tile_columns
            c = e - r * tile_columns
            oh, ow = row0 + r, column0 + c
            if oh < out_height and ow < out_width:
                acc = scalar(0)
                for i in range(kernel_h):
                    for j in range(kernel_w):
                        acc += taps[i * kernel_w + j] * patch[r * stride_h + i * dilation_h, c * stride_w + j * dilation_w]
                out[image, channel, oh, ow] = activate(acc + b, activation)

    return depthwise


KERNELS = {"float32": _build(float32), "float64": _build(float64)}
