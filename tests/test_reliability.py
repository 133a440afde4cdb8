"""Regression tests of issue 14: no crash, hang, silent wrong answer or lost data, on any input, thread or process.

One section per numbered case of the issue.  Calls that once crashed, hung or exhausted memory run in a
guarded subprocess (`guarded`: a time limit, an address-space limit, and the peak resident memory read
back), so that a regression fails the test instead of killing the test run.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap
import threading
import warnings

import numpy as np
import pytest
from conftest import GROUPED_KERNELS, assert_matches_reference, check_grads

import numbaconv
from numbaconv import cli, dispatch, reference, tuning

ROOT = pathlib.Path(__file__).resolve().parents[1]
# The child's own peak: /proc/self/status's VmHWM (this address space's high-water mark).  Not ru_maxrss:
# Linux carries into it the resident size of the pre-exec copy of the parent, so a long test run's
# grown pytest process (over 1 GiB) read as the child's peak.
GUARD = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
{code}
try:
    peak_kib = int(next(line for line in open("/proc/self/status") if line.startswith("VmHWM:")).split()[1])
except (OSError, StopIteration):
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print("peak_rss_mib", peak_kib // 1024)
"""


def guarded(code: str, timeout: float = 120, address_space_gib: float = 4, env=None) -> tuple[str, int]:
    """Run ``code`` in a fresh interpreter under a time and address-space limit; ``(stdout, peak RSS in MiB)``.
    A crash, a hang or a refused allocation fails the calling test with what the child printed."""
    limit = int(address_space_gib * 2**30)
    script = GUARD.format(limit=limit, code=textwrap.dedent(code))
    try:
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout,
                                cwd=ROOT, env=dict(os.environ, **(env or {})))
    except subprocess.TimeoutExpired as expired:
        pytest.fail(f"hung: no answer in {timeout} s\n{expired.stdout}\n{expired.stderr}")
    assert result.returncode == 0, f"exit status {result.returncode}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    peak = int(result.stdout.split("peak_rss_mib")[-1])
    return result.stdout, peak


# ---- 1. huge stride, dilation and padding: work and memory follow the output -------------------------------
def test_the_reported_huge_stride_and_dilation_calls_are_fast_small_and_right():
    output, peak = guarded("""
        import time
        import numpy as np, numbaconv
        from numbaconv import reference
        x = np.ones((1, 2, 3, 3), np.float32)
        w = np.ones((2, 1, 2, 2), np.float32)
        for stride in (2**32, 2**62, 30000, 2**63 - 1):
            got = numbaconv.conv2d(x, w, groups=2, stride=stride)
            assert got.shape == (1, 2, 1, 1) and (got == 4).all(), got
        pw = np.ones((3, 2, 1, 1), np.float32)
        got = numbaconv.separable_conv2d(x, w, pw, stride=2**32)
        assert (got == 8).all(), got
        g = numbaconv.conv2d_grad_weight(x, w.shape, np.ones((1, 2, 1, 1), np.float32), stride=10000, groups=2)
        assert (g == 1).all(), g
        gi = numbaconv.conv2d_grad_input(x.shape, w, np.ones((1, 2, 1, 1), np.float32), stride=2**40, groups=2)
        assert gi[0, :, :2, :2].sum() == 8 and gi.sum() == 8, gi
        start = time.perf_counter()
        w3 = np.arange(18, dtype=np.float32).reshape(2, 1, 3, 3)
        for mode in ("zeros", "replicate"):
            got = numbaconv.conv2d(x, w3, groups=2, dilation=10000, padding=10000, padding_mode=mode)
            np.testing.assert_allclose(got, reference.conv2d(x, w3, groups=2, dilation=10000, padding=10000,
                                                             padding_mode=mode), rtol=1e-6)
        gw = numbaconv.conv2d_grad_weight(x, w3.shape, np.ones((1, 2, 3, 3), np.float32), dilation=10000,
                                          padding=10000, groups=2)
        gr = reference.conv2d_grad_weight(x, w3.shape, np.ones((1, 2, 3, 3), np.float32), dilation=10000,
                                          padding=10000, groups=2)
        np.testing.assert_allclose(gw, gr)
        print("seconds", time.perf_counter() - start)
    """)
    assert float(output.split("seconds")[1].split()[0]) < 30
    assert peak < 1024, f"peak resident memory {peak} MiB"


