"""Implicit-GEMM CUDA kernel: serves pointwise (a plain GEMM, C_out x C_in by C_in x pixels)
and grouped convolutions (one GEMM per group over C_in/G * kH * kW), with no im2col buffer
in global memory.

Thread mapping (launch.gemm): a block owns GEMM_CHANNELS output channels of one group x
GEMM_PIXELS output pixels of one image and one slice of the reduction; ``blockIdx.x``
enumerates (image, group, pixel tile), ``blockIdx.y`` the channel tiles and ``blockIdx.z`` the
reduction slices (split-K, for grids too small to fill the GPU).  Each step of the reduction
stages GEMM_DEPTH rows of the weights (consecutive threads read consecutive reduction indices of
one channel: coalesced) and the matching GEMM_DEPTH x GEMM_PIXELS input patch, gathered on the
fly with the padding as zeros (consecutive threads read consecutive pixels), in shared memory.

What the compiled code does (``numbaconv info --cuda-kernels`` checks it):

* **No division in the loops.**  Every thread stages the same pixel and the same reduction
  offsets at every step, so a pixel's row and column are divided out once, and the reduction
  index's (input channel, kernel row, kernel column) advance by GEMM_DEPTH as a mixed-radix
  counter (a compare and a subtraction per digit).
* **Double-buffered shared memory, one barrier per step**: the next step's global loads are
  issued into registers before this step's products, and stored into the other buffer after.
* **Registers**: each thread accumulates GEMM_THREAD_CHANNELS x GEMM_THREAD_PIXELS results in
  fully unrolled loops (no local memory).  The epilogue goes through shared memory, so that the
  fused bias and activation (in the input precision) run in a loop of coalesced stores.
* **Shared-memory banks**: the weight tile's rows are padded by one element (the staging
  stores walk the reduction axis, GEMM_CHANNELS + 1 elements apart, not 64).

With several reduction slices (``gridDim.z > 1``) each block writes its raw partial sums to
``out[slice * N + image]`` and `split_sum` adds the slices in order, then bias and activation:
deterministic.
"""

from __future__ import annotations

from numba import cuda, float32, float64, int64

from .epilogue import activation, advance, digits, unravel
from .launch import (GEMM_BLOCK, GEMM_CHANNELS, GEMM_DEPTH, GEMM_MIN_BLOCKS, GEMM_PIXELS, GEMM_THREAD_CHANNELS,
                     GEMM_THREAD_PIXELS, bounds)

THREADS_X, THREADS_Y = GEMM_BLOCK
THREADS = THREADS_X * THREADS_Y
WEIGHT_LOADS = GEMM_DEPTH * GEMM_CHANNELS // THREADS  # weight elements one thread stages per step
INPUT_LOADS = GEMM_DEPTH * GEMM_PIXELS // THREADS  # input elements one thread stages per step
WEIGHT_ROW = GEMM_CHANNELS + 1  # padded row of the weight tile
WEIGHT_TILE = GEMM_DEPTH * WEIGHT_ROW
INPUT_TILE = GEMM_DEPTH * GEMM_PIXELS
RESULT_ROW = GEMM_PIXELS + 1
# one flat shared array: two (weight, input) stages, reused by the epilogue for the result tile
SHARED = max(2 * (WEIGHT_TILE + INPUT_TILE), GEMM_CHANNELS * RESULT_ROW)
assert THREADS % GEMM_DEPTH == 0 and THREADS % GEMM_PIXELS == 0
assert WEIGHT_LOADS * THREADS == GEMM_DEPTH * GEMM_CHANNELS and INPUT_LOADS * THREADS == GEMM_DEPTH * GEMM_PIXELS
assert (GEMM_CHANNELS * GEMM_PIXELS) % THREADS == 0


