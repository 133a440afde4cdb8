"""numbaconv on Dask arrays: the same convolutions over batches and images larger than memory.

Each function takes a `dask.array.Array` (NCHW or NHWC, batched) and returns a lazy one whose ``compute()``
equals the in-memory `numbaconv` call on the whole array.  How the work is cut:

* **Batch chunks** map straight onto the kernels: each task convolves its images.
* **Spatial chunks** get halos.  Output chunks follow the input's (a boundary at each input chunk boundary
  divided by the stride, rounded up: a stride-1 'same' convolution keeps the chunks).  Each output block is
  one task that copies the window it reads -- rows ``[o0 * stride, (o1 - 1) * stride + (k - 1) * dilation +
  1)`` of the padded input -- from the chunks that hold it (chunks smaller than the halo included), the
  border by ``padding_mode`` (each padded position maps to the input position it holds, or a zero), and
  runs the kernel on it.  A chunk's own rows come whole; what its neighbours need, it cuts in one small task
  (copies of its edges and corners), so between workers only halos travel.  Where the taps' reach is mostly
  gaps (a huge dilation or stride) the window holds only the positions the taps read (the kernel view), so
  a task's memory follows its outputs.
* **Channel chunks** must hold whole groups (``C_in / groups`` channels each; any chunking for depthwise
  layers).  Where they do not, the channels are rechunked to the nearest boundaries that do, with a
  `UserWarning` that says which chunking was used; a chunk holding ``k`` groups gives ``k * C_out / groups``
  output channels.
* **Separable** convolutions run as one task per output block, both stages in `numbaconv.separable_conv2d`
  (the depthwise output never leaves the task), over one channel chunk.
* **Weights** enter the graph once: one key per channel chunk holding its weights and biases, which every
  task refers to (a distributed cluster sends it to each worker once).
* **Threads**: each task runs numbaconv's kernels on ``threads_per_task`` Numba threads (default 1: Dask's
  own threads or worker processes are the parallelism; give ``threads_per_task=k`` to workers with fewer
  Dask threads than cores).  `numba.set_num_threads` is per calling thread, so tasks never change each
  other's setting or the caller's.
* **CuPy-backed arrays** run the CUDA kernels and return CuPy blocks (the array's ``meta`` says so).

Requires the ``dask`` extra: ``pip install 'numbaconv[dask]'``.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from typing import Any

import numpy as np

from . import api, arrays, dispatch, separable
from .spec import Activation, IntOrPair, Layout, Padding, PaddingMode, check_dtypes


def conv2d(x, weight, bias=None, stride: IntOrPair = 1, padding: Padding = 0, dilation: IntOrPair = 1,
           groups: int = 1, *, padding_mode: PaddingMode = "zeros", activation: Activation = None,
           layout: Layout = "NCHW", algorithm: str = "auto", threads_per_task: int = 1):
    """`numbaconv.conv2d` on a Dask array ``x`` (batched, NCHW or NHWC); returns a lazy Dask array.

    Parameters are those of `numbaconv.conv2d`, checked before any graph is built (the same
    `ValueError`/`TypeError`), with ``weight`` and ``bias`` in memory (NumPy, or CuPy for CuPy-backed
    ``x``).  ``threads_per_task``: Numba threads each task's kernel uses (default 1)."""
    return _convolve(x, weight, bias, stride, padding, dilation, groups, padding_mode, activation, layout,
                     algorithm, threads_per_task)


def pointwise_conv2d(x, weight, bias=None, stride: IntOrPair = 1, *, padding_mode: PaddingMode = "zeros",
                     activation: Activation = None, layout: Layout = "NCHW", threads_per_task: int = 1):
    """`numbaconv.pointwise_conv2d` (a 1x1 weight) on a Dask array; see `conv2d`."""
    weight = _host_or_device(weight)
    if weight.ndim != 4 or tuple(weight.shape[2:]) != (1, 1):  # as numbaconv.pointwise_conv2d
        raise ValueError(f"pointwise_conv2d needs a (C_out, C_in, 1, 1) weight, got weight.shape "
                         f"{tuple(weight.shape)}")
    return _convolve(x, weight, bias, stride, 0, 1, 1, padding_mode, activation, layout, "auto", threads_per_task)


