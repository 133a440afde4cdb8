"""The peers in the bench (`numbaconv.peers`) and how calls are timed (`numbaconv.timing`).

The peer libraries are optional: the tests that run them skip where they are not installed (CI),
the others check the machinery with fake calls and a fake clock (no speed is ever asserted)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from numbaconv import bench, cli, peers, reference, report, timing

INSTALLED = peers.available()


class FakeClock:
    """time.perf_counter and time.sleep over a clock that only the calls move."""

    def __init__(self, monkeypatch):
        self.now = 0.0
        monkeypatch.setattr(timing.time, "perf_counter", lambda: self.now)
        monkeypatch.setattr(timing.time, "sleep", self.sleep)
        self.slept = []

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


def test_percentile_interpolates_like_numpy():
    samples = [5.0, 1.0, 4.0, 2.0, 3.0, 10.0]
    for q in (0, 25, 50, 90, 99, 100):
        assert timing.percentile(samples, q) == pytest.approx(np.percentile(samples, q))
    assert np.isnan(timing.percentile([], 50))


def test_measure_times_back_to_back_and_after_gaps(monkeypatch):
    clock = FakeClock(monkeypatch)
    state = {"idle": True}
    costs = []

    def call():  # 3 s when called after a sleep (a cold pool), 1 s when the previous call was just made
        cost = 3.0 if state["idle"] else 1.0
        costs.append(cost)
        clock.now += cost
        state["idle"] = False

    original_sleep = clock.sleep

    def sleep(seconds):
        state["idle"] = True
        original_sleep(seconds)

    monkeypatch.setattr(timing.time, "sleep", sleep)
    measured = timing.measure(call, repeat=5, gap_rounds=4, gap_s=0.5, settle_s=0.2)
    assert measured.median_s == measured.p99_s == 1.0  # the warm-up call paid the 3 s
    # after each gap: one call (3 s, untimed) and the timed one (1 s)
    assert measured.gap_median_s == measured.gap_p99_s == 1.0
    assert costs == [3.0] + [1.0] * 5 + [3.0, 1.0] * 4
    assert clock.slept == [0.2] + [0.5] * 4


def test_measure_without_gap_rounds_leaves_gap_unmeasured(monkeypatch):
    FakeClock(monkeypatch)
    measured = timing.measure(lambda: None, repeat=3, settle_s=0)
    assert np.isnan(measured.gap_median_s) and np.isnan(measured.gap_p99_s)


def test_verify_catches_reduced_precision():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 8, 9, 9)).astype(np.float32)
    w = rng.standard_normal((8, 2, 3, 3)).astype(np.float32)
    expected = reference.conv2d(x.astype(np.float64), w.astype(np.float64), groups=4, padding=1)
    single = reference.conv2d(x, w, groups=4, padding=1)
    assert peers.verify(single, expected) <= peers.tolerance(np.float32)
    as_bf16 = (single.view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32)  # what a bf16 hint gives
    assert peers.verify(as_bf16, expected) > peers.tolerance(np.float32)
    with_nan = single.copy()
    with_nan[0, 0, 0, 0] = np.nan
    assert not peers.verify(with_nan, expected) <= peers.tolerance(np.float32)


def test_time_calls_keeps_the_faster_setting_and_skips_wrong_outputs(monkeypatch):
    expected = np.arange(2 * 3 * 4 * 5, dtype=np.float64).reshape(2, 3, 4, 5)
    right_nchw = expected.astype(np.float32)
    right_nhwc = np.ascontiguousarray(right_nchw.transpose(0, 2, 3, 1))
    seconds = {"a_nchw_all": 2.0, "a_nchw_extended": 1.0, "a_nhwc_all": 0.5, "b_nchw": 0.1}
    calls = {"a_nchw_all": lambda: right_nchw, "a_nchw_extended": lambda: right_nchw,
             "a_nhwc_all": lambda: right_nhwc, "b_nchw": lambda: right_nchw + 1}
    monkeypatch.setattr(timing, "measure", lambda call, repeat: timing.Timing(
        seconds[next(k for k, c in calls.items() if c is call)], 0.0))
    monkeypatch.setattr(timing, "after_gap", lambda call, rounds, gap_s: [7.0] * rounds)
    results = peers.time_calls(calls, expected, np.float32, repeat=3, gap_rounds=2, gap_s=0.0)
    assert set(results) == {"a_nchw", "a_nhwc", "b_nchw"}
    assert results["a_nchw"]["setting"] == "extended" and results["a_nchw"]["median_s"] == 1.0
    assert results["a_nhwc"]["median_s"] == 0.5 and results["a_nhwc"]["gap_median_s"] == 7.0
    assert results["b_nchw"]["median_s"] is None and results["b_nchw"]["gap_median_s"] is None
    assert results["b_nchw"]["error"] == pytest.approx(1 / expected.max())


def test_calls_explains_what_is_left_out(monkeypatch):
    x = np.zeros((1, 2, 4, 4), np.float64)
    w = np.zeros((2, 1, 3, 3), np.float64)
    b = np.zeros(2, np.float64)
    monkeypatch.setattr(peers, "_module", lambda name: None if name == "openvino" else object())
    found, notes = peers.calls(x, w, b, {"groups": 2}, 1, peers=["onnxruntime", "openvino"])
    assert found == {}
    assert notes["openvino"].startswith("not installed") and "float32 only" in notes["onnxruntime"]
    with pytest.raises(ValueError, match="unknown peer 'mkl'"):
        peers.calls(x, w, b, {}, 1, peers=["mkl"])


CASES = [  # (x shape, weight shape, kwargs): every family, strides, dilation, asymmetric sizes
    ((2, 6, 9, 11), (6, 1, 3, 3), dict(padding=1, groups=6)),
    ((1, 8, 10, 7), (12, 2, 3, 2), dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=4)),
    ((2, 5, 6, 6), (7, 5, 1, 1), dict()),
]


@pytest.mark.parametrize("name", [n for n in peers.NAMES])
@pytest.mark.parametrize("case", CASES, ids=["depthwise", "grouped", "pointwise"])
def test_every_installed_peer_matches_the_reference(name, case):
    if name not in INSTALLED:
        pytest.skip(f"{name} is not installed (the 'peers' extra, or torch)")
    x_shape, w_shape, kwargs = case
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal(x_shape).astype(np.float32), rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    expected = reference.conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), **kwargs)
    found, notes = peers.calls(x, w, b, kwargs, 1, peers=[name])
    assert not notes and found
    for key, call in found.items():
        output = np.asarray(call())
        if "_nhwc" in key:
            output = output.transpose(0, 3, 1, 2)
        assert output.shape == expected.shape, key
        assert peers.verify(output, expected) <= peers.tolerance(np.float32), key


def test_peer_process_times_or_says_why_not():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 4, 6, 6)).astype(np.float32)
    w = rng.standard_normal((4, 1, 3, 3)).astype(np.float32)
    b = np.zeros(4, np.float32)
    kwargs = dict(padding=1, groups=4)
    expected = reference.conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), **kwargs)
    name = next(iter(INSTALLED), "torch")
    with peers.PeerProcess(name, 1) as process:
        results, note = process.time(x, w, b, kwargs, expected, repeat=2, gap_rounds=1, gap_s=0.001)
        if name in INSTALLED:
            assert note is None and {f"{name}_nchw", f"{name}_nhwc"} <= set(results)
            for entry in results.values():
                assert entry["error"] <= peers.tolerance(np.float32)
                assert entry["median_s"] > 0 and entry["gap_median_s"] > 0
            again, _ = process.time(x, w, b, kwargs, expected, repeat=1)  # the process serves many layers
            assert set(again) == set(results)
        else:
            assert results == {} and "could not load" in note
    assert process._process.returncode == 0


def test_bench_with_peers_fills_the_peer_columns(tmp_path):
    path = tmp_path / "peers.json"
    assert cli.main(["bench", "--suite", "mobilenet_v2", "--limit", "2", "--repeat", "2", "--quick",
                     "--gap-rounds", "2", "--json", str(path)]) == 0
    data = json.loads(path.read_text())
    settings = data["settings"]
    assert set(settings["peer_versions"]) == set(INSTALLED)
    assert set(settings["peer_notes"]) == set(peers.NAMES) - set(INSTALLED)
    for row in data["rows"]:
        assert row["error"] <= peers.tolerance(np.float32)
        assert row["gap_s"] > 0 and row["gap_p99_s"] >= row["gap_s"] and row["p99_s"] >= row["time_s"]
        if INSTALLED:
            timed = {k: v for k, v in row["peers"].items() if v["median_s"] is not None}
            assert row["best_peer"] == min(timed, key=lambda k: timed[k]["median_s"])
            assert row["speedup_vs_best_peer"] == pytest.approx(row["best_peer_s"] / row["time_s"])
            assert {k.split("_")[0] for k in row["peers"]} == set(INSTALLED)
        else:
            assert row["best_peer"] is None and row["peers"] == {}
    lines = report.summary_lines(data)
    assert any("vs best peer" in line for line in lines) == bool(INSTALLED)
    assert any(line.startswith("peers left out") for line in lines) == (set(INSTALLED) != set(peers.NAMES))


@pytest.mark.parametrize("argv, message", [
    (["--peers", "mkl"], "--peers: unknown mkl"),
    (["--gap-rounds", "-1"], "--gap-rounds must be >= 0"),
])
def test_bench_peer_options_are_checked(argv, message, capsys):
    assert cli.main(["bench", "--limit", "1", *argv]) == 2
    assert message in capsys.readouterr().err


def test_report_cells_of_an_older_report_show_dashes():
    old = {"layer": "n/l", "kind": "pointwise", "shape": "", "kernel": "k", "first_call_s": None, "time_s": 1e-3,
           "gflops": 1.0, "gbps": 1.0, "roofline_fraction": 0.5, "speedup_vs_reference": 2.0,
           "speedup_vs_torch": None, "fraction_of_blas": None}
    cells = report.cells(old)
    assert len(cells) == len(report.COLUMNS)
    assert cells[report.COLUMNS.index("vs best peer")] == "-" and cells[report.COLUMNS.index("after gap ms")] == "-"


def test_summary_of_peer_columns():
    def row(i, t, best, gap):
        return bench.Row(layer=f"n/{i}", network="n", kind="pointwise", shape="", count=1, kernel="k", batch=1,
                         dtype="float32", flops=1, bytes=1, intensity=1.0, first_call_s=np.nan, time_s=t,
                         reference_s=t, gflops=1, gbps=1, roofline_s=t, roofline_fraction=1.0,
                         speedup_vs_reference=1.0, gap_s=gap, gap_p99_s=2 * gap, speedup_vs_best_peer=best / t)

    stats = bench.summarize([row(0, 1.0, 2.0, 1.0), row(1, 1.0, 0.5, 4.0)])["families"]["pointwise"]
    assert stats["geomean_speedup_vs_best_peer"] == pytest.approx(1.0)
    assert stats["worst_speedup_vs_best_peer"] == pytest.approx(0.5)
    assert stats["geomean_gap_slowdown"] == pytest.approx(2.0) and stats["geomean_gap_p99_slowdown"] == pytest.approx(4.0)


def test_peer_libraries_are_not_loaded_by_the_bench_process():
    """Their libraries and thread pools live in the peer processes only."""
    script = ("import sys; from numbaconv import cli; "
              "cli.main(['bench', '--limit', '1', '--repeat', '1', '--quick', '--gap-rounds', '0']); "
              "print('LOADED', sorted(m for m in ('torch', 'onnxruntime', 'openvino') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stdout


def test_peers_run_in_the_users_environment_not_numbaconvs(monkeypatch):
    """What numbaconv set for its own pools (a short GOMP_SPINCOUNT) would slow torch's OpenMP pool: the
    peer's process starts without it and drops it again after importing numbaconv."""
    from numbaconv import runtime

    monkeypatch.setitem(runtime.ENVIRONMENT_SET, "GOMP_SPINCOUNT", "1000")
    monkeypatch.setenv("GOMP_SPINCOUNT", "1000")
    monkeypatch.setenv("NUMBACONV_LATENCY", "1")
    monkeypatch.setenv("SOME_USER_SETTING", "kept")
    env = peers.peer_environment()
    assert "GOMP_SPINCOUNT" not in env and "NUMBACONV_LATENCY" not in env and env["SOME_USER_SETTING"] == "kept"

    seen = {}

    class Stop:
        def recv(self):
            return None

        def send(self, message):
            seen["ready"] = message

    monkeypatch.setattr(peers, "_module", lambda name: seen.setdefault("spin", os.environ.get("GOMP_SPINCOUNT")))
    peers._serve(Stop(), Stop(), "onnxruntime", 1)
    assert seen == {"spin": None, "ready": False}  # the library was loaded without numbaconv's setting