def test_empty_results_over_a_huge_padded_area_cost_nothing():
    """An empty batch or no channels over a 60000 x 60000 padded area: the result is empty, and neither numbaconv
    nor the reference builds anything of that area (the reference's tap mask was 3.6 GB of booleans per tap, the
    GEMM's block search looped once per tile of the empty problem; the fuzz test met both)."""
    output, peak = guarded("""
        import numpy as np, numbaconv
        from numbaconv import reference
        for x_shape, w_shape, kwargs in [((0, 1, 5, 1), (1, 1, 1, 1), dict(padding=30000, dilation=10000)),
                                         ((1, 0, 3, 6), (0, 0, 2, 1), dict(padding=30000, dilation=(3, 2))),
                                         ((0, 4, 7, 4), (4, 1, 2, 3), dict(padding=10000, stride=2, groups=4))]:
            x = np.ones(x_shape, np.float32)
            w = np.ones(w_shape, np.float32)
            got, expected = numbaconv.conv2d(x, w, **kwargs), reference.conv2d(x, w, **kwargs)
            assert got.size == 0 and got.shape == expected.shape, (got.shape, expected.shape)
            gy = np.ones(got.shape, np.float32)
            assert reference.conv2d_grad_weight(x, w.shape, gy, **kwargs).shape == w.shape
            assert numbaconv.conv2d_grad_weight(x, w.shape, gy, **kwargs).shape == w.shape
        print("done")
    """, timeout=60, address_space_gib=2)
    assert "done" in output and peak < 1024, f"peak resident memory {peak} MiB"


@pytest.mark.parametrize("name", ["stride", "padding", "dilation"])
@pytest.mark.parametrize("value", [2**63, 2**64, -(2**63) - 1])
def test_unrepresentable_integers_are_a_value_error_naming_the_parameter(name, value):
    x, w = np.ones((1, 2, 3, 3), np.float32), np.ones((2, 1, 2, 2), np.float32)
    with pytest.raises(ValueError, match=f"{name} must be"):
        numbaconv.conv2d(x, w, groups=2, **{name: value})
    with pytest.raises(ValueError, match=f"{name} must be"):
        numbaconv.plan(x.shape, w.shape, groups=2, **{name: (1, value)})
    with pytest.raises(ValueError, match="groups must be"):
        numbaconv.conv2d(x, w, groups=2**64)


GEOMETRIES = [
    dict(stride=(7, 9), padding=5),
    dict(dilation=(2, 40), padding=(1, 40)),
    dict(stride=(2**40, 3), padding=(2, 3)),
    dict(stride=(1, 3000), dilation=(3, 1)),
    dict(dilation=(2, 3), padding=(4, 5), stride=(5, 7)),
]


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
@pytest.mark.parametrize("padding_mode", ["zeros", "replicate", "reflect", "circular"])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("groups, weight_shape", [(3, (6, 1, 3, 3)), (1, (4, 3, 2, 3)), (1, (4, 3, 1, 1))])
def test_degenerate_geometry_matches_the_reference(rng, geometry, padding_mode, layout, groups, weight_shape):
    x = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
    if layout == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    weight = rng.standard_normal(weight_shape).astype(np.float32)
    kwargs = dict(geometry, groups=groups, padding_mode=padding_mode, layout=layout)
    try:
        numbaconv.plan(x.shape, weight.shape, **kwargs)
    except ValueError as error:  # reflect/circular padding larger than the input, or the kernel too large
        assert "padding" in str(error) or "larger than the padded input" in str(error)
        return
    assert_matches_reference(numbaconv.conv2d(x, weight, **kwargs), x, weight, **kwargs)
    grad_output = rng.standard_normal(numbaconv.plan(x.shape, weight.shape, **kwargs).out_shape).astype(np.float32)
    check_grads(x, weight, grad_output, **kwargs)


