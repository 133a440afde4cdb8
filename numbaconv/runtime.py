"""The threads the kernels run on: Numba's threading layer, fork safety and thread safety.

Set up once, when numbaconv is imported, before any kernel runs:

* **The threading layer is TBB when it is installed** (the ``tbb`` package is a dependency on the
  platforms that have wheels).  TBB is the one layer of Numba's three that is both thread-safe
  (kernels called from many Python threads at once) and fork-safe (``multiprocessing`` with the
  ``fork`` start method, the Linux default that data loaders use).  GNU OpenMP, the layer Numba
  picks otherwise, aborts a forked child that starts a parallel region ("fork() called from a
  process already using GNU OpenMP"), and the workqueue layer aborts on concurrent calls.  pip
  puts TBB's library under ``<prefix>/lib``, where the dynamic loader does not look, so it is
  loaded here by its full path; Numba's default layer order (tbb, omp, workqueue) then finds it.
  A layer chosen by the user (``NUMBA_THREADING_LAYER``, or ``numba.config.THREADING_LAYER`` set
  before the first parallel call) always wins.
* **Whatever layer runs, no call crashes or hangs** (`parallel_allowed`, `launch_lock`): in a
  child forked from a process whose OpenMP pool was started, the kernels run their serial twins
  (one warning says so); with the workqueue layer, parallel kernels are launched one at a time.

Measured on the 2-core VM (docs/performance.md): TBB ran the default suite's kernels as fast as
OpenMP or faster (depthwise layers 10-40 % faster: its work stealing balances the tasks).

Environment defaults for Numba's own OpenMP pool, where it is the layer, are set here too (a value
the user set wins; `ENVIRONMENT_SET` records them, and the bench's peers never see them).
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import warnings

ENVIRONMENT_SET: dict = {}  # the variables numbaconv set itself (never the user's): name -> value
# the CPUs this process may run on, before any thread pool binds threads (latency mode pins the caller)
INITIAL_AFFINITY = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


def _default(name: str, value: str) -> None:
    if name not in os.environ:
        os.environ[name] = value
        ENVIRONMENT_SET[name] = value


# Opt-in latency mode, NUMBACONV_LATENCY=1 (read at import): Numba's OpenMP layer with workers that
# spin ~200k iterations after each kernel and are bound one per core.  On the 2-core VM a sleeping
# worker takes longer to wake than a small layer runs (a parallel region ran no faster than its
# serial twin up to ~20 M multiply-adds).  Measured on the default suite (docs/performance.md):
# 1.13-1.14x back to back at batch 1, 0.95-1.00x at batch 8 (pointwise 1.17-1.34x), without the TBB
# default's bimodal timings (a layer at 265 us, then 500 us).  The price: the workers hold the cores for a
# while after each call (other thread pools of the process wait), and a forked child runs the serial
# twins (GNU OpenMP cannot start threads after a fork).  For a machine dedicated to inference.
LATENCY_MODE = os.environ.get("NUMBACONV_LATENCY") == "1" and not os.environ.get("NUMBA_THREADING_LAYER")
if LATENCY_MODE:
    _default("NUMBA_THREADING_LAYER", "omp")
    _default("GOMP_SPINCOUNT", "200000")
    _default("OMP_PROC_BIND", "true")
    if "numba" in sys.modules:  # Numba already imported: its config has read the environment
        sys.modules["numba"].config.THREADING_LAYER = "omp"
# NumPy's BLAS is left as the user set it up (numbaconv used to export OPENBLAS_THREAD_TIMEOUT=4,
# which makes OpenBLAS's workers sleep at once: under the TBB layer it made no measurable
# difference to the BLAS-backed kernels, 0.9-1.1x on the default suite, and it changed every BLAS
# call of the user's program).


def _load_tbb() -> str | None:
    """Load the ``tbb`` package's shared library by its full path; the path, or None."""
    try:
        from importlib import metadata

        files = metadata.distribution("tbb").files or []
    except Exception:  # not installed (or unreadable metadata): Numba picks another layer
        return None
    for file in files:
        name = file.name
        if name.startswith("libtbb.so.12") or name in ("libtbb.12.dylib", "tbb12.dll"):
            path = str(file.locate())
            try:
                ctypes.CDLL(path, mode=getattr(ctypes, "RTLD_GLOBAL", 0))
            except OSError:
                return None
            return path
    return None


