"""One kernel source, two compilations: parallel (``prange`` over threads) and serial.

Waking Numba's thread pool costs tens of microseconds on a small VM, more than a small layer's
whole work, so the dispatch runs small problems on the serial twin.

Numba's on-disk cache names an entry after the Python function (module, qualified name, first
line) and keys it by signature and bytecode, **not** by the compile options: two ``njit``s of one
function with ``parallel=True`` and ``parallel=False`` share one cache entry, and whichever was
compiled last is what both load in the next process.  So the serial twin is compiled from a
copy of the function under its own name, ``<name>_serial``.
"""

from types import FunctionType

from numba import njit


def parallel_and_serial(py_func, **options):
    """``(parallel, serial)`` dispatchers of ``py_func``, each with its own cache entry."""
    parallel = njit(parallel=True, cache=True, **options)(py_func)
    copy = FunctionType(py_func.__code__, py_func.__globals__, py_func.__name__ + "_serial",
                        py_func.__defaults__, py_func.__closure__)
    copy.__qualname__ = py_func.__qualname__ + "_serial"
    copy.__module__ = py_func.__module__
    copy.__doc__ = py_func.__doc__
    serial = njit(cache=True, **options)(copy)
    return parallel, serial
