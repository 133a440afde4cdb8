"""One kernel source, two compilations: parallel (``prange`` over threads) and serial.

Waking Numba's thread pool costs tens of microseconds on a small VM, more than a small layer's
whole work, so the dispatch runs small problems on the serial twin.  The serial twin is also
what runs where threads cannot (`numbaconv.runtime.parallel_allowed`: a child forked from a
process that ran GNU OpenMP), and parallel launches take the runtime's lock where the threading
layer needs one (workqueue): no call crashes or hangs, whatever the threading layer.

Numba's on-disk cache names an entry after the Python function (module, qualified name, first
line) and keys it by signature and bytecode, **not** by the compile options: two ``njit``s of one
function with ``parallel=True`` and ``parallel=False`` share one cache entry, and whichever was
compiled last is what both load in the next process.  So the serial twin is compiled from a
copy of the function under its own name, ``<name>_serial``.
"""

from types import FunctionType

from numba import njit

from .. import runtime
from ..config import PARALLEL_MIN_WORK


class Twins:
    """The parallel and serial compilations of one kernel; calling it picks one for the work."""

    def __init__(self, py_func, **options):
        self.parallel = njit(parallel=True, cache=True, **options)(py_func)
        copy = FunctionType(py_func.__code__, py_func.__globals__, py_func.__name__ + "_serial",
                            py_func.__defaults__, py_func.__closure__)
        copy.__qualname__ = py_func.__qualname__ + "_serial"
        copy.__module__ = py_func.__module__
        copy.__doc__ = py_func.__doc__
        self.serial = njit(cache=True, **options)(copy)
        self.__doc__ = py_func.__doc__

    def __call__(self, work, *args, minimum=PARALLEL_MIN_WORK):
        """Run on ``args``: serially when ``work`` (operations or elements) is below ``minimum`` or where
        threads cannot run; else in parallel."""
        if work < minimum or not runtime.parallel_allowed():
            return self.serial(*args)
        lock = runtime.launch_lock()
        if lock is None:
            return self.parallel(*args)
        with lock:
            return self.parallel(*args)
