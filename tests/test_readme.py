"""README.md stays true: its usage example runs, and .ci/run runs its test command."""

from __future__ import annotations

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def code_blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_usage_example_runs(capsys):
    (example,) = code_blocks("python")
    exec(compile(example, "README.md", "exec"), {})
    assert capsys.readouterr().out.strip() == "pointwise_gemm (8, 64, 56, 56)"


def test_ci_runs_the_readme_test_command():
    commands = code_blocks("bash")
    test_command = next(c.strip() for c in commands if "pytest" in c)
    assert test_command in (ROOT / ".ci" / "run").read_text()
    main_command = next(c.strip() for c in commands if "numbaconv bench" in c)
    assert main_command.startswith("python3 -m venv .venv")


def test_benchmark_tables_match_their_committed_results():
    """Every generated table in README.md and docs/ equals what ``numbaconv report`` makes of
    the committed JSON (benchmarks/update_tables.py regenerates them)."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "update_tables.py"), "--check"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    blocks = re.findall(r"<!-- numbaconv report (\S+)", README + (ROOT / "docs" / "performance.md").read_text())
    assert blocks and all((ROOT / path).is_file() for path in blocks)


def test_linked_images_exist():
    for document in (ROOT / "README.md", ROOT / "docs" / "performance.md"):
        for target in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", document.read_text()):
            if target.startswith("figures/"):
                continue  # drawn at build time by docs/scripts/figures.py (tests/test_docs.py checks)
            assert (document.parent / target).resolve().is_file(), (document.name, target)
