"""The command line and the bench toolkit: ``numbaconv bench``, ``report`` and ``info``
(smoke tests of what they produce; speed is never asserted)."""

from __future__ import annotations

import importlib.util
import json
import math
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import numbaconv
from numbaconv import bench, cli, cost, limits, plot, workloads

HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None  # the 'plot' extra (in 'test' too)

ROW_KEYS = {"layer", "network", "kind", "shape", "kernel", "time_s", "first_call_s", "gflops", "gbps", "intensity",
            "roofline_s", "roofline_fraction", "speedup_vs_reference", "speedup_vs_torch", "fraction_of_blas"}


@pytest.fixture(scope="module")
def report_file(tmp_path_factory):
    """One small run shared by the tests below: the first three MobileNetV2 layers (one per family)."""
    path = tmp_path_factory.mktemp("bench") / "r.json"
    plot_args = ["--plot", str(path.with_suffix(".png"))] if HAVE_MATPLOTLIB else []
    assert cli.main(["bench", "--suite", "mobilenet_v2", "--quick", "--repeat", "1", "--limit", "3", "--no-torch",
                     "--gap-rounds", "0", "--json", str(path), *plot_args]) == 0  # (gaps: 2.4 s of sleep)
    return path


def test_bench_report_has_every_family_and_field(report_file):
    report = json.loads(report_file.read_text())
    assert {"date", "machine", "limits", "settings", "first_call_s", "summary", "network_totals", "rows"} <= set(report)
    rows = report["rows"]
    assert [r["layer"] for r in rows] == ["mobilenet_v2/stem", "mobilenet_v2/b1_dw", "mobilenet_v2/b1_project"]
    assert {r["kind"] for r in rows} == set(workloads.FAMILIES)
    for row in rows:
        assert ROW_KEYS <= set(row)
        assert row["time_s"] > 0 and row["gflops"] > 0 and row["gbps"] > 0 and row["speedup_vs_reference"] > 0
        assert 0 < row["roofline_s"] and row["roofline_fraction"] == pytest.approx(row["roofline_s"] / row["time_s"])
        assert row["gflops"] == pytest.approx(row["flops"] / row["time_s"] / 1e9)
        assert row["speedup_vs_torch"] is None  # --no-torch
    assert rows[2]["fraction_of_blas"] > 0 and rows[0]["fraction_of_blas"] is None  # BLAS only for pointwise
    # each kernel's first call is reported once, apart from the steady state
    assert set(report["first_call_s"]) == {r["kernel"] for r in rows}
    assert all(r["first_call_s"] > 0 for r in rows)  # three different kernels: each row's is the first
    machine, roofs = report["machine"], report["limits"]
    assert machine["numba"] and machine["llvmlite"] and machine["numpy"] and machine["cores"] >= 1
    assert "gpu" in machine and "cpu" in machine
    assert roofs["peak_flops_per_s"] > 0 and roofs["bandwidth_bytes_per_s"] > 0
    assert set(report["summary"]["families"]) == set(workloads.FAMILIES)
    assert report["network_totals"]["mobilenet_v2"]["complete"] is False  # only 3 of its 30 layers ran


def test_report_is_strict_json(report_file):
    json.loads(report_file.read_text(), parse_constant=lambda name: pytest.fail(f"{name} in the JSON"))


def test_report_command_prints_markdown(report_file, capsys):
    assert cli.main(["report", str(report_file), "--markdown"]) == 0
    printed = capsys.readouterr().out
    assert "| network | family | layers | vs reference |" in printed
    assert "| mobilenet_v2 | depthwise | 1 |" in printed
    assert "roofs measured in the run" in printed
    assert cli.main(["report", str(report_file), "--markdown", "--short"]) == 0
    assert "| family | layers | vs reference |" in capsys.readouterr().out
    assert cli.main(["report", str(report_file), "--markdown", "--rows"]) == 0
    printed = capsys.readouterr().out
    assert "| mobilenet_v2/b1_dw | depthwise |" in printed and len(printed.strip().splitlines()) == 2 + 3