TBB_LIBRARY = None
# loaded unless another layer is asked for by name (latency mode asks for omp): NUMBA_THREADING_LAYER=tbb,
# or Numba's 'safe'/'forksafe'/'threadsafe'/'default' choices, need it on the loader's path too
if os.environ.get("NUMBA_THREADING_LAYER", "").lower() not in ("omp", "workqueue"):
    TBB_LIBRARY = _load_tbb()

# Numba's OpenMP workers spin for ~300k iterations (about 8 ms here) after each parallel
# region, holding the cores that the next NumPy/BLAS call needs: a BLAS product followed
# by one of our kernels then costs ~8 ms extra.  A short spin keeps back-to-back kernels
# fast and frees the cores at once.  Only where OpenMP will be Numba's layer (no TBB): the
# variable reaches every OpenMP library the process loads later (torch's pool ran up to 2x
# slower with it), and under TBB numbaconv has no use for it.  A value the user set wins.
if TBB_LIBRARY is None and os.environ.get("NUMBA_THREADING_LAYER", "omp") == "omp":
    _default("GOMP_SPINCOUNT", "1000")


def _unbind_caller() -> None:
    """Latency mode: GNU OpenMP binds the thread that loads it (OMP_PROC_BIND) to the first core, and
    every thread it starts later (NumPy's BLAS workers, the user's threads, child processes) would
    inherit that one core.  Load the pool now and give this thread back every CPU it had; the
    workers are bound to their own cores when the first kernel starts them."""
    if INITIAL_AFFINITY is None:
        return
    try:
        from numba.np.ufunc import parallel

        parallel._launch_threads()
        os.sched_setaffinity(0, INITIAL_AFFINITY)
    except Exception:  # an unusual platform: latency mode still works, with the caller bound
        pass


if LATENCY_MODE:
    _unbind_caller()


# ---- fork and thread safety ---------------------------------------------------------------------
_FORKED_FROM_OPENMP = False  # this process is a fork of one whose OpenMP pool was running
_WARNED = False
_LAUNCH_LOCK = threading.Lock()


_LAYER = None


def threading_layer() -> str | None:
    """The layer Numba's parallel kernels run on in this process, or None before the first one."""
    global _LAYER
    if _LAYER is None:
        import numba

        try:
            _LAYER = numba.threading_layer()
        except ValueError:  # no parallel region has run yet
            return None
    return _LAYER


def _layer_started_before_import() -> str | None:
    """The threading layer Numba already started before numbaconv was imported (a parallel Numba function ran
    first), where it is not the one numbaconv would have had it pick; None otherwise."""
    if "numba" not in sys.modules or os.environ.get("NUMBA_THREADING_LAYER"):
        return None
    layer = threading_layer()
    return layer if layer is not None and TBB_LIBRARY is not None and layer != "tbb" else None


EARLY_LAYER = _layer_started_before_import()
if EARLY_LAYER is not None:
    warnings.warn(f"numbaconv: a parallel Numba function ran before numbaconv was imported, so Numba's threading "
                  f"layer is already {EARLY_LAYER!r}, not TBB (thread- and fork-safe); numbaconv's kernels run "
                  f"correctly on it (see numbaconv.runtime). To get TBB, import numbaconv before the first parallel "
                  f"Numba call, or set NUMBA_THREADING_LAYER=tbb.", RuntimeWarning, stacklevel=2)


def _after_fork_in_child() -> None:
    global _FORKED_FROM_OPENMP
    if threading_layer() == "omp":
        _FORKED_FROM_OPENMP = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def parallel_allowed() -> bool:
    """False in a child forked from a process that ran GNU OpenMP (it would abort): run serially."""
    global _WARNED
    if not _FORKED_FROM_OPENMP:
        return True
    if not _WARNED:
        _WARNED = True
        warnings.warn("numbaconv: this process was forked from one that used Numba's OpenMP threading layer, "
                      "which cannot start threads after a fork; its kernels run single-threaded here. Install "
                      "the 'tbb' package (pip install tbb) or use the 'spawn' start method.", RuntimeWarning,
                      stacklevel=3)
    return False


def launch_lock() -> threading.Lock | None:
    """A lock that parallel launches must hold: the workqueue layer aborts on concurrent calls (and
    before the first launch the layer is not known yet, so that one is serialized too)."""
    return _LAUNCH_LOCK if threading_layer() in (None, "workqueue") else None
