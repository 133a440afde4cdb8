"""``conv2d`` on CUDA arrays: array families, zero-copy views, streams and the kernel launches.

Data flow is the CPU's: arguments -> ConvSpec (validated once, before anything runs on the
GPU) -> dispatch picks a CUDA kernel -> the kernel writes a batched NCHW *view* of the result
-> the result in the caller's array family and layout.  Views are strided, never copies:
an NHWC input is read through its NCHW-ordered strides, an NHWC result is written the same
way, and Numba, CuPy and torch arrays are wrapped through ``__cuda_array_interface__``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from .. import dispatch
from ..arrays import is_cuda_array
from ..spec import ConvSpec, check_dtypes
from . import launches, simulated
from .launches import depthwise_launcher, gemm_launcher

ARRAY_NAMES = ("x", "weight", "bias", "out")


def family(value) -> str:
    """'numba', 'cupy', 'torch' or 'cuda_array_interface' (any other exporter)."""
    module = type(value).__module__.split(".")[0]
    if module in ("cupy", "torch"):
        return module
    if module in ("numba", "numba_cuda") or hasattr(value, "copy_to_host"):
        return "numba"
    return "cuda_array_interface"


def as_numba(value):
    """A Numba device array sharing ``value``'s memory (no copy)."""
    if family(value) == "numba":
        return value
    return cuda.as_cuda_array(value)


def strided_view(array, shape, strides):
    """A view of device ``array``'s memory with the given shape and byte strides (no copy)."""
    if simulated():
        host = np.lib.stride_tricks.as_strided(array._ary, shape, strides)
        return cuda.simulator.cudadrv.devicearray.FakeCUDAArray(host)
    return cuda.cudadrv.devicearray.DeviceNDArray(shape, strides, array.dtype, stream=array.stream,
                                                 gpu_data=array.gpu_data)


def nchw_view(array, spec: ConvSpec):
    """The batched NCHW view of a caller's x or result (unbatched or NHWC)."""
    shape, strides = list(array.shape), list(array.strides)
    if not spec.batched:
        shape, strides = [1] + shape, [0] + strides
    if spec.layout == "NHWC":
        shape = [shape[0], shape[3], shape[1], shape[2]]
        strides = [strides[0], strides[3], strides[1], strides[2]]
    if tuple(shape) == array.shape and tuple(strides) == array.strides:
        return array
    return strided_view(array, tuple(shape), tuple(strides))


def _memory_range(array):
    """[start, end) bytes an array can touch."""
    pointer = getattr(array, "device_ctypes_pointer", None)  # a Numba device array's: no interface dict built
    start = end = (pointer.value or 0) if pointer is not None else array.__cuda_array_interface__["data"][0]
    for size, stride in zip(array.shape, array.strides):
        if size == 0:
            return start, start
        if stride < 0:
            start += (size - 1) * stride
        else:
            end += (size - 1) * stride
    return start, end + array.dtype.itemsize


def _overlap(a, b) -> bool:
    if simulated():
        return bool(np.may_share_memory(a._ary, b._ary))
    a0, a1 = _memory_range(a)
    b0, b1 = _memory_range(b)
    return a0 < b1 and b0 < a1


def _stream_of(value, stream):
    """The stream to launch on: the caller's ``stream=`` (a Numba stream, or a CuPy/torch stream
    converted without synchronisation), else x's family's current stream, else the default."""
    if stream is not None:
        if hasattr(stream, "cuda_stream"):  # torch.cuda.Stream
            return cuda.external_stream(stream.cuda_stream)
        if type(stream).__module__.startswith("cupy"):  # cupy.cuda.Stream
            return cuda.external_stream(stream.ptr)
        return stream
    kind = family(value)
    if kind == "cupy":
        import cupy

        return cuda.external_stream(cupy.cuda.get_current_stream().ptr)
    if kind == "torch":
        import torch

        return cuda.external_stream(torch.cuda.current_stream(value.device).cuda_stream)
    return getattr(value, "stream", 0) or cuda.default_stream()


def _wrap_like(result, like):
    """The result in the array family of ``like`` (x), sharing memory."""
    kind = family(like)
    if kind == "cupy":
        import cupy

        return cupy.asarray(result)
    if kind == "torch":
        import torch

        return torch.as_tensor(result, device=like.device)
    return result


