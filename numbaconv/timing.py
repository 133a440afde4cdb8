"""How the bench times one call: back to back and after an idle gap.

Back to back: a settle pause (so that the thread pools of whatever ran before are asleep again),
a warm-up call, then ``repeat`` timed calls; the median and the 99th percentile are kept.

After a gap: ``rounds`` times, sleep ``gap_s`` (as a pipeline does between layers: data loading,
other layers, Python), make one call, and time the next one.  A kernel library whose thread pools
hand the cores back and forth with another pool, or whose workers have gone to sleep, pays it here
and not back to back; this is the latency a real pipeline sees.  Both numbers come from the same
function for numbaconv and for every peer.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass

SETTLE_S = 0.15  # longer than the spin-wait of the thread pools measured here (ONNX Runtime's ~0.1 s)
GAP_S = 0.04


@dataclass
class Timing:
    median_s: float
    p99_s: float
    gap_median_s: float = math.nan  # after an idle gap (NaN: not measured)
    gap_p99_s: float = math.nan


def percentile(samples, q: float) -> float:
    ordered = sorted(samples)
    if not ordered:
        return math.nan
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def back_to_back(fn, repeat: int, settle_s: float = SETTLE_S) -> list[float]:
    if settle_s:
        time.sleep(settle_s)
    fn()  # warm-up: caches, thread pools, page faults
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def after_gap(fn, rounds: int, gap_s: float = GAP_S) -> list[float]:
    samples = []
    for _ in range(rounds):
        time.sleep(gap_s)
        fn()
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def summary(samples) -> tuple[float, float]:
    """The median and the 99th percentile of timed calls."""
    return statistics.median(samples), percentile(samples, 99)


def measure(fn, repeat: int, gap_rounds: int = 0, gap_s: float = GAP_S, settle_s: float = SETTLE_S) -> Timing:
    """Back-to-back median and p99 of ``fn()``, and with ``gap_rounds`` the same after idle gaps."""
    timing = Timing(*summary(back_to_back(fn, repeat, settle_s)))
    if gap_rounds:
        timing.gap_median_s, timing.gap_p99_s = summary(after_gap(fn, gap_rounds, gap_s))
    return timing
