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
    assert capsys.readouterr().out.strip() == "pointwise_blas (8, 64, 56, 56)"


def test_ci_runs_the_readme_test_command():
    commands = code_blocks("bash")
    test_command = next(c.strip() for c in commands if "pytest" in c)
    assert test_command in (ROOT / ".ci" / "run").read_text()
    main_command = next(c.strip() for c in commands if "numbaconv bench" in c)
    assert main_command.startswith("python3 -m venv .venv")
