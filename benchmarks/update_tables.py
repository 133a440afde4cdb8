"""Regenerate the benchmark tables in README.md and docs/*.md from the committed JSON results.

A generated block is delimited by HTML comments that hold the ``numbaconv report`` arguments
producing it::

    <!-- numbaconv report benchmarks/results/FILE.json --markdown --short -->
    ...
    <!-- end numbaconv report -->

``python benchmarks/update_tables.py`` rewrites every block; ``--check`` only says which are
stale (exit status 1), which the test suite runs so the tables can never drift from the data.
"""

from __future__ import annotations

import contextlib
import io
import os
import pathlib
import re
import shlex
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"(<!-- numbaconv report (?P<args>[^>]*?) -->\n)(?P<body>.*?)(<!-- end numbaconv report -->)", re.S)


def generated(args: str) -> str:
    from numbaconv import cli

    output, here = io.StringIO(), os.getcwd()
    os.chdir(ROOT)  # the paths in a block are relative to the repository
    try:
        with contextlib.redirect_stdout(output):
            cli.main(["report", *shlex.split(args)])
    finally:
        os.chdir(here)
    return output.getvalue().rstrip() + "\n"


def documents() -> list[pathlib.Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def main(argv=None) -> int:
    check = "--check" in (argv if argv is not None else sys.argv[1:])
    stale = []
    for path in documents():
        if not path.exists():
            continue
        text = path.read_text()
        updated = BLOCK.sub(lambda m: m.group(1) + generated(m.group("args")) + m.group(4), text)
        if updated != text:
            stale.append(path.relative_to(ROOT))
            if not check:
                path.write_text(updated)
    verb = "stale (run python benchmarks/update_tables.py)" if check else "updated"
    for path in stale:
        print(f"{path}: {verb}")
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
