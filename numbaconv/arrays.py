"""Array handling around the kernels: accept, check, lay out, pad, and hand back.

Kernels see batched arrays of one dtype: NCHW, or NHWC for the kernels that have a
channels-last variant (used when the caller's layout is NHWC).  Everything the
caller may pass (views, Fortran order, negative strides, unbatched input,
channels-last, a preallocated ``out``) is reconciled here, and inputs are never
written: any copy we make is our own.
"""

from __future__ import annotations

import math
import os
import threading
import weakref
from functools import lru_cache

import numpy as np

from .config import SCRATCH_BYTES
from .spec import ConvSpec, check_dtypes

# numpy.pad's name for each torch padding mode.
NUMPY_PAD_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def is_cuda_array(value) -> bool:
    """Exposes ``__cuda_array_interface__`` (or is a device array of Numba's CUDA simulator)."""
    if hasattr(value, "__cuda_array_interface__"):
        return True
    return type(value).__name__ == "FakeCUDAArray" and os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


def as_host_array(value, name: str) -> np.ndarray:
    """A NumPy view of ``value`` (no copy for ndarrays); TypeError for what cannot be one.

    The input policy, in one place: NumPy arrays are used as they are (any strides, never modified);
    other array-likes (lists, tuples, objects with ``__array__``) go through ``np.asarray``, with
    NumPy's dtype rules (Python floats give float64, so the result is float64); masked arrays are
    refused (their mask would be ignored); torch CPU tensors are refused with the way to pass them
    (``numbaconv.torch`` keeps autograd, ``tensor.numpy()`` shares memory); CUDA arrays never get
    here (they run on the GPU)."""
    if isinstance(value, np.ndarray):
        if isinstance(value, np.ma.MaskedArray):
            raise TypeError(f"{name} is a masked array, and numbaconv would ignore its mask: pass "
                            f"{name}.filled(value) (or np.asarray({name}) to use the values under the mask)")
        return value if type(value) is np.ndarray else np.asarray(value)
    if type(value).__module__.split(".")[0] == "torch":
        raise TypeError(f"{name} is a torch tensor: use numbaconv.torch.conv2d (differentiable, returns a tensor) "
                        f"or pass {name}.numpy()")
    if value is None or isinstance(value, (str, bytes, dict, set)):
        raise TypeError(f"{name} must be an array, got {type(value).__name__}")
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be an array, got {type(value).__name__}: {exc}") from None
    if array.dtype == object:
        raise TypeError(f"{name} must be a float32 or float64 array, got {type(value).__name__} of objects")
    return array


def accept(x, weight, bias, stride, padding, dilation, groups, *, padding_mode, activation, layout, out):
    """Every check of a conv2d call, in one place: the arrays (as NumPy views), their dtypes, the
    ConvSpec and ``out``.  Returns ``(x, weight, bias, spec)``; raises before any kernel runs."""
    x = as_host_array(x, "x")
    weight = as_host_array(weight, "weight")
    bias = None if bias is None else as_host_array(bias, "bias")
    bias_key = None if bias is None else (bias.shape, bias.dtype)
    # the arrays' shapes and dtypes are hashable as they are; the caller's arguments are frozen with their types
    key = _call_key(stride, padding, dilation, groups, padding_mode, activation, layout)
    if key is not None:
        key = (x.shape, x.dtype, weight.shape, weight.dtype, bias_key) + key
    spec = _SPECS.get(key) if key is not None else None
    if spec is None:
        dtype = check_dtypes(x.dtype, weight.dtype, None if bias is None else bias.dtype)
        spec = ConvSpec.from_shapes(
            x.shape, weight.shape, None if bias is None else bias.shape, stride, padding, dilation, groups,
            dtype=dtype, padding_mode=padding_mode, activation=activation, layout=layout,
        )
        if key is not None:
            if len(_SPECS) >= _SPECS_MAX:
                _SPECS.clear()
            _SPECS[key] = spec
    if out is not None:
        check_out(out, spec, {"x": x, "weight": weight, "bias": bias})
    return x, weight, bias, spec


