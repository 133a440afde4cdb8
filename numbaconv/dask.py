"""numbaconv on Dask arrays: the same convolutions over batches and images larger than memory.

Each function takes a `dask.array.Array` (NCHW or NHWC, batched) and returns a lazy one whose ``compute()``
equals the in-memory `numbaconv` call on the whole array.  How the work is cut:

* **Batch chunks** map straight onto the kernels: each task convolves its images.
* **Spatial chunks** get halos.  The input is first padded as a whole (``dask.array.pad``: ``zeros`` ->
  ``constant``, ``reflect`` -> ``reflect``, ``replicate`` -> ``edge``, ``circular`` -> ``wrap``), so the
  outer border follows ``padding_mode`` exactly; output chunks follow the input's (a boundary at each input
  chunk boundary divided by the stride, rounded up: a stride-1 'same' convolution keeps the chunks), and
  each output block reads the padded input's window it needs -- rows ``[o0 * stride, (o1 - 1) * stride +
  (k - 1) * dilation + 1)`` -- from however many chunks hold it (chunks smaller than the halo included).
* **Channel chunks** must hold whole groups (``C_in / groups`` channels each; any chunking for depthwise
  layers).  Where they do not, the channels are rechunked to the nearest boundaries that do, with a
  `UserWarning` that says which chunking was used; a chunk holding ``k`` groups gives ``k * C_out / groups``
  output channels.
* **Separable** convolutions run as one task per output block, both stages in `numbaconv.separable_conv2d`
  (the depthwise output never leaves the task), over one channel chunk.
* **Weights** enter the graph once, as one-chunk arrays every task refers to (a distributed cluster sends
  them to each worker once).
* **Threads**: each task runs numbaconv's kernels on ``threads_per_task`` Numba threads (default 1: Dask's
  own threads or worker processes are the parallelism; give ``threads_per_task=k`` to workers with fewer
  Dask threads than cores).  `numba.set_num_threads` is per calling thread, so tasks never change each
  other's setting or the caller's.
* **CuPy-backed arrays** run the CUDA kernels and return CuPy blocks (the array's ``meta`` says so).

Requires the ``dask`` extra: ``pip install 'numbaconv[dask]'``.
"""

from __future__ import annotations

import contextlib
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
    import dask.array as da

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
    x, rows, columns = _padded(x, spec, layout)
    x = x.rechunk({channel_axis: -1})
    operands = [(da.from_array(dw, chunks=-1, asarray=False), "oikl"),
                (da.from_array(pw, chunks=-1, asarray=False), "pqrs")]
    operands += [] if db is None else [(da.from_array(db, chunks=-1, asarray=False), "o")]
    operands += [] if pb is None else [(da.from_array(pb, chunks=-1, asarray=False), "p")]
    return _tiled(x, rows, columns, _separable_block, operands, pointwise.out_channels, spec.dtype,
                  has_biases=(db is not None, pb is not None), stride=spec.stride, dilation=spec.dilation,
                  depthwise_activation=spec.activation, activation=pointwise.activation, layout=layout,
                  threads=int(threads_per_task))


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
    import dask.array as da

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
    x, rows, columns = _padded(x, spec, layout)
    per_group, cog = spec.in_channels // spec.groups, spec.out_channels // spec.groups
    x = _whole_groups(x, channel_axis, per_group)
    options = dict(stride=spec.stride, dilation=spec.dilation, activation=spec.activation, layout=layout,
                   algorithm=algorithm, threads=int(threads_per_task))
    by_channels, start = [], 0
    for size in x.chunks[channel_axis]:
        first, count = start // per_group, size // per_group
        outputs = slice(first * cog, (first + count) * cog)
        # the weight (and bias): one block each, under indices of their own, so every task gets it whole
        operands = [(da.from_array(weight[outputs], chunks=-1, asarray=False), "oikl")]
        if bias is not None:
            operands.append((da.from_array(bias[outputs], chunks=-1, asarray=False), "o"))
        by_channels.append(_tiled(_take(x, channel_axis, start, start + size), rows, columns, _block, operands,
                                  count * cog, spec.dtype, groups=count, has_bias=bias is not None, **options))
        start += size
    return da.concatenate(by_channels, axis=channel_axis)


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


