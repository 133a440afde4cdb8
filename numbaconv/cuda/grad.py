"""Backward kernels on CUDA arrays: the device path of ``conv2d_grad_input`` / ``_weight`` / ``_bias``.

The algebra is the CPU's (see `numbaconv.grad`):

* **grad input** is one forward convolution, run by the CUDA forward kernels: ``grad_output``
  (zero-upsampled by the stride: ``upsample``) correlated with the flipped, channel-transposed
  weight (``flip_transpose``) over a "full" padding, giving the gradient w.r.t. the padded input;
  ``fold`` then carries it back to the input: every input pixel gathers the padded positions
  that are copies of it (the interior one, plus border copies for reflect/replicate/circular),
  from an index table built on the host.  A gather, not atomics: deterministic.
* **grad weight**, dense and grouped: ``weight_gemm`` is a tiled GEMM,
  ``grad_output[g] (C_out/G x N*P) @ im2col(x)[g]^T (N*P x K)``, the im2col gathered on the fly
  into shared memory.  Depthwise: ``depthwise_weight``, one block per (piece, channel, tap), its
  threads striding over the (image, pixel) pairs, then a shared-memory tree.  **bias**:
  ``channel_sums``, the same reduction over grad_output alone.
* **Precision and determinism.**  A long reduction is cut into pieces (``launch.reduction_pieces``)
  so that the grid fills the GPU; each piece writes its partial sum to a float64 buffer and
  ``add_pieces`` adds them in a fixed order and rounds once.  The depthwise and bias reductions
  accumulate in float64 throughout (they are memory-bound: float64 adds cost nothing).  The GEMM
  sums GRAD_PIXELS products in the input precision (float32 FMAs at full rate) and adds each such
  short run into a float64 accumulator: the float32 rounding error is that of a GRAD_PIXELS-term
  sum, not of an N*H*W-term one.  No atomics: a result is the same on every run.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, float32, float64, int64

from .. import arrays
from ..spec import ConvSpec, check_dtypes
from . import fastlaunch, launch, launches, run
from .epilogue import advance, digits, unravel
from .launch import (GRAD_BLOCK, GRAD_CHANNELS, GRAD_DEPTH, GRAD_PIXELS, GRAD_THREAD_CHANNELS, GRAD_THREAD_DEPTH,
                     REDUCE_THREADS)

GRAD_THREADS_X, GRAD_THREADS_Y = GRAD_BLOCK
GRADIENT_LOADS = GRAD_PIXELS * GRAD_CHANNELS // (GRAD_THREADS_X * GRAD_THREADS_Y)  # staged per thread and step
COLUMN_LOADS = GRAD_PIXELS * GRAD_DEPTH // (GRAD_THREADS_X * GRAD_THREADS_Y)
assert (GRAD_THREADS_X * GRAD_THREADS_Y) % GRAD_PIXELS == 0
assert GRADIENT_LOADS * GRAD_THREADS_X * GRAD_THREADS_Y == GRAD_PIXELS * GRAD_CHANNELS
assert COLUMN_LOADS * GRAD_THREADS_X * GRAD_THREADS_Y == GRAD_PIXELS * GRAD_DEPTH


# ---- element-wise kernels ------------------------------------------------------------------------
@cuda.jit(cache=True)
def flip_transpose(weight, out, groups):
    """out[g*Cig + ci, co, r, s] = weight[g*Cog + co, ci, kH-1-r, kW-1-s]: the weight of the
    convolution whose forward is the input gradient."""
    index = cuda.grid(1)
    if index >= out.size:
        return
    row, co, r, s = unravel(index, out.shape)
    channels_per_group = weight.shape[1]
    out_per_group = out.shape[1]
    group = row // channels_per_group
    out[row, co, r, s] = weight[group * out_per_group + co, row - group * channels_per_group,
                                weight.shape[2] - 1 - r, weight.shape[3] - 1 - s]


@cuda.jit(cache=True)
def upsample(grad_output, out, stride_h, stride_w):
    """out[n, c, i, j] = grad_output[n, c, i/sh, j/sw] where sh | i and sw | j, else 0."""
    index = cuda.grid(1)
    if index >= out.size:
        return
    n, c, i, j = unravel(index, out.shape)
    value = 0.0
    if i % stride_h == 0 and j % stride_w == 0:
        value = grad_output[n, c, i // stride_h, j // stride_w]
    out[n, c, i, j] = value


@cuda.jit(cache=True)
def fold(full, out, row_starts, row_sources, column_starts, column_sources):
    """out[n, c, i, j] = sum of full[n, c, p, q] over the padded rows p that are copies of input row i
    and the padded columns q that are copies of column j (index tables in CSR form); positions
    past full's extent (no output read them) contribute nothing."""
    index = cuda.grid(1)
    if index >= out.size:
        return
    n, c, i, j = unravel(index, out.shape)
    total = 0.0  # float64: a corner pixel adds several border copies
    for a in range(row_starts[i], row_starts[i + 1]):
        p = row_sources[a]
        if p < full.shape[2]:
            for b in range(column_starts[j], column_starts[j + 1]):
                q = column_sources[b]
                if q < full.shape[3]:
                    total += full[n, c, p, q]
    out[n, c, i, j] = total


