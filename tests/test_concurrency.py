"""Thread safety: 8 threads making mixed calls at once (every family, both layouts, forward and backward,
separable, conv1d, shuffle, tuning) get bitwise the results of the same calls made one at a time.

Every kernel owns its output (no two threads of a kernel write one place, no atomics), so a result is
a function of the inputs alone, whichever Python thread calls and whatever else runs at the same time.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

import numbaconv
from conftest import GROUPED_KERNELS
from numbaconv import tuning

THREADS = 8
ROUNDS = 3


def calls(rng):
    """(name, function) pairs; each function returns a NumPy array computed from fixed inputs."""
    def array(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    x = array(2, 16, 20, 20)
    x_nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    x64 = x.astype(np.float64)
    pw, dw, gw, dense = array(24, 16, 1, 1), array(16, 1, 3, 3), array(16, 4, 3, 3), array(8, 16, 3, 3)
    dw_mult, bias16 = array(32, 1, 5, 5), array(16)
    gy_dw, gy_g = array(2, 16, 10, 10), array(2, 16, 20, 20)
    sequence, w1d = array(2, 16, 50), array(16, 1, 5)
    return [
        ("pointwise", lambda: numbaconv.conv2d(x, pw, activation="relu")),
        ("pointwise nhwc", lambda: numbaconv.conv2d(x_nhwc, pw, layout="NHWC")),
        ("depthwise", lambda: numbaconv.conv2d(x, dw, bias16, padding=1, groups=16, activation="relu6")),
        ("depthwise nhwc s2", lambda: numbaconv.conv2d(x_nhwc, dw, stride=2, padding=1, groups=16, layout="NHWC")),
        ("depthwise multiplier float64", lambda: numbaconv.conv2d(x64, dw_mult.astype(np.float64), padding=2,
                                                                   groups=16)),
        ("grouped explicit", lambda: numbaconv.conv2d(x, gw, padding=1, groups=4, algorithm="grouped")),
        ("grouped blas", lambda: numbaconv.conv2d(x, dense, padding=1, padding_mode="reflect")),
        ("separable", lambda: numbaconv.separable_conv2d(x, dw, pw, padding=1, depthwise_activation="relu6")),
        ("conv1d", lambda: numbaconv.conv1d(sequence, w1d, padding=2, groups=16)),
        ("shuffle", lambda: numbaconv.channel_shuffle(x, 4)),
        ("grad input depthwise", lambda: numbaconv.conv2d_grad_input(x.shape, dw, gy_dw, stride=2, padding=1,
                                                                     groups=16)),
        ("grad weight depthwise", lambda: numbaconv.conv2d_grad_weight(x, dw.shape, gy_dw, stride=2, padding=1,
                                                                       groups=16)),
        ("grad input grouped", lambda: numbaconv.conv2d_grad_input(x.shape, gw, gy_g, padding=1, groups=4)),
        ("grad weight grouped", lambda: numbaconv.conv2d_grad_weight(x, gw.shape, gy_g, padding=1, groups=4)),
        ("grad bias", lambda: numbaconv.conv2d_grad_bias(gy_g)),
    ]


def test_eight_threads_get_bitwise_the_serial_results(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMBACONV_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tuning, "_REMEMBERED", {})
    work = calls(np.random.default_rng(14))
    expected = {name: function() for name, function in work}  # one at a time, in this thread
    results, errors = [], []
    start = threading.Barrier(THREADS)

    def worker(index):
        order = np.random.default_rng(index).permutation(len(work))  # each thread its own order
        start.wait()
        try:
            for _ in range(ROUNDS):
                for i in order:
                    name, function = work[i]
                    results.append((name, function()))
                tuned = numbaconv.tune((1, 16, 12 + index, 12), (16, 4, 3, 3), groups=4, padding=1, repeat=1)
                results.append(("tune", np.array([tuned.kernel in GROUPED_KERNELS])))
        except Exception as error:  # noqa: BLE001 - any failure is the bug
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    assert not errors, errors
    assert len(results) == THREADS * ROUNDS * (len(work) + 1)
    for name, got in results:
        if name == "tune":
            assert got.all()
            continue
        assert got.dtype == expected[name].dtype and np.array_equal(got, expected[name]), name
    assert len(tuning._load(tuning.cache_path())) == THREADS  # every thread's tuned shape was kept


@pytest.mark.parametrize("layer", ["omp", "workqueue"])
def test_other_threading_layers_neither_crash_nor_hang(layer):
    """Where the user picks another threading layer, concurrent calls still work (workqueue: launches are
    serialized by numbaconv.runtime instead of aborting the process)."""
    import subprocess
    import sys

    code = """