def _build(scalar, min_blocks):
    activate = activation(scalar)
    zero = scalar(0)

    @cuda.jit(cache=True, **bounds(THREADS, min_blocks))
    def implicit_gemm(x, weight, bias, out, groups, stride_h, stride_w, pad_top, pad_left, dilation_h,
                      dilation_w, activation, slice_depth):
        n_images = x.shape[0]
        out_channels, out_height, out_width = out.shape[1], out.shape[2], out.shape[3]
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
        k_begin = cuda.blockIdx.z * slice_depth
        k_end = min(depth, k_begin + slice_depth)
        steps = (k_end - k_begin + GEMM_DEPTH - 1) // GEMM_DEPTH
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        thread = ty * THREADS_X + tx
        # GEMM_DEPTH's digits in the (channel, row, column) radix of the reduction index
        step_channel, step_row, step_column = digits(GEMM_DEPTH, taps, kernel_w)

        shared = cuda.shared.array(SHARED, scalar)
        acc = cuda.local.array((GEMM_THREAD_CHANNELS, GEMM_THREAD_PIXELS), scalar)
        a = cuda.local.array(GEMM_THREAD_CHANNELS, scalar)
        b = cuda.local.array(GEMM_THREAD_PIXELS, scalar)
        for i in range(GEMM_THREAD_CHANNELS):
            for j in range(GEMM_THREAD_PIXELS):
                acc[i, j] = zero

        # the weights this thread stages: reduction offset w_kk of channels w_c + t * (THREADS // GEMM_DEPTH)
        w_kk = thread % GEMM_DEPTH
        w_c = thread // GEMM_DEPTH
        w_first = group * out_per_group + channel0 + w_c
        w_ci, w_r, w_s = digits(k_begin + w_kk, taps, kernel_w)
        # the inputs: pixel i_p, reduction offsets i_kk + t * (THREADS // GEMM_PIXELS)
        i_p = thread % GEMM_PIXELS
        i_kk = thread // GEMM_PIXELS
        pixel = pixel0 + i_p
        pixel_ok = pixel < pixels
        oh = pixel // out_width
        top = oh * stride_h - pad_top
        left = (pixel - oh * out_width) * stride_w - pad_left
        channel_base = group * channels_per_group
        i_ci = cuda.local.array(INPUT_LOADS, int64)
        i_r = cuda.local.array(INPUT_LOADS, int64)
        i_s = cuda.local.array(INPUT_LOADS, int64)
        for t in range(INPUT_LOADS):
            i_ci[t], i_r[t], i_s[t] = digits(k_begin + i_kk + t * (THREADS // GEMM_PIXELS), taps, kernel_w)
        w_next = cuda.local.array(WEIGHT_LOADS, scalar)
        i_next = cuda.local.array(INPUT_LOADS, scalar)

        k0 = k_begin
        for step in range(steps + 1):
            # global loads of step `step` into registers (the staging of the next tile)
            if step < steps:
                for t in range(WEIGHT_LOADS):
                    channel = channel0 + w_c + t * (THREADS // GEMM_DEPTH)
                    value = zero
                    if k0 + w_kk < k_end and channel < out_per_group:
                        value = weight[w_first + t * (THREADS // GEMM_DEPTH), w_ci, w_r, w_s]
                    w_next[t] = value
                for t in range(INPUT_LOADS):
                    value = zero
                    if k0 + i_kk + t * (THREADS // GEMM_PIXELS) < k_end and pixel_ok:
                        ih = top + i_r[t] * dilation_h
                        iw = left + i_s[t] * dilation_w
                        if 0 <= ih < in_height and 0 <= iw < in_width:
                            value = x[image, channel_base + i_ci[t], ih, iw]
                    i_next[t] = value
                w_ci, w_r, w_s = advance(w_ci, w_r, w_s, step_channel, step_row, step_column, kernel_h, kernel_w)
                for t in range(INPUT_LOADS):
                    i_ci[t], i_r[t], i_s[t] = advance(i_ci[t], i_r[t], i_s[t], step_channel, step_row, step_column,
                                                      kernel_h, kernel_w)
                k0 += GEMM_DEPTH
            # products of the previous step, from the buffer its loads went to
            if step > 0:
                stage = ((step - 1) % 2) * (WEIGHT_TILE + INPUT_TILE)
                for kk in range(GEMM_DEPTH):
                    for i in range(GEMM_THREAD_CHANNELS):
                        a[i] = shared[stage + kk * WEIGHT_ROW + ty + i * THREADS_Y]
                    for j in range(GEMM_THREAD_PIXELS):
                        b[j] = shared[stage + WEIGHT_TILE + kk * GEMM_PIXELS + tx + j * THREADS_X]
                    for i in range(GEMM_THREAD_CHANNELS):
                        for j in range(GEMM_THREAD_PIXELS):
                            acc[i, j] += a[i] * b[j]
            # this step's loads into the other buffer; one barrier makes them visible and frees the old one
            if step < steps:
                stage = (step % 2) * (WEIGHT_TILE + INPUT_TILE)
                for t in range(WEIGHT_LOADS):
                    shared[stage + w_kk * WEIGHT_ROW + w_c + t * (THREADS // GEMM_DEPTH)] = w_next[t]
                for t in range(INPUT_LOADS):
                    shared[stage + WEIGHT_TILE + (i_kk + t * (THREADS // GEMM_PIXELS)) * GEMM_PIXELS + i_p] = i_next[t]
            cuda.syncthreads()

        # epilogue: the result tile through shared memory, then coalesced stores of whole rows of pixels
        for i in range(GEMM_THREAD_CHANNELS):
            for j in range(GEMM_THREAD_PIXELS):
                shared[(ty + i * THREADS_Y) * RESULT_ROW + tx + j * THREADS_X] = acc[i, j]
        cuda.syncthreads()
        if not pixel_ok:
            return
        ow = pixel - oh * out_width
        partial = cuda.gridDim.z > 1
        target = image + cuda.blockIdx.z * n_images
        for t in range(GEMM_CHANNELS * GEMM_PIXELS // THREADS):
            c = i_kk + t * (THREADS // GEMM_PIXELS)
            channel = channel0 + c
            if channel < out_per_group:
                co = group * out_per_group + channel
                value = shared[c * RESULT_ROW + i_p]
                if partial:
                    out[target, co, oh, ow] = value
                else:
                    out[image, co, oh, ow] = activate(value + bias[co], activation)

    return implicit_gemm


KERNELS = {name: _build(scalar, GEMM_MIN_BLOCKS[name]) for name, scalar in (("float32", float32), ("float64", float64))}


def _build_split_sum(scalar):
    activate = activation(scalar)

    @cuda.jit(cache=True)
    def split_sum(partials, bias, out, activation):
        """out[n, c, h, w] = activate(sum over slices z, in order, of partials[z * N + n, c, h, w] + bias[c]):
        the reduction slices of a split-K implicit GEMM; one thread per output element."""
        index = cuda.grid(1)
        if index >= out.size:
            return
        n, c, h, w = unravel(index, out.shape)
        n_images = out.shape[0]
        total = partials[n, c, h, w]
        for z in range(1, partials.shape[0] // n_images):
            total += partials[z * n_images + n, c, h, w]
        out[n, c, h, w] = activate(total + bias[c], activation)

    return split_sum


SPLIT_SUM = {"float32": _build_split_sum(float32), "float64": _build_split_sum(float64)}