def test_two_passes_merge_into_the_mean_of_their_medians():
    """bench's A B A B timing: each peer's back-to-back numbers are the mean of its two passes, its gap numbers
    the first pass's, a wrong output stays untimed, and the notes are not repeated."""
    entry = {"error": 0.0, "setting": None, "median_s": 1.0, "p99_s": 2.0, "gap_median_s": 5.0, "gap_p99_s": 6.0,
             "dispersion": 0.02}
    wrong = dict(entry, median_s=None, p99_s=None, error=1.0)
    first = ({"torch_nchw": entry, "openvino_nhwc": wrong}, ["openvino_nhwc: wrong output (error 1.0e+00)"])
    second = ({"torch_nchw": dict(entry, median_s=3.0, p99_s=4.0, gap_median_s=None, gap_p99_s=None,
                                  dispersion=0.3), "openvino_nhwc": wrong}, ["openvino_nhwc: wrong output (error 1.0e+00)"])
    merged, notes = bench.merge_passes(first, second)
    assert merged["torch_nchw"] == dict(entry, median_s=2.0, p99_s=3.0, dispersion=0.3)  # the wider spread kept
    assert merged["openvino_nhwc"]["median_s"] is None
    assert notes == ["openvino_nhwc: wrong output (error 1.0e+00)"]
    assert entry["median_s"] == 1.0  # the first pass's entries are not modified


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_short_calls_are_timed_several_in_a_row_and_spread_is_kept():
    """A call far shorter than timing.MIN_SAMPLE_S is timed in loops (calibrated), at least ``repeat`` samples."""
    measured = timing.measure(lambda: _spin(20e-6), repeat=5, settle_s=0)
    assert measured.loops >= 20 and measured.samples >= 5
    assert 15e-6 < measured.median_s < 2e-3 and measured.min_s <= measured.median_s
    assert measured.iqr_s >= 0 and measured.dispersion == measured.iqr_s / measured.median_s


