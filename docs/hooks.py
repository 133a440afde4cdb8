"""MkDocs hook: draw the figures from the library before the pages are collected (docs/scripts/figures.py)."""

from __future__ import annotations

import importlib.util
import pathlib

HERE = pathlib.Path(__file__).resolve().parent


def on_pre_build(config, **kwargs):
    spec = importlib.util.spec_from_file_location("numbaconv_docs_figures", HERE / "scripts" / "figures.py")
    figures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(figures)
    figures.main(HERE / "figures")
