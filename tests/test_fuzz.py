"""The fuzz test of every public function (tests/fuzz/fuzz_calls.py), run in a guarded subprocess: a crash
(segfault, abort), a hang or a runaway allocation there fails this test instead of killing the run.

Hypothesis is derandomized (the same calls on every run, so CI is reproducible); FUZZ_EXAMPLES sets the
examples per public function (150 by default here; try FUZZ_EXAMPLES=2000 HYPOTHESIS_PROFILE=thorough locally).
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

TESTS = pathlib.Path(__file__).resolve().parent

GUARD = """
import resource, sys
import pytest
resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))  # a runaway allocation fails instead of swapping
sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", sys.argv[1]]))
"""


def test_fuzz_every_public_function_in_a_guarded_subprocess():
    env = dict(os.environ, FUZZ_SHRINK="0")  # report the first failing call at once (the shrinker re-runs it)
    result = subprocess.run([sys.executable, "-c", GUARD, str(TESTS / "fuzz" / "fuzz_calls.py")], cwd=TESTS.parent,
                            capture_output=True, text=True, timeout=1500, env=env)
    summary = result.stdout[-6000:] + result.stderr[-3000:]
    assert result.returncode == 0, f"exit status {result.returncode} (negative: killed by that signal)\n{summary}"
    calls = re.search(r"fuzz calls: (\d+) \((\d+) computed", result.stdout)
    assert calls, summary
    total, computed = map(int, calls.groups())
    assert total >= 1000 and computed >= total // 4, summary  # the strategies reach valid problems too
    print(calls.group(0))
