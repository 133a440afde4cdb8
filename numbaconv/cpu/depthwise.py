"""Depthwise convolution (groups = C_in, optional channel multiplier).

Three kernels: register tiles on channels-last data (`depthwise_nhwc_tiled`), the same tiles for NCHW data
through blocks of channels transposed in the cache (`depthwise_nchw_blocked`), and -- for a channel multiplier,
where one output vector reads fewer input channels -- the planes' kernel described here (NCHW) and an NHWC
kernel with its accumulators in L1 (at the end of the module).

Output channel co reads input channel co // multiplier through its own kH x kW filter.
Memory-bound: each input and output element should cross the memory bus once, and the
arithmetic (kH*kW fused multiply-adds per output) must hide behind that traffic.

A parallel task is a run of output planes (image n, output channel co) times a band of
output rows; the split is chosen from the shape (`tiling`) so that small planes are
batched into one task and large planes on few channels are cut into row bands, giving every
thread several tasks on 2 cores or on 64.

Per task and input plane the band's input rows are copied once into a small buffer that
stays in L1/L2, **zero padding and the stride folded in**: the buffer holds the padded rows
split by phase, element (a, b, i, j) = padded[row0 + i*sh + a, j*sw + b] at
((a*sw + b)*Hq + i)*Wq + j.  Tap (kh, kw) of output (oh, ow) then reads

    buffer[tap_offset(kh, kw) + oh*Wq + ow]

for every stride and dilation, so output pixels are walked as one unit-stride "virtual"
index q = oh*Wq + ow across row ends (the few gap pixels ow >= W_out are computed and dropped):

    for q0 in runs of RUN (64, then 16 for the tail):
        acc[0:RUN] = 0                          # four / one AVX-512 vectors, in registers
        for each tap t:                         # kH*kW broadcast weights
            acc[:] += w[t] * buffer[q0 + tap_offset[t] : ... + RUN]   # unit stride, unrolled
        out[pixels of q0 .. q0+RUN] = activate(acc + bias)          # one store per output

No bounds test in the hot loop, no padded copy of the whole input, each output written once.
A run of 64 keeps four independent FMA chains in flight (one chain of 16 would wait on the
FMA latency at every tap).  Other padding modes arrive pre-padded with zero padding left to
apply.  Indexing is on flat views with unsigned indices (a signed index makes Numba guard it
against wraparound, which stops vectorization).
"""

from functools import lru_cache

import numba
import numpy as np
from numba import get_thread_id, njit, prange

from ..arrays import padding_copy_elements, scratch
from ..config import DEPTHWISE_BORDER_SHARE, DEPTHWISE_BUFFER_ELEMENTS, DEPTHWISE_TASK_OUTPUTS, FASTMATH
from . import packcache
from .epilogue import activate
from .simd import (VECTOR_BYTES, depthwise_row_tile, depthwise_tile, depthwise_weight_row_tile, depthwise_weight_tile,
                   transpose_block)
from .stack import stack_array
from .twins import Twins

_U = np.uint64
VECTOR = 16  # float32 lanes of an AVX-512 vector
CHUNK_TAPS = 16  # filters with more taps are applied a row at a time
MAX_TAPS = 64  # the largest filter the kernel takes (kH*kW); larger ones go to the grouped kernel


