"""The tuner: time every CPU kernel that can serve a problem once, remember the fastest.

Like cuDNN's benchmark mode: ``numbaconv.tune(x_shape, weight_shape, ...)`` runs each candidate
kernel on random data of the problem's shape (a warm-up call, then the median of ``repeat``
calls) and records the winner in a small JSON file; ``conv2d(..., algorithm='tuned')`` and
``plan(..., algorithm='tuned')`` then use it, tuning on the first call of a shape they have not
seen.  The file lives in ``$NUMBACONV_CACHE_DIR`` (default ``~/.cache/numbaconv``) and is keyed by
the problem (shapes, options, dtype), the thread count and the CPU, so a result measured on one
machine or thread count is never applied to another.
"""

from __future__ import annotations

import json
import os
import pathlib
import platform
import time
from dataclasses import dataclass, replace

import numba
import numpy as np

from . import dispatch
from .spec import ConvSpec

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
    except (OSError, ValueError):
        return {}  # no file yet, or a damaged one: tune afresh (and overwrite it)
    return entries if isinstance(entries, dict) else {}


def _store(path: pathlib.Path, key: str, tuned: Tuned) -> None:
    entries = _load(path)
    entries[key] = {"kernel": tuned.kernel, "seconds": tuned.seconds}
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps(entries, indent=1, sort_keys=True))
    temporary.replace(path)  # atomic: a concurrent reader sees the old file or the new one


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


def tune_spec(spec: ConvSpec, repeat: int = 5, use_cache: bool = True) -> Tuned:
    """Tune a validated problem (see `tune`)."""
    if not isinstance(repeat, int) or isinstance(repeat, bool) or repeat < 1:
        raise ValueError(f"repeat must be an int >= 1, got {repeat!r}")
    path, key = cache_path(), problem_key(spec)
    if use_cache:
        remembered = _REMEMBERED.get((str(path), key))
        if remembered is not None:
            return remembered
        entry = _load(path).get(key)
        if entry and entry.get("kernel") in {a.name for a in candidates(spec)}:
            tuned = Tuned(entry["kernel"], dict(entry.get("seconds", {})), from_cache=True)
            _REMEMBERED[(str(path), key)] = tuned
            return tuned
    rng = np.random.default_rng(0)
    x = rng.standard_normal((spec.batch, spec.in_channels, spec.in_height, spec.in_width)).astype(spec.dtype)
    weight = rng.standard_normal(spec.weight_shape).astype(spec.dtype)
    bias = rng.standard_normal(spec.out_channels).astype(spec.dtype)
    out = np.empty(spec.nchw_out_shape, spec.dtype)
    nchw = replace(spec, layout="NCHW", batched=True)  # the kernels see batched NCHW arrays
    seconds = {}
    for algorithm in candidates(spec):
        seconds[algorithm.name] = _median_seconds(lambda: algorithm.run(nchw, x, weight, bias, out), repeat)
    tuned = Tuned(min(seconds, key=seconds.get), seconds, from_cache=False)
    if use_cache:
        _store(path, key, tuned)
        _REMEMBERED[(str(path), key)] = Tuned(tuned.kernel, tuned.seconds, from_cache=True)
    return tuned


def tune(x_shape, weight_shape, bias=False, stride=1, padding=0, dilation=1, groups=1, *, dtype=np.float32,
         padding_mode="zeros", activation=None, layout="NCHW", repeat=5, use_cache=True) -> Tuned:
    """Time every CPU kernel that serves this problem and remember the fastest for ``algorithm='tuned'``.

    Arguments as for `numbaconv.plan`.  Returns the winner and each candidate's median time;
    with ``use_cache`` (the default) a problem tuned before on this machine and thread count is
    answered from the cache file without timing (``from_cache=True``), and a new result is saved.
    """
    bias_shape = (weight_shape[0],) if bias is True else (None if bias in (False, None) else np.shape(bias))
    spec = ConvSpec.from_shapes(x_shape, weight_shape, bias_shape, stride, padding, dilation, groups, dtype=dtype,
                                padding_mode=padding_mode, activation=activation, layout=layout)
    return tune_spec(spec, repeat=repeat, use_cache=use_cache)
