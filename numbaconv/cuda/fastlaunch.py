"""A leaner launch of the CUDA kernels on Numba device arrays: the same driver call Numba makes, without the
per-launch work that numba-cuda repeats on every call.

What Numba does per launch (numba-cuda 0.30, measured on an H100: 30 us for an empty kernel of 3 arrays, 49 us
for 5 arrays and 9 integers): a launch configuration object (stream conversion, occupancy warning), the
overload's lookup by the arguments' types, then per array argument a conversion to a strided memory view
(``_to_strided_memory_view``: the array interface read, a view object built) before its fields are flattened
into the kernel's parameter list, and a new ``LaunchConfig``.  Here, after the first launch of a kernel with a
given signature (made by Numba's own path, which compiles it and whose ``pre_launch_callbacks`` hand over the
compiled overload), a launch flattens Numba device arrays straight from their attributes (the layout of
`numba.cuda.dispatcher._Kernel._prepare_args`: meminfo, parent, size, itemsize, data pointer, shape, strides in
bytes) and Python ints and floats as the overload's own ctypes, reuses the ``LaunchConfig`` of the grid and
block, and calls the same ``cuda.core`` launch.  Any other argument (host arrays, CuPy/torch arrays, NumPy
scalars), a debug kernel, a kernel with argument extensions, the CUDA simulator, or
``NUMBACONV_CUDA_FAST_LAUNCH=0`` takes Numba's path.
"""

from __future__ import annotations

import ctypes
import os

from . import simulated

ENABLED = os.environ.get("NUMBACONV_CUDA_FAST_LAUNCH", "1") != "0"

_OVERLOADS: dict = {}  # (dispatcher, argument key) -> (context, the overload's cuda.core kernel there, its packers)
_CONFIGS: dict = {}  # (grid, block) -> cuda.core LaunchConfig
_STREAMS: dict = {}  # id(stream) -> (stream, its cuda.core stream): the stream kept, so that its id stays its own
MAX_STREAMS = 64
_PARTS = None  # numba-cuda's launch pieces (see _parts)


def _parts():
    """numba-cuda's launch pieces, or () where this numba-cuda lacks one (then every launch is Numba's own)."""
    global _PARTS
    if _PARTS is None:
        try:
            from numba.cuda import dispatcher, types
            from numba.cuda._compat import CUDA_CORE_GE_1_0
            from numba.cuda.cudadrv import devices, driver
            from numba.cuda.cudadrv.devicearray import DeviceNDArray

            _PARTS = (dispatcher.launch, dispatcher.LaunchConfig,
                      "is_cooperative" if CUDA_CORE_GE_1_0 else "cooperative_launch", DeviceNDArray,
                      driver._to_core_stream, devices.get_context, types)
        except (ImportError, AttributeError):
            _PARTS = ()
    return _PARTS


def _key(args, device_array):
    """The arguments' types as far as they choose an overload (dtype, rank, contiguity of each array; int or
    float), or None for an argument this path does not flatten."""
    key = []
    for value in args:
        kind = type(value)
        if kind is int or kind is float:
            key.append(kind)
        elif isinstance(value, device_array):
            flags = value.flags
            key.append((value.dtype, value.ndim, "C" if flags["C_CONTIGUOUS"] else "F" if flags["F_CONTIGUOUS"]
                        else "A"))
        else:
            return None
    return tuple(key)


def _packers(overload, types):
    """Per argument of a compiled overload, how its value becomes parameters: None for an array (flattened),
    a ctypes type for a scalar; or None where an argument type is one this path leaves to Numba."""
    packers: list = []
    for kind in overload.argument_types:
        if isinstance(kind, types.Array):
            packers.append(None)
        elif isinstance(kind, types.Integer):
            packers.append(getattr(ctypes, f"c_{kind}"))
        elif kind in (types.float32, types.float64):
            packers.append(ctypes.c_float if kind == types.float32 else ctypes.c_double)
        else:
            return None
    return tuple(packers)


def launch(kernel, grid, block, stream, *args) -> None:
    """``kernel[grid, block, stream](*args)``, by the lean path where it applies (see the module's text)."""
    parts = _parts() if ENABLED and not simulated() else ()
    if not parts:
        kernel[grid, block, stream](*args)
        return
    core_launch, config_type, cooperative, device_array, to_core_stream, get_context, types = parts
    key = _key(args, device_array)
    entry = None if key is None else _OVERLOADS.get((kernel, key))
    context = get_context()
    if entry is None or entry[0] is not context:  # (the context object kept: a new one never passes for it)
        configured = kernel[grid, block, stream]
        seen: list = []
        if key is not None:
            configured.pre_launch_callbacks.append(lambda overload, _: seen.append(overload))
        configured(*args)
        if seen and not seen[0].debug and not seen[0].extensions and not seen[0].cooperative:
            packers = _packers(seen[0], types)
            if packers is not None:
                _OVERLOADS[(kernel, key)] = (context, seen[0]._codelibrary.get_cufunc().kernel, packers)
        return
    _, compiled, packers = entry
    config = _CONFIGS.get((grid, block))
    if config is None:
        config = _CONFIGS[(grid, block)] = config_type(grid=grid, block=block, shmem_size=0, **{cooperative: False})
    held = _STREAMS.get(id(stream))
    if held is None or held[0] is not stream:
        if len(_STREAMS) >= MAX_STREAMS:
            _STREAMS.clear()
        held = _STREAMS[id(stream)] = (stream, to_core_stream(stream))
    parameters: list = []
    for value, packer in zip(args, packers):
        if packer is not None:
            parameters.append(packer(value))
        else:  # a Numba device array, flattened as Numba's _prepare_args does
            parameters += (0, 0, value.size, value.dtype.itemsize, value.device_ctypes_pointer.value or 0,
                           *value.shape, *value.strides)
    core_launch(held[1], config, compiled, *parameters)