def depthwise_conv2d(x, weight, bias=None, stride: IntOrPair = 1, padding: Padding = 0, dilation: IntOrPair = 1,
                     *, padding_mode: PaddingMode = "zeros", activation: Activation = None, layout: Layout = "NCHW",
                     threads_per_task: int = 1):
    """`numbaconv.depthwise_conv2d` (groups = C_in, C_out a multiple of it) on a Dask array; see `conv2d`."""
    channels = x.shape[1 if layout == "NCHW" else -1] if getattr(x, "ndim", 0) == 4 else None
    return _convolve(x, weight, bias, stride, padding, dilation, channels or 1, padding_mode, activation, layout,
                     "auto", threads_per_task)


def grouped_conv2d(x, weight, bias=None, stride: IntOrPair = 1, padding: Padding = 0, dilation: IntOrPair = 1,
                   groups: int = 1, *, padding_mode: PaddingMode = "zeros", activation: Activation = None,
                   layout: Layout = "NCHW", threads_per_task: int = 1):
    """`numbaconv.grouped_conv2d` on a Dask array; see `conv2d`."""
    return _convolve(x, weight, bias, stride, padding, dilation, groups, padding_mode, activation, layout, "auto",
                     threads_per_task)


def separable_conv2d(x, depthwise_weight, pointwise_weight, depthwise_bias=None, pointwise_bias=None,
                     stride: IntOrPair = 1, padding: Padding = 0, dilation: IntOrPair = 1, *,
                     padding_mode: PaddingMode = "zeros", depthwise_activation: Activation = None,
                     activation: Activation = None, layout: Layout = "NCHW", threads_per_task: int = 1):
    """`numbaconv.separable_conv2d` on a Dask array: one task per output block runs both stages (the
    depthwise output never leaves the task; the pointwise stage reads every channel, so the channels are
    taken as one chunk).  Arguments as `numbaconv.separable_conv2d`."""
    _require_dask_array(x)
    _check_threads(threads_per_task)
    dw, pw = _host_or_device(depthwise_weight), _host_or_device(pointwise_weight)
    db, pb = _host_or_device(depthwise_bias), _host_or_device(pointwise_bias)
    channel_axis = 1 if layout == "NCHW" else 3
    # both stages' arguments through numbaconv's own parser, before any graph
    spec = dispatch.plan(tuple(x.shape), tuple(dw.shape), db is not None, stride, padding, dilation,
                         x.shape[channel_axis] if layout in ("NCHW", "NHWC") else 1, dtype=x.dtype,
                         padding_mode=padding_mode, activation=depthwise_activation, layout=layout).spec
    # (plan refused any depthwise weight but a 4-D (m*C_in, 1, kH, kW) one: groups = C_in)
    if pw.ndim != 4 or tuple(pw.shape[2:]) != (1, 1):
        raise ValueError(f"separable_conv2d needs a (C_out, m*C_in, 1, 1) pointwise_weight, got "
                         f"pointwise_weight.shape {tuple(pw.shape)}")
    pointwise = dispatch.plan(spec.out_shape, tuple(pw.shape), pb is not None, dtype=x.dtype, activation=activation,
                              layout=layout).spec
    check_dtypes(x.dtype, dw.dtype, None if db is None else db.dtype)
    check_dtypes(x.dtype, pw.dtype, None if pb is None else pb.dtype, names=("x", "pointwise_weight"))
    dw, pw, db, pb = _on_device_of(x, dw, pw, db, pb)
    operands = [value for value in (dw, pw, db, pb) if value is not None]
    return _tiled(x.rechunk({channel_axis: -1}), spec, _separable_block, [operands], [pointwise.out_channels],
                  has_biases=(db is not None, pb is not None), depthwise_activation=spec.activation,
                  activation=pointwise.activation, layout=layout, threads=int(threads_per_task))


