"""Grouped and dense convolution as an implicit GEMM on channels-last data, on numbaconv's register tiles.

Per super group s (m consecutive groups, see `super_group`), the convolution is the product

    out[pixel, s's output channels] = sum over taps t, input channels c of  X[pixel + tap t, c] * W_s[t, c, :]

with the pixels as the GEMM's rows (each input value broadcast to a vector), the output channels as its
columns (vectors of 16 float32), and the reduction running over the filter taps and the super group's input
channels -- no im2col matrix is built: `simd.conv_tile` reads X through a table of tap offsets.

Band input (`_band_input`): each task first copies the input rows that its band of output rows reads into
its thread's buffer (at most BAND_BYTES where one output row allows, so it stays in L2), padded and split by
the stride into s_h x s_w phase planes (a space-to-depth: plane (ph, pw) holds padded rows ph, ph + s_h, ...
and columns pw, pw + s_w, ...), the super group's channels in blocks of `channel_block`.  Tap (kh, kw) of
output pixel (oh, ow) is then pixel (oh + kh*d_h // s_h, ow + kw*d_w // s_w) of plane ((kh*d_h) % s_h,
(kw*d_w) % s_w): every stride becomes a stride-1 walk, and with output pixels numbered as "virtual pixels"
q = oh * Wq + ow (Wq the planes' width) every tap reads the buffer at q*step plus a fixed offset.  A register
tile is a run of consecutive q, across output rows; the columns ow >= W_out of a row (the pixels the taps
overhang) are computed and not stored.  Zero slack rows after the band keep a run's reads in bounds.  NCHW
input is transposed by the same copy (16x16 squares in registers), and the channels-last result transposed
back (`channels_first`).

Thin groups (`thin`: 2, 4 or 8 input and output channels per group, e.g. ResNeXt's 4 and 8): a vector holds
whole groups, and `simd.thin_tile` rotates each loaded pixel's channels within every group, so each lane
multiplies its own group's inputs: no zero weights.  Other groups narrower than a vector: m groups per super
group with block-diagonal weights (zero between groups), the zeros costing m x the work; the dispatcher
sends only m <= 2 here.

Threads: tasks of (image, band, super group, share of the column blocks), super groups varying fastest so
consecutive tasks read the same input rows from cache; per channel block and column block, the weight panel
stays in L2 while the band's tiles pass over it, the channel blocks' partial sums added into the output.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import get_thread_id, njit, prange

from ..arrays import pad_input, pad_input_nhwc, padding_copy_elements, scratch
from ..config import FASTMATH, GEMM_DEPTH
from . import packcache
from .epilogue import bias_activation_last_inplace
from .simd import VECTOR_BYTES, conv_tile, thin_tile, transpose_block
from .twins import Twins

_U = np.uint64

# Register tiles (rows x vectors of 64 bytes): 12 x 2 where a super group's output channels fill pairs of
# vectors, else 24 x 1 (24 accumulators; thin groups, odd vector counts).
WIDE_ROWS = 12
NARROW_ROWS = 24
# Rows of the thin-group tile (`simd.thin_tile`) by channels per group: 14 accumulators for 2 or 4 (plus up
# to 12 weight vectors, 3 taps x 4), 8 for 8 (whose 24 weight vectors and 8 lane selectors do not fit beside
# more).  Measured one core, a 3x3 tile alone: 4 per group 133 GFLOP/s at 14 rows (115 at 6, 109 at 16);
# 8 per group 95 at 6-8 rows, 82 at 14.
THIN_ROWS = 14
THIN_ROWS_8 = 8
# A task's prepared input (its band of output rows' input rows, all its super group's channels) at most
# this many bytes where one output row allows: it stays in L2 beside the weight panels.
BAND_BYTES = 96 << 10


def lanes(dtype) -> int:
    return VECTOR_BYTES // np.dtype(dtype).itemsize


def super_group(spec) -> int:
    """Groups per super group: lanes / C_out_per_group where that is whole (and divides G), else 1."""
    per_group = spec.out_channels_per_group
    width = lanes(spec.dtype)
    if 0 < per_group < width and width % per_group == 0 and spec.groups % (width // per_group) == 0:
        return width // per_group
    return 1


def thin(spec) -> bool:
    """Whether the thin-group tile serves this convolution: as many input as output channels per group, 2, 4
    or 8 of them, fewer than a vector's lanes and dividing them (so a vector holds whole groups)."""
    per_group = spec.out_channels_per_group
    return (per_group == spec.in_channels_per_group and per_group in (2, 4, 8) and super_group(spec) > 1)