def test_a_bimodal_call_is_flagged_noisy_and_a_steady_one_is_not():
    """Samples of 2 ms and 4 ms alternating (as under a busy neighbour): the spread is far above
    NOISY_DISPERSION and the timing says so; the same call at a steady 2 ms is not flagged."""
    state = {"calls": 0}

    def bimodal():
        state["calls"] += 1
        _spin(2e-3 if state["calls"] % 2 else 4e-3)

    noisy = timing.measure(bimodal, repeat=8, settle_s=0)
    assert noisy.noisy and noisy.dispersion > timing.NOISY_DISPERSION
    assert noisy.samples > 8  # kept sampling (up to the budget) while the spread stayed wide
    steady = min((timing.measure(lambda: _spin(2e-3), repeat=8, settle_s=0) for _ in range(3)),
                 key=lambda measured: measured.dispersion)  # best of three: this machine is shared too
    assert steady.dispersion <= timing.NOISY_DISPERSION  # (its other_load counts pytest-xdist's other workers)


def test_other_work_on_the_cores_is_measured_and_flags_a_timing():
    """A busy loop in another process is what a steady load looks like: every sample slowed alike, the spread
    small.  OtherLoad reads it off the machine's CPU accounting: at least 0.8 of a core's worth (other
    workers of this test run may add more), and a timing with other work above OTHER_LOAD_LIMIT is noisy."""
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # the loop is running
        with timing.OtherLoad() as load:
            time.sleep(0.6)
    finally:
        busy.kill()
        busy.wait()
    assert load.share * (os.cpu_count() or 1) >= 0.8, load.share
    assert timing.Timing(1e-3, 1e-3, other_load=2 * timing.OTHER_LOAD_LIMIT).noisy
    assert not timing.Timing(1e-3, 1e-3, other_load=timing.OTHER_LOAD_LIMIT / 2).noisy
    assert not timing.Timing(1e-3, 1e-3).noisy  # unknown (no /proc/stat): the spread alone decides
    measured = timing.measure(lambda: _spin(1e-3), repeat=4, settle_s=timing.MIN_LOAD_WINDOW_S)
    assert 0.0 <= measured.other_load <= 1.0  # (a CI run read 1.93 over a 10 ms window: now too short to read)
    with timing.OtherLoad() as short:
        _spin(1e-3)
    assert math.isnan(short.share)


