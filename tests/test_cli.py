"""The command line: ``numbaconv bench`` and ``numbaconv info`` (smoke tests; speed is never asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from numbaconv import cli


def test_bench_writes_rows_for_every_family(tmp_path, capsys):
    report_file = tmp_path / "r.json"
    layers = "mobilenet_v2"
    assert cli.main(["bench", "--suite", layers, "--quick", "--repeat", "1", "--limit", "3", "--no-torch",
                     "--json", str(report_file)]) == 0
    printed = capsys.readouterr().out
    assert "vs reference" in printed and "geometric means per family" in printed
    report = json.loads(report_file.read_text())
    assert {"machine", "settings", "summary", "rows"} <= set(report)
    rows = report["rows"]
    assert [r["layer"] for r in rows] == ["mobilenet_v2/stem", "mobilenet_v2/b1_dw", "mobilenet_v2/b1_project"]
    assert {r["kind"] for r in rows} == {"grouped", "depthwise", "pointwise"}
    for row in rows:
        assert row["time_s"] > 0 and row["gflops"] > 0 and row["speedup_vs_reference"] > 0
        assert row["kernel"] in ("grouped", "depthwise", "pointwise_blas")
    assert report["machine"]["numba"] and report["machine"]["cores"] >= 1


def test_bench_rejects_unknown_suite():
    with pytest.raises(SystemExit):
        cli.main(["bench", "--suite", "vgg16"])


def test_info_and_module_entry_point():
    result = subprocess.run([sys.executable, "-m", "numbaconv", "info"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "threading_layer" in result.stdout and "depthwise" in result.stdout