# Validated specs by call signature: a network calls the same few shapes over and over, and
# building a ConvSpec (every check of the arguments) costs more than a small kernel runs.  The key
# holds each argument with its type (stride=True must not hit the entry of stride=1), so a hit
# means the same arguments that passed every check before; errors are never cached.
_SPECS: dict = {}
_SPECS_MAX = 512


def _frozen(value):
    kind = type(value)
    if kind is int or kind is str or value is None:  # the common arguments, at no cost
        return (kind, value)
    if isinstance(value, (tuple, list)):
        return (kind,) + tuple(map(_frozen, value))
    return (kind, value)


def _call_key(*arguments):
    key = tuple(map(_frozen, arguments))
    try:
        hash(key)
    except TypeError:
        return None  # an unhashable argument: validate without the cache (and raise, most likely)
    return key


def to_nchw(x: np.ndarray, spec: ConvSpec) -> np.ndarray:
    """A batched NCHW *view* of the caller's x (no copy)."""
    if not spec.batched:
        x = x[np.newaxis]
    if spec.layout == "NHWC":
        x = x.transpose(0, 3, 1, 2)
    return x


def pad_input(x: np.ndarray, spec: ConvSpec) -> np.ndarray:
    """x (batched NCHW) padded by ``spec.padding`` with ``spec.padding_mode``; always a fresh
    C-contiguous array or a C-contiguous input passed through when there is no padding."""
    top, bottom, left, right = spec.padding
    if not spec.has_padding:
        return np.ascontiguousarray(x)
    padded = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), mode=NUMPY_PAD_MODES[spec.padding_mode])
    return np.ascontiguousarray(padded)  # np.pad keeps a Fortran-ordered input's order


def pad_input_nhwc(x: np.ndarray, spec: ConvSpec) -> np.ndarray:
    """x (batched NHWC) padded by ``spec.padding`` with ``spec.padding_mode``, C-contiguous."""
    top, bottom, left, right = spec.padding
    if not spec.has_padding:
        return np.ascontiguousarray(x)
    return np.ascontiguousarray(np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)),
                                       mode=NUMPY_PAD_MODES[spec.padding_mode]))


def unpad_adjoint(grad_padded: np.ndarray, spec: ConvSpec) -> np.ndarray:
    """The adjoint of `pad_input`: the gradient w.r.t. the padded input (N, C, Hp, Wp) carried back
    to the input (N, C, H, W).  Zero padding: the interior.  Other modes: the interior plus, for every
    padded border position, its gradient added to the input pixel it is a copy of."""
    top, bottom, left, right = spec.padding
    height, width = spec.in_height, spec.in_width
    interior = grad_padded[:, :, top: top + height, left: left + width]
    if not spec.has_padding or spec.padding_mode == "zeros":
        return np.ascontiguousarray(interior)
    n, c = grad_padded.shape[:2]
    source = np.pad(np.arange(height * width).reshape(height, width), ((top, bottom), (left, right)),
                    mode=NUMPY_PAD_MODES[spec.padding_mode])
    border = np.ones(source.shape, bool)
    border[top: top + height, left: left + width] = False
    grad = np.ascontiguousarray(interior).reshape(n * c, height * width)
    # np.add.at accumulates repeated targets (a corner pixel receives several border copies)
    np.add.at(grad.T, source[border], grad_padded.reshape(n * c, -1)[:, border.reshape(-1)].T)
    return grad.reshape(n, c, height, width)


# ---- degenerate geometry: gather the positions the taps read (spec.ConvSpec.kernel_view) ---------------
def source_positions(size: int, before: int, kernel: int, stride: int, dilation: int, out: int,
                     padding_mode: str, first: int = 0) -> np.ndarray:
    """For output o in [first, out) and tap t of one axis (index (o - first)*kernel + t), the input
    position it reads: o*stride + t*dilation - before, mapped into [0, size) by the padding mode, or -1
    for a zero of zero padding.  Computed with Python integers where int64 could overflow (huge
    paddings)."""
    exact = max(stride, dilation, before, size) * (out + kernel) >= 2**62
    index = np.arange(first, out, dtype=object if exact else np.int64)[:, None] * stride \
        + np.arange(kernel, dtype=object if exact else np.int64)[None, :] * dilation - before
    return padded_reads(index.reshape(-1), size, padding_mode)