def test_noise_lines_name_the_noisy_rows_and_a_moved_roof():
    from numbaconv import report

    rows = [{"noisy": True}, {"noisy": False}, {"noisy": False}]
    quiet = {"rows": rows[1:], "settings": {"machine_check": {"gemm_before_flops_per_s": 100e9,
                                                              "gemm_after_flops_per_s": 105e9, "tolerance": 0.1}}}
    assert report.noise_lines(quiet) == []
    busy = {"rows": rows, "settings": {"machine_check": {"gemm_before_flops_per_s": 100e9,
                                                         "gemm_after_flops_per_s": 60e9, "tolerance": 0.1}}}
    lines = report.noise_lines(busy)
    assert lines[0].startswith("noisy: 1 of 3 rows") and "100 GFLOP/s before the layers and 60 after" in lines[1]
    loaded = {"rows": [{"noisy": True, "other_load": 0.5}, {"noisy": True, "other_load": 0.49}],
              "settings": {"sampling": {"other_load_limit": 0.1}}}
    assert report.noise_lines(loaded)[-1] == ("noisy run: other work took 50% of the cores on average (up to 50%) "
                                              "while numbaconv was timed")
    assert report.noise_lines({"rows": [{"noisy": False, "other_load": 0.02}], "settings": {}}) == []