def _padded(x, spec, layout: str):
    """``(x padded as a whole by padding_mode, row windows, column windows)``: output blocks follow the input's
    own chunks (`_windows`; the padding adds chunks of its own at the borders)."""
    import dask.array as da

    row_axis, column_axis = (2, 3) if layout == "NCHW" else (1, 2)
    rows = _windows(x.chunks[row_axis], spec.out_height, spec.stride[0], spec.dilation[0], spec.kernel_height)
    columns = _windows(x.chunks[column_axis], spec.out_width, spec.stride[1], spec.dilation[1], spec.kernel_width)
    top, bottom, left, right = spec.padding
    if top or bottom or left or right:
        widths = [(0, 0)] * 4
        widths[row_axis], widths[column_axis] = (top, bottom), (left, right)
        x = da.pad(x, widths, mode=arrays.NUMPY_PAD_MODES[spec.padding_mode])
    return x, rows, columns


def _tiled(x, rows, columns, block, operands, out_channels: int, dtype, **options):
    """The output blocks of one channel chunk: ``block(window, *operands, **options)`` on each window of the
    padded ``x`` (`_windows`; ``options['layout']`` places the axes), the windows gathered from the chunks that
    hold them."""
    import dask.array as da

    layout = options["layout"]
    channel_axis, row_axis, column_axis = (1, 2, 3) if layout == "NCHW" else (3, 1, 2)
    index = "nchw" if layout == "NCHW" else "nhwc"
    arguments = [item for operand in operands for item in operand]
    by_rows = []
    for (out0, out1), (in0, in1) in rows:
        by_columns = []
        for (col0, col1), (inc0, inc1) in columns:
            window = _take(_take(x, row_axis, in0, in1), column_axis, inc0, inc1)
            window = window.rechunk({row_axis: -1, column_axis: -1})
            by_columns.append(da.blockwise(
                block, index, window, index, *arguments, concatenate=True, dtype=dtype, meta=x._meta,
                adjust_chunks={"c": (out_channels,), "h": (out1 - out0,), "w": (col1 - col0,)}, **options))
        by_rows.append(da.concatenate(by_columns, axis=column_axis))
    return da.concatenate(by_rows, axis=row_axis)


def _take(x, axis: int, start: int, stop: int):
    index: list[Any] = [slice(None)] * x.ndim
    index[axis] = slice(start, stop)
    return x[tuple(index)]


def _windows(chunks: tuple[int, ...], out_size: int, stride: int, dilation: int, kernel: int):
    """Output blocks along one axis and the padded input's rows each reads.  Output blocks follow the input's
    chunks: a block boundary at each input chunk boundary divided by the stride (rounded up), so a stride-1
    convolution with 'same' padding keeps the chunks; the window of outputs ``[o0, o1)`` is the padded
    input's ``[o0 * stride, (o1 - 1) * stride + (kernel - 1) * dilation + 1)`` (a halo of the padding before,
    the rest of the filter's reach after), read from however many chunks hold it."""
    bounds, position = {0, out_size}, 0
    for size in chunks[:-1]:
        position += size
        bounds.add(min(-(-position // stride), out_size))
    bounds = sorted(bounds)
    span = (kernel - 1) * dilation + 1
    return [((o0, o1), (o0 * stride, (o1 - 1) * stride + span)) for o0, o1 in zip(bounds, bounds[1:]) if o1 > o0]


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


def _block(window, weight, bias=None, *, groups, has_bias, stride, dilation, activation, layout, algorithm,
           threads):
    """One task: the padded window's convolution (padding 0: the border is already in the window)."""
    return _on_block(window, threads, api.conv2d, weight, bias if has_bias else None, stride, 0, dilation, groups,
                     activation=activation, layout=layout, algorithm=algorithm)


def _separable_block(window, depthwise_weight, pointwise_weight, *biases, has_biases, stride, dilation,
                     depthwise_activation, activation, layout, threads):
    """One task of `separable_conv2d`: both stages on the padded window (numbaconv's fused CPU path)."""
    given = iter(biases)
    depthwise_bias, pointwise_bias = (next(given) if has else None for has in has_biases)
    return _on_block(window, threads, separable.separable_conv2d, depthwise_weight, pointwise_weight,
                     depthwise_bias, pointwise_bias, stride, 0, dilation, depthwise_activation=depthwise_activation,
                     activation=activation, layout=layout)