def conv2d(x, weight, bias, stride, padding, dilation, groups, *, padding_mode, activation, layout, out,
           algorithm, device, stream):
    """The device path of `numbaconv.conv2d` (called by it; arguments as there)."""
    key = _call_key(x, weight, bias, out, stride, padding, dilation, groups, padding_mode, activation, layout,
                    algorithm, device, stream)
    prepared = _PREPARED.get(key) if key is not None else None
    if prepared is not None:
        return prepared(x, weight, bias, out)
    arrays = dict(zip(ARRAY_NAMES, (x, weight, bias, out)))
    present = {name: value for name, value in arrays.items() if value is not None}
    on_device = {name for name, value in present.items() if is_cuda_array(value)}
    if on_device and on_device != set(present):
        host = sorted(set(present) - on_device)
        raise TypeError(f"arrays must all be on the host or all on the GPU: {', '.join(sorted(on_device))} "
                        f"{'is a CUDA array' if len(on_device) == 1 else 'are CUDA arrays'} but "
                        f"{', '.join(host)} {'is' if len(host) == 1 else 'are'} not; move them with "
                        "numba.cuda.to_device (or cupy.asarray / tensor.cuda())")
    if device == "cpu":
        raise ValueError(f"device='cpu' but {', '.join(sorted(on_device))} "
                         f"{'is a CUDA array' if len(on_device) == 1 else 'are CUDA arrays'}")
    available_or_raise()
    if not on_device:  # device='cuda' with host arrays: copy in, run, copy out
        host_out = out
        if out is not None and not isinstance(out, np.ndarray):
            raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
        device_arrays = [None if a is None else cuda.to_device(np.ascontiguousarray(a)) for a in (x, weight, bias)]
        result = conv2d(*device_arrays, stride, padding, dilation, groups, padding_mode=padding_mode,
                        activation=activation, layout=layout, out=None, algorithm=algorithm, device="cuda",
                        stream=stream)
        host = result.copy_to_host()
        if host_out is None:
            return host
        if host_out.shape != host.shape or host_out.dtype != host.dtype:
            raise ValueError(f"out must have shape {host.shape} and dtype {host.dtype}, "
                             f"got {host_out.shape} {host_out.dtype}")
        np.copyto(host_out, host)
        return host_out

    dx, dw = as_numba(x), as_numba(weight)
    db = None if bias is None else as_numba(bias)
    dtype = check_dtypes(np.dtype(dx.dtype), np.dtype(dw.dtype), None if db is None else np.dtype(db.dtype))
    spec = ConvSpec.from_shapes(dx.shape, dw.shape, None if db is None else db.shape, stride, padding, dilation,
                                groups, dtype=dtype, padding_mode=padding_mode, activation=activation, layout=layout)
    chosen, _ = dispatch.select(spec, algorithm, device="cuda")
    kernel_spec = spec.kernel_view[0]
    if chosen.unsupported(kernel_spec):  # the gathered view of a degenerate problem: the GEMM serves any
        chosen = dispatch.get("cuda_grouped")
    launch_stream = _stream_of(x, stream)
    if out is not None:
        result = as_numba(out)
        if tuple(result.shape) != spec.out_shape or np.dtype(result.dtype) != spec.dtype:
            raise ValueError(f"out must have shape {spec.out_shape} and dtype {spec.dtype}, "
                             f"got {tuple(result.shape)} {np.dtype(result.dtype)}")
        for name, array in (("x", dx), ("weight", dw), ("bias", db)):
            if array is not None and _overlap(result, array):
                raise ValueError(f"out must not overlap an input, but it shares memory with {name}")
    else:
        result = cuda.device_array(spec.out_shape, dtype, stream=launch_stream)
    if math.prod(spec.out_shape):
        bias_values = db if db is not None else cuda.to_device(np.zeros(spec.out_channels, dtype), stream=launch_stream)
        if key is not None and not any(spec.kernel_view[1]) and chosen.name in _LAUNCHERS:
            prepared = _Prepared(spec, _LAUNCHERS[chosen.name](kernel_spec, keep=True), launch_stream,
                                 bias_values if db is None else None)
            if len(_PREPARED) >= PREPARED_CALLS:
                _forget_prepared()
            _PREPARED[key] = prepared
            return prepared(dx, dw, db, result)
        chosen.run(kernel_spec, kernel_input(nchw_view(dx, spec), spec, launch_stream), dw, bias_values,
                   nchw_view(result, spec), launch_stream)
    return out if out is not None else _wrap_like(result, x)