def tiling(n_planes: int, out_height: int, out_width: int, kernel_height: int, kernel_width: int,
           stride: tuple, dilation: tuple, threads: int) -> tuple[int, int]:
    """``(planes_per_task, rows_per_band)`` for the kernel's parallel loop.

    Rows per band: the whole plane when its phase buffer fits DEPTHWISE_BUFFER_ELEMENTS and there
    are enough planes for 4 tasks per thread; else bands small enough for both, but never fewer rows
    than the filter's halo (so that staging costs at most twice the band's own rows).  Planes per task:
    several small planes per task, so a task computes about DEPTHWISE_TASK_OUTPUTS outputs,
    while keeping 4 tasks per thread where there is that much work.
    """
    sh, sw = stride
    halo_rows = ((kernel_height - 1) * dilation[0]) // sh
    width = out_width + ((kernel_width - 1) * dilation[1]) // sw

    def buffer_size(rows):
        return sh * sw * (rows + halo_rows) * width

    rows = out_height
    while rows > 1 and buffer_size(rows) > DEPTHWISE_BUFFER_ELEMENTS:
        rows = -(-rows // 2)
    wanted_tasks = 4 * threads
    while rows > 1 and n_planes * -(-out_height // rows) < wanted_tasks:
        rows = -(-rows // 2)
    # a band re-stages its halo: with a large dilation (a halo of many rows) bands at least as tall as the
    # halo keep the staging work within twice the outputs', at the price of a buffer beyond L2
    rows = max(rows, min(out_height, halo_rows))
    bands = -(-out_height // rows)
    plane_outputs = rows * out_width
    planes = max(1, DEPTHWISE_TASK_OUTPUTS // max(plane_outputs, 1))
    planes = min(planes, max(1, (n_planes * bands) // wanted_tasks))
    return planes, rows


def tap_offsets(kernel_height, kernel_width, stride, dilation, rows_per_band, out_width) -> tuple:
    """``(Hq, Wq, offsets, chunk)``: the buffer geometry, the offset of each tap (row-major) in the phase
    buffer, and a tuple whose length is the taps per pass (all taps, or a filter row above CHUNK_TAPS).
    Tuple lengths are compile-time constants of the kernel: one specialization per filter size."""
    sh, sw = stride
    dh, dw = dilation
    hq = rows_per_band + ((kernel_height - 1) * dh) // sh
    wq = out_width + ((kernel_width - 1) * dw) // sw
    kh = np.arange(kernel_height)[:, None] * dh
    kw = np.arange(kernel_width)[None, :] * dw
    phase = (kh % sh) * sw + kw % sw
    offsets = (phase * hq + kh // sh) * wq + kw // sw
    taps = kernel_height * kernel_width
    chunk = kernel_width if taps > CHUNK_TAPS and kernel_width <= CHUNK_TAPS else taps  # a filter row, or all
    return hq, wq, tuple(int(offset) for offset in offsets.reshape(-1)), (0,) * chunk


@njit(inline="always", cache=True)
def _fill(buf, x_flat, x_plane, in_height, in_width, row0, hq, wq, sh, sw, pad_top, pad_left):
    # buf[((a*sw + b)*hq + i)*wq + j] = x[row0 + i*sh + a - pad_top, j*sw + b - pad_left] where that is
    # inside x.  The positions outside (the zero padding) are the same for every plane of a task and
    # are never written: the task zeroes its buffer once.
    for a in range(sh):
        for i in range(hq):
            ih = row0 + i * sh + a - pad_top
            if ih < 0 or ih >= in_height:
                continue
            for b in range(sw):
                dst = ((a * sw + b) * hq + i) * wq
                # valid j: 0 <= j*sw + b - pad_left < in_width
                first = b - pad_left
                lo = 0 if first >= 0 else (-first + sw - 1) // sw
                hi = 0 if in_width - 1 - first < 0 else min(wq, (in_width - 1 - first) // sw + 1)
                src = x_plane + ih * in_width + first
                if sw == 1:
                    for j in range(lo, hi):
                        buf[_U(dst + j)] = x_flat[_U(src + j)]
                else:
                    for j in range(lo, hi):
                        buf[_U(dst + j)] = x_flat[_U(src + j * sw)]


@njit(inline="always", fastmath=FASTMATH, cache=True)
def _taps(vout, length, buf, weights, offsets, taps, chunk):
    # vout[q] = sum over taps t of weights[t] * buf[q + offsets[t]] for q < length, in passes over chunks
    # of len(chunk) taps.  The chunk length is a compile-time constant (the length of the ``chunk``
    # tuple), so a chunk's tap loop unrolls, its weights stay in registers and the loop over q is the
    # SIMD loop (unit stride for every tap).  Small filters are one chunk (one pass); larger ones a
    # chunk per filter row, each pass adding into vout (a fully unrolled 25- or 49-tap body would
    # exceed LLVM's unroll limits and stay a scalar loop).
    size = len(chunk)
    for q in range(length):
        total = weights[0] * buf[_U(q + offsets[0])]
        for t in range(1, size):
            total += weights[t] * buf[_U(q + offsets[t])]
        vout[_U(q)] = total
    for first in range(size, taps, size):
        for q in range(length):
            total = vout[_U(q)]
            for t in range(size):
                total += weights[first + t] * buf[_U(q + offsets[first + t])]
            vout[_U(q)] = total


@njit(inline="always", fastmath=FASTMATH, cache=True)
def _store(vout, rows, wq, out_flat, o_band, out_width, b, act):
    for oh in range(rows):
        src = oh * wq
        dst = o_band + oh * out_width
        for ow in range(out_width):
            out_flat[_U(dst + ow)] = activate(vout[_U(src + ow)] + b, act)


@njit(fastmath=FASTMATH, cache=True)
def _task(x_flat, w_flat, bias, out_flat, first_plane, last_plane, oh0, rows, in_channels, in_height, in_width,
          out_channels, out_height, out_width, taps, multiplier, stride_h, stride_w, pad_top, pad_left, act,
          hq, wq, offsets, chunk):
    # One parallel task: output planes [first_plane, last_plane), output rows [oh0, oh0 + rows).
    # (A function of its own, not inlined into the prange body: simpler code for the parfor to lower.)
    # Virtual pixels of the band, rounded up to whole SIMD vectors: no scalar remainder loop (the
    # buffers have VECTOR elements of zero slack for the reads and writes past the end).
    length = ((rows - 1) * wq + out_width + VECTOR - 1) // VECTOR * VECTOR
    buf = np.zeros(stride_h * stride_w * hq * wq + VECTOR, dtype=x_flat.dtype)
    vout = np.empty(hq * wq + VECTOR, dtype=out_flat.dtype)
    weights = stack_array(MAX_TAPS, out_flat)
    tap_offset = stack_array(MAX_TAPS, np.int64)  # an array, not the tuple: a tuple indexed by a
    for t in range(len(offsets)):                 # variable lowers to a switch, which stops the SIMD loop
        tap_offset[t] = offsets[t]
    filled = -1
    for plane in range(first_plane, last_plane):
        n = plane // out_channels
        co = plane - n * out_channels
        source = n * in_channels + co // multiplier
        if source != filled:
            _fill(buf, x_flat, source * in_height * in_width, in_height, in_width, oh0 * stride_h,
                  hq, wq, stride_h, stride_w, pad_top, pad_left)
            filled = source
        for t in range(taps):
            weights[t] = w_flat[_U(co * taps + t)]
        _taps(vout, length, buf, weights, tap_offset, len(offsets), chunk)
        _store(vout, rows, wq, out_flat, (plane * out_height + oh0) * out_width, out_width, bias[co], act)


def _depthwise_conv_nchw(x, weight, bias, out, multiplier, stride_h, stride_w, dilation_h, dilation_w,
                         pad_top, pad_left, act, planes_per_task, rows_per_band, hq, wq, offsets, chunk):
    """x (N, C, H, W), weight (C*m, kH, kW), out (N, C*m, H_out, W_out), all C-contiguous;
    tiling from `tiling`, (hq, wq, offsets, chunk) from `tap_offsets` for that band height."""
    n_images, in_channels, in_height, in_width = x.shape
    out_channels, out_height, out_width = out.shape[1], out.shape[2], out.shape[3]
    x_flat = x.reshape(-1)
    w_flat = weight.reshape(-1)
    out_flat = out.reshape(-1)
    taps = weight.shape[1] * weight.shape[2]
    n_planes = n_images * out_channels
    bands = (out_height + rows_per_band - 1) // rows_per_band
    plane_tasks = (n_planes + planes_per_task - 1) // planes_per_task
    for task in prange(plane_tasks * bands):
        band = task % bands
        first_plane = (task // bands) * planes_per_task
        oh0 = band * rows_per_band
        _task(x_flat, w_flat, bias, out_flat, first_plane, min(first_plane + planes_per_task, n_planes), oh0,
              min(rows_per_band, out_height - oh0), in_channels, in_height, in_width, out_channels, out_height,
              out_width, taps, multiplier, stride_h, stride_w, pad_top, pad_left, act, hq, wq, offsets, chunk)


depthwise_conv_nchw = Twins(_depthwise_conv_nchw, fastmath=FASTMATH)


@lru_cache(maxsize=256)
def geometry(n_planes, out_height, out_width, kernel_height, kernel_width, stride, dilation, threads):
    """``(planes_per_task, rows_per_band, Hq, Wq, offsets, chunk)``: the kernel's tiling arguments."""
    planes, rows = tiling(n_planes, out_height, out_width, kernel_height, kernel_width, stride, dilation, threads)
    return (planes, rows) + tap_offsets(kernel_height, kernel_width, stride, dilation, rows, out_width)


# ---- channels-last (NHWC) ------------------------------------------------------------------------
# In NHWC the channels of one pixel are adjacent, so the SIMD loop runs over channels instead of
# pixels: no staging buffer and no phase split.  Output pixels go in blocks of B along a row, B
# chosen so a block has about NHWC_BLOCK_ELEMENTS accumulators (B*C_out, in L1):
#
#     for each task (image n, band of output rows):          # prange
#         for each block of B output pixels of a row:
#             acc[0:B*C] = bias (tiled)
#             for each tap (kh, kw) whose input row is inside x:
#                 if the whole block's input pixels are inside x and stride 1:
#                     acc[f] += w_tiled[tap, f] * x[row, iw0*C + f]    # ONE flat unit-stride loop over B*C
#                 else:                                                # stride 2, or the block at a border
#                     per pixel inside x: acc[b*C + c] += w[tap, c] * x[row, iw*C + c]
#             out[n, oh, block] = activate(acc)                       # one flat store of B*C values
#
# With stride 1 the block's pixels are adjacent in both x and out, so pixels x channels is one flat
# loop long enough for SIMD even with 16 or 32 channels (a loop over 32 channels per pixel and tap
# spent more time in loop set-up than in its two vector FMAs); ``w_tiled`` holds each tap's weights
# repeated B times for that.  With a channel multiplier m > 1 output channel co reads input channel
# co // m, a per-pixel loop.

NHWC_BLOCK_ELEMENTS = 512


@njit(fastmath=FASTMATH, cache=True)
def _nhwc_rows(x_flat, w_tiled, bias_tiled, out_flat, n, oh0, oh1, in_height, in_width, in_channels, out_width,
               out_channels, kernel_height, kernel_width, multiplier, stride_h, stride_w, dilation_h, dilation_w,
               pad_top, pad_left, act, block, acc):
    # Output rows [oh0, oh1) of image n; out_flat is that image's (H_out, W_out, C_out) result, flat.
    # w_tiled is (kH*kW, block*C_out): tap t's weights repeated block times; bias_tiled likewise
    # (block*C_out,), so that the accumulators start from one flat copy.
    tiled = block * out_channels
    for oh in range(oh0, oh1):
        for ow0 in range(0, out_width, block):
            pixels = min(block, out_width - ow0)
            size = pixels * out_channels
            for f in range(size):
                acc[_U(f)] = bias_tiled[_U(f)]
            for kh in range(kernel_height):
                ih = oh * stride_h - pad_top + kh * dilation_h
                if ih < 0 or ih >= in_height:
                    continue
                row = (n * in_height + ih) * in_width
                for kw in range(kernel_width):
                    tap = (kh * kernel_width + kw) * tiled
                    iw0 = ow0 * stride_w - pad_left + kw * dilation_w
                    iw1 = iw0 + (pixels - 1) * stride_w
                    if stride_w == 1 and multiplier == 1 and iw0 >= 0 and iw1 < in_width:
                        src = (row + iw0) * in_channels
                        for f in range(size):
                            acc[_U(f)] += w_tiled[_U(tap + f)] * x_flat[_U(src + f)]
                        continue
                    for b in range(pixels):
                        iw = iw0 + b * stride_w
                        if iw < 0 or iw >= in_width:
                            continue
                        src = (row + iw) * in_channels
                        dst = b * out_channels
                        if multiplier == 1:
                            for c in range(out_channels):
                                acc[_U(dst + c)] += w_tiled[_U(tap + c)] * x_flat[_U(src + c)]
                        else:
                            for ci in range(in_channels):
                                value = x_flat[_U(src + ci)]
                                for j in range(multiplier):
                                    co = ci * multiplier + j
                                    acc[_U(dst + co)] += w_tiled[_U(tap + co)] * value
            base = (oh * out_width + ow0) * out_channels
            for f in range(size):
                out_flat[_U(base + f)] = activate(acc[_U(f)], act)


def _depthwise_conv_nhwc(x, w_tiled, bias, out, multiplier, stride_h, stride_w, dilation_h, dilation_w,
                         pad_top, pad_left, act, block, rows_per_task):
    """x (N, H, W, C), w_tiled (kH, kW, block*C*m) from `tile_nhwc_weights`,
    out (N, H_out, W_out, C*m), all C-contiguous."""
    n_images, in_height, in_width, in_channels = x.shape
    out_height, out_width, out_channels = out.shape[1], out.shape[2], out.shape[3]
    kernel_height, kernel_width = w_tiled.shape[0], w_tiled.shape[1]
    x_flat = x.reshape(-1)
    w_flat = w_tiled.reshape(-1)
    bias_tiled = np.empty(block * out_channels, dtype=out.dtype)
    for f in range(block * out_channels):
        bias_tiled[f] = bias[f % out_channels]
    bands = (out_height + rows_per_task - 1) // rows_per_task
    for task in prange(n_images * bands):
        n = task // bands
        oh0 = (task % bands) * rows_per_task
        acc = np.empty(block * out_channels, dtype=out.dtype)
        _nhwc_rows(x_flat, w_flat, bias_tiled, out[n].reshape(-1), n, oh0, min(oh0 + rows_per_task, out_height),
                   in_height, in_width, in_channels, out_width, out_channels, kernel_height, kernel_width,
                   multiplier, stride_h, stride_w, dilation_h, dilation_w, pad_top, pad_left, act, block, acc)


depthwise_conv_nhwc = Twins(_depthwise_conv_nhwc, fastmath=FASTMATH)


# ---- channels-last, register tiles ------------------------------------------------------------------
# Without a channel multiplier the NHWC kernel runs register tiles of TILE_PIXELS output pixels of a row times
# one vector of channels, the accumulators in registers across all taps, bias and activation applied on the
# way out, each output stored once; nothing is staged or copied:
#
#     for each task (image n, a band of output rows, a run of channel vectors):    # prange
#         for each output row: the filter rows inside x, kh in [first, end)
#             for each tile of TILE_PIXELS pixels along the row:
#                 for each channel vector of the run:                               # the rows front to back
#                     simd.depthwise_row_tile  (filter widths 3, 5, 7 and strides 1, 2 without dilation:
#                         each input pixel of a filter row loaded once, feeding every tap that reads it;
#                         plain loads inside the row, masked loads at its ends and for short rows)
#                     simd.depthwise_tile      (any other filter: one input load per multiply-add, the
#                         loads of taps on the zero padding masked off at the rows' ends)
#
# A tile crossing the row's last inner column with more than a tile of the row left is moved back to end there
# (a few outputs are computed and stored twice, the same values) rather than run with masks.  Measured (2 cores,
# batch 1, NHWC): 1.1-1.6x the accumulators-in-L1 kernel below; at batch 8 1.4-2.4x.

TILE_PIXELS = 8
# Multiply-adds below which the tiled kernels run serially: waking the second thread costs more than it
# saves (2-core VM: 240 channels at 7x7, 106 K multiply-adds, 5.7 us serial against 9.8 in parallel; at
# 680 K, 37 against 27).
TILES_PARALLEL_MIN_WORK = 1 << 18


@njit(fastmath=FASTMATH, cache=True)
def _nhwc_rows_tiled(x_flat, w_flat, bias, out_flat, n, oh0, oh1, c_first, c_end, in_height, in_width, channels,
                     out_height, out_width, kernel_height, kernel_width, stride_h, stride_w, dilation_h, dilation_w,
                     pad_top, pad_left, act, inner_first, inner_end):
    # Output rows [oh0, oh1) of image n, channels [c_first, c_end), a tile of TILE_PIXELS pixels at a time and
    # in it every channel block (reading each input row, and writing the output row, front to back); out
    # columns [inner_first, inner_end) are the ones whose every tap reads inside the row.  The tiles' sizes and
    # flags are compile-time constants: one call per case, written out (a helper taking the arrays would
    # count references to them at every tile).
    lanes = VECTOR_BYTES // out_flat.itemsize
    x_row = dilation_h * in_width * channels
    w_row = kernel_width * lanes
    shape = kernel_width * 10 + stride_w if dilation_w == 1 else 0  # the row tile's case, if any
    for oh in range(oh0, oh1):
        ih0 = oh * stride_h - pad_top
        kh_first = 0
        while kh_first < kernel_height and ih0 + kh_first * dilation_h < 0:
            kh_first += 1
        kh_end = kernel_height
        while kh_end > kh_first and ih0 + (kh_end - 1) * dilation_h >= in_height:
            kh_end -= 1
        row_taps = kh_end - kh_first
        x_base = (n * in_height + ih0 + kh_first * dilation_h) * in_width * channels
        o_base = ((n * out_height + oh) * out_width) * channels
        ow0 = 0
        while ow0 < out_width:
            count = min(TILE_PIXELS, out_width - ow0)
            inner = ow0 >= inner_first and ow0 + count <= inner_end
            if (not inner and inner_first <= ow0 < inner_end and ow0 + count < out_width
                    and inner_end - inner_first >= TILE_PIXELS):
                # a tile crossing the last inner column with more of the row after it: a whole inner tile
                # ending there instead (the columns computed twice are stored twice, the same values)
                ow0 = inner_end - TILE_PIXELS
                count = TILE_PIXELS
                inner = True
            iw = ow0 * stride_w - pad_left
            full = inner and count == TILE_PIXELS
            # one case per tile, its channel loop inside it: the masks of a partial tile are set up once per
            # tile, not for every case at every channel vector (the compiler hoists them out of the loop)
            if shape == 31:
                for c0 in range(c_first, c_end, lanes):
                    if full and c0 + lanes <= c_end:
                        depthwise_row_tile(x_flat, x_base + iw * channels + c0, channels, x_row, row_taps, w_flat,
                                           (c0 // lanes * kernel_height + kh_first) * w_row, w_row, out_flat,
                                           o_base + ow0 * channels + c0, channels, count, min(lanes, c_end - c0), iw,
                                           in_width, bias, c0, act, TILE_PIXELS, 3, 1, True)
                    else:
                        depthwise_row_tile(x_flat, x_base + iw * channels + c0, channels, x_row, row_taps, w_flat,
                                           (c0 // lanes * kernel_height + kh_first) * w_row, w_row, out_flat,
                                           o_base + ow0 * channels + c0, channels, count, min(lanes, c_end - c0), iw,
                                           in_width, bias, c0, act, TILE_PIXELS, 3, 1, False)
            elif shape == 32:
                for c0 in range(c_first, c_end, lanes):
                    if full and c0 + lanes <= c_end:
                        depthwise_row_tile(x_flat, x_base + iw * channels + c0, channels, x_row, row_taps, w_flat,
                                           (c0 // lanes * kernel_height + kh_first) * w_row, w_row, out_flat,
                                           o_base + ow0 * channels + c0, channels, count, min(lanes, c_end - c0), iw,
                                           in_width, bias, c0, act, TILE_PIXELS, 3, 2, True)
                    else:
                        depthwise_row_tile(x_flat, x_base + iw * channels + c0, channels, x_row, row_taps, w_flat,
                                           (c0 // lanes * kernel_height + kh_first) * w_row, w_row, out_flat,
                                           o_base + ow0 * channels + c0, channels, count, min(lanes, c_end - c0), iw,
                                           in_width, bias, c0, act, TILE_PIXELS, 3, 2, False)
            elif shape == 51:
                for c0 in range(c_first, c_end, lanes):
                    if full and c0 + lanes <= c_end:
                        depthwise_row_tile(x_flat, x_base + iw * channels + c0, channels, x_row, row_taps, w_flat,
                                           (c0 // lanes * kernel_height + kh_first) * w_row, w_row, out_flat,
                                           o_base + ow0 * channels + c0, channels, count, min(lanes, c_end - c0), iw,
                                           in_width, bias, c0, act, TILE_PIXELS, 5, 1, True)
                    else:
                        depthwise_row_tile(x_flat, x_base + iw * channels + c0, channels, x_row, row_taps, w_flat,
                                           (c0 // lanes * kernel_height + kh_first) * w_row, w_row, out_flat,
                                           o_base + ow0 * channels + c0, channels, count, min(lanes, c_end - c0), iw,
                                           in_width, bias, c0, act, TILE_PIXELS, 5, 1, False)
            elif shape == 52:
                for c0 in range(c_first, c_end, lanes):
                    if full and c0 + lanes <= c_end:
                        depthwise_row_tile(x_flat, x_base + iw * channels + c0, channels, x_row, row_taps, w_flat,
                                           (c0 // lanes * kernel_height + kh_first) * w_row, w_row, out_flat,
                                           o_base + ow0 * channels + c0, channels, count, min(lanes, c_end - c0), iw,
                                           in_width, bias, c0, act, TILE_PIXELS, 5, 2, True)
                    else:
                        depthwise_row_tile(x_flat, x_base + iw * channels + c0, channels, x_row, row_taps, w_flat,
                                           (c0 // lanes * kernel_height + kh_first) * w_row, w_row, out_flat,
                                           o_base + ow0 * channels + c0, channels, count, min(lanes, c_end - c0), iw,
                                           in_width, bias, c0, act, TILE_PIXELS, 5, 2, False)
            elif shape == 71:
                for c0 in range(c_first, c_end, lanes):
                    if full and c0 + lanes <= c_end:
                        depthwise_row_tile(x_flat, x_base + iw * channels + c0, channels, x_row, row_taps, w_flat,
                                           (c0 // lanes * kernel_height + kh_first) * w_row, w_row, out_flat,
                                           o_base + ow0 * channels + c0, channels, count, min(lanes, c_end - c0), iw,
                                           in_width, bias, c0, act, TILE_PIXELS, 7, 1, True)
                    else:
                        depthwise_row_tile(x_flat, x_base + iw * channels + c0, channels, x_row, row_taps, w_flat,
                                           (c0 // lanes * kernel_height + kh_first) * w_row, w_row, out_flat,
                                           o_base + ow0 * channels + c0, channels, count, min(lanes, c_end - c0), iw,
                                           in_width, bias, c0, act, TILE_PIXELS, 7, 1, False)
            elif inner:
                for c0 in range(c_first, c_end, lanes):
                    depthwise_tile(x_flat, x_base + iw * channels + c0, stride_w * channels, x_row,
                                   dilation_w * channels, row_taps, kernel_width, w_flat,
                                   (c0 // lanes * kernel_height + kh_first) * w_row, w_row, out_flat,
                                   o_base + ow0 * channels + c0, channels, count, min(lanes, c_end - c0), iw, stride_w,
                                   dilation_w, in_width, bias, c0, act, TILE_PIXELS, False)
            else:
                for c0 in range(c_first, c_end, lanes):
                    depthwise_tile(x_flat, x_base + iw * channels + c0, stride_w * channels, x_row,
                                   dilation_w * channels, row_taps, kernel_width, w_flat,
                                   (c0 // lanes * kernel_height + kh_first) * w_row, w_row, out_flat,
                                   o_base + ow0 * channels + c0, channels, count, min(lanes, c_end - c0), iw, stride_w,
                                   dilation_w, in_width, bias, c0, act, TILE_PIXELS, True)
            ow0 += count


def _depthwise_nhwc_tiled(x, w_taps, bias, out, stride_h, stride_w, dilation_h, dilation_w, pad_top, pad_left, act,
                          rows, channel_part):
    """x (N, H, W, C), w_taps (C / L, kH, kW, L) from `nhwc_taps`, out (N, H_out, W_out, C), all C-contiguous; a
    task is ``rows`` output rows of one image and ``channel_part`` channels (whole vectors of L)."""
    n_images, in_height, in_width, channels = x.shape
    out_height, out_width = out.shape[1], out.shape[2]
    kernel_height, kernel_width = w_taps.shape[1], w_taps.shape[2]
    # the output columns whose taps all read inside the row: iw = ow*s_w - pad_left + kw*d_w in [0, W)
    inner_first = min(out_width, (pad_left + stride_w - 1) // stride_w)
    reach = in_width - 1 + pad_left - (kernel_width - 1) * dilation_w
    inner_end = max(inner_first, min(out_width, reach // stride_w + 1)) if reach >= 0 else inner_first
    parts = (channels + channel_part - 1) // channel_part
    bands = (out_height + rows - 1) // rows
    x_flat = x.reshape(-1)
    w_flat = w_taps.reshape(-1)
    out_flat = out.reshape(-1)
    for task in prange(n_images * bands * parts):
        part = task % parts
        oh0 = (task // parts) % bands * rows
        n = task // (parts * bands)
        c_first = part * channel_part
        _nhwc_rows_tiled(x_flat, w_flat, bias, out_flat, n, oh0, min(out_height, oh0 + rows), c_first,
                         min(channels, c_first + channel_part), in_height, in_width, channels, out_height, out_width,
                         kernel_height, kernel_width, stride_h, stride_w, dilation_h, dilation_w, pad_top, pad_left,
                         act, inner_first, inner_end)


depthwise_nhwc_tiled = Twins(_depthwise_nhwc_tiled, fastmath=FASTMATH)


def nhwc_taps(weight: np.ndarray) -> np.ndarray:
    """(C, 1, kH, kW) -> (C / L, kH, kW, L) for vectors of L channels: a channel block's taps together, each tap's
    weights one vector (zero past the last channel)."""
    lanes = VECTOR_BYTES // weight.dtype.itemsize
    channels, _, kernel_height, kernel_width = weight.shape
    blocks = -(-channels // lanes)
    taps = np.zeros((blocks * lanes, kernel_height, kernel_width), weight.dtype)
    taps[:channels] = weight[:, 0]
    return np.ascontiguousarray(taps.reshape(blocks, lanes, kernel_height, kernel_width).transpose(0, 2, 3, 1))


@lru_cache(maxsize=256)
def channel_part(n_images: int, out_height: int, channels: int, dtype, threads: int) -> int:
    """Channels per task of the tiled NHWC kernel (whole vectors): all of them where images x rows give every
    thread 8 tasks, else fewer, down to one vector."""
    lanes = VECTOR_BYTES // np.dtype(dtype).itemsize
    vectors = -(-channels // lanes)
    parts = max(1, min(vectors, -(-8 * threads // max(1, n_images * out_height))))
    return -(-vectors // parts) * lanes


# ---- NCHW through blocks of channels ---------------------------------------------------------------
# The NCHW entry point may run the same register tiles: a task (image n, a vector of L channels, a band of
# output rows) transposes its input rows into a thread buffer as (row, column, L channels) -- 16x16 squares in
# registers, the zero padding written around them, so that every tile reads inside the buffer -- runs the row
# tiles over it into a second buffer, and transposes that back into the output planes.  Each input and output
# element crosses memory once; the transposes stay in L1/L2.

BLOCKED_BYTES = 64 << 10  # a task's two buffers at most (where one output row allows)


@njit(cache=True)
def _stage_block(source, s_image, s_channel, s_row, s_column, buffers, base, n, c0, kc, row_first, rows, height,
                 width, pad_left, padded_width):
    """buffers[base + (r*padded_width + pad_left + col)*L + i] = source[n, c0 + i, row_first + r, col] for r < rows,
    i < L (source flat, element strides s_*), zero outside the source's rows and columns and past its ``kc``
    channels: a block of L channels' rows, channels last, with zero padding around (`_blocked_task`).  Planes
    (unit column stride): 16x16 squares transposed in registers; channels-last data: each pixel's run."""
    lanes = VECTOR_BYTES // buffers.itemsize
    row_size = padded_width * lanes
    for r in range(rows):
        row = row_first + r
        target = base + r * row_size
        if row < 0 or row >= height:
            for e in range(row_size):
                buffers[_U(target + e)] = 0
            continue
        for e in range(pad_left * lanes):
            buffers[_U(target + e)] = 0
        for e in range((pad_left + width) * lanes, row_size):
            buffers[_U(target + e)] = 0
        origin = n * s_image + c0 * s_channel + row * s_row
        if s_column == 1:
            for col in range(0, width, lanes):
                transpose_block(source, origin + col, s_channel, kc, min(lanes, width - col), buffers,
                                target + (pad_left + col) * lanes, lanes, lanes)
        else:
            for col in range(width):
                pixel = target + (pad_left + col) * lanes
                for i in range(kc):
                    buffers[_U(pixel + i)] = source[_U(origin + col * s_column + i * s_channel)]
                for i in range(kc, lanes):
                    buffers[_U(pixel + i)] = 0


@njit(fastmath=FASTMATH, cache=True)
def _blocked_task(x_flat, w_flat, bias, out_flat, buffers, base, n, c0, oh0, oh1, channels, in_height, in_width,
                  out_height, out_width, kernel_height, kernel_width, stride_h, stride_w, dilation_h, dilation_w,
                  pad_top, pad_left, act, padded_width):
    lanes = VECTOR_BYTES // out_flat.itemsize
    kc = min(lanes, channels - c0)
    rows_in = (oh1 - oh0 - 1) * stride_h + (kernel_height - 1) * dilation_h + 1
    row_size = padded_width * lanes
    plane = in_height * in_width
    _stage_block(x_flat, channels * plane, plane, in_width, 1, buffers, base, n, c0, kc, oh0 * stride_h - pad_top,
                 rows_in, in_height, in_width, pad_left, padded_width)
    out_base = base + rows_in * row_size
    x_row = dilation_h * row_size
    w_row = kernel_width * lanes
    w_offset = (c0 // lanes) * kernel_height * w_row
    shape = (kernel_width * 10 + stride_w) * 2 if dilation_w == 1 else 0  # the row tile's case, if any
    for oh in range(oh0, oh1):
        ow0 = 0
        while ow0 < out_width:
            count = min(TILE_PIXELS, out_width - ow0)
            if count < TILE_PIXELS and out_width >= TILE_PIXELS:  # a whole tile ending at the row's end
                ow0 = out_width - TILE_PIXELS
                count = TILE_PIXELS
            column = ow0 * stride_w
            x_offset = base + (oh - oh0) * stride_h * row_size + column * lanes
            o_offset = out_base + ((oh - oh0) * out_width + ow0) * lanes
            # the tile cases of `_nhwc_rows_tiled`, written out again: one helper serving both kernels (a call per
            # tile, taking the arrays) measured 2x slower, Numba counting references to them at every tile
            variant = shape + (1 if count == TILE_PIXELS and kc == lanes else 0)
            if variant == 63:
                depthwise_row_tile(buffers, x_offset, lanes, x_row, kernel_height, w_flat, w_offset, w_row, buffers,
                                   o_offset, lanes, count, kc, column, padded_width, bias, c0, act, TILE_PIXELS,
                                   3, 1, True)
            elif variant == 65:
                depthwise_row_tile(buffers, x_offset, lanes, x_row, kernel_height, w_flat, w_offset, w_row, buffers,
                                   o_offset, lanes, count, kc, column, padded_width, bias, c0, act, TILE_PIXELS,
                                   3, 2, True)
            elif variant == 103:
                depthwise_row_tile(buffers, x_offset, lanes, x_row, kernel_height, w_flat, w_offset, w_row, buffers,
                                   o_offset, lanes, count, kc, column, padded_width, bias, c0, act, TILE_PIXELS,
                                   5, 1, True)
            elif variant == 105:
                depthwise_row_tile(buffers, x_offset, lanes, x_row, kernel_height, w_flat, w_offset, w_row, buffers,
                                   o_offset, lanes, count, kc, column, padded_width, bias, c0, act, TILE_PIXELS,
                                   5, 2, True)
            elif variant == 143:
                depthwise_row_tile(buffers, x_offset, lanes, x_row, kernel_height, w_flat, w_offset, w_row, buffers,
                                   o_offset, lanes, count, kc, column, padded_width, bias, c0, act, TILE_PIXELS,
                                   7, 1, True)
            elif variant == 62:
                depthwise_row_tile(buffers, x_offset, lanes, x_row, kernel_height, w_flat, w_offset, w_row, buffers,
                                   o_offset, lanes, count, kc, column, padded_width, bias, c0, act, TILE_PIXELS,
                                   3, 1, False)
            elif variant == 64:
                depthwise_row_tile(buffers, x_offset, lanes, x_row, kernel_height, w_flat, w_offset, w_row, buffers,
                                   o_offset, lanes, count, kc, column, padded_width, bias, c0, act, TILE_PIXELS,
                                   3, 2, False)
            elif variant == 102:
                depthwise_row_tile(buffers, x_offset, lanes, x_row, kernel_height, w_flat, w_offset, w_row, buffers,
                                   o_offset, lanes, count, kc, column, padded_width, bias, c0, act, TILE_PIXELS,
                                   5, 1, False)
            elif variant == 104:
                depthwise_row_tile(buffers, x_offset, lanes, x_row, kernel_height, w_flat, w_offset, w_row, buffers,
                                   o_offset, lanes, count, kc, column, padded_width, bias, c0, act, TILE_PIXELS,
                                   5, 2, False)
            elif variant == 142:
                depthwise_row_tile(buffers, x_offset, lanes, x_row, kernel_height, w_flat, w_offset, w_row, buffers,
                                   o_offset, lanes, count, kc, column, padded_width, bias, c0, act, TILE_PIXELS,
                                   7, 1, False)
            else:
                depthwise_tile(buffers, x_offset, stride_w * lanes, x_row, dilation_w * lanes, kernel_height,
                               kernel_width, w_flat, w_offset, w_row, buffers, o_offset, lanes, count, kc, column,
                               stride_w, dilation_w, padded_width, bias, c0, act, TILE_PIXELS, False)
            ow0 += count
    for r in range(oh1 - oh0):  # back into the output planes
        for ow in range(0, out_width, lanes):
            pixels = min(lanes, out_width - ow)
            transpose_block(buffers, out_base + (r * out_width + ow) * lanes, lanes, pixels, kc, out_flat,
                            ((n * channels + c0) * out_height + oh0 + r) * out_width + ow, out_height * out_width,
                            pixels)


def _depthwise_nchw_blocked(x, w_taps, bias, out, stride_h, stride_w, dilation_h, dilation_w, pad_top, pad_left, act,
                            rows, padded_width, buffers, per_thread):
    """x (N, C, H, W), w_taps (C / L, kH, kW, L) from `nhwc_taps`, out (N, C, H_out, W_out), all C-contiguous; a
    task is ``rows`` output rows of one image's vector of L channels, in its thread's ``per_thread`` elements of
    ``buffers`` (`blocked_geometry`)."""
    n_images, channels, in_height, in_width = x.shape
    out_height, out_width = out.shape[2], out.shape[3]
    kernel_height, kernel_width = w_taps.shape[1], w_taps.shape[2]
    lanes = VECTOR_BYTES // out.itemsize
    blocks = (channels + lanes - 1) // lanes
    bands = (out_height + rows - 1) // rows
    x_flat = x.reshape(-1)
    w_flat = w_taps.reshape(-1)
    out_flat = out.reshape(-1)
    for task in prange(n_images * blocks * bands):
        band = task % bands
        block = (task // bands) % blocks
        n = task // (bands * blocks)
        oh0 = band * rows
        _blocked_task(x_flat, w_flat, bias, out_flat, buffers, get_thread_id() * per_thread, n, block * lanes, oh0,
                      min(out_height, oh0 + rows), channels, in_height, in_width, out_height, out_width, kernel_height,
                      kernel_width, stride_h, stride_w, dilation_h, dilation_w, pad_top, pad_left, act, padded_width)


depthwise_nchw_blocked = Twins(_depthwise_nchw_blocked, fastmath=FASTMATH)


def blocked_geometry(n_images, channels, out_height, out_width, in_width, kernel_height, kernel_width, stride,
                     dilation, pad_left, dtype, threads) -> tuple[int, int, int]:
    """``(rows, padded_width, per_thread)``: output rows per task (its two buffers within BLOCKED_BYTES where one
    row allows, and 4 tasks per thread where there is that much work), the buffer rows' width (the input row and
    its zero padding, as far as the taps reach) and a thread's buffer elements."""
    lanes = VECTOR_BYTES // np.dtype(dtype).itemsize
    sh, sw = stride
    dh, dw = dilation
    padded_width = max(pad_left + in_width, (out_width - 1) * sw + (kernel_width - 1) * dw + 1)

    def elements(rows):
        return ((rows - 1) * sh + (kernel_height - 1) * dh + 1) * padded_width * lanes + rows * out_width * lanes

    rows = out_height
    while rows > 1 and elements(rows) * np.dtype(dtype).itemsize > BLOCKED_BYTES:
        rows = -(-rows // 2)
    blocks = -(-channels // lanes)
    while rows > 1 and n_images * blocks * -(-out_height // rows) < 4 * threads:
        rows = -(-rows // 2)
    return rows, padded_width, elements(rows) + lanes


# ---- the weight gradient through blocks of channels ------------------------------------------------
# dL/dw[c, kh, kw] = sum over images and output pixels of grad_output[n, c, oh, ow] * x[n, c, oh*s_h + kh*d_h -
# top, ow*s_w + kw*d_w - left]: per task (image, L channels, band of output rows) the input rows and the output
# gradient's rows are staged channels last (`_stage_block`) and `simd.depthwise_weight_tile` reduces every tap
# over the band in float64 into the task's own slot of ``partial`` (no two tasks write one place); the slots are
# summed afterwards, in float64.


def _depthwise_weight_blocked(x, x_strides, grad, grad_strides, partial, buffers, per_thread, n_images, channels,
                              in_height, in_width, out_height, out_width, kernel_height, kernel_width, stride_h,
                              stride_w, dilation_h, dilation_w, pad_top, pad_left, rows, padded_width):
    """partial[(n*bands + band), block, tap, l] (float64): the sums of `simd.depthwise_weight_tile` for channel
    block*L + l over image n's output rows of the band; x and grad flat with their element strides (image,
    channel, row, column)."""
    lanes = VECTOR_BYTES // x.itemsize
    blocks = (channels + lanes - 1) // lanes
    bands = (out_height + rows - 1) // rows
    taps = kernel_height * kernel_width
    row_size = padded_width * lanes
    for task in prange(n_images * bands * blocks):
        block = task % blocks
        band = (task // blocks) % bands
        n = task // (blocks * bands)
        oh0 = band * rows
        oh1 = min(out_height, oh0 + rows)
        c0 = block * lanes
        kc = min(lanes, channels - c0)
        base = get_thread_id() * per_thread
        rows_in = (oh1 - oh0 - 1) * stride_h + (kernel_height - 1) * dilation_h + 1
        _stage_block(x, x_strides[0], x_strides[1], x_strides[2], x_strides[3], buffers, base, n, c0, kc,
                     oh0 * stride_h - pad_top, rows_in, in_height, in_width, pad_left, padded_width)
        g_base = base + rows_in * row_size
        _stage_block(grad, grad_strides[0], grad_strides[1], grad_strides[2], grad_strides[3], buffers, g_base, n, c0,
                     kc, oh0, oh1 - oh0, out_height, out_width, 0, out_width)
        slot = ((n * bands + band) * blocks + block) * taps * lanes
        shape = kernel_width * 10 + stride_w if dilation_w == 1 else 0  # a row tile's case, if any
        a_row = stride_h * row_size
        g_row = out_width * lanes
        tap_row = dilation_h * row_size
        if shape == 31:
            depthwise_weight_row_tile(buffers, base, lanes, a_row, tap_row, buffers, g_base, g_row, oh1 - oh0,
                                      out_width, kernel_height, partial, slot, 3, 1)
        elif shape == 32:
            depthwise_weight_row_tile(buffers, base, lanes, a_row, tap_row, buffers, g_base, g_row, oh1 - oh0,
                                      out_width, kernel_height, partial, slot, 3, 2)
        elif shape == 51:
            depthwise_weight_row_tile(buffers, base, lanes, a_row, tap_row, buffers, g_base, g_row, oh1 - oh0,
                                      out_width, kernel_height, partial, slot, 5, 1)
        elif shape == 52:
            depthwise_weight_row_tile(buffers, base, lanes, a_row, tap_row, buffers, g_base, g_row, oh1 - oh0,
                                      out_width, kernel_height, partial, slot, 5, 2)
        elif shape == 71:
            depthwise_weight_row_tile(buffers, base, lanes, a_row, tap_row, buffers, g_base, g_row, oh1 - oh0,
                                      out_width, kernel_height, partial, slot, 7, 1)
        else:
            depthwise_weight_tile(buffers, base, stride_w * lanes, a_row, tap_row, dilation_w * lanes, buffers, g_base,
                                  g_row, oh1 - oh0, out_width, kernel_height, kernel_width, partial, slot)


depthwise_weight_blocked = Twins(_depthwise_weight_blocked)


def _flat_with_strides(array):
    """``(flat, (image, channel, row, column) element strides)`` of an (N, C, H, W) array held as planes or channels
    last (C-contiguous either way); any other memory layout is copied into planes first."""
    n, c, h, w = array.shape
    if array.flags.c_contiguous:
        return array.reshape(-1), (c * h * w, h * w, w, 1)
    last = array.transpose(0, 2, 3, 1)
    if last.flags.c_contiguous:
        return last.reshape(-1), (h * w * c, 1, w * c, c)
    return np.ascontiguousarray(array).reshape(-1), (c * h * w, h * w, w, 1)


def weight_gradient(x, grad, kernel_height, kernel_width, stride, dilation, pad_top, pad_left) -> np.ndarray:
    """dL/dw (C, kH*kW) in float64 of a depthwise layer without a channel multiplier: x (N, C, H, W) with its zero
    padding still to apply (top, left), grad (N, C, H_out, W_out), each as planes or channels last."""
    n_images, channels, in_height, in_width = x.shape
    out_height, out_width = grad.shape[2], grad.shape[3]
    threads = numba.get_num_threads()
    rows, padded_width, per_thread = blocked_geometry(n_images, channels, out_height, out_width, in_width,
                                                      kernel_height, kernel_width, tuple(stride), tuple(dilation),
                                                      pad_left, x.dtype, threads)
    lanes = VECTOR_BYTES // x.dtype.itemsize
    blocks = -(-channels // lanes)
    bands = -(-out_height // rows)
    partial = np.empty((n_images * bands, blocks, kernel_height * kernel_width, lanes), np.float64)
    buffers = scratch("depthwise_weight_blocks", numba.config.NUMBA_NUM_THREADS * per_thread, x.dtype)
    x_flat, x_strides = _flat_with_strides(x)
    grad_flat, grad_strides = _flat_with_strides(grad)
    depthwise_weight_blocked(grad.size * kernel_height * kernel_width, x_flat, np.array(x_strides, np.int64),
                             grad_flat, np.array(grad_strides, np.int64), partial, buffers, per_thread, n_images,
                             channels, in_height, in_width, out_height, out_width, kernel_height, kernel_width, *stride,
                             *dilation, pad_top, pad_left, rows, padded_width)
    total = partial.sum(axis=0) if partial.shape[0] > 1 else partial[0]
    return np.ascontiguousarray(total.transpose(0, 2, 1).reshape(blocks * lanes, -1)[:channels])


# ---- channels-last with a channel multiplier: accumulators in L1 ---------------------------------


def nhwc_block(out_width: int, out_channels: int) -> int:
    """Output pixels per block of the channels-last kernel (about NHWC_BLOCK_ELEMENTS accumulators)."""
    return max(1, min(out_width, NHWC_BLOCK_ELEMENTS // max(out_channels, 1)))


def tile_nhwc_weights(weight: np.ndarray, block: int) -> np.ndarray:
    """(C_out, 1, kH, kW) -> (kH, kW, block*C_out): each tap's weights, contiguous, repeated block times."""
    taps = weight[:, 0].transpose(1, 2, 0)
    return np.ascontiguousarray(np.tile(taps, (1, 1, block)))


def nhwc_rows_per_task(n_images: int, out_height: int, out_width: int, out_channels: int, threads: int) -> int:
    """Output rows per parallel task: about DEPTHWISE_TASK_OUTPUTS outputs, and 4 tasks per thread."""
    rows = max(1, DEPTHWISE_TASK_OUTPUTS // max(out_width * out_channels, 1))
    while rows > 1 and n_images * -(-out_height // rows) < 4 * threads:
        rows = -(-rows // 2)
    return min(rows, out_height)


def _depthwise_border_nhwc(x, w_taps, bias, out, pixels, row_sources, column_sources, multiplier, stride_h,
                           stride_w, dilation_h, dilation_w, act, buffers):
    """Recompute the outputs at ``pixels`` ((P, 2) int64: row, column) under a non-zero padding mode, reading x
    (N, H, W, C) unpadded: padded row ``p`` is input row ``row_sources[p]`` (-1: none, a zero), likewise for
    columns (`arrays.padded_reads` over the padded extent).  ``w_taps`` (kH, kW, C*m) contiguous; out
    (N, H_out, W_out, C*m); ``buffers`` (threads, C*m), a row of accumulators per thread.  Each task one pixel
    of one image, every output channel at once (unit stride: vectorised)."""
    n_images = x.shape[0]
    kernel_height, kernel_width, channels = w_taps.shape
    count = pixels.shape[0]
    for task in prange(n_images * count):
        n = task // count
        oh = pixels[task % count, 0]
        ow = pixels[task % count, 1]
        acc = buffers[get_thread_id()]
        for co in range(channels):
            acc[co] = bias[co]
        for i in range(kernel_height):
            r = row_sources[oh * stride_h + i * dilation_h]
            if r < 0:
                continue
            for j in range(kernel_width):
                c = column_sources[ow * stride_w + j * dilation_w]
                if c < 0:
                    continue
                if multiplier == 1:
                    for co in range(channels):
                        acc[co] += x[n, r, c, co] * w_taps[i, j, co]
                else:
                    for co in range(channels):
                        acc[co] += x[n, r, c, co // multiplier] * w_taps[i, j, co]
        for co in range(channels):
            out[n, oh, ow, co] = activate(acc[co], act)


depthwise_border_nhwc = Twins(_depthwise_border_nhwc, fastmath=FASTMATH)


def border_pixels(regions) -> np.ndarray:
    """The (row, column) of every output in the rectangles ``(row0, row1, column0, column1)``, (P, 2) int64."""
    parts = [np.stack(np.meshgrid(np.arange(r0, r1), np.arange(c0, c1), indexing="ij"), axis=-1).reshape(-1, 2)
             for r0, r1, c0, c1 in regions]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros((0, 2), np.int64)


def workspace(spec) -> int:
    """Bytes of temporaries for a C-contiguous x: none for zero padding (applied while staging; the per-task
    staging buffers are a few tens of KiB per thread); for the other padding modes the border frame's pixel
    list (`depthwise_border_nhwc`, channels last) or the padded border rectangles or input
    (`arrays.padding_copy_elements`)."""
    if spec.padding_mode == "zeros" or not spec.has_padding:
        return 0
    frame = spec.border_rectangles(DEPTHWISE_BORDER_SHARE) if spec.layout == "NHWC" else None
    if frame is None:
        return padding_copy_elements(spec) * spec.dtype.itemsize
    return 16 * sum((r1 - r0) * (c1 - c0) for r0, r1, c0, c1 in frame)


def run_nchw(x, weight, bias, out, multiplier, stride, dilation, pad_top, pad_left, act):
    """The NCHW kernel on C-contiguous x (N, C, H, W), weight (C*m, 1, kH, kW), out (N, C*m, H_out, W_out): without
    a channel multiplier the register tiles through blocks of channels, else the planes' kernel (tiling from
    the shape); the serial twins for small problems."""
    n_images, out_channels, out_height, out_width = out.shape
    kernel_height, kernel_width = weight.shape[2], weight.shape[3]
    threads = numba.get_num_threads()
    work = out.size * kernel_height * kernel_width
    if blocked_serves(multiplier, n_images, out_width, kernel_height, kernel_width, stride):
        rows, padded_width, per_thread = blocked_geometry(n_images, out_channels, out_height, out_width, x.shape[3],
                                                          kernel_height, kernel_width, tuple(stride), tuple(dilation),
                                                          pad_left, out.dtype, threads)
        buffers = scratch("depthwise_blocks", numba.config.NUMBA_NUM_THREADS * per_thread, out.dtype)
        depthwise_nchw_blocked(work, x, _taps_of(weight), bias, out, *stride, *dilation, pad_top, pad_left, act, rows,
                               padded_width, buffers, per_thread, minimum=TILES_PARALLEL_MIN_WORK)
        return
    filters = np.ascontiguousarray(weight.reshape(out_channels, kernel_height, kernel_width))
    tiles = geometry(n_images * out_channels, out_height, out_width, kernel_height, kernel_width, tuple(stride),
                     tuple(dilation), threads)
    depthwise_conv_nchw(work, x, filters, bias, out, multiplier, *stride, *dilation, pad_top, pad_left, act, *tiles)


def blocked_serves(multiplier, n_images, out_width, kernel_height, kernel_width, stride) -> bool:
    """Whether NCHW data goes through blocks of channels (`depthwise_nchw_blocked`) rather than the planes'
    kernel: without a channel multiplier, for strided layers, filters wider than 3, planes up to 16 wide, and a
    single image's planes up to 32 wide.  Measured (2 cores, kernels alone): strided and 5x5 layers 1.2-2.7x,
    stride-1 3x3 layers 1.2-1.6x for one image up to 28 wide (14 wide also at batch 8: 1.16x), but 0.88-0.97x
    for stride-1 3x3 planes of 19-112 at batch 8 and of 112 at batch 1, where the planes' kernel reads each
    plane as one contiguous run."""
    if multiplier != 1:
        return False
    if tuple(stride) != (1, 1) or kernel_height > 3 or kernel_width > 3 or out_width <= 16:
        return True
    return n_images == 1 and out_width <= 32


def _taps_of(weight):
    """`nhwc_taps` of ``weight``, kept by `packcache` for a frozen weight."""
    taps = packcache.packed(weight, "depthwise_taps", lambda: nhwc_taps(weight))
    return nhwc_taps(weight) if taps is None else taps


def run_nhwc(x, weight, bias, out, multiplier, stride, dilation, pad_top, pad_left, act):
    """The NHWC kernel on C-contiguous x (N, H, W, C), weight (C*m, 1, kH, kW), out (N, H_out, W_out, C*m):
    register tiles without a channel multiplier, else accumulators in L1."""
    n_images, out_height, out_width, out_channels = out.shape
    if multiplier == 1:
        part = channel_part(n_images, out_height, out_channels, out.dtype, numba.get_num_threads())
        depthwise_nhwc_tiled(out.size * weight.shape[2] * weight.shape[3], x, _taps_of(weight), bias, out, *stride,
                             *dilation, pad_top, pad_left, act, 1, part, minimum=TILES_PARALLEL_MIN_WORK)
        return
    block = nhwc_block(out_width, out_channels)
    threads = numba.get_num_threads()
    rows = nhwc_rows_per_task(n_images, out_height, out_width, out_channels, threads)
    depthwise_conv_nhwc(out.size * weight.shape[2] * weight.shape[3], x, tile_nhwc_weights(weight, block), bias, out,
                        multiplier, *stride, *dilation, pad_top, pad_left, act, block, rows)