def padded_reads(index: np.ndarray, size: int, padding_mode: str) -> np.ndarray:
    """The input position that each position ``index`` of a padded axis holds (negative: before the
    input), by torch's padding modes, or -1 where zero padding holds a zero; int64."""
    inside = (index >= 0) & (index < size)
    if padding_mode == "zeros":
        index = np.where(inside, index, -1)
    elif padding_mode == "reflect":  # padding < size (checked): one reflection
        index = np.where(index < 0, -index, np.where(index >= size, 2 * (size - 1) - index, index))
    elif padding_mode == "replicate":
        index = np.where(index < 0, 0, np.where(index >= size, size - 1, index))
    else:  # circular
        index = index % size
    return index.astype(np.int64)


def kernel_reads(spec: ConvSpec, axis: int) -> np.ndarray:
    """For every position of the kernel view's padded axis (rows 0, columns 1; `ConvSpec.kernel_view`), the
    input position it holds, or -1 for a zero: the gather map on a gathered axis, the padding otherwise."""
    if spec.kernel_view[1][axis]:
        return _axis_positions(spec, axis)
    size = (spec.in_height, spec.in_width)[axis]
    before, after = spec.padding[2 * axis: 2 * axis + 2]
    return padded_reads(np.arange(-before, size + after, dtype=np.int64), size, spec.padding_mode)


def _axis_positions(spec: ConvSpec, axis: int) -> np.ndarray:
    size = (spec.in_height, spec.in_width)[axis]
    kernel = (spec.kernel_height, spec.kernel_width)[axis]
    out = (spec.out_height, spec.out_width)[axis]
    return source_positions(size, spec.padding[2 * axis], kernel, spec.stride[axis], spec.dilation[axis], out,
                            spec.padding_mode)


def _take(x: np.ndarray, positions: np.ndarray, axis: int) -> np.ndarray:
    """x's slices at ``positions`` along ``axis``, zeros where a position is -1 (a new array)."""
    if x.shape[axis] == 0:  # an empty axis: every position is zero padding
        return np.zeros(x.shape[:axis] + (len(positions),) + x.shape[axis + 1:], x.dtype)
    taken = np.take(x, np.maximum(positions, 0), axis=axis)
    if (positions < 0).any():
        index = [slice(None)] * taken.ndim
        index[axis] = positions < 0
        taken[tuple(index)] = 0
    return taken


def band_input(x: np.ndarray, spec: ConvSpec, images: slice, first_row: int, rows: int,
               layout: str = "NCHW") -> tuple[ConvSpec, np.ndarray]:
    """The sub-problem of output rows [first_row, first_row + rows) of ``images`` (a slice of the batch):
    its spec (`ConvSpec.band`) and its input, the padded input rows those outputs read, gathered (padding
    rows included, so the band needs no vertical padding); x batched in ``layout``."""
    band = spec.band(len(range(*images.indices(spec.batch))), rows)
    x = x[images]
    if band.in_height == spec.in_height and band.padding == spec.padding:
        return band, x
    start = first_row * spec.stride[0] - spec.padding[0]  # the band's first padded row, in input rows
    positions = padded_reads(np.arange(start, start + band.in_height, dtype=np.int64), spec.in_height,
                             spec.padding_mode)
    return band, _take(x, positions, 2 if layout == "NCHW" else 1)


# A copy along one axis is made of slices while it forms at most this many runs of a constant step; beyond
# it (positions scattered by a large stride or dilation) of one gather
MAX_RUNS = 8


def segments(destination: np.ndarray, source: np.ndarray) -> list:
    """``destination[i] <- source[i]`` (int arrays, ``destination`` increasing) as ``(destination, source)``
    pairs of slices (runs of consecutive destinations and a constant non-zero source step), or one pair of
    index arrays (a gather) where they would be more than `MAX_RUNS` runs."""
    if len(destination) == 0:
        return []
    step_d, step_s = np.diff(destination), np.diff(source)
    breaks = (step_d != 1) | (step_s == 0)
    breaks[1:] |= step_s[1:] != step_s[:-1]
    starts = np.concatenate(([0], np.flatnonzero(breaks) + 1))
    if len(starts) > MAX_RUNS:
        return [(destination, source)]
    runs = []
    for first, last in zip(starts, np.append(starts[1:], len(destination)) - 1):
        d0, s0, count = int(destination[first]), int(source[first]), int(last - first + 1)
        step = int(source[first + 1] - source[first]) if count > 1 else 1
        stop = s0 + count * step
        runs.append((slice(d0, d0 + count), slice(s0, stop if stop >= 0 else None, step)))
    return runs


