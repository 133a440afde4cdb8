"""The public API's type hints (numbaconv ships py.typed) pass mypy, and a caller's misuse is caught by it."""

from __future__ import annotations

import pathlib

import pytest

mypy_api = pytest.importorskip("mypy.api", reason="mypy is in the 'test' extra")

ROOT = pathlib.Path(__file__).resolve().parents[1]
PUBLIC = ["numbaconv/__init__.py", "numbaconv/api.py", "numbaconv/grad.py", "numbaconv/separable.py",
          "numbaconv/convolution1d.py", "numbaconv/shuffle.py", "numbaconv/dispatch.py", "numbaconv/tuning.py",
          "numbaconv/reference.py", "numbaconv/spec.py"]


def run_mypy(*arguments: str) -> tuple[str, int]:
    stdout, stderr, status = mypy_api.run(["--config-file", str(ROOT / "pyproject.toml"), "--no-incremental",
                                           *arguments])
    return stdout + stderr, status


def test_public_modules_pass_mypy():
    report, status = run_mypy(*(str(ROOT / path) for path in PUBLIC))
    assert status == 0, report


def test_the_hints_catch_a_misuse(tmp_path, monkeypatch):
    """A call with a wrong keyword value fails the type check (the hints are not all Any)."""
    monkeypatch.setenv("MYPYPATH", str(ROOT))  # the package from this checkout (an editable install hides it)
    caller = tmp_path / "caller.py"
    caller.write_text("import numpy as np\nimport numbaconv\n"
                      "x = np.zeros((1, 1, 3, 3), np.float32)\n"
                      "numbaconv.conv2d(x, x, layout='NCWH', padding_mode='mirror', stride='2')\n")
    report, status = run_mypy(str(caller))
    assert status == 1
    assert "layout" in report and "padding_mode" in report and "stride" in report, report
    assert (ROOT / "numbaconv" / "py.typed").exists()