# ---- repeated calls ------------------------------------------------------------------------------------
# A call on Numba device arrays whose shapes, strides, dtypes and arguments were seen before skips the
# validation, the dispatcher and the launch arithmetic: _PREPARED maps the call's key to a _Prepared that
# checks only what can differ between such calls (out's overlap with the inputs) and launches.
PREPARED_CALLS = 256  # entries kept (cleared when full)
_PREPARED: dict = {}


def _call_key(x, weight, bias, out, stride, padding, dilation, groups, padding_mode, activation, layout, algorithm,
              device, stream):
    """The cache key of a call on Numba device arrays on their own stream, or None (not cacheable)."""
    if stream is not None or device == "cpu":
        return None
    described = []
    for array in (x, weight, bias, out):
        if array is None:
            described.append(None)
        elif type(array).__module__.split(".")[0] not in ("numba", "numba_cuda") or not hasattr(array, "stream"):
            return None  # CuPy and torch arrays are wrapped per call (their streams are looked up per call too)
        else:
            described.append((array.shape, array.strides, array.dtype))
    try:
        key = (*described, id(x.stream) if x.stream else 0, stride, padding, dilation, groups, padding_mode,
               activation, layout, algorithm)
        hash(key)
    except TypeError:  # a list among the arguments: not cached
        return None
    return key


class _Prepared:
    """One cached call: the spec, the kernel's launcher, the stream, a zero bias when the call has none."""

    def __init__(self, spec: ConvSpec, launcher, stream, zero_bias):
        self.spec, self.launcher, self.stream, self.zero_bias = spec, launcher, stream, zero_bias

    def __call__(self, x, weight, bias, out):
        spec = self.spec
        if out is None:
            result = cuda.device_array(spec.out_shape, spec.dtype, stream=self.stream)
        else:
            result = out
            for name, array in (("x", x), ("weight", weight), ("bias", bias)):
                if array is not None and _overlap(result, array):
                    raise ValueError(f"out must not overlap an input, but it shares memory with {name}")
        self.launcher(nchw_view(x, spec), weight, self.zero_bias if bias is None else bias, nchw_view(result, spec),
                      self.stream)
        return result


def available_or_raise() -> None:
    from . import available

    if not available():
        raise RuntimeError("no CUDA device is available (numba.cuda.is_available() is False): install numba-cuda "
                           "and a driver, or set NUMBA_ENABLE_CUDASIM=1 to run the kernels in the simulator")


def kernel_input(x, spec: ConvSpec, stream):
    """x (batched NCHW device view) as the kernels of ``spec.kernel_view`` read it: x itself, or for degenerate
    geometry a fresh device array of the gathered positions (`numbaconv.arrays.kernel_input` on the host)."""
    kernel_spec, gathered = spec.kernel_view
    if not any(gathered):
        return x
    from ..arrays import kernel_reads
    from .epilogue import gather_copy

    maps = [kernel_reads(spec, axis) if gathered[axis] else np.arange(size, dtype=np.int64)
            for axis, size in enumerate((spec.in_height, spec.in_width))]
    out = cuda.device_array((spec.batch, spec.in_channels, len(maps[0]), len(maps[1])), x.dtype, stream=stream)
    if out.size:
        threads = 128
        gather_copy[max(1, math.ceil(out.size / threads)), threads, stream](
            x, out, cuda.to_device(maps[0], stream=stream), cuda.to_device(maps[1], stream=stream))
    return out


_LAUNCHERS = {"cuda_pointwise": gemm_launcher, "cuda_grouped": gemm_launcher, "cuda_depthwise": depthwise_launcher}


def _forget_prepared() -> None:
    """Drop every prepared call, and with them the split-K buffers they kept."""
    _PREPARED.clear()
    launches.forget_kept_workspace()