def block_index(row_axis: int, rows, columns) -> tuple:
    """The 4-D index of ``rows`` x ``columns`` (slices or index arrays) on the adjacent row and column axes."""
    if not isinstance(rows, slice) and not isinstance(columns, slice):
        rows, columns = rows[:, None], columns[None, :]
    index: list = [slice(None)] * 4
    index[row_axis], index[row_axis + 1] = rows, columns
    return tuple(index)


def padded_window(x: np.ndarray, spec: ConvSpec, first_row: int, rows: int, first_column: int, columns: int,
                  layout: str = "NCHW", slot: str | None = None, limit: int = SCRATCH_BYTES) -> np.ndarray:
    """Rows ``[first_row, first_row + rows)`` x columns ``[first_column, first_column + columns)`` of x padded
    as a whole by ``spec.padding_mode`` (counted in the padded input's rows and columns), as a new
    C-contiguous array: what `pad_input` (NCHW) or `pad_input_nhwc` gives for that window, without padding
    the whole input.  x batched in ``layout``, any strides.  With a ``slot``, the array is this thread's
    `scratch` of that slot (up to ``limit`` bytes): valid until the thread asks for the slot again."""
    row_axis = 2 if layout == "NCHW" else 1
    top, _, left, _ = spec.padding
    shape = list(x.shape)
    shape[row_axis], shape[row_axis + 1] = rows, columns
    window = np.empty(shape, x.dtype) if slot is None else scratch(slot, shape, x.dtype, limit)
    row_sources = padded_reads(np.arange(first_row - top, first_row - top + rows, dtype=np.int64), spec.in_height,
                               spec.padding_mode)
    column_sources = padded_reads(np.arange(first_column - left, first_column - left + columns, dtype=np.int64),
                                  spec.in_width, spec.padding_mode)
    row_inside, column_inside = np.flatnonzero(row_sources >= 0), np.flatnonzero(column_sources >= 0)
    for row_target, row_source in segments(row_inside, row_sources[row_inside]):
        for column_target, column_source in segments(column_inside, column_sources[column_inside]):
            window[block_index(row_axis, row_target, column_target)] = \
                x[block_index(row_axis, row_source, column_source)]
    if len(row_inside) < rows:  # zero padding's rows and columns
        window[block_index(row_axis, np.flatnonzero(row_sources < 0), slice(None))] = 0
    if len(column_inside) < columns:
        window[block_index(row_axis, slice(None), np.flatnonzero(column_sources < 0))] = 0
    return window


def padding_copy_elements(spec: ConvSpec) -> int:
    """Elements of temporaries a kernel that applies zero padding itself needs for another padding mode: the
    largest border rectangle's padded window and result (`ConvSpec.border_regions`, one at a time), else the
    whole padded input; none under zero padding."""
    if spec.padding_mode == "zeros" or not spec.has_padding:
        return 0
    if spec.border_regions is None:
        return spec.padded_elements

    def elements(r0: int, r1: int, c0: int, c1: int) -> int:  # a rectangle's padded window and result
        _, rows, _, columns = spec.input_window(r0, r1, c0, c1)
        return rows * columns * spec.in_channels + (r1 - r0) * (c1 - c0) * spec.out_channels

    return spec.batch * max((elements(*region) for region in spec.border_regions), default=0)


def padded_band(x: np.ndarray, spec: ConvSpec, first: int, rows: int, layout: str = "NCHW", slot: str | None = None,
                limit: int = SCRATCH_BYTES) -> np.ndarray:
    """Rows ``[first, first + rows)`` of x padded as a whole (every column): `padded_window` of a band."""
    return padded_window(x, spec, first, rows, 0, spec.in_width + spec.padding[2] + spec.padding[3], layout, slot,
                         limit)