# ---- the graph -----------------------------------------------------------------------------------------------

def _require_dask_array(x) -> None:
    try:
        import dask.array as da
    except ImportError as error:  # the optional extra
        raise ImportError("numbaconv.dask needs Dask: pip install 'numbaconv[dask]'") from error
    if not isinstance(x, da.Array):
        raise TypeError(f"x must be a dask.array.Array, got {type(x).__name__} (for arrays in memory use "
                        f"numbaconv.conv2d)")
    if x.ndim != 4:
        raise ValueError(f"x must be batched and 4-D (NCHW or NHWC) for numbaconv.dask, got shape {x.shape}")


def _host_or_device(value):
    """A weight or bias in memory: NumPy, or a CuPy array left on the device; a Dask array is computed once."""
    if value is None:
        return None
    if hasattr(value, "compute") and hasattr(value, "dask"):
        value = value.compute()
    return value if hasattr(value, "__cuda_array_interface__") else np.asarray(value)


def _convolve(x, weight, bias, stride, padding, dilation, groups, padding_mode, activation, layout, algorithm,
              threads_per_task):
    _require_dask_array(x)
    weight, bias = _host_or_device(weight), _host_or_device(bias)
    _check_threads(threads_per_task)
    # every argument is checked by numbaconv's own parser before a graph exists
    spec = dispatch.plan(tuple(x.shape), tuple(weight.shape), bias is not None, stride, padding, dilation, groups,
                         dtype=x.dtype, padding_mode=padding_mode, activation=activation, layout=layout,
                         algorithm=algorithm).spec
    check_dtypes(x.dtype, weight.dtype, None if bias is None else bias.dtype)  # as conv2d: one dtype
    weight, bias = _on_device_of(x, weight, bias)
    channel_axis = 1 if layout == "NCHW" else 3
    per_group, cog = spec.in_channels // spec.groups, spec.out_channels // spec.groups
    x = _whole_groups(x, channel_axis, per_group)
    operands, out_channels, start = [], [], 0
    for size in x.chunks[channel_axis]:
        first, count = start // per_group, size // per_group
        outputs = slice(first * cog, (first + count) * cog)
        # the weight (and bias) of this chunk's groups: one block each, so every task gets it whole
        operands.append([part[outputs] for part in ((weight,) if bias is None else (weight, bias))])
        out_channels.append(count * cog)
        start += size
    return _tiled(x, spec, _block, operands, out_channels, channels_per_group=per_group, has_bias=bias is not None,
                  activation=spec.activation, layout=layout, algorithm=algorithm, threads=int(threads_per_task))


def _check_threads(threads_per_task) -> None:
    if isinstance(threads_per_task, bool) or not isinstance(threads_per_task, (int, np.integer)) \
            or threads_per_task < 1:
        raise ValueError(f"threads_per_task must be a positive integer, got {threads_per_task!r}")


def _on_device_of(x, *values):
    """``values`` where ``x``'s blocks live: moved to the GPU once for CuPy-backed ``x``, else as they are."""
    if type(x._meta).__module__.split(".")[0] != "cupy":
        return values
    import cupy

    return tuple(None if value is None else cupy.asarray(value) for value in values)


# ---- windows: which input rows (columns) each output block reads, and how they are copied -------------------