def test_kernel_view_gathers_only_degenerate_axes():
    ordinary = numbaconv.plan((1, 32, 56, 56), (32, 1, 3, 3), groups=32, padding=1, stride=2).spec
    assert ordinary.kernel_view == (ordinary, (False, False))
    huge = numbaconv.plan((1, 2, 3, 3), (2, 1, 3, 3), groups=2, padding=10000, dilation=(10000, 1)).spec
    view, gathered = huge.kernel_view
    assert gathered == (True, False)  # rows: 20003 padded rows for 3 outputs x 3 taps
    assert (view.in_height, view.stride[0], view.dilation[0], view.padding[:2]) == (9, 3, 1, (0, 0))
    assert view.padding[2:] == huge.padding[2:] and view.out_shape == huge.out_shape


# ---- 2. double backward through numbaconv.torch ------------------------------------------------------------
def test_gradient_penalty_gradients_equal_torch():
    torch = pytest.importorskip("torch")
    from numbaconv.torch import conv2d

    torch.manual_seed(0)
    x = torch.randn(2, 4, 9, 9, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(4, 1, 3, 3, dtype=torch.float64, requires_grad=True)

    def penalty_gradient(convolution):
        y = convolution(x, weight)
        gx, = torch.autograd.grad(y.sum(), x, create_graph=True)
        loss = y.pow(2).mean() + 10 * gx.pow(2).sum()
        return torch.autograd.grad(loss, (x, weight))

    ours = penalty_gradient(lambda a, b: conv2d(a, b, None, 2, 1, 1, 4))
    theirs = penalty_gradient(lambda a, b: torch.nn.functional.conv2d(a, b, None, 2, 1, 1, 4))
    for got, expected in zip(ours, theirs):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("options", [dict(stride=2, padding=1, groups=2), dict(padding="same", dilation=2, groups=6),
                                     dict(stride=(1, 2), padding=(2, 1), padding_mode="reflect", groups=3)])
def test_second_order_gradcheck(options):
    torch = pytest.importorskip("torch")
    from numbaconv.torch import conv2d

    torch.manual_seed(1)
    groups = options["groups"]
    x = torch.randn(2, 6, 7, 8, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(6, 6 // groups, 3, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(6, dtype=torch.float64, requires_grad=True)
    args = (options.get("stride", 1), options.get("padding", 0), options.get("dilation", 1), groups,
            options.get("padding_mode", "zeros"))
    assert torch.autograd.gradgradcheck(lambda a, b, c: conv2d(a, b, c, *args), (x, weight, bias))


# ---- 3. the tuner's cache -------------------------------------------------------------------------------
@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMBACONV_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tuning, "_REMEMBERED", {})
    monkeypatch.setattr(tuning, "_UNWRITABLE", set())
    return tmp_path


def _shapes(count, first=5):
    return [dict(x_shape=(1, 6, first + i, 7), weight_shape=(6, 2, 1, 1), groups=3) for i in range(count)]


def test_tuning_from_eight_threads_keeps_every_entry(cache_dir):
    errors = []

    def tune(shape):
        try:
            numbaconv.tune(**shape, repeat=1)
        except Exception as error:  # noqa: BLE001 - any failure is the bug
            errors.append(error)

    threads = [threading.Thread(target=tune, args=(shape,)) for shape in _shapes(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(json.loads((cache_dir / tuning.CACHE_FILE).read_text())) == 8
    assert not [p for p in cache_dir.iterdir() if p.suffix == ".tmp"]


def test_tuning_from_three_processes_keeps_every_entry(cache_dir):
    code = textwrap.dedent("""
        import sys, numbaconv
        first = int(sys.argv[1])
        for i in range(25):
            numbaconv.tune((1, 6, first + i, 7), (6, 2, 1, 1), groups=3, repeat=1)
    """)
    processes = [subprocess.Popen([sys.executable, "-c", code, str(5 + 25 * k)], cwd=ROOT,
                                  env=dict(os.environ, NUMBACONV_CACHE_DIR=str(cache_dir))) for k in range(3)]
    assert [p.wait(timeout=300) for p in processes] == [0, 0, 0]
    assert len(json.loads((cache_dir / tuning.CACHE_FILE).read_text())) == 75


@pytest.mark.parametrize("entry", ["grouped", {"kernel": "grouped", "seconds": None},
                                   {"kernel": "grouped", "seconds": {"grouped": "fast"}},
                                   {"kernel": "grouped", "seconds": {"grouped": float("nan")}},
                                   {"kernel": 3, "seconds": {}}, ["grouped"], None])
def test_malformed_cache_entries_are_ignored_and_retuned(cache_dir, rng, entry):
    shape = _shapes(1)[0]
    key = tuning.problem_key(numbaconv.plan(**shape).spec)
    (cache_dir / tuning.CACHE_FILE).write_text(json.dumps({key: entry}))
    x = rng.standard_normal(shape["x_shape"]).astype(np.float32)
    weight = rng.standard_normal(shape["weight_shape"]).astype(np.float32)
    assert_matches_reference(numbaconv.conv2d(x, weight, groups=3, algorithm="tuned"), x, weight, groups=3)
    saved = json.loads((cache_dir / tuning.CACHE_FILE).read_text())[key]
    assert saved["kernel"] in GROUPED_KERNELS and set(saved["seconds"]) == GROUPED_KERNELS


@pytest.mark.parametrize("blocker", ["directory", "file_parent"])
def test_an_unwritable_cache_degrades_to_memory_with_one_warning(tmp_path, monkeypatch, rng, blocker):
    if blocker == "directory":  # tuned.json is a directory
        (tmp_path / tuning.CACHE_FILE).mkdir()
        root = tmp_path
    else:  # the cache directory cannot be created: its parent is a file
        (tmp_path / "file").write_text("")
        root = tmp_path / "file" / "cache"
    monkeypatch.setenv("NUMBACONV_CACHE_DIR", str(root))
    monkeypatch.setattr(tuning, "_REMEMBERED", {})
    monkeypatch.setattr(tuning, "_UNWRITABLE", set())
    x = rng.standard_normal((1, 6, 5, 5)).astype(np.float32)
    weight = rng.standard_normal((6, 2, 3, 3)).astype(np.float32)
    with pytest.warns(RuntimeWarning, match="cannot be written"):
        got = numbaconv.conv2d(x, weight, groups=3, algorithm="tuned")
    assert_matches_reference(got, x, weight, groups=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one warning only; the next shapes are remembered in memory
        numbaconv.conv2d(x[:, :, :4], weight, groups=3, algorithm="tuned")
        assert numbaconv.tune(x.shape, weight.shape, groups=3).from_cache


# ---- 4. fork after a numbaconv call ---------------------------------------------------------------------
FORK = """
import multiprocessing, numpy as np, numbaconv
x = np.ones((1, 8, 64, 64), np.float32)
w = np.ones((8, 1, 3, 3), np.float32)
numbaconv.conv2d(x, w, groups=8, padding=1)  # the parent starts its thread pool
def child(i):
    return float(numbaconv.conv2d(x * i, w, groups=8, padding=1).sum())
with multiprocessing.get_context("fork").Pool(2) as pool:
    sums = pool.map(child, range(4))
assert sums == [float(numbaconv.conv2d(x * i, w, groups=8, padding=1).sum()) for i in range(4)], sums
import numba
print("layer", numba.threading_layer())
"""


def test_fork_after_a_call_works():
    output, _ = guarded(FORK, timeout=120)
    assert "layer tbb" in output  # the fork-safe layer is the default where the tbb package is installed


def test_fork_with_gnu_openmp_runs_serially_in_the_child_instead_of_hanging():
    output, _ = guarded(FORK, timeout=120, env={"NUMBA_THREADING_LAYER": "omp"})
    assert "layer omp" in output


# ---- 5. masked arrays -------------------------------------------------------------------------------------
def test_masked_arrays_are_refused():
    x = np.ma.masked_array(np.ones((1, 2, 3, 3), np.float32), mask=False)
    x[0, 0, 1, 1] = np.ma.masked
    w = np.ones((2, 1, 3, 3), np.float32)
    for function in (numbaconv.conv2d, reference.conv2d):
        with pytest.raises(TypeError, match="x is a masked array"):
            function(x, w, groups=2)
    with pytest.raises(TypeError, match="weight is a masked array"):
        numbaconv.conv2d(np.ones((1, 2, 3, 3), np.float32), np.ma.masked_array(w), groups=2)


# ---- 6. one argument parser for plan and tune --------------------------------------------------------------
@pytest.mark.parametrize("function", [numbaconv.plan, numbaconv.tune])
def test_plan_and_tune_read_arguments_alike(cache_dir, function):
    shape = dict(x_shape=(1, 16, 6, 6), weight_shape=(8, 16, 1, 1))
    for bias in (np.zeros(8), (8,), True, np.zeros(8, np.float32)):
        result = function(**shape, bias=bias)
        assert result is not None
    with pytest.raises(ValueError, match=r"bias must have shape \(8,\)"):
        function(**shape, bias=(9,))
    with pytest.raises(TypeError, match="weight_shape must be a shape"):
        function((1, 16, 6, 6), None)
    with pytest.raises(TypeError, match=r"x_shape must be a shape \(a tuple of ints\), got an array of shape "
                                        r"\(1, 16, 6, 6\); pass its .shape$"):
        function(np.zeros((1, 16, 6, 6)), (8, 16, 1, 1))
    assert numbaconv.plan(**shape, stride=np.int64(2), groups=np.int32(1)).out_shape == (1, 8, 3, 3)


def test_tune_takes_numpy_integers(cache_dir):
    assert numbaconv.tune((1, 16, 6, 6), (8, 16, 1, 1), repeat=np.int64(2)).kernel
    with pytest.raises(ValueError, match="repeat must be an int >= 1, got 0"):
        numbaconv.tune((1, 16, 6, 6), (8, 16, 1, 1), repeat=0)
    with pytest.raises(TypeError, match="repeat must be an int, got float"):
        numbaconv.tune((1, 16, 6, 6), (8, 16, 1, 1), repeat=2.0)


# ---- 7. the command line ----------------------------------------------------------------------------------
def _exit_code(argv) -> int:
    try:
        return cli.main(argv)
    except SystemExit as exit_:  # argparse's own errors
        return exit_.code


@pytest.mark.parametrize("content", ['{"rows": 3}', '[1, 2]', '{"rows": [{"layer": "x"}]}', "not json"])
def test_report_of_a_wrong_file_is_one_line(tmp_path, capsys, content):
    path = tmp_path / "r.json"
    path.write_text(content)
    assert _exit_code(["report", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(path) in err and "Traceback" not in err


@pytest.mark.parametrize("argv, message", [
    (["--suite", ",,,"], "names no layers"),
    (["--limit", "-1"], "--limit must be >= 1"),
    (["--json", "/nonexistent/dir/r.json"], "--json /nonexistent/dir/r.json: cannot be written"),
    (["--plot", "/"], "--plot /: is a directory"),
])
def test_bench_refuses_before_running(argv, message, capsys, monkeypatch):
    monkeypatch.setattr(cli.bench, "bench_layer", lambda *a, **k: pytest.fail("the benchmark ran"))
    assert _exit_code(["bench", *argv]) == 2
    assert message in capsys.readouterr().err


def test_bench_into_a_closed_pipe_exits_quietly():
    command = f"{sys.executable} -m numbaconv bench --suite mobilenet_v2 --limit 2 --quick --repeat 1 --no-torch | head -1"
    result = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, cwd=ROOT,
                            timeout=600)
    assert result.returncode == 1 and result.stderr == "", result.stderr  # quiet; 1 under pipefail, as rich exits


# ---- 8. bounded memory --------------------------------------------------------------------------------------
DEFAULT_PROBLEMS = [  # (x shape, weight shape, options): one per default kernel, with a padded or strided variant
    ((4, 16, 30, 30), (8, 16, 1, 1), dict(stride=2)),  # pointwise_gemm
    ((4, 16, 30, 30), (16, 1, 3, 3), dict(groups=16, padding=1)),  # depthwise
    ((4, 16, 30, 30), (16, 1, 3, 3), dict(groups=16, padding=1, stride=2, padding_mode="reflect")),
    ((4, 16, 30, 30), (16, 4, 3, 3), dict(groups=4, padding=1)),  # grouped_blas (im2col)
    ((4, 16, 30, 30), (16, 2, 3, 3), dict(groups=8, padding=2, dilation=2, padding_mode="circular")),  # grouped
]


@pytest.mark.parametrize("problem", DEFAULT_PROBLEMS, ids=lambda p: numbaconv.plan(p[0], p[1], **p[2]).kernel)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("budget", [2048, 40000])  # bands of one or a few rows, whole images
def test_pieces_within_a_small_workspace_budget_give_the_same_result(monkeypatch, rng, problem, layout, budget):
    """A tiny budget cuts every default kernel's problem into pieces of the batch and bands of rows."""
    x_shape, weight_shape, options = problem
    x = rng.standard_normal(x_shape).astype(np.float32)
    if layout == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    weight = rng.standard_normal(weight_shape).astype(np.float32)
    bias = rng.standard_normal(weight_shape[0]).astype(np.float32)
    options = dict(options, layout=layout, activation="relu6")
    whole = numbaconv.conv2d(x, weight, bias, **options)
    monkeypatch.setattr(dispatch, "WORKSPACE_BYTES_PER_THREAD", budget)
    plan = numbaconv.plan(x.shape, weight.shape, True, **options)
    algorithm, spec = dispatch.get(plan.kernel), plan.spec.kernel_view[0]
    if algorithm.workspace(spec) > dispatch.workspace_budget():
        assert dispatch.pieces(algorithm, spec) != (x_shape[0], spec.out_height)
    got = numbaconv.conv2d(x, weight, bias, **options)
    assert_matches_reference(got, x, weight, bias, **options)
    np.testing.assert_allclose(got, whole, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("problem", DEFAULT_PROBLEMS, ids=lambda p: numbaconv.plan(p[0], p[1], **p[2]).kernel)
def test_peak_extra_memory_is_within_twice_the_output(monkeypatch, rng, problem):
    """With the budget scaled down to this test's size, each default kernel's peak traced memory (the
    output included) stays within twice the output."""
    import tracemalloc

    x_shape, weight_shape, options = problem
    x_shape = (16,) + x_shape[1:]
    x = rng.standard_normal(x_shape).astype(np.float32)
    weight = rng.standard_normal(weight_shape).astype(np.float32)
    numbaconv.conv2d(x, weight, **options)  # compiled before measuring
    out_shape = numbaconv.plan(x.shape, weight.shape, **options).out_shape
    output_bytes = int(np.prod(out_shape)) * 4
    monkeypatch.setattr(dispatch, "WORKSPACE_BYTES_PER_THREAD", output_bytes // 8)
    tracemalloc.start()
    try:
        numbaconv.conv2d(x, weight, **options)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= 2 * output_bytes, f"peak {peak} bytes for an output of {output_bytes}"
    plan = numbaconv.plan(x.shape, weight.shape, **options)
    assert 0 <= plan.workspace_bytes <= output_bytes


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tune_draws_its_data_in_the_problem_dtype(dtype):
    import tracemalloc

    spec = numbaconv.plan((2, 64, 64, 64), (64, 64, 1, 1), dtype=dtype).spec
    tracemalloc.start()
    try:
        arrays = tuning.random_problem(spec)[1:]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert all(a.dtype == dtype for a in arrays)
    assert peak <= 1.05 * sum(a.nbytes for a in arrays)  # no float64 draw cast afterwards (2x x alone)


# ---- 9. other input types -------------------------------------------------------------------------------
def test_lists_follow_numpy_dtype_rules():
    x = np.ones((1, 2, 3, 3)).tolist()
    w = np.ones((2, 1, 1, 1)).tolist()
    got = numbaconv.conv2d(x, w, groups=2)
    assert got.dtype == np.float64 and (got == 1).all()
    with pytest.raises(TypeError, match="got x float64 and weight float32"):
        numbaconv.conv2d(x, np.ones((2, 1, 1, 1), np.float32), groups=2)


def test_torch_cpu_tensors_are_pointed_to_the_bridge():
    torch = pytest.importorskip("torch")
    x = torch.ones(1, 2, 3, 3)
    w = torch.ones(2, 1, 1, 1, requires_grad=True)
    for args in ((x, w.detach()), (x.numpy(), w), (x, w)):
        with pytest.raises(TypeError, match=r"is a torch tensor: use numbaconv.torch.conv2d"):
            numbaconv.conv2d(*args, groups=2)


def test_layout_mistakes_say_how_x_was_read():
    x = np.ones((1, 8, 5, 5), np.float32)  # NCHW data
    w = np.ones((8, 1, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"read as layout='NHWC' \(N, H, W, C\)"):
        numbaconv.conv2d(x, w, groups=8, layout="NHWC")