def kernel_input(x: np.ndarray, spec: ConvSpec, layout: str = "NCHW") -> tuple[ConvSpec, np.ndarray]:
    """``(kernel spec, kernel x)``: the problem as the kernels run it (`ConvSpec.kernel_view`) and x
    (batched, in ``layout``) gathered on the axes it compacts; x itself for ordinary layers."""
    view, gathered = spec.kernel_view
    if not any(gathered):
        return view, x
    first_axis = 2 if layout == "NCHW" else 1
    for axis in (0, 1):
        if gathered[axis]:
            x = _take(x, _axis_positions(spec, axis), first_axis + axis)
    return view, np.ascontiguousarray(x)


def kernel_input_adjoint(grad: np.ndarray, spec: ConvSpec) -> np.ndarray:
    """The adjoint of `kernel_input` for batched NCHW arrays: the gradient w.r.t. the kernel's x carried
    back to x (each gathered position adds into the input pixel it read; zeros of the padding drop)."""
    _, gathered = spec.kernel_view
    for axis in (1, 0):
        if gathered[axis]:
            positions = _axis_positions(spec, axis)
            moved = np.moveaxis(grad, 2 + axis, 0)
            result = np.zeros(((spec.in_height, spec.in_width)[axis],) + moved.shape[1:], grad.dtype)
            keep = positions >= 0
            np.add.at(result, positions[keep], moved[keep])
            grad = np.moveaxis(result, 0, 2 + axis)
    return np.ascontiguousarray(grad)


def check_out(out, spec: ConvSpec, inputs) -> np.ndarray:
    """Validate a caller's ``out=``: exact shape and dtype, writeable, not overlapping an input."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != spec.out_shape:
        raise ValueError(f"out must have shape {spec.out_shape}, got {out.shape}")
    if out.dtype != spec.dtype:
        raise ValueError(f"out must have dtype {spec.dtype}, got {out.dtype}")
    if not out.flags.writeable:
        raise ValueError("out is read-only")
    for name, array in inputs.items():
        if array is not None and _overlaps(out, array):
            raise ValueError(f"out must not overlap an input, but it shares memory with {name}")
    return out


def _overlaps(a: np.ndarray, b: np.ndarray) -> bool:
    if not np.may_share_memory(a, b):
        return False
    try:
        return bool(np.shares_memory(a, b, max_work=100_000))
    except np.exceptions.TooHardError:
        return True  # could not prove them disjoint: refuse rather than risk a wrong result


def to_batched(x: np.ndarray, spec: ConvSpec) -> np.ndarray:
    """A batched view of the caller's x in the caller's layout (no copy), for the channels-last kernels."""
    return x if spec.batched else x[np.newaxis]


def _elements(shape) -> int:
    """The number of elements of ``shape`` (an int or a tuple of ints): Python's product, a microsecond less
    than NumPy's on every call."""
    return shape if isinstance(shape, int) else math.prod(shape)


def aligned_empty(shape, dtype) -> np.ndarray:
    """``np.empty(shape, dtype)`` starting on a 64-byte boundary (a cache line): the kernels' 64-byte vector
    stores then each write one line, never two lines that another thread's stores share."""
    nbytes = _elements(shape) * np.dtype(dtype).itemsize
    return _aligned_view(np.empty(nbytes + 64, np.uint8), nbytes, shape, dtype)


def _aligned_view(buffer: np.ndarray, nbytes: int, shape, dtype) -> np.ndarray:
    """The first 64-byte boundary of a byte ``buffer`` (at least ``nbytes`` + 64 long) on, as ``shape``."""
    start = -buffer.ctypes.data % 64
    return buffer[start:start + nbytes].view(dtype).reshape(shape)


class _Slots:
    """One thread's scratch buffers, by slot (`scratch`); freed with the thread, or by `release_scratch`."""

    def __init__(self) -> None:
        self.buffers: dict[str, np.ndarray] = {}


_SCRATCH = threading.local()  # .slots: this thread's _Slots
_ALL_SLOTS: weakref.WeakSet = weakref.WeakSet()  # every live thread's, for release_scratch
_ALL_SLOTS_LOCK = threading.Lock()


