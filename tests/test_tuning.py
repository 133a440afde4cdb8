"""The tuner: it times every kernel that serves a problem, remembers the fastest on disk, and
``algorithm='tuned'`` runs that kernel."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import GROUPED_KERNELS, assert_matches_reference

import numbaconv
from numbaconv import tuning


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMBACONV_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tuning, "_REMEMBERED", {})
    return tmp_path


GROUPED_1X1 = dict(x_shape=(1, 12, 9, 9), weight_shape=(12, 4, 1, 1), groups=3)


def test_tune_times_every_serving_kernel_and_saves_the_fastest(cache_dir):
    tuned = numbaconv.tune(**GROUPED_1X1, repeat=2)
    assert not tuned.from_cache
    assert set(tuned.seconds) == GROUPED_KERNELS  # the kernels that serve a grouped 1x1
    assert all(seconds > 0 for seconds in tuned.seconds.values())
    assert tuned.kernel == min(tuned.seconds, key=tuned.seconds.get)
    saved = json.loads((cache_dir / tuning.CACHE_FILE).read_text())
    (key, entry), = saved.items()
    assert entry["kernel"] == tuned.kernel and "threads=" in key and "groups=3" in key


def test_a_tuned_problem_is_answered_from_the_cache_file(cache_dir, monkeypatch):
    first = numbaconv.tune(**GROUPED_1X1, repeat=1)
    monkeypatch.setattr(tuning, "_REMEMBERED", {})  # as in a fresh process: only the file remains
    monkeypatch.setattr(tuning, "_median_seconds", lambda *args: pytest.fail("timed again"))
    again = numbaconv.tune(**GROUPED_1X1)
    assert again.from_cache and again.kernel == first.kernel


def test_a_damaged_or_foreign_cache_entry_is_retuned(cache_dir):
    (cache_dir / tuning.CACHE_FILE).write_text("{not json")
    assert not numbaconv.tune(**GROUPED_1X1, repeat=1).from_cache
    spec = numbaconv.plan(**GROUPED_1X1).spec
    entries = {tuning.problem_key(spec): {"kernel": "depthwise", "seconds": {}}}  # cannot serve it
    (cache_dir / tuning.CACHE_FILE).write_text(json.dumps(entries))
    tuning._REMEMBERED.clear()
    assert numbaconv.tune(**GROUPED_1X1, repeat=1).kernel in GROUPED_KERNELS


@pytest.mark.parametrize("weight_shape, groups", [((8, 1, 3, 3), 8), ((6, 8, 1, 1), 1), ((4, 4, 3, 3), 2)])
def test_algorithm_tuned_runs_the_winner_and_matches_the_reference(cache_dir, rng, weight_shape, groups):
    x = rng.standard_normal((2, 8, 7, 6)).astype(np.float32)
    weight = rng.standard_normal(weight_shape).astype(np.float32)
    bias = rng.standard_normal(weight_shape[0]).astype(np.float32)
    got = numbaconv.conv2d(x, weight, bias, padding=1, groups=groups, algorithm="tuned")
    assert_matches_reference(got, x, weight, bias, padding=1, groups=groups)
    plan = numbaconv.plan(x.shape, weight.shape, True, padding=1, groups=groups, algorithm="tuned")
    assert plan.reason.startswith("tuned (remembered") and plan.kernel in plan.reason


def test_tune_rejects_a_bad_repeat(cache_dir):
    with pytest.raises(ValueError, match="repeat must be an int >= 1, got 0"):
        numbaconv.tune(**GROUPED_1X1, repeat=0)
