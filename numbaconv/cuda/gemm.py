"""Implicit-GEMM CUDA kernel: serves pointwise (a plain GEMM, C_out x C_in by C_in x pixels)
and grouped convolutions (one GEMM per group over C_in/G * kH * kW), with no im2col buffer
in global memory.

Thread mapping (launch.gemm): a block owns GEMM_CHANNELS output channels of one group x
GEMM_PIXELS output pixels of one image; ``blockIdx.x`` enumerates (image, group, pixel tile)
and ``blockIdx.y`` the channel tiles.  Each step of the reduction stages GEMM_DEPTH rows of
the weights (consecutive threads read consecutive reduction indices of one channel:
coalesced) and the matching GEMM_DEPTH x GEMM_PIXELS input patch, gathered on the fly with
the padding as zeros (consecutive threads read consecutive pixels: coalesced along a row at
stride 1) in shared memory.  Each thread accumulates GEMM_THREAD_CHANNELS x
GEMM_THREAD_PIXELS results in registers, pixels strided by the block width so that the
stores coalesce; bias and activation are fused into the store.
"""

from __future__ import annotations

from numba import cuda, float32, float64

from .epilogue import activate
from .launch import (GEMM_BLOCK, GEMM_CHANNELS, GEMM_DEPTH, GEMM_PIXELS, GEMM_THREAD_CHANNELS,
                     GEMM_THREAD_PIXELS)

THREADS_X, THREADS_Y = GEMM_BLOCK


@cuda.jit(device=True, inline=True, cache=True)
def reduction_index(k, taps, kernel_w):
    """Reduction index k -> (input channel in the group, kernel row, kernel column)."""
    ci = k // taps
    tap = k - ci * taps
    r = tap // kernel_w
    return ci, r, tap - r * kernel_w


def _build(scalar):
    @cuda.jit(cache=True)
    def implicit_gemm(x, weight, bias, out, groups, stride_h, stride_w, pad_top, pad_left, dilation_h,
                      dilation_w, activation):
        n_images, out_channels, out_height, out_width = out.shape
        in_height, in_width = x.shape[2], x.shape[3]
        channels_per_group, kernel_h, kernel_w = weight.shape[1], weight.shape[2], weight.shape[3]
        out_per_group = out_channels // groups
        taps = kernel_h * kernel_w
        depth = channels_per_group * taps
        pixels = out_height * out_width
        pixel_tiles = (pixels + GEMM_PIXELS - 1) // GEMM_PIXELS

        block = cuda.blockIdx.x
        pixel0 = (block % pixel_tiles) * GEMM_PIXELS
        image_group = block // pixel_tiles
        group = image_group % groups
        image = image_group // groups
        channel0 = cuda.blockIdx.y * GEMM_CHANNELS
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        thread = ty * THREADS_X + tx
        threads = THREADS_X * THREADS_Y

        weights_tile = cuda.shared.array((GEMM_DEPTH, GEMM_CHANNELS), scalar)
        inputs_tile = cuda.shared.array((GEMM_DEPTH, GEMM_PIXELS), scalar)
        acc = cuda.local.array((GEMM_THREAD_CHANNELS, GEMM_THREAD_PIXELS), scalar)
        a = cuda.local.array(GEMM_THREAD_CHANNELS, scalar)
        b = cuda.local.array(GEMM_THREAD_PIXELS, scalar)
        for i in range(GEMM_THREAD_CHANNELS):
            for j in range(GEMM_THREAD_PIXELS):
                acc[i, j] = 0

        for k0 in range(0, depth, GEMM_DEPTH):
            for e in range(thread, GEMM_DEPTH * GEMM_CHANNELS, threads):
                c = e // GEMM_DEPTH
                kk = e - c * GEMM_DEPTH
                k = k0 + kk
                channel = channel0 + c
                value = scalar(0)
                if k < depth and channel < out_per_group:
                    ci, r, s = reduction_index(k, taps, kernel_w)
                    value = weight[group * out_per_group + channel, ci, r, s]
                weights_tile[kk, c] = value
            for e in range(thread, GEMM_DEPTH * GEMM_PIXELS, threads):
                kk = e // GEMM_PIXELS
                p = e - kk * GEMM_PIXELS
                k = k0 + kk
                pixel = pixel0 + p
                value = scalar(0)
                if k < depth and pixel < pixels:
                    ci, r, s = reduction_index(k, taps, kernel_w)
                    oh = pixel // out_width
                    ih = oh * stride_h - pad_top + r * dilation_h
                    iw = (pixel - oh * out_width) * stride_w - pad_left + s * dilation_w
                    if 0 <= ih < in_height and 0 <= iw < in_width:
                        value = x[image, group * channels_per_group + ci, ih, iw]
                inputs_tile[kk, p] = value
            cuda.syncthreads()
            for kk in range(GEMM_DEPTH):
                for i in range(GEMM_THREAD_CHANNELS):
                    a[i] = weights_tile[kk, ty + i * THREADS_Y]
                for j in range(GEMM_THREAD_PIXELS):
                    b[j] = inputs_tile[kk, tx + j * THREADS_X]
                for i in range(GEMM_THREAD_CHANNELS):
                    for j in range(GEMM_THREAD_PIXELS):
                        acc[i, j] += a[i] * b[j]
            cuda.syncthreads()

        for i in range(GEMM_THREAD_CHANNELS):
            channel = channel0 + ty + i * THREADS_Y
            if channel < out_per_group:
                co = group * out_per_group + channel
                for j in range(GEMM_THREAD_PIXELS):
                    pixel = pixel0 + tx + j * THREADS_X
                    if pixel < pixels:
                        oh = pixel // out_width
                        out[image, co, oh, pixel - oh * out_width] = activate(acc[i, j] + bias[co], activation)

    return implicit_gemm


KERNELS = {"float32": _build(float32), "float64": _build(float64)}