def scratch(slot: str, shape, dtype, limit: int = SCRATCH_BYTES) -> np.ndarray:
    """A temporary of ``shape`` for this thread's kernel call, 64-byte aligned, taken from a buffer kept per
    thread and ``slot`` (at most ``limit`` bytes each, config.SCRATCH_BYTES unless a kernel sizes its own
    temporaries; larger ones are allocated afresh; a slot keeps its largest buffer until `release_scratch`
    or the thread's end).  Freshly
    allocated temporaries of a few MiB cost more than the kernels that fill them: glibc returns them to the
    system at free, and the next call faults every page in again (measured: an NCHW convolution's 1.5 MiB
    channels-last result cost ~0.5 ms of page faults per call).  The array is valid until the same thread
    asks for the same slot again: a kernel's own temporaries only, never anything returned to the caller."""
    dtype = np.dtype(dtype)
    nbytes = _elements(shape) * dtype.itemsize
    if nbytes > limit:
        return aligned_empty(shape, dtype)
    slots = getattr(_SCRATCH, "slots", None)
    if slots is None:
        slots = _SCRATCH.slots = _Slots()
        with _ALL_SLOTS_LOCK:
            _ALL_SLOTS.add(slots)
    buffer = slots.buffers.get(slot)
    if buffer is None or buffer.size < nbytes + 64:
        slots.buffers.pop(slot, None)  # the old one freed before the larger one is taken
        buffer = slots.buffers[slot] = np.empty(nbytes + 64, np.uint8)
    return _aligned_view(buffer, nbytes, shape, dtype)


def release_scratch(prefix: str = "") -> int:
    """Free every live thread's `scratch` buffers whose slot starts with ``prefix``; returns the bytes freed
    (an array in use keeps its own reference: a kernel running meanwhile is not disturbed)."""
    released = 0
    with _ALL_SLOTS_LOCK:
        for slots in list(_ALL_SLOTS):
            for slot in [slot for slot in list(slots.buffers) if slot.startswith(prefix)]:
                buffer = slots.buffers.pop(slot, None)
                released += 0 if buffer is None else buffer.nbytes
    return released


def kernel_output(out: np.ndarray | None, spec: ConvSpec, layout: str = "NCHW") -> np.ndarray:
    """The C-contiguous batched array the kernel writes, in the kernel's ``layout`` (a channels-last kernel
    writes NHWC): the caller's ``out`` itself when it already has that memory layout, else a fresh array
    copied into ``out`` by `finish`."""
    n, c, h, w = spec.nchw_out_shape
    shape = (n, c, h, w) if layout == "NCHW" else (n, h, w, c)
    if out is not None and spec.layout == layout and out.flags.c_contiguous:
        return out.reshape(shape)
    return aligned_empty(shape, spec.dtype)


@lru_cache(maxsize=64)
def zero_bias(channels: int, dtype) -> np.ndarray:
    """A zero bias of ``channels`` values for calls without one, kept rather than allocated per call; the
    kernels only read it (left writeable: a read-only array would be another type, another compilation)."""
    return np.zeros(channels, dtype)


def kernel_bias(bias: np.ndarray | None, spec: ConvSpec) -> np.ndarray:
    """The bias as the kernels read it: C-contiguous, or the kept `zero_bias` for a call without one."""
    return zero_bias(spec.out_channels, spec.dtype) if bias is None else np.ascontiguousarray(bias)


def finish(result: np.ndarray, spec: ConvSpec, out: np.ndarray | None, layout: str = "NCHW") -> np.ndarray:
    """Turn the kernel's batched result (in the kernel's ``layout``) into what the caller asked for."""
    if spec.layout == "NHWC" and layout == "NCHW":
        shaped = result.transpose(0, 2, 3, 1)
        if out is None:
            shaped = np.ascontiguousarray(shaped)
    else:
        shaped = result
    if not spec.batched:
        shaped = shaped[0]
    if out is None:
        return shaped
    if result.base is not out and result is not out and not np.shares_memory(out, result):
        np.copyto(out, shaped)  # the kernel wrote a temporary (out's memory layout was not the kernel's)
    return out