def tile_shape(spec) -> tuple[int, int]:
    """``(rows, vectors)`` of the register tile for this convolution's super groups."""
    columns = super_group(spec) * spec.out_channels_per_group
    vectors = -(-columns // lanes(spec.dtype))
    return (WIDE_ROWS, 2) if vectors % 2 == 0 else (NARROW_ROWS, 1)


def channel_block(spec) -> int:
    """Input channels of one K block (a tile's reduction over all taps of this many channels is about
    GEMM_DEPTH long), at least 1; the prepared input keeps each block's channels together."""
    taps = spec.kernel_height * spec.kernel_width
    channels = super_group(spec) * spec.in_channels_per_group
    if thin(spec):
        return channels  # one vector's lanes, one pixel's whole super group
    blocks = max(1, -(-channels * taps // GEMM_DEPTH))
    return max(1, -(-channels // blocks))


def _pack(weight, out, m, per_out, per_in, taps, blocks, width, channel_blocks, step):
    """`pack_weights` into flat ``out``: one task per (super group, column block, channel block), whose panel
    (taps x step x width, tens of KiB: it stays in L1/L2 while it fills) takes, column by column, each output
    channel's weights of the block's input channels -- a contiguous run of W."""
    panel = taps * step * width
    supers = out.size // (blocks * channel_blocks * panel)
    for task in prange(supers * blocks * channel_blocks):
        cb = task % channel_blocks
        block = (task // channel_blocks) % blocks
        s = task // (channel_blocks * blocks)
        base = task * panel
        for e in range(panel):
            out[_U(base + e)] = 0
        for l in range(min(width, m * per_out - block * width)):
            j = block * width + l
            go = j // per_out  # the output channel's group within the super group: its input channels
            first = max(cb * step, go * per_in)
            end = min((cb + 1) * step, (go + 1) * per_in)
            source = (s * m * per_out + j) * per_in * taps
            for c in range(first, end):
                ci = c - go * per_in
                target = base + (c - cb * step) * width + l
                for t in range(taps):
                    out[_U(target + t * step * width)] = weight[_U(source + ci * taps + t)]


pack_kernel = Twins(_pack)


def pack_weights(weight: np.ndarray, spec) -> np.ndarray:
    """(C_out, C_in/G, kH, kW) -> flat panels (S, column blocks, channel blocks, taps, step, width): super
    group s's block-diagonal weights, its m*C_in/G input channels in blocks of ``step`` (`channel_block`),
    width = the tile's columns; zero past the super group's output channels and input channels."""
    plan = _plan(spec)
    out = np.empty(plan.packed_size, weight.dtype)
    pack_kernel(out.size, np.ascontiguousarray(weight).reshape(-1), out, super_group(spec),
                spec.out_channels_per_group, spec.in_channels_per_group, spec.kernel_height * spec.kernel_width,
                plan.blocks, plan.width, plan.channel_blocks, plan.step)
    return out


def geometry(spec) -> tuple[int, int, int, int]:
    """``(Hq, Wq, halo, slack)`` of the phase planes: their rows and width, the plane rows a band of output rows
    reads beyond its own (the taps' reach), and the zero rows after them that keep a tile's last reads in
    bounds."""
    top, bottom, left, right = spec.padding
    sh, sw = spec.stride
    hq = -(-(spec.in_height + top + bottom) // sh)
    wq = -(-(spec.in_width + left + right) // sw)
    halo = (spec.kernel_height - 1) * spec.dilation[0] // sh
    slack = -(-(NARROW_ROWS - 1) // wq) + 1
    return hq, wq, halo, slack


def bands(spec, items: int, blocks: int, channels: int) -> tuple[int, int, int]:
    """``(band, local_rows, column_parts)``: output rows per task, the plane rows its prepared input holds
    (band + halo + slack), and how many tasks share a band's column blocks.  A band's input stays within
    BAND_BYTES where one output row allows (in L2 beside the weights).  Among the bands that fit, the one
    whose tasks (``items``: images x super groups, times the bands) finish soonest on the threads: rounds of
    tasks x (band + halo + 1) rows, the halo copied again and the last tile of a band partly idle.  Where the
    weights outweigh an image's input, the whole image is one band (each weight panel is then read once per
    image); where there are fewer than two tasks per thread, the column blocks are split among tasks too.
    ``channels``: a super group's input channels in whole channel blocks."""
    _, wq, halo, slack = geometry(spec)
    row_bytes = spec.stride[0] * spec.stride[1] * wq * channels * spec.dtype.itemsize
    largest = max(1, min(spec.out_height, BAND_BYTES // max(row_bytes, 1) - halo - slack))
    columns = blocks * tile_shape(spec)[1] * lanes(spec.dtype)
    if spec.kernel_height * spec.kernel_width * channels * columns > (spec.out_height + halo) * row_bytes:
        largest = spec.out_height  # weights outweigh the image's input: each panel read once per image
    threads = numba.get_num_threads()
    best, best_cost = largest, None
    for band in range(largest, 0, -1):
        rounds = -(-items * -(-spec.out_height // band) // threads)
        cost = rounds * (band + halo + 1)
        if best_cost is None or cost < best_cost:
            best, best_cost = band, cost
    tasks = max(1, items * -(-spec.out_height // best))
    column_parts = max(1, min(blocks, -(-2 * threads // tasks))) if tasks < 2 * threads else 1
    return best, best + halo + slack, column_parts


@njit(cache=True)
def _band_input(x, sn, s_row, s_column, s_channel, buffer, base, temp, n, c_first, per_super, step, channel_blocks,
                i0, local_rows, read_rows, valid_rows, height, width, stride_h, stride_w, top, left, plane_width):
    """One task's prepared input: buffer[base + ((b*planes + ph*s_w + pw)*local_rows + r)*Wq*step + j*step + c]
    = x[n, (i0 + r)*s_h + ph - top, j*s_w + pw - left, c_first + b*step + c] for channel block b of ``step``
    channels (x flat, element strides sn, s_row, s_column, s_channel), zero outside x, past the super group's
    ``per_super`` channels, past the planes' ``valid_rows`` and in the rows from ``read_rows`` on (the slack,
    read only by the tile rows past the band's end, whose results are not stored).  Channels-last x: a
    contiguous run per pixel.  Channels-first x (unit column stride): 16x16 squares transposed in registers,
    for a strided layer into buffer[temp:] (a row of width x step) first, whose pixels the phases then take."""
    lanes = VECTOR_BYTES // buffer.itemsize
    row_size = plane_width * step
    channels_first = s_channel != 1
    for b in range(channel_blocks):
        c0 = c_first + b * step
        kc = min(step, per_super - b * step)
        for ph in range(stride_h):
            for r in range(local_rows):
                ih = (i0 + r) * stride_h + ph - top
                zero = r >= read_rows or i0 + r >= valid_rows or ih < 0 or ih >= height
                source = n * sn + ih * s_row + c0 * s_channel
                if not zero and channels_first and stride_w > 1:  # the row transposed once for its phases
                    for iw in range(0, width, lanes):
                        for c in range(0, kc, lanes):
                            transpose_block(x, source + c * s_channel + iw, s_channel, min(lanes, kc - c),
                                            min(lanes, width - iw), buffer, temp + iw * step + c, step,
                                            min(lanes, kc - c))
                for pw in range(stride_w):
                    target = base + ((b * stride_h + ph) * stride_w + pw) * local_rows * row_size + r * row_size
                    if zero:
                        for e in range(row_size):
                            buffer[_U(target + e)] = 0
                        continue
                    first = max(0, -((pw - left) // stride_w))  # the columns inside x: first <= j < end
                    end = max(first, min(plane_width, (width - 1 - pw + left) // stride_w + 1))
                    for e in range(first * step):
                        buffer[_U(target + e)] = 0
                    for e in range(end * step, row_size):
                        buffer[_U(target + e)] = 0
                    if kc < step:
                        for j in range(first, end):
                            for c in range(kc, step):
                                buffer[_U(target + j * step + c)] = 0
                    if not channels_first:  # each pixel's channels: a contiguous run
                        src = source + (first * stride_w + pw - left) * s_column
                        dst = target + first * step
                        if kc == step and s_column == step and stride_w == 1:  # the block is whole pixels: one run
                            for e in range((end - first) * step):
                                buffer[_U(dst + e)] = x[_U(src + e)]
                        else:
                            for j in range(end - first):
                                for c in range(kc):
                                    buffer[_U(dst + j * step + c)] = x[_U(src + j * stride_w * s_column + c)]
                    elif stride_w == 1:
                        for j in range(first, end, lanes):
                            for c in range(0, kc, lanes):
                                transpose_block(x, source + c * s_channel + j - left, s_channel, min(lanes, kc - c),
                                                min(lanes, end - j), buffer, target + j * step + c, step,
                                                min(lanes, kc - c))
                    else:
                        for j in range(first, end):
                            src = temp + (j * stride_w + pw - left) * step
                            for c in range(kc):
                                buffer[_U(target + j * step + c)] = buffer[_U(src + c)]


def _conv(x, sn, s_row, s_column, s_channel, buffers, taps, packed, bias, out, batch, supers, in_per_super,
          out_channels, out_per_super, step, channel_blocks, height, width, stride_h, stride_w, top, left, valid_rows,
          plane_width, out_height, out_width, band, local_rows, slack, column_parts, act, narrow):
    """out (flat N, H_out, W_out, C_out) = activate(conv + bias), super group by super group (module doc).
    A task: one band of output rows of one image's super group (and a share of its column blocks): it
    prepares the band's input in its thread's part of ``buffers`` (`_band_input`), then for each channel block
    and column block runs the register tiles over the band, the weight panel staying in L2 across them, the
    partial sums of the channel blocks added into out.  taps: where each tap reads in a channel block."""
    rows = NARROW_ROWS if narrow else WIDE_ROWS
    width_columns = (1 if narrow else 2) * VECTOR_BYTES // out.itemsize
    blocks = (out_per_super + width_columns - 1) // width_columns
    task_blocks = (blocks + column_parts - 1) // column_parts
    depth = taps.size * step
    band_count = (out_height + band - 1) // band
    block_size = stride_h * stride_w * local_rows * plane_width * step
    for task in prange(batch * supers * band_count * column_parts):
        column_part = task % column_parts  # then super groups, then bands: consecutive tasks read the same
        rest = task // column_parts         # input rows (one pixel's channels are contiguous), from cache
        s = rest % supers
        b = (rest // supers) % band_count
        n = rest // (supers * band_count)
        oh0 = b * band
        virtual = (min(band, out_height - oh0) - 1) * plane_width + out_width  # the band's virtual pixels
        base = get_thread_id() * (channel_blocks * block_size + width * step)
        _band_input(x, sn, s_row, s_column, s_channel, buffers, base, base + channel_blocks * block_size, n,
                    s * in_per_super, in_per_super, step, channel_blocks, oh0, local_rows, local_rows - slack,
                    valid_rows, height, width, stride_h, stride_w, top, left, plane_width)
        for cb in range(channel_blocks):
            last = cb == channel_blocks - 1
            for block in range(column_part * task_blocks, min(blocks, (column_part + 1) * task_blocks)):
                columns = min(width_columns, out_per_super - block * width_columns)
                b_offset = ((s * blocks + block) * channel_blocks + cb) * depth * width_columns
                column = s * out_per_super + block * width_columns
                for q0 in range(0, virtual, rows):
                    oh = q0 // plane_width
                    c_offset = ((n * out_height + oh0 + oh) * out_width) * out_channels + column
                    a_offset = base + cb * block_size + q0 * step
                    if narrow:
                        conv_tile(buffers, a_offset, step, taps, packed, b_offset, width_columns, out, c_offset,
                                  out_channels, step, min(rows, virtual - q0), columns, q0 - oh * plane_width,
                                  plane_width, out_width, cb > 0, last, bias, column, act, NARROW_ROWS, 1)
                    else:
                        conv_tile(buffers, a_offset, step, taps, packed, b_offset, width_columns, out, c_offset,
                                  out_channels, step, min(rows, virtual - q0), columns, q0 - oh * plane_width,
                                  plane_width, out_width, cb > 0, last, bias, column, act, WIDE_ROWS, 2)


conv_kernel = Twins(_conv, fastmath=FASTMATH)


def _thin_conv(x, sn, s_row, s_column, s_channel, buffers, run_offsets, run_lengths, packed, bias, out, batch, supers,
               out_channels, height, width, stride_h, stride_w, top, left, valid_rows, plane_width, out_height,
               out_width, band, local_rows, slack, act, group):
    """`_conv` for thin groups (`thin`): each super group one vector of whole groups, `simd.thin_tile`."""
    lanes = VECTOR_BYTES // out.itemsize
    rows = THIN_ROWS_8 if group == 8 else THIN_ROWS
    taps = packed.size // (supers * group * lanes)
    band_count = (out_height + band - 1) // band
    block_size = stride_h * stride_w * local_rows * plane_width * lanes
    for task in prange(batch * supers * band_count):
        s = task % supers  # super groups fastest: consecutive tasks read the same input rows
        b = (task // supers) % band_count
        n = task // (supers * band_count)
        oh0 = b * band
        virtual = (min(band, out_height - oh0) - 1) * plane_width + out_width
        base = get_thread_id() * (block_size + width * lanes)
        _band_input(x, sn, s_row, s_column, s_channel, buffers, base, base + block_size, n, s * lanes, lanes, lanes, 1,
                    oh0, local_rows, local_rows - slack, valid_rows, height, width, stride_h, stride_w, top, left,
                    plane_width)
        w_offset = s * taps * group * lanes
        for q0 in range(0, virtual, rows):
            oh = q0 // plane_width
            c_offset = ((n * out_height + oh0 + oh) * out_width) * out_channels + s * lanes
            if group == 2:
                thin_tile(buffers, base + q0 * lanes, lanes, run_offsets, run_lengths, packed, w_offset, out, c_offset,
                          out_channels, min(rows, virtual - q0), q0 - oh * plane_width, plane_width, out_width, bias,
                          s * lanes, act, THIN_ROWS, 2)
            elif group == 4:
                thin_tile(buffers, base + q0 * lanes, lanes, run_offsets, run_lengths, packed, w_offset, out, c_offset,
                          out_channels, min(rows, virtual - q0), q0 - oh * plane_width, plane_width, out_width, bias,
                          s * lanes, act, THIN_ROWS, 4)
            else:
                thin_tile(buffers, base + q0 * lanes, lanes, run_offsets, run_lengths, packed, w_offset, out, c_offset,
                          out_channels, min(rows, virtual - q0), q0 - oh * plane_width, plane_width, out_width, bias,
                          s * lanes, act, THIN_ROWS_8, 8)


thin_kernel = Twins(_thin_conv, fastmath=FASTMATH)


def _channels_first(source, target, batch, pixels, channels):
    """target (N, C, P) = source (N, P, C) transposed, 16x16 squares at a time in registers (both flat)."""
    lanes = VECTOR_BYTES // target.itemsize
    channel_blocks = (channels + lanes - 1) // lanes
    for task in prange(batch * channel_blocks):
        n = task // channel_blocks
        c0 = (task % channel_blocks) * lanes
        for p in range(0, pixels, lanes):
            transpose_block(source, (n * pixels + p) * channels + c0, channels, min(lanes, pixels - p),
                            min(lanes, channels - c0), target, (n * channels + c0) * pixels + p, pixels,
                            min(lanes, pixels - p))


channels_first = Twins(_channels_first)


def tap_runs(spec, plane_rows: int, plane_width: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The taps in runs for `simd.thin_tile`: ``(offsets, lengths, order)`` -- per run the first tap's place in
    the prepared input (as `tap_offsets`) and its length (1-3 taps of one row and phase plane reading
    consecutive pixels), and the taps (kh*kW + kw) in run order (the order of the packed weights)."""
    offsets = tap_offsets(spec, plane_rows, plane_width)
    sw, dw = spec.stride[1], spec.dilation[1]
    starts, lengths, order = [], [], []
    for kh in range(spec.kernel_height):
        for phase in range(sw):
            run, previous = [], None
            for kw in range(spec.kernel_width):
                if (kw * dw) % sw != phase:
                    continue
                column = (kw * dw) // sw
                if run and (column != previous + 1 or len(run) == 3):
                    starts.append(offsets[kh * spec.kernel_width + run[0]])
                    lengths.append(len(run))
                    order += [kh * spec.kernel_width + k for k in run]
                    run = []
                run.append(kw)
                previous = column
            if run:
                starts.append(offsets[kh * spec.kernel_width + run[0]])
                lengths.append(len(run))
                order += [kh * spec.kernel_width + k for k in run]
    return np.array(starts, np.int64), np.array(lengths, np.int64), order


def pack_thin(weight: np.ndarray, spec, order: list[int]) -> np.ndarray:
    """(C_out, w, kH, kW) -> flat (S, taps in ``order``, w, L): super group s's weights for `simd.thin_tile`,
    rotation i of output lane l holding the weight of its group's input (l % w + i) % w."""
    width = lanes(spec.dtype)
    per_group = spec.in_channels_per_group
    source = weight.reshape(spec.out_channels // width, width, per_group, -1)[:, :, :, order]  # [s, l, ci, t]
    lane = np.arange(width)
    inputs = (lane[:, None] % per_group + np.arange(per_group)[None, :]) % per_group  # [l, rotation]
    rotated = source[:, lane[:, None], inputs, :]  # [s, l, rotation, t]
    return np.ascontiguousarray(rotated.transpose(0, 3, 2, 1)).reshape(-1)


def tap_offsets(spec, plane_rows: int, plane_width: int) -> np.ndarray:
    """Where each tap (kh, kw) reads in a channel block of the prepared input, relative to the output
    pixel's virtual pixel."""
    sh, sw = spec.stride
    dh, dw = spec.dilation
    step = channel_block(spec)
    offsets = np.empty(spec.kernel_height * spec.kernel_width, np.int64)
    for kh in range(spec.kernel_height):
        for kw in range(spec.kernel_width):
            plane = ((kh * dh) % sh) * sw + (kw * dw) % sw
            offsets[kh * spec.kernel_width + kw] = ((plane * plane_rows + (kh * dh) // sh) * plane_width
                                                    + (kw * dw) // sw) * step
    return offsets


def _source(spec, x, layout):
    """x ready for `_band_input`: padded already where the padding mode is not zeros; flat, with its element
    strides (image, row, column, channel) and the zero padding still to apply (top, left)."""
    top, left = spec.padding[0], spec.padding[2]
    if spec.has_padding and spec.padding_mode != "zeros":
        x = pad_input_nhwc(x, spec) if layout == "NHWC" else pad_input(x, spec)
        top = left = 0
    if not x.flags.c_contiguous:
        x = np.ascontiguousarray(x)
    if layout == "NHWC":
        n, h, w, c = x.shape
        strides = (h * w * c, w * c, c, 1)
    else:
        n, c, h, w = x.shape
        strides = (c * h * w, w, 1, h * w)
    return x.reshape(-1), strides, h, w, top, left


def run_nhwc(spec, x, weight, bias, out):
    _run(spec, x, weight, bias, out, "NHWC")


def run(spec, x, weight, bias, out):
    """NCHW: the input transposed into the prepared layout by the same copy; the result computed channels
    last, then transposed into out."""
    result = scratch("channels_last_result", (spec.batch, spec.out_height, spec.out_width, spec.out_channels),
                     spec.dtype)
    _run(spec, x, weight, bias, result, "NCHW")
    if out.flags.c_contiguous:
        channels_first(result.size, result.reshape(-1), out.reshape(-1), spec.batch,
                       spec.out_height * spec.out_width, spec.out_channels)
    else:
        out[...] = result.transpose(0, 3, 1, 2)


class _Plan:
    """Everything the kernels' calls derive from the spec alone (`_plan`: computed once per spec, since a
    validated spec is reused across calls with the same arguments, and these few microseconds of Python matter
    on small layers): the super groups, channel and column blocks, bands, buffer and packed sizes."""

    def __init__(self, spec):
        self.thin = thin(spec)
        _, self.vectors = tile_shape(spec)
        self.width = self.vectors * lanes(spec.dtype)  # columns of a register tile
        m = super_group(spec)
        self.supers = spec.groups // m
        self.in_per_super = m * spec.in_channels_per_group
        self.out_per_super = m * spec.out_channels_per_group
        self.step = channel_block(spec)
        self.channel_blocks = -(-self.in_per_super // self.step)
        self.blocks = 1 if self.thin else -(-self.out_per_super // self.width)
        taps = spec.kernel_height * spec.kernel_width
        self.packed_size = (spec.out_channels * spec.in_channels_per_group * taps if self.thin else
                            self.supers * self.blocks * self.width * taps * self.channel_blocks * self.step)
        self.band, self.local_rows, self.column_parts = bands(spec, spec.batch * self.supers, self.blocks,
                                                              self.channel_blocks * self.step)
        self.valid_rows, self.plane_width, _, self.slack = geometry(spec)
        self.buffer_size = numba.config.NUMBA_NUM_THREADS * self.step * (
            self.channel_blocks * spec.stride[0] * spec.stride[1] * self.local_rows * self.plane_width
            + spec.in_width + spec.padding[2] + spec.padding[3])  # a band's planes, and a row for the phases
        self.tables = None  # the tap tables, made on the first run (`workspace` needs only the sizes)
        self.work = spec.batch * spec.out_channels * spec.out_height * spec.out_width * spec.reduction_length


def _plan(spec) -> _Plan:
    plan = spec.__dict__.get("_implicit_plan")
    if plan is None:
        plan = spec.__dict__["_implicit_plan"] = _Plan(spec)
    return plan


def _kept_or_packed(weight, packing, pack):
    """``pack()``, kept by `packcache` under ``packing`` for a frozen weight, else computed for this call."""
    packed = packcache.packed(weight, packing, pack)
    return pack() if packed is None else packed


def _run(spec, x, weight, bias, out, layout):
    if spec.in_channels_per_group == 0 or spec.kernel_height * spec.kernel_width == 0:  # an empty reduction
        out[...] = 0
        bias_activation_last_inplace(out.reshape(-1, spec.out_channels), bias, spec.activation_code)
        return
    plan = _plan(spec)
    if plan.tables is None:  # thin: (run starts, run lengths, tap order); else the tap offsets
        plan.tables = (tap_runs(spec, plan.local_rows, plan.plane_width) if plan.thin
                       else tap_offsets(spec, plan.local_rows, plan.plane_width))
    flat, strides, height, width, top, left = _source(spec, x, layout)
    buffers = scratch("band_inputs", plan.buffer_size, spec.dtype)
    geometry_arguments = (height, width, *spec.stride, top, left, plan.valid_rows, plan.plane_width, spec.out_height,
                          spec.out_width, plan.band, plan.local_rows, plan.slack)
    if plan.thin:
        starts, lengths, order = plan.tables
        packed = _kept_or_packed(weight, ("thin", tuple(order)), lambda: pack_thin(weight, spec, order))
        thin_kernel(plan.work, flat, *strides, buffers, starts, lengths, packed, bias, out.reshape(-1),
                    spec.batch, plan.supers, spec.out_channels, *geometry_arguments, spec.activation_code,
                    spec.out_channels_per_group)
        return
    packed = _kept_or_packed(weight, ("block_diagonal", spec.groups, plan.step, plan.vectors),
                             lambda: pack_weights(weight, spec))
    conv_kernel(plan.work, flat, *strides, buffers, plan.tables, packed, bias, out.reshape(-1), spec.batch, plan.supers,
                plan.in_per_super, spec.out_channels, plan.out_per_super, plan.step, plan.channel_blocks,
                *geometry_arguments, plan.column_parts, spec.activation_code, plan.vectors == 1)


def workspace(spec) -> int:
    """Bytes of temporaries: every thread's band of prepared input (and row for the phases), the packed
    weights, for NCHW data the channels-last result, and for a padding mode other than zeros the padded
    input or its border rectangles' (`arrays.padding_copy_elements`)."""
    plan = _plan(spec)
    result = spec.batch * spec.out_channels * spec.out_height * spec.out_width
    return (plan.buffer_size + plan.packed_size + result + padding_copy_elements(spec)) * spec.dtype.itemsize
