"""The documentation site cannot rot: every Python snippet in docs/ runs (each page's blocks in order,
in one namespace, so a page reads like a session), the figure script draws every figure the pages
show, and ``mkdocs build --strict`` passes when MkDocs is installed (the 'docs' extra; CI runs it)."""

from __future__ import annotations

import importlib.util
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md"))
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def blocks(page: pathlib.Path) -> list[str]:
    return BLOCK.findall(page.read_text())


def test_pages_have_snippets_where_the_issue_asks():
    with_code = {p.relative_to(DOCS).as_posix() for p in PAGES if blocks(p)}
    assert {"index.md", "concepts/pointwise.md", "concepts/grouped.md", "concepts/depthwise.md",
            "concepts/shuffle.md", "dispatch.md", "training.md"} <= with_code


@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p)], ids=lambda p: p.relative_to(DOCS).as_posix())
def test_snippets_run(page, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NUMBACONV_CACHE_DIR", str(tmp_path))  # tune() snippets write nowhere else
    monkeypatch.chdir(tmp_path)
    has_torch = importlib.util.find_spec("torch") is not None
    namespace: dict = {"__name__": f"docs_{page.stem}"}
    ran = 0
    for number, code in enumerate(blocks(page)):
        if not has_torch and re.search(r"^\s*(import torch|from torch|from numbaconv\.torch)", code, re.M):
            continue  # the optional PyTorch bridge: runs where torch is installed
        try:
            exec(compile(code, f"{page.relative_to(ROOT)}[block {number}]", "exec"), namespace)
        except Exception as error:  # name the page and block in the failure
            raise AssertionError(f"{page.relative_to(ROOT)} block {number} failed: {error!r}\n{code}") from error
        ran += 1
    assert ran >= 1


def test_nav_lists_every_page_and_every_page_exists():
    config = (ROOT / "mkdocs.yml").read_text()
    listed = set(re.findall(r":\s*([\w/.-]+\.md)\s*$", config, re.M))
    on_disk = {p.relative_to(DOCS).as_posix() for p in PAGES}
    assert listed == on_disk, (listed ^ on_disk)


def test_every_figure_a_page_shows_is_drawn_by_the_script(tmp_path):
    pytest.importorskip("matplotlib")
    spec = importlib.util.spec_from_file_location("figures", DOCS / "scripts" / "figures.py")
    figures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(figures)
    drawn = {p.name for p in figures.main(tmp_path)}
    shown = {m for p in PAGES for m in re.findall(r"\]\((?:\.\./)*figures/([\w.-]+\.png)\)", p.read_text())}
    assert shown and shown <= drawn, shown - drawn
    assert all((tmp_path / name).stat().st_size > 10_000 for name in drawn)  # real charts, not empty canvases


def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="the 'docs' extra is not installed")
    pytest.importorskip("material", reason="the 'docs' extra is not installed")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (tmp_path / "site" / "concepts" / "grouped" / "index.html").exists()
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "conv2d_grad_weight" in api and "channel_shuffle" in api  # mkdocstrings rendered the docstrings