def _axis_blocks(chunks: tuple[int, ...], size: int, before: int, out_size: int, stride: int, dilation: int,
                 kernel: int, padding_mode: str):
    """The output blocks along one axis and how each reads its window.

    Output blocks follow the input's chunks: a boundary at each input chunk boundary divided by the stride
    (rounded up), so a stride-1 convolution with 'same' padding keeps the chunks.  The window of outputs
    ``[o0, o1)`` is the padded input's ``[o0 * stride, (o1 - 1) * stride + (kernel - 1) * dilation + 1)``,
    each padded position mapped to the input position it holds by the padding mode (`arrays.padded_reads`)
    -- unless the filter's reach is so sparse (a large dilation or stride) that only the positions its taps
    read, ``kernel`` per output, are fewer than half the window: then the window holds just those (the
    kernel view: stride ``kernel``, dilation 1), so a task's memory follows its outputs, never the
    parameters' raw values.

    Returns ``[(o0, o1, length, stride, dilation, reads)]``, ``reads`` a list of ``(chunk, (lo, hi),
    segments)``: the rows ``[lo, hi)`` of input chunk ``chunk`` (-1: zeros of zero padding) the window
    needs, and ``segments``, ``(destination, source)`` index pairs (slices, or arrays for a gather) from
    that piece into the window."""
    bounds, position = {0, out_size}, 0
    for chunk in chunks[:-1]:
        position += chunk
        bounds.add(min(-(-position // stride), out_size))
    bounds = sorted(bounds)
    ends = np.cumsum(chunks)
    span = (kernel - 1) * dilation + 1
    blocks = []
    for o0, o1 in zip(bounds, bounds[1:]):
        if o1 <= o0:
            continue
        length = (o1 - o0 - 1) * stride + span
        if 2 * (o1 - o0) * kernel < length:  # the taps' positions only: the kernel view of this block
            sources = arrays.source_positions(size, before, kernel, stride, dilation, o1, padding_mode, o0)
            blocks.append((o0, o1, len(sources), kernel, 1, _reads(sources, ends)))
        else:
            sources = arrays.padded_reads(np.arange(o0 * stride - before, o0 * stride - before + length,
                                                    dtype=np.int64), size, padding_mode)
            blocks.append((o0, o1, length, stride, dilation, _reads(sources, ends)))
    return blocks


def _reads(sources: np.ndarray, ends: np.ndarray):
    """``sources`` (the input position each window position holds, -1 for a zero) as reads per input chunk
    (see `_axis_blocks`)."""
    chunk_of = np.where(sources < 0, -1, np.searchsorted(ends, sources, side="right"))
    reads = []
    for chunk in np.unique(chunk_of):
        destination = np.flatnonzero(chunk_of == chunk)
        if chunk < 0:  # zeros: only the destination matters
            reads.append((-1, (0, 0), arrays.segments(destination, destination)))
            continue
        source = sources[destination] - (ends[chunk - 1] if chunk else 0)
        lo, hi = int(source.min()), int(source.max()) + 1
        reads.append((int(chunk), (lo, hi), arrays.segments(destination, source - lo)))
    return reads


def _tiled(x, spec, block, operands_by_chunk, out_channels_by_chunk, **options):
    """The lazy output: one task per output block (batch chunk x channel chunk x row block x column block)
    that copies its window from the pieces of the input chunks holding it (each piece cut on the worker that
    holds its chunk, so only halos travel), the border by ``padding_mode``, and runs ``block(window,
    *operands, **options)``.  ``operands_by_chunk``: per channel chunk of ``x``, the arrays in memory
    (weights, biases) its tasks read -- together one graph key, whatever the number of tasks (a cluster
    sends it to each worker once)."""
    import operator
    from functools import partial

    import dask.array as da
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    layout = options["layout"]
    channel_axis, row_axis, column_axis = (1, 2, 3) if layout == "NCHW" else (3, 1, 2)
    top, bottom, left, right = spec.padding
    rows = _axis_blocks(x.chunks[row_axis], spec.in_height, top, spec.out_height, spec.stride[0],
                        spec.dilation[0], spec.kernel_height, spec.padding_mode)
    columns = _axis_blocks(x.chunks[column_axis], spec.in_width, left, spec.out_width, spec.stride[1],
                           spec.dilation[1], spec.kernel_width, spec.padding_mode)
    token = tokenize(x, spec, block.__name__, operands_by_chunk, out_channels_by_chunk, sorted(options.items()))
    name, bundle_name = f"numbaconv-{block.__name__.strip('_')}-{token}", f"numbaconv-halos-{token}"
    operands_name = f"numbaconv-weights-{token}"
    module = type(x._meta).__module__.split(".")[0]
    layer: dict = {}
    cuts: dict = {}  # per input chunk, the pieces its neighbours' windows need: {box: position in its bundle}
    for n, images in enumerate(x.chunks[0]):
        for c, channels in enumerate(x.chunks[channel_axis]):
            operands = (operands_name, c)
            for i, (_, _, height, row_stride, row_dilation, row_reads) in enumerate(rows):
                for j, (_, _, width, column_stride, column_dilation, column_reads) in enumerate(columns):
                    pieces, parts = [], []
                    for r, (lo, hi), _ in row_reads:
                        pieces.append([])
                        parts.append([])
                        for q, (first, last), _ in column_reads:
                            index = (n, c, r, q) if layout == "NCHW" else (n, r, q, c)
                            if r < 0 or q < 0:  # zero padding
                                key, part = None, None
                            elif (hi - lo, last - first) == (x.chunks[row_axis][r], x.chunks[column_axis][q]):
                                key, part = (x.name, *index), None  # the whole chunk
                            else:
                                boxes = cuts.setdefault(index, {})
                                key, part = (bundle_name, *index), boxes.setdefault((lo, hi, first, last), len(boxes))
                            pieces[-1].append(key)
                            parts[-1].append(part)
                    shape = [images, channels, height, width] if layout == "NCHW" else [images, height, width,
                                                                                          channels]
                    task = partial(_window_task, block, module, x.dtype.str, tuple(shape), row_axis,
                                   [(r, segments) for r, _, segments in row_reads],
                                   [(q, segments) for q, _, segments in column_reads], parts,
                                   stride=(row_stride, column_stride), dilation=(row_dilation, column_dilation),
                                   **options)
                    index = [n, c, i, j] if layout == "NCHW" else [n, i, j, c]
                    layer[(name, *index)] = (task, pieces, operands)
    # one task per input chunk cuts every piece its neighbours need (copies: a bundle never pins its chunk)
    for index, boxes in cuts.items():
        layer[(bundle_name, *index)] = (_cut, (x.name, *index), row_axis, tuple(boxes))
    out_chunks = [x.chunks[0], tuple(out_channels_by_chunk), tuple(o1 - o0 for o0, o1, *_ in rows),
                  tuple(o1 - o0 for o0, o1, *_ in columns)]
    if layout == "NHWC":
        out_chunks = [out_chunks[0], out_chunks[2], out_chunks[3], out_chunks[1]]
    for c, values in enumerate(operands_by_chunk):  # each channel chunk's weights and biases: one key
        layer[(operands_name, c)] = (tuple, list(values))
    graph = HighLevelGraph.from_collections(name, layer, dependencies=[x])
    return da.Array(graph, name, tuple(out_chunks), meta=x._meta)


def _cut(chunk, row_axis: int, boxes):
    """The pieces ``(row0, row1, column0, column1)`` of ``chunk`` that neighbouring windows read, copied."""
    return tuple(chunk[arrays.block_index(row_axis, slice(lo, hi), slice(first, last))].copy()
                 for lo, hi, first, last in boxes)


def _window_task(block, module: str, dtype: str, shape, row_axis: int, rows, columns, parts, pieces, operands,
                 **options):
    """One task: the window copied from its pieces (``pieces[a][b]``: an input chunk, or the bundle of pieces
    cut from one, ``parts[a][b]`` saying which; None where zero padding holds zeros), then
    ``block(window, *operands, **options)``.  A separable block of one channels-last image runs in bands of
    output rows instead (`_separable_in_bands`): each band's window rows copied and convolved while in cache."""
    import importlib

    if module == "numpy" and block is _separable_block and options["layout"] == "NHWC" and shape[0] == 1:
        return _separable_in_bands(np.dtype(dtype), shape, rows, columns, parts, pieces, operands, **options)
    if module == "numpy":
        window = _window_buffer(shape, np.dtype(dtype))
    else:  # CuPy: its memory pool reuses device memory by itself
        window = importlib.import_module(module).empty(shape, dtype=np.dtype(dtype))
    _fill_window(window, row_axis, rows, columns, parts, pieces)
    result = block(window, *operands, **options)
    # the window's buffer is this thread's next window: never hand it out (no kernel returns its input, but a
    # cheap check keeps it so)
    return result.copy() if np.may_share_memory(result, window) else result


def _fill_window(window, row_axis: int, rows, columns, parts, pieces) -> None:
    """Copy each piece's rows x columns segments into ``window`` (zeros where zero padding holds them)."""
    for a, (_, row_segments) in enumerate(rows):
        for b, (_, column_segments) in enumerate(columns):
            piece = pieces[a][b] if parts[a][b] is None else pieces[a][b][parts[a][b]]
            for row_destination, row_source in row_segments:
                for column_destination, column_source in column_segments:
                    target = arrays.block_index(row_axis, row_destination, column_destination)
                    window[target] = 0 if piece is None else \
                        piece[arrays.block_index(row_axis, row_source, column_source)]


def _separable_in_bands(dtype, shape, rows, columns, parts, pieces, operands, **options):
    """A channels-last separable block of one image, band by band of output rows (`separable.chunks`): each
    band's window rows (``[oh0 * stride, (oh1 - 1) * stride + span)`` of the block's window) are copied into
    this thread's buffer and convolved into the band of the result at once, so the window's copy is read back
    from cache, never from memory (a whole 128 MiB window was written out and read back)."""
    depthwise_weight, pointwise_weight = operands[0], operands[1]
    stride, dilation = options["stride"][0], options["dilation"][0]
    span = (depthwise_weight.shape[2] - 1) * dilation + 1
    span_w = (depthwise_weight.shape[3] - 1) * options["dilation"][1] + 1
    out_height = (shape[1] - span) // stride + 1
    out_width = (shape[2] - span_w) // options["stride"][1] + 1
    result = np.empty((1, out_height, out_width, pointwise_weight.shape[0]), dtype)
    for _, _, oh0, oh1 in separable.chunks(1, out_height, out_width * depthwise_weight.shape[0]):
        first, last = oh0 * stride, (oh1 - 1) * stride + span
        band_rows = [(r, _clip(segments, first, last)) for r, segments in rows]
        window = _window_buffer((1, last - first, shape[2], shape[3]), dtype)
        _fill_window(window, 1, band_rows, columns, parts, pieces)
        _separable_block(window, *operands, out=result[:, oh0:oh1], **options)
    return result


def _clip(segments, first: int, last: int) -> list:
    """The ``(destination, source)`` segments of window rows ``[first, last)``, destinations counted from
    ``first``."""
    clipped = []
    for destination, source in segments:
        if isinstance(destination, slice):
            lo, hi = max(destination.start, first), min(destination.stop, last)
            if lo >= hi:
                continue
            step = source.step or 1
            start = source.start + (lo - destination.start) * step
            stop = start + (hi - lo) * step
            clipped.append((slice(lo - first, hi - first), slice(start, stop if stop >= 0 else None, step)))
        else:
            inside = (destination >= first) & (destination < last)
            if inside.any():
                clipped.append((destination[inside] - first, source[inside]))
    return clipped


def _window_buffer(shape, dtype: np.dtype) -> np.ndarray:
    """An uninitialised array of ``shape`` in this thread's window buffer (`arrays.scratch`, slot "dask_window",
    no size limit), kept between tasks.  A fresh window costs its page faults every task (on this 2-core VM 15%
    of a 128 MiB task; where the host reclaims freed memory -- a VM balloon's free page reporting -- first
    touches cost up to ten times that); a thread keeps its largest window until `release_buffers` or its
    end."""
    return arrays.scratch("dask_window", shape, dtype, limit=sys.maxsize)


def release_buffers() -> int:
    """Free the window buffers numbaconv.dask's tasks keep, one per thread that ran a task (each the size of
    the largest window it built: about one input chunk plus its halo); returns the bytes released.  On a
    distributed cluster: ``client.run(numbaconv.dask.release_buffers)``."""
    return arrays.release_scratch("dask_window")


def _whole_groups(x, axis: int, per_group: int):
    """``x`` with every channel chunk holding whole groups: kept where it does, else rechunked to the group
    boundaries nearest its chunks' ends (with a warning that says which chunking was used)."""
    chunks = x.chunks[axis]
    if all(size % per_group == 0 for size in chunks):
        return x
    ends, position = [], 0
    for size in chunks:
        position += size
        ends.append(min(x.shape[axis], max(per_group, round(position / per_group) * per_group)))
    sizes, start = [], 0
    for end in sorted(set(ends)):
        if end > start:
            sizes.append(end - start)
            start = end
    if per_group == x.shape[axis]:
        why = f"with groups=1 every output channel reads all {per_group} input channels"
    else:
        why = f"they split groups of {per_group} channels"
    warnings.warn(f"numbaconv.dask: channel chunks {chunks}: {why}; rechunked to {tuple(sizes)} (chunk the channel "
                  f"axis in multiples of C_in / groups = {per_group} to avoid this)", UserWarning, stacklevel=4)
    return x.rechunk({axis: tuple(sizes)})


@contextlib.contextmanager
def _numba_threads(count: int):
    """Numba's thread count for this thread only (set_num_threads is per calling thread), restored after."""
    import numba

    count = max(1, min(count, numba.config.NUMBA_NUM_THREADS))
    before = numba.get_num_threads()
    numba.set_num_threads(count)
    try:
        yield
    finally:
        numba.set_num_threads(before)


def _on_block(window, threads: int, function, *args, **kwargs):
    """``function(window, *args, **kwargs)`` as a task runs it: on CuPy blocks the CUDA kernels and a CuPy
    result, else on ``threads`` Numba threads of this task's own thread."""
    if hasattr(window, "__cuda_array_interface__"):
        import cupy

        return cupy.asarray(function(window, *args, **kwargs))
    with _numba_threads(threads):
        return function(window, *args, **kwargs)


def _block(window, weight, bias=None, *, channels_per_group, has_bias, stride, dilation, activation, layout,
           algorithm, threads):
    """One task: the padded window's convolution (padding 0: the border is already in the window)."""
    groups = window.shape[1 if layout == "NCHW" else 3] // channels_per_group
    return _on_block(window, threads, api.conv2d, weight, bias if has_bias else None, stride, 0, dilation, groups,
                     activation=activation, layout=layout, algorithm=algorithm)


def _separable_block(window, depthwise_weight, pointwise_weight, *biases, has_biases, stride, dilation,
                     depthwise_activation, activation, layout, threads, out=None):
    """One task of `separable_conv2d` (or a band of one, into ``out``): both stages on the padded window
    (numbaconv's fused CPU path)."""
    given = iter(biases)
    depthwise_bias, pointwise_bias = (next(given) if has else None for has in has_biases)
    kwargs = {} if out is None else {"out": out}
    return _on_block(window, threads, separable.separable_conv2d, depthwise_weight, pointwise_weight,
                     depthwise_bias, pointwise_bias, stride, 0, dilation, depthwise_activation=depthwise_activation,
                     activation=activation, layout=layout, **kwargs)