# ---- the gradients' arguments (numbaconv.grad, numbaconv.reference) ----------------------------------------
def _grad_output(grad_output, spec: ConvSpec):
    grad_output = as_host_array(grad_output, "grad_output")
    if grad_output.dtype != spec.dtype:
        raise TypeError(f"grad_output must have the dtype of the convolution ({spec.dtype}), got {grad_output.dtype}")
    if grad_output.shape != spec.out_shape:
        raise ValueError(f"grad_output must have the convolution's output shape {spec.out_shape}, "
                         f"got {grad_output.shape}")
    return grad_output


def accept_grad_input(input_shape, weight, grad_output, stride, padding, dilation, groups, padding_mode, layout):
    """Every check of a grad-input call: ``(spec, weight, grad_output)``."""
    weight = as_host_array(weight, "weight")
    grad_dtype = getattr(grad_output, "dtype", None)
    dtype = check_dtypes(grad_dtype if grad_dtype is not None else weight.dtype, weight.dtype,
                         names=("grad_output", "weight"))
    spec = ConvSpec.from_shapes(input_shape, weight.shape, None, stride, padding, dilation, groups, dtype=dtype,
                                padding_mode=padding_mode, layout=layout)
    return spec, weight, _grad_output(grad_output, spec)


def accept_grad_weight(x, weight_shape, grad_output, stride, padding, dilation, groups, padding_mode, layout):
    """Every check of a grad-weight call: ``(spec, x, grad_output)``."""
    x = as_host_array(x, "x")
    dtype = check_dtypes(x.dtype, x.dtype)
    spec = ConvSpec.from_shapes(x.shape, weight_shape, None, stride, padding, dilation, groups, dtype=dtype,
                                padding_mode=padding_mode, layout=layout)
    return spec, x, _grad_output(grad_output, spec)


def input_like(grad_input: np.ndarray, spec: ConvSpec) -> np.ndarray:
    """A batched NCHW gradient w.r.t. x in the caller's layout and batchedness."""
    if spec.layout == "NHWC":
        grad_input = np.ascontiguousarray(grad_input.transpose(0, 2, 3, 1))
    return grad_input if spec.batched else grad_input[0]


# ---- conv1d's arguments (numbaconv.convolution1d, numbaconv.reference) ----------------------------------
LAYOUTS_1D = {"NCL": "NCHW", "NLC": "NHWC"}


def _one(name: str, value, *, minimum: int, allow_str: bool = False):
    """An int (or a 1-tuple of one) at least ``minimum``; 'same'/'valid' where ``allow_str``."""
    if allow_str and isinstance(value, str):
        return value
    if isinstance(value, (tuple, list)):
        if len(value) != 1:
            raise ValueError(f"{name} must be an int or a 1-element tuple for conv1d, got {value!r}")
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int for conv1d, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {int(value)}")
    return int(value)


def _ndim(value, name: str) -> int:
    shape = getattr(value, "shape", None)
    if shape is None:
        shape = as_host_array(value, name).shape
    return len(shape)


def conv1d_arguments(x, weight, stride, padding, dilation, layout):
    """Checks of what is 1-D specific; returns the 2-D ``(row axis, stride, padding, dilation, layout)``."""
    if layout not in LAYOUTS_1D:
        raise ValueError(f"layout must be one of {tuple(LAYOUTS_1D)} for conv1d, got {layout!r}")
    x_ndim, w_ndim = _ndim(x, "x"), _ndim(weight, "weight")
    if x_ndim not in (2, 3):
        form = "(C, L) or (N, C, L)" if layout == "NCL" else "(L, C) or (N, L, C)"
        raise ValueError(f"x must be 2-D {form} for conv1d, got a {x_ndim}-D array of shape {np.shape(x)}")
    if w_ndim != 3:
        raise ValueError(f"weight must be 3-D (C_out, C_in/groups, K) for conv1d, got a {w_ndim}-D array of "
                         f"shape {tuple(getattr(weight, 'shape', ()))}")
    stride = _one("stride", stride, minimum=1)
    dilation = _one("dilation", dilation, minimum=1)
    padding = _one("padding", padding, minimum=0, allow_str=True)
    row_axis = x_ndim - 1 if layout == "NCL" else x_ndim - 2  # before L
    padding2 = padding if isinstance(padding, str) else (0, padding)
    return row_axis, (1, stride), padding2, (1, dilation), LAYOUTS_1D[layout]
