"""numba.cuda kernels, one module per family, with their launch configuration in ``launch``.

Importing this package does not import ``numba.cuda``: `available` does, on demand,
so the CPU library works where numba-cuda is absent.  Under ``NUMBA_ENABLE_CUDASIM=1``
the same kernels run in Numba's CUDA simulator (every thread in Python), which is how CI
tests them; the tile sizes shrink there (see ``launch``) so that tiny inputs still span
several blocks.
"""

from __future__ import annotations

import functools
import os


@functools.cache
def simulated() -> bool:
    """Whether Numba's CUDA simulator runs the kernels (NUMBA_ENABLE_CUDASIM=1, which Numba reads once too)."""
    return os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


def available() -> bool:
    """Whether CUDA kernels can run here: a GPU with its driver, or the simulator."""
    try:
        from numba import cuda
    except Exception:  # numba-cuda absent or broken
        return False
    try:
        return bool(cuda.is_available())
    except Exception:
        return False