@cuda.jit(cache=True)
def add_pieces(pieces, out):
    """out[e] = the float64 sum of pieces[0..S-1, e], rounded once to out's dtype (out is flat)."""
    index = cuda.grid(1)
    if index >= out.size:
        return
    total = float64(0)
    for piece in range(pieces.shape[0]):
        total += pieces[piece, index]
    out[index] = total


# ---- reductions ----------------------------------------------------------------------------------
@cuda.jit(device=True, inline=True, cache=True)
def block_sum(value, shared, thread):
    """The sum of ``value`` over the block's REDUCE_THREADS threads (a shared-memory tree), in thread 0."""
    shared[thread] = value
    cuda.syncthreads()
    width = REDUCE_THREADS // 2
    while width > 0:
        if thread < width:
            shared[thread] += shared[thread + width]
        cuda.syncthreads()
        width //= 2
    return shared[0]


@cuda.jit(cache=True)
def depthwise_weight(x, grad_output, pieces, multiplier, stride_h, stride_w, pad_top, pad_left, dilation_h,
                     dilation_w, kernel_w, piece_length):
    """pieces[piece, co * taps + tap] = sum over the piece's (image, pixel) pairs of
    grad_output[n, co, oh, ow] * x[n, co // m, oh*sh - pad_top + r*dh, ow*sw - pad_left + s*dw], float64.
    blockIdx.x = (piece, co), blockIdx.y = tap; consecutive threads read consecutive pixels."""
    n_images, out_channels, out_height, out_width = grad_output.shape
    in_height, in_width = x.shape[2], x.shape[3]
    pixels = out_height * out_width
    piece = cuda.blockIdx.x // out_channels
    co = cuda.blockIdx.x - piece * out_channels
    tap = cuda.blockIdx.y
    r = tap // kernel_w
    s = tap - r * kernel_w
    ci = co // multiplier
    thread = cuda.threadIdx.x
    start = piece * piece_length
    stop = min(start + piece_length, n_images * pixels)
    total = float64(0)
    n, oh, ow = digits(start + thread, pixels, out_width)
    step_n, step_h, step_w = digits(REDUCE_THREADS, pixels, out_width)
    for _ in range(start + thread, stop, REDUCE_THREADS):
        ih = oh * stride_h - pad_top + r * dilation_h
        iw = ow * stride_w - pad_left + s * dilation_w
        if 0 <= ih < in_height and 0 <= iw < in_width:
            total += float64(grad_output[n, co, oh, ow]) * float64(x[n, ci, ih, iw])
        n, oh, ow = advance(n, oh, ow, step_n, step_h, step_w, out_height, out_width)
    shared = cuda.shared.array(REDUCE_THREADS, float64)
    total = block_sum(total, shared, thread)
    if thread == 0:
        pieces[piece, co * cuda.gridDim.y + tap] = total


