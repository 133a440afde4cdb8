"""The tuner: time every CPU kernel that can serve a problem once, remember the fastest.

Like cuDNN's benchmark mode: ``numbaconv.tune(x_shape, weight_shape, ...)`` runs each candidate
kernel on random data of the problem's shape (a warm-up call, then the median of ``repeat``
calls) and records the winner in a small JSON file; ``conv2d(..., algorithm='tuned')`` and
``plan(..., algorithm='tuned')`` then use it, tuning on the first call of a shape they have not
seen.  The file lives in ``$NUMBACONV_CACHE_DIR`` (default ``~/.cache/numbaconv``) and is keyed by
the problem (shapes, options, dtype), the thread count and the CPU, so a result measured on one
machine or thread count is never applied to another.

Concurrency and failures: tuning from many threads or processes at once keeps every entry (each
write takes a file lock, merges with what is on disk, writes a private temporary file and renames
it over the cache atomically); entries that are malformed or name a kernel that cannot serve the
problem are ignored and re-tuned; a cache that cannot be read or written (an unwritable directory,
``tuned.json`` being a directory) degrades to an in-memory cache with one warning.  A convolution
never fails because of its cache.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import platform
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, replace
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

from . import arrays, dispatch, spec as spec_module
from .spec import Activation, ConvSpec, IntOrPair, Layout, Padding, PaddingMode

try:
    import fcntl
except ImportError:  # not POSIX: threads are still serialized, processes merge without a lock
    fcntl = None  # type: ignore[assignment]

CACHE_FILE = "tuned.json"

# What this process has read or measured, by (cache file, key): algorithm='tuned' on a hot path
# must not read the file on every call.
_REMEMBERED: dict = {}


@dataclass(frozen=True)
class Tuned:
    """The tuner's answer: the fastest kernel, and every candidate's median seconds."""

    kernel: str
    seconds: dict
    from_cache: bool


def cache_path() -> pathlib.Path:
    root = os.environ.get("NUMBACONV_CACHE_DIR") or pathlib.Path.home() / ".cache" / "numbaconv"
    return pathlib.Path(root) / CACHE_FILE


def _cpu_model() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def problem_key(spec: ConvSpec) -> str:
    """The cache key: the problem, the thread count and the CPU."""
    fields = spec.as_dict()
    fields.pop("out_shape", None)
    problem = ",".join(f"{name}={fields[name]}" for name in sorted(fields))
    return f"{_cpu_model()}|threads={numba.get_num_threads()}|{problem}"


def _load(path: pathlib.Path) -> dict:
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return {}  # no file yet, a damaged one or an unreadable path: tune afresh
    return entries if isinstance(entries, dict) else {}


def _entry(raw, names) -> Tuned | None:
    """A cache entry as a `Tuned`, or None if it is malformed or names a kernel not in ``names``."""
    if not isinstance(raw, dict) or raw.get("kernel") not in names or not isinstance(raw.get("seconds"), dict):
        return None
    seconds = raw["seconds"]
    for name, value in seconds.items():
        if (not isinstance(name, str) or isinstance(value, bool) or not isinstance(value, (int, float))
                or not math.isfinite(value) or value < 0):
            return None
    return Tuned(raw["kernel"], dict(seconds), from_cache=True)


_WRITE_LOCK = threading.Lock()  # one writer per process; the file lock orders the processes
_UNWRITABLE: set = set()  # cache files that failed to be written (warned once each)


def _store(path: pathlib.Path, key: str, tuned: Tuned) -> None:
    """Merge one entry into the cache file: under a lock, read what is there, add the entry, write a private
    temporary file and rename it over the cache (readers see the old file or the new one, never half)."""
    with _WRITE_LOCK:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(path.name + ".lock"), "a") as lock:
            if fcntl is not None:
                fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            entries = _load(path)
            entries[key] = {"kernel": tuned.kernel, "seconds": tuned.seconds}
            handle, temporary = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
            try:
                with os.fdopen(handle, "w") as file:
                    json.dump(entries, file, indent=1, sort_keys=True)
                os.replace(temporary, path)
            except BaseException:
                os.unlink(temporary)
                raise


def _store_or_warn(path: pathlib.Path, key: str, tuned: Tuned) -> None:
    try:
        _store(path, key, tuned)
    except OSError as error:
        if str(path) not in _UNWRITABLE:
            _UNWRITABLE.add(str(path))
            warnings.warn(f"numbaconv: the tuning cache {path} cannot be written ({error}); tuned kernels are "
                          "remembered in memory for this process only (set NUMBACONV_CACHE_DIR to a writable "
                          "directory)", RuntimeWarning, stacklevel=4)


def candidates(spec: ConvSpec) -> list:
    """Every CPU kernel that can serve ``spec`` (the NumPy oracle excluded)."""
    return [a for a in dispatch.algorithms()
            if a.device == "cpu" and a.name != "reference" and a.unsupported(spec) is None]


def _median_seconds(call, repeat: int) -> float:
    call()  # warm-up: compiles or loads the kernel, touches the memory
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def random_problem(spec: ConvSpec):
    """``(kernel spec, x, weight, bias, out)``: seeded random arrays of the problem, drawn in its dtype (no
    float64 intermediate), as the kernels see them (batched NCHW, degenerate geometry gathered)."""
    rng = np.random.default_rng(0)
    nchw = replace(spec, layout="NCHW", batched=True)
    x = rng.standard_normal((spec.batch, spec.in_channels, spec.in_height, spec.in_width), dtype=spec.dtype)
    kernel_spec, x = arrays.kernel_input(x, nchw)
    weight = rng.standard_normal(spec.weight_shape, dtype=spec.dtype)
    bias = rng.standard_normal(spec.out_channels, dtype=spec.dtype)
    return kernel_spec, x, weight, bias, np.empty(spec.nchw_out_shape, spec.dtype)


def tune_spec(spec: ConvSpec, repeat: int = 5, use_cache: bool = True) -> Tuned:
    """Tune a validated problem (see `tune`)."""
    repeat = spec_module.count(repeat, "repeat")
    path, key = cache_path(), problem_key(spec)
    serving = candidates(spec)
    if use_cache:
        remembered = _REMEMBERED.get((str(path), key))
        if remembered is not None:
            return remembered
        tuned = _entry(_load(path).get(key), {a.name for a in serving})
        if tuned is not None:
            _REMEMBERED[(str(path), key)] = tuned
            return tuned
    kernel_spec, x, weight, bias, out = random_problem(spec)
    seconds = {}
    for algorithm in serving:
        seconds[algorithm.name] = _median_seconds(lambda: algorithm.run(kernel_spec, x, weight, bias, out), repeat)
    tuned = Tuned(min(seconds, key=lambda name: seconds[name]), seconds, from_cache=False)
    if use_cache:
        _REMEMBERED[(str(path), key)] = Tuned(tuned.kernel, tuned.seconds, from_cache=True)
        _store_or_warn(path, key, tuned)
    return tuned


def tune(x_shape: tuple[int, ...], weight_shape: tuple[int, int, int, int], bias: Any = False,
         stride: IntOrPair = 1, padding: Padding = 0, dilation: IntOrPair = 1, groups: int = 1, *,
         dtype: npt.DTypeLike = np.float32, padding_mode: PaddingMode = "zeros", activation: Activation = None,
         layout: Layout = "NCHW", repeat: int = 5, use_cache: bool = True) -> Tuned:
    """Time every CPU kernel that serves this problem and remember the fastest for ``algorithm='tuned'``.

    Arguments as for `numbaconv.plan`.  Returns the winner and each candidate's median time;
    with ``use_cache`` (the default) a problem tuned before on this machine and thread count is
    answered from the cache file without timing (``from_cache=True``), and a new result is saved.
    """
    spec = spec_module.problem_from_shapes(x_shape, weight_shape, bias, stride, padding, dilation, groups,
                                           dtype=dtype, padding_mode=padding_mode, activation=activation,
                                           layout=layout)
    return tune_spec(spec, repeat=repeat, use_cache=use_cache)


dispatch.register_tuner(tune_spec)  # algorithm='tuned' in conv2d and plan