import threading, numpy as np, numbaconv, numba
x = np.ones((1, 16, 64, 64), np.float32); w = np.ones((16, 1, 3, 3), np.float32)
expected = numbaconv.conv2d(x, w, padding=1, groups=16)
ok = []
def run():
    for _ in range(20):
        ok.append(np.array_equal(numbaconv.conv2d(x, w, padding=1, groups=16), expected))
threads = [threading.Thread(target=run) for _ in range(8)]
[t.start() for t in threads]; [t.join() for t in threads]
assert all(ok) and len(ok) == 160
print("layer", numba.threading_layer())
"""
    import os

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, NUMBA_THREADING_LAYER=layer))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"layer {layer}" in result.stdout


@pytest.mark.parametrize("user_layer", [None, "tbb"])
def test_latency_mode_spins_bound_openmp_workers_unless_the_user_chose_a_layer(user_layer):
    """NUMBACONV_LATENCY=1: Numba's OpenMP layer with spinning, bound workers (numbaconv.runtime), results
    unchanged; a threading layer the user chose wins, and the variables numbaconv set are on record."""
    import os
    import subprocess
    import sys

    code = """
import numpy as np, numbaconv, numba
from numbaconv import reference, runtime
x = np.random.default_rng(0).standard_normal((2, 16, 40, 40)).astype(np.float32)
w = np.ones((16, 1, 3, 3), np.float32)
assert np.allclose(numbaconv.conv2d(x, w, padding=1, groups=16), reference.conv2d(x, w, padding=1, groups=16),
                   atol=1e-5)
print("layer", numba.threading_layer(), "mode", runtime.LATENCY_MODE, "set", sorted(runtime.ENVIRONMENT_SET))
"""
    env = {key: value for key, value in os.environ.items()
           if key not in ("NUMBA_THREADING_LAYER", "GOMP_SPINCOUNT", "OMP_PROC_BIND")}
    env["NUMBACONV_LATENCY"] = "1"
    if user_layer:
        env["NUMBA_THREADING_LAYER"] = user_layer
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    if user_layer:
        assert f"layer {user_layer} mode False" in result.stdout
    else:
        assert "layer omp mode True" in result.stdout
        assert "'GOMP_SPINCOUNT', 'NUMBA_THREADING_LAYER', 'OMP_PROC_BIND'" in result.stdout


@pytest.mark.parametrize("first", ["numpy", "numba", "numbaconv"])
def test_import_order_does_not_matter(first):
    """numpy, numba and numbaconv imported in any order (a numba parallel kernel even run before numbaconv's
    import): the same threading layer as numbaconv's default, the same results, BLAS settings untouched."""
    import os
    import subprocess
    import sys

    before = {
        "numpy": "import numpy as np",
        "numba": "import numba, numpy as np\n"
                 "@numba.njit(parallel=True)\n"
                 "def f(a):\n"
                 "    for i in numba.prange(a.size):\n"
                 "        a[i] += 1\n"
                 "f(np.zeros(64))",
        "numbaconv": "import numbaconv",
    }[first]
    code = before + """
import numpy as np, numba, numbaconv
from numbaconv import reference
x = np.random.default_rng(0).standard_normal((2, 16, 30, 30)).astype(np.float32)
w = np.random.default_rng(1).standard_normal((16, 1, 3, 3)).astype(np.float32)
assert np.allclose(numbaconv.conv2d(x, w, padding=1, groups=16), reference.conv2d(x, w, padding=1, groups=16),
                   atol=1e-4)
print("layer", numba.threading_layer(), "blas", {k: v for k, v in __import__("os").environ.items() if "BLAS" in k})
"""
    env = {key: value for key, value in os.environ.items() if key != "NUMBA_THREADING_LAYER"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    reference_run = subprocess.run([sys.executable, "-c", "import numbaconv\n" + code], capture_output=True,
                                   text=True, timeout=300, env=env)
    if first == "numba" and "layer tbb" in reference_run.stdout:
        # Numba chose its layer before numbaconv could load TBB: numbaconv says so, once, and still computes right
        assert "layer tbb" not in result.stdout and result.stderr.count("ran before numbaconv was imported") == 1
    else:
        assert result.stdout == reference_run.stdout, (result.stdout, reference_run.stdout)
        assert "ran before numbaconv was imported" not in result.stderr