@cuda.jit(cache=True)
def channel_sums(grad_output, pieces, piece_length):
    """pieces[piece, c] = sum of grad_output[n, c, :, :] over the piece's (image, pixel) pairs, float64."""
    n_images, channels, out_height, out_width = grad_output.shape
    pixels = out_height * out_width
    piece = cuda.blockIdx.x // channels
    c = cuda.blockIdx.x - piece * channels
    thread = cuda.threadIdx.x
    start = piece * piece_length
    stop = min(start + piece_length, n_images * pixels)
    total = float64(0)
    n, oh, ow = digits(start + thread, pixels, out_width)
    step_n, step_h, step_w = digits(REDUCE_THREADS, pixels, out_width)
    for _ in range(start + thread, stop, REDUCE_THREADS):
        total += float64(grad_output[n, c, oh, ow])
        n, oh, ow = advance(n, oh, ow, step_n, step_h, step_w, out_height, out_width)
    shared = cuda.shared.array(REDUCE_THREADS, float64)
    total = block_sum(total, shared, thread)
    if thread == 0:
        pieces[piece, c] = total


def _build_weight_gemm(scalar, min_blocks):
    @cuda.jit(cache=True, **launch.bounds(GRAD_THREADS_X * GRAD_THREADS_Y, min_blocks))
    def weight_gemm(x, grad_output, pieces, groups, stride_h, stride_w, pad_top, pad_left, dilation_h, dilation_w,
                    kernel_h, kernel_w, piece_length):
        """pieces[piece, co, k] for the (image, pixel) pairs of one piece: a GRAD_CHANNELS x GRAD_DEPTH
        tile of grad_output[g] @ im2col(x)[g]^T per block.  blockIdx.x = (piece, group, depth
        tile), blockIdx.y = channel tile.  Each step stages GRAD_PIXELS pairs of grad_output rows and
        of im2col rows (gathered, padding as zeros; consecutive threads read consecutive pixels)."""
        n_images, out_channels, out_height, out_width = grad_output.shape
        in_height, in_width = x.shape[2], x.shape[3]
        out_per_group = out_channels // groups
        channels_per_group = x.shape[1] // groups
        taps = kernel_h * kernel_w
        depth = channels_per_group * taps
        pixels = out_height * out_width
        depth_tiles = (depth + GRAD_DEPTH - 1) // GRAD_DEPTH
        block = cuda.blockIdx.x
        k0 = (block % depth_tiles) * GRAD_DEPTH
        rest = block // depth_tiles
        group = rest % groups
        piece = rest // groups
        channel0 = cuda.blockIdx.y * GRAD_CHANNELS
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        thread = ty * GRAD_THREADS_X + tx
        threads = GRAD_THREADS_X * GRAD_THREADS_Y
        start = piece * piece_length
        stop = min(start + piece_length, n_images * pixels)

        gradient_tile = cuda.shared.array((GRAD_PIXELS, GRAD_CHANNELS), scalar)
        columns_tile = cuda.shared.array((GRAD_PIXELS, GRAD_DEPTH), scalar)
        acc = cuda.local.array((GRAD_THREAD_CHANNELS, GRAD_THREAD_DEPTH), float64)
        run = cuda.local.array((GRAD_THREAD_CHANNELS, GRAD_THREAD_DEPTH), scalar)
        a = cuda.local.array(GRAD_THREAD_CHANNELS, scalar)
        b = cuda.local.array(GRAD_THREAD_DEPTH, scalar)
        for i in range(GRAD_THREAD_CHANNELS):
            for j in range(GRAD_THREAD_DEPTH):
                acc[i, j] = 0

        # every step, this thread stages pair `pair` (of GRAD_PIXELS) of grad_output's rows and of im2col's rows:
        # the pair's (image, row, column) advance by GRAD_PIXELS as a mixed-radix counter; its reduction
        # indices (k0 + kk: input channel, kernel row, kernel column) are the same at every step
        pair = thread % GRAD_PIXELS
        first = thread // GRAD_PIXELS
        n, oh, ow = digits(start + pair, pixels, out_width)
        step_n, step_h, step_w = digits(GRAD_PIXELS, pixels, out_width)
        slot_channel = cuda.local.array(COLUMN_LOADS, int64)
        slot_row = cuda.local.array(COLUMN_LOADS, int64)
        slot_column = cuda.local.array(COLUMN_LOADS, int64)
        for t in range(COLUMN_LOADS):
            ci, r, s = digits(k0 + first + t * (threads // GRAD_PIXELS), taps, kernel_w)
            slot_channel[t] = group * channels_per_group + ci
            slot_row[t] = r * dilation_h - pad_top
            slot_column[t] = s * dilation_w - pad_left
        for index0 in range(start, stop, GRAD_PIXELS):
            inside = index0 + pair < stop
            for t in range(GRADIENT_LOADS):
                c = first + t * (threads // GRAD_PIXELS)
                channel = channel0 + c
                value = scalar(0)
                if inside and channel < out_per_group:
                    value = grad_output[n, group * out_per_group + channel, oh, ow]
                gradient_tile[pair, c] = value
            for t in range(COLUMN_LOADS):
                kk = first + t * (threads // GRAD_PIXELS)
                value = scalar(0)
                if inside and k0 + kk < depth:
                    ih = oh * stride_h + slot_row[t]
                    iw = ow * stride_w + slot_column[t]
                    if 0 <= ih < in_height and 0 <= iw < in_width:
                        value = x[n, slot_channel[t], ih, iw]
                columns_tile[pair, kk] = value
            n, oh, ow = advance(n, oh, ow, step_n, step_h, step_w, out_height, out_width)
            cuda.syncthreads()
            for i in range(GRAD_THREAD_CHANNELS):
                for j in range(GRAD_THREAD_DEPTH):
                    run[i, j] = 0
            for q in range(GRAD_PIXELS):
                for i in range(GRAD_THREAD_CHANNELS):
                    a[i] = gradient_tile[q, ty + i * GRAD_THREADS_Y]
                for j in range(GRAD_THREAD_DEPTH):
                    b[j] = columns_tile[q, tx + j * GRAD_THREADS_X]
                for i in range(GRAD_THREAD_CHANNELS):
                    for j in range(GRAD_THREAD_DEPTH):
                        run[i, j] += a[i] * b[j]
            for i in range(GRAD_THREAD_CHANNELS):
                for j in range(GRAD_THREAD_DEPTH):
                    acc[i, j] += float64(run[i, j])
            cuda.syncthreads()

        for i in range(GRAD_THREAD_CHANNELS):
            channel = channel0 + ty + i * GRAD_THREADS_Y
            if channel < out_per_group:
                for j in range(GRAD_THREAD_DEPTH):
                    k = k0 + tx + j * GRAD_THREADS_X
                    if k < depth:
                        pieces[piece, group * out_per_group + channel, k] = acc[i, j]

    return weight_gemm


WEIGHT_GEMM = {name: _build_weight_gemm(scalar, launch.GRAD_MIN_BLOCKS[name])
               for name, scalar in (("float32", float32), ("float64", float64))}


# ---- host side -----------------------------------------------------------------------------------
def _arrays(named):
    """Numba views of the arguments; TypeError when host and device arrays are mixed."""
    host = [name for name, value in named.items() if not arrays.is_cuda_array(value)]
    if host:
        device = [name for name in named if name not in host]
        raise TypeError(f"arrays must all be on the host or all on the GPU: {', '.join(device)} "
                        f"{'is a CUDA array' if len(device) == 1 else 'are CUDA arrays'} but {', '.join(host)} "
                        f"{'is' if len(host) == 1 else 'are'} not")
    run.available_or_raise()
    return [run.as_numba(value) for value in named.values()]


def _check_grad_output(grad_output, spec: ConvSpec):
    if np.dtype(grad_output.dtype) != spec.dtype:
        raise TypeError(f"grad_output must have the dtype of the convolution ({spec.dtype}), got "
                        f"{np.dtype(grad_output.dtype)}")
    if tuple(grad_output.shape) != spec.out_shape:
        raise ValueError(f"grad_output must have the convolution's output shape {spec.out_shape}, "
                         f"got {tuple(grad_output.shape)}")


def _zeros(shape, dtype, stream):
    return cuda.to_device(np.zeros(shape, dtype), stream=stream)


def _sources(reads: np.ndarray, size: int):
    """CSR table (starts, positions) of the positions of a padded axis that hold each of ``size`` input
    positions, from ``reads`` (the input position each padded position holds, -1 for a zero)."""
    positions = np.argsort(reads, kind="stable")
    positions = positions[reads[positions] >= 0]
    starts = np.searchsorted(reads[positions], np.arange(size + 1))
    return starts.astype(np.int64), positions.astype(np.int64)


def grad_input(input_shape, weight, grad_output, stride, padding, dilation, groups, *, padding_mode, layout,
               stream=None):
    """The device path of `numbaconv.conv2d_grad_input`: a device array shaped ``input_shape``."""
    dw, dgy = _arrays({"weight": weight, "grad_output": grad_output})
    dtype = check_dtypes(np.dtype(dgy.dtype), np.dtype(dw.dtype), names=("grad_output", "weight"))
    spec = ConvSpec.from_shapes(tuple(input_shape), dw.shape, None, stride, padding, dilation, groups, dtype=dtype,
                                padding_mode=padding_mode, layout=layout)
    _check_grad_output(dgy, spec)
    launch_stream = run._stream_of(grad_output, stream)
    result = cuda.device_array(tuple(input_shape), dtype, stream=launch_stream)
    out = run.nchw_view(result, spec)
    if 0 in (spec.batch, spec.in_channels, spec.in_height, spec.in_width):
        return run._wrap_like(result, grad_output)
    if 0 in (spec.out_channels, spec.out_height, spec.out_width):
        return run._wrap_like(_zeros(tuple(input_shape), dtype, launch_stream), grad_output)
    gy = run.nchw_view(dgy, spec)
    caller_spec, spec = spec, spec.kernel_view[0]  # degenerate geometry: the gathered view, folded back below
    sh, sw = spec.stride
    if (sh, sw) != (1, 1):
        upsampled = cuda.device_array((spec.batch, spec.out_channels, (spec.out_height - 1) * sh + 1,
                                       (spec.out_width - 1) * sw + 1), dtype, stream=launch_stream)
        grid, block = launch.elements(upsampled.size)
        fastlaunch.launch(upsample, grid, block, launch_stream, gy, upsampled, sh, sw)
        gy = upsampled
    cog = spec.out_channels_per_group
    transposed = cuda.device_array((spec.in_channels, cog, spec.kernel_height, spec.kernel_width), dtype,
                                   stream=launch_stream)
    grid, block = launch.elements(transposed.size)
    fastlaunch.launch(flip_transpose, grid, block, launch_stream, dw, transposed, spec.groups)
    extent_h = (spec.kernel_height - 1) * spec.dilation[0] + 1
    extent_w = (spec.kernel_width - 1) * spec.dilation[1] + 1
    full = run.conv2d(gy, transposed, None, 1, (extent_h - 1, extent_w - 1), spec.dilation, spec.groups,
                      padding_mode="zeros", activation=None, layout="NCHW", out=None, algorithm="auto", device=None,
                      stream=launch_stream)
    tables = [cuda.to_device(t, stream=launch_stream)
              for t in (*_sources(arrays.kernel_reads(caller_spec, 0), caller_spec.in_height),
                        *_sources(arrays.kernel_reads(caller_spec, 1), caller_spec.in_width))]
    grid, block = launch.elements(out.size)
    fastlaunch.launch(fold, grid, block, launch_stream, full, out, *tables)
    return run._wrap_like(result, grad_output)


def grad_weight(x, weight_shape, grad_output, stride, padding, dilation, groups, *, padding_mode, layout,
                stream=None):
    """The device path of `numbaconv.conv2d_grad_weight`: a device array shaped ``weight_shape``."""
    dx, dgy = _arrays({"x": x, "grad_output": grad_output})
    dtype = check_dtypes(np.dtype(dx.dtype), np.dtype(dx.dtype))
    spec = ConvSpec.from_shapes(tuple(dx.shape), tuple(weight_shape), None, stride, padding, dilation, groups,
                                dtype=dtype, padding_mode=padding_mode, layout=layout)
    _check_grad_output(dgy, spec)
    launch_stream = run._stream_of(x, stream)
    shape = spec.weight_shape
    if 0 in (spec.batch, spec.out_height, spec.out_width) or 0 in shape:
        return run._wrap_like(_zeros(shape, dtype, launch_stream), x)
    xv = run.kernel_input(run.nchw_view(dx, spec), spec, launch_stream)
    spec = spec.kernel_view[0]  # degenerate geometry: the gathered view
    xv, pad_top, pad_left = launches.padded(spec, xv, launch_stream)
    gy = run.nchw_view(dgy, spec)
    length = spec.batch * spec.out_height * spec.out_width
    taps = spec.kernel_height * spec.kernel_width
    depth = spec.in_channels_per_group * taps
    if spec.is_depthwise:
        count, piece = launch.reduction_pieces(length, spec.out_channels * taps)
        pieces = cuda.device_array((count, spec.out_channels * taps), np.float64, stream=launch_stream)
        fastlaunch.launch(depthwise_weight, (count * spec.out_channels, taps), REDUCE_THREADS, launch_stream,
                          xv, gy, pieces, spec.channel_multiplier, *spec.stride, pad_top, pad_left, *spec.dilation,
                          spec.kernel_width, piece)
    else:
        tiles = (spec.groups * math.ceil(depth / GRAD_DEPTH), math.ceil(spec.out_channels_per_group / GRAD_CHANNELS))
        count, piece = launch.reduction_pieces(length, tiles[0] * tiles[1])
        pieces = cuda.device_array((count, spec.out_channels, depth), np.float64, stream=launch_stream)
        fastlaunch.launch(WEIGHT_GEMM[dtype.name], (count * tiles[0], tiles[1]), GRAD_BLOCK, launch_stream,
                          xv, gy, pieces, spec.groups, *spec.stride, pad_top, pad_left, *spec.dilation,
                          spec.kernel_height, spec.kernel_width, piece)
    result = cuda.device_array(shape, dtype, stream=launch_stream)
    _add_pieces(pieces.reshape(count, spec.out_channels * depth), result.reshape(result.size), launch_stream)
    return run._wrap_like(result, x)


def grad_bias(grad_output, layout, stream=None):
    """The device path of `numbaconv.conv2d_grad_bias`: a device array of shape (C_out,)."""
    (dgy,) = _arrays({"grad_output": grad_output})
    if layout not in ("NCHW", "NHWC"):
        raise ValueError(f"layout must be one of ('NCHW', 'NHWC'), got {layout!r}")
    dtype = np.dtype(dgy.dtype)
    if len(dgy.shape) not in (3, 4) or dtype not in (np.float32, np.float64):
        raise ValueError(f"grad_output must be a 3-D or 4-D float32/float64 array, got {len(dgy.shape)}-D {dtype}")
    launch_stream = run._stream_of(grad_output, stream)
    shape, strides = list(dgy.shape), list(dgy.strides)
    if len(shape) == 3:
        shape, strides = [1] + shape, [0] + strides
    if layout == "NHWC":
        shape, strides = [shape[i] for i in (0, 3, 1, 2)], [strides[i] for i in (0, 3, 1, 2)]
    gy = run.strided_view(dgy, tuple(shape), tuple(strides)) if tuple(shape) != tuple(dgy.shape) else dgy
    channels = shape[1]
    length = shape[0] * shape[2] * shape[3]
    if channels == 0 or length == 0:
        return run._wrap_like(_zeros((channels,), dtype, launch_stream), grad_output)
    count, piece = launch.reduction_pieces(length, channels)
    pieces = cuda.device_array((count, channels), np.float64, stream=launch_stream)
    fastlaunch.launch(channel_sums, count * channels, REDUCE_THREADS, launch_stream, gy, pieces, piece)
    result = cuda.device_array(channels, dtype, stream=launch_stream)
    _add_pieces(pieces, result, launch_stream)
    return run._wrap_like(result, grad_output)


def _add_pieces(pieces, flat_out, stream):
    grid, block = launch.elements(flat_out.size)
    fastlaunch.launch(add_pieces, grid, block, stream, pieces, flat_out)