def test_roofline_plot(report_file, tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib (the 'plot' extra) is not installed")
    drawn_by_bench = report_file.with_suffix(".png")
    assert drawn_by_bench.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    path = tmp_path / "roofline.png"
    assert cli.main(["report", str(report_file), "--plot", str(path)]) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000


def test_bench_prints_the_table(capsys):
    assert cli.main(["bench", "--suite", "xception", "--quick", "--repeat", "1", "--limit", "1", "--no-torch",
                     "--gap-rounds", "0"]) == 0
    printed = capsys.readouterr().out
    assert "vs reference" in printed and "roofline" in printed and "geometric means per family" in printed
    assert "xcp/conv1" in printed
    assert not any(mark in printed for mark in "│┃━─")  # not a terminal (captured): plain text, no box


RESULTS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "results"
SAVED_REPORTS = sorted(RESULTS.glob("cpu-*-peers-b1-nchw.json"))[-1:] + sorted(RESULTS.glob("cpu-*-all-b1-nchw.json"))


@pytest.mark.parametrize("path", SAVED_REPORTS, ids=lambda path: path.name)
def test_the_default_table_fits_100_columns(path):
    """Rendered by rich at 100 columns (a terminal of that width), every header and every layer name is whole,
    and no line is longer: the compact view needs no --wide (saved reports of whole suites)."""
    import io

    from rich.console import Console

    from numbaconv import report

    saved = json.loads(path.read_text())
    header = report.COMPACT_COLUMNS
    body = [report.compact_cells(row) for row in saved["rows"]]
    console = Console(file=io.StringIO(), width=100, force_terminal=True, color_system=None)
    console.print(cli.render_table(header, body, report.COMPACT_TEXT_COLUMNS, report.title(saved)))
    lines = console.file.getvalue().splitlines()
    assert max(map(len, lines)) <= 100
    assert "…" not in "\n".join(lines)
    table_lines = [line for line in lines if line.strip()]
    header_line = next(line for line in table_lines if line.lstrip().startswith("layer"))
    assert all(name in header_line for name in header)
    for row in saved["rows"]:
        name = report.short_layer(row["layer"])
        assert any(line.startswith(name + " ") for line in table_lines), name
    plain = report.plain_table(header, body, report.COMPACT_TEXT_COLUMNS)
    assert max(map(len, plain)) <= 100


def test_a_gpu_report_compares_with_torch_and_names_the_gpu():
    """On a GPU (and for the backward pass) torch is the only peer: the compact table's "vs peer" is its ratio,
    not a dash, and the title names the GPU, not the host's CPU (a saved H100 run)."""
    from numbaconv import report

    saved = json.loads(sorted(RESULTS.glob("gpu-nvidia-h100-*-batch1-*.json"))[-1].read_text())
    assert saved["machine"]["gpu"] in report.title(saved) and saved["machine"]["cpu"] not in report.title(saved)
    for row in saved["rows"]:
        assert row.get("speedup_vs_best_peer") is None and row["speedup_vs_torch"] > 0
        assert report.compact_cells(row)[-1] == report.short_ratio(row["speedup_vs_torch"])
    cpu = json.loads(SAVED_REPORTS[0].read_text())["rows"][0]
    assert report.compact_cells(cpu)[-1] == report.short_ratio(cpu["speedup_vs_best_peer"])


def test_short_layer_names_abbreviate_every_network():
    from numbaconv import report

    assert report.short_layer("mobilenet_v2/b2_dw") == "mbv2/b2_dw"
    assert set(report.NETWORK_ABBREVIATIONS) == set(workloads.NETWORKS)
    assert len(set(report.NETWORK_ABBREVIATIONS.values())) == len(workloads.NETWORKS)


def test_version_and_help_list_every_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"numbaconv {numbaconv.__version__}"
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    printed = capsys.readouterr().out
    for command in ("bench", "report", "info"):
        assert f"  {command} " in printed
    assert "``" not in printed and ":func:" not in printed


def test_a_closed_pipe_ends_the_bench_quietly():
    """``numbaconv bench | head -1``: the reader goes; no traceback, no 'Broken pipe' error line."""
    import fcntl

    command = [sys.executable, "-m", "numbaconv", "report", "--wide", str(SAVED_REPORTS[-1])]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        fcntl.fcntl(process.stdout.fileno(), 1031, 4096)  # F_SETPIPE_SZ: a pipe smaller than the table
        process.stdout.readline()
        process.stdout.close()
        stderr = process.stderr.read().decode()
        process.wait(timeout=120)
    assert "Broken pipe" not in stderr and "Traceback" not in stderr, stderr


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_bench_names_the_kernel_that_runs_in_its_layout(layout):
    """A grouped 1x1 runs BLAS on NCHW data and grouped_gemm on NHWC data; the row names the one timed."""
    layer = workloads.layer("shufflenet_v1_g3/s3_gconv1_x7")
    row = bench.bench_layer(layer, repeat=1, reference_repeat=1, layout=layout)
    spec = layer.spec()
    expected = numbaconv.plan((1, layer.size, layer.size, layer.in_channels) if layout == "NHWC" else
                              (1, layer.in_channels, layer.size, layer.size), spec.weight_shape, True,
                              groups=layer.groups, layout=layout).kernel
    assert row.kernel == expected == ("grouped_blas" if layout == "NCHW" else "grouped_gemm")


@pytest.mark.parametrize("argv, message", [
    (["bench", "--suite", "vgg16"], "suite must be"),
    (["bench", "--device", "tpu"], "invalid choice: 'tpu'"),
    (["bench", "--batch", "0"], "--batch must be >= 1, got 0"),
    (["bench", "--device", "cuda"], "--device cuda: no CUDA device is available here"),
    (["report", "/nonexistent/r.json"], "No such file"),
])
def test_bench_rejects_bad_arguments(argv, message, capsys):
    try:
        code = cli.main(argv)
    except SystemExit as exit_info:  # argparse's own errors (an invalid choice)
        code = exit_info.code
    assert code == 2
    assert message in capsys.readouterr().err


def test_limits_are_positive_rates():
    assert limits.gemm_flops_per_s("float64", size=64, repeat=1) > 0
    rates = limits.copy_bytes_per_s(megabytes=2, repeat=1)
    assert set(rates) == {"numpy_copyto", "numba_prange_copy"} and min(rates.values()) > 0


def test_summaries_and_totals():
    rows = [bench.Row(layer=f"n/{i}", network="n", kind=kind, shape="", count=count, kernel="k", batch=1,
                      dtype="float32", flops=1, bytes=1, intensity=1.0, first_call_s=math.nan, time_s=t,
                      reference_s=4 * t, gflops=1, gbps=1, roofline_s=t / 2, roofline_fraction=0.5,
                      speedup_vs_reference=4.0, torch_s=2 * t, speedup_vs_torch=2.0)
            for i, (kind, count, t) in enumerate([("depthwise", 1, 1.0), ("depthwise", 3, 2.0), ("grouped", 2, 1.0)])]
    summary = bench.summarize(rows)
    assert summary["families"]["depthwise"]["layers"] == 2
    assert summary["families"]["depthwise"]["geomean_speedup_vs_torch"] == pytest.approx(2.0)
    assert summary["networks"]["n"]["grouped"]["geomean_roofline_fraction"] == pytest.approx(0.5)
    totals = bench.network_totals(rows)["n"]
    assert totals["numbaconv_s"] == pytest.approx(1 + 3 * 2 + 2 * 1) and totals["torch_s"] == pytest.approx(18)
    assert bench.geometric_mean([2.0, 8.0, None, math.nan]) == pytest.approx(4.0)


def test_plot_needs_measured_limits():
    pytest.importorskip("matplotlib", reason="matplotlib (the 'plot' extra) is not installed")
    with pytest.raises(ValueError, match="no measured limits"):
        plot.roofline({"rows": [{"intensity": 1.0}], "limits": None}, "unused.png")


def test_info_and_module_entry_point():
    result = subprocess.run([sys.executable, "-m", "numbaconv", "info"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "threading_layer" in result.stdout and "depthwise" in result.stdout


def test_bench_backward_times_the_gradients(tmp_path, capsys):
    path = tmp_path / "backward.json"
    assert cli.main(["bench", "--backward", "--suite", "mobilenet_v2", "--quick", "--repeat", "1", "--limit", "3",
                     "--no-torch", "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    assert report["settings"]["direction"] == "backward"
    assert "backward pass" in capsys.readouterr().out
    kinds = set()
    for row in report["rows"]:
        spec = workloads.layer(row["layer"]).spec(row["batch"], row["dtype"])
        assert row["direction"] == "backward"
        assert row["flops"] == 2 * cost.flops(spec) and row["bytes"] == cost.backward_min_bytes(spec)
        assert row["time_s"] > 0 and row["speedup_vs_reference"] > 0 and 0 < row["roofline_fraction"]
        assert "+" in row["kernel"]  # grad input's kernel + grad weight's method
        kinds.add(row["kind"])
    assert {"pointwise", "depthwise"} <= kinds
    assert any(row["blas_s"] for row in report["rows"] if row["kind"] == "pointwise")



def test_warmup_runs_every_step_and_reports_it(capsys, monkeypatch):
    """``numbaconv warmup`` calls each step (here: the small problems only, to keep the test short) and prints
    one line per step and the total."""
    from numbaconv import warmup

    small = [problem for problem in warmup.PROBLEMS if np.prod(problem[1]) <= 16 * 16 * 64]
    monkeypatch.setattr(warmup, "PROBLEMS", small)
    assert cli.main(["warmup", "--layout", "NHWC"]) == 0
    printed = capsys.readouterr().out
    assert printed.count(" ms\n") == len(small) and "done in" in printed
    assert cli.main(["warmup", "--dtype", "float16"]) == 2
