"""How the bench times one call: back to back and after an idle gap, with the spread of the samples.

Back to back: a settle pause (so that the thread pools of whatever ran before are asleep again), a
warm-up call, then samples, as pyperf and pytest-benchmark take them: a sample is ``loops`` calls in a
row (calibrated so that it lasts at least MIN_SAMPLE_S: a 20 us call is timed over 50 calls, not one,
so that the clock's and the scheduler's granularity do not dominate), and samples are taken until
there are ``repeat`` of them and their spread (interquartile range / median) is below
TARGET_DISPERSION, or the measurement's BUDGET_S is spent.  The median, the p99, the minimum and the
interquartile range are kept; a timing whose spread is above NOISY_DISPERSION is **noisy** (the
machine was busy, or the call's time is bimodal) and the bench flags its row.  A steady load (a busy
loop on one core) slows every sample alike and leaves the spread small: so `measure` also reads, where
Linux's /proc/stat exists, how much CPU time everything else on the machine took while the samples
ran (`OtherLoad`: the machine's busy time, the hypervisor's steal included, less this process's own);
above OTHER_LOAD_LIMIT of the cores, the timing is noisy too.

After a gap: ``rounds`` times, sleep ``gap_s`` (as a pipeline does between layers: data loading,
other layers, Python), make one call, and time the next one.  A kernel library whose thread pools
hand the cores back and forth with another pool, or whose workers have gone to sleep, pays it here
and not back to back; this is the latency a real pipeline sees.  Both numbers come from the same
function for numbaconv and for every peer.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import dataclass

SETTLE_S = 0.15  # longer than the spin-wait of the thread pools measured here (ONNX Runtime's ~0.1 s)
GAP_S = 0.04
MIN_SAMPLE_S = 1e-3  # a sample lasts at least this: calls shorter than it are timed several in a row
MAX_LOOPS = 1000
TARGET_DISPERSION = 0.05  # samples are taken until the interquartile range is within 5% of the median ...
BUDGET_S = 0.6  # ... or this much time was spent on them (beyond the first ``repeat``)
MAX_SAMPLES = 200
NOISY_DISPERSION = 0.10  # a timing spread wider than this is flagged noisy
OTHER_LOAD_LIMIT = 0.10  # ... and so is one during which other work took more than this share of the cores
MIN_LOAD_WINDOW_S = 0.2  # (read over at least this long: /proc/stat counts 10 ms ticks)


@dataclass
class Timing:
    median_s: float
    p99_s: float
    gap_median_s: float = math.nan  # after an idle gap (NaN: not measured)
    gap_p99_s: float = math.nan
    iqr_s: float = 0.0  # interquartile range of the back-to-back samples
    min_s: float = math.nan
    samples: int = 0
    loops: int = 1  # calls per sample
    other_load: float = math.nan  # share of the cores other work took while the samples ran (NaN: unknown)

    @property
    def dispersion(self) -> float:
        """Interquartile range / median of the back-to-back samples (0 for a single sample)."""
        return self.iqr_s / self.median_s if self.median_s > 0 else 0.0

    @property
    def noisy(self) -> bool:
        return self.dispersion > NOISY_DISPERSION or self.other_load > OTHER_LOAD_LIMIT


def machine_busy_seconds() -> float | None:
    """CPU seconds the whole machine has spent busy since boot (/proc/stat: user, nice, system, irq, softirq
    and the hypervisor's steal, all cores), or None where there is no /proc/stat."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(value) for value in fields[1:9]] + [0] * 8
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_seconds() -> float:
    """CPU seconds this process (and children it has waited for) has used."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


class OtherLoad:
    """``with OtherLoad() as load: ...`` then ``load.share``: the share of all cores (0 to 1) that other work
    (other processes, a busy loop, a hypervisor's steal) took during the block; NaN where it cannot be read
    or the block was shorter than MIN_LOAD_WINDOW_S."""

    def __enter__(self):
        self.start = time.perf_counter(), machine_busy_seconds(), own_seconds()
        self.share = math.nan
        return self

    def __exit__(self, *exc):
        wall, busy, own = time.perf_counter(), machine_busy_seconds(), own_seconds()
        # /proc/stat counts in clock ticks (10 ms): over a shorter block than MIN_LOAD_WINDOW_S the share is noise
        if busy is not None and self.start[1] is not None and wall - self.start[0] >= MIN_LOAD_WINDOW_S:
            others = (busy - self.start[1]) - (own - self.start[2])
            self.share = min(1.0, max(0.0, others / ((wall - self.start[0]) * (os.cpu_count() or 1))))
        return False


def percentile(samples, q: float) -> float:
    ordered = sorted(samples)
    if not ordered:
        return math.nan
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def interquartile_range(samples) -> float:
    return percentile(samples, 75) - percentile(samples, 25)


def dispersion(samples) -> float:
    """Interquartile range / median (0 for fewer than 4 samples: not enough to tell)."""
    if len(samples) < 4:
        return 0.0
    middle = statistics.median(samples)
    return interquartile_range(samples) / middle if middle > 0 else 0.0


def sample(fn, repeat: int, settle_s: float = SETTLE_S, budget_s: float = BUDGET_S) -> tuple[list[float], int]:
    """``(seconds per call, one entry per sample; calls per sample)``: see the module docstring."""
    if settle_s:
        time.sleep(settle_s)
    fn()  # warm-up: caches, thread pools, page faults
    samples: list[float] = []
    loops = 1
    started = time.perf_counter()
    while True:
        start = time.perf_counter()
        for _ in range(loops):
            fn()
        elapsed = time.perf_counter() - start
        if loops == 1 and not samples and elapsed < MIN_SAMPLE_S:
            # the first call calibrates: a short call is timed MIN_SAMPLE_S worth of calls at a time
            loops = min(MAX_LOOPS, max(1, math.ceil(MIN_SAMPLE_S / max(elapsed, 1e-9))))
            if loops > 1:
                continue
        samples.append(elapsed / loops)
        if len(samples) >= max(repeat, 1) and (dispersion(samples) <= TARGET_DISPERSION
                                               or time.perf_counter() - started >= budget_s
                                               or len(samples) >= MAX_SAMPLES):
            return samples, loops


def back_to_back(fn, repeat: int, settle_s: float = SETTLE_S, budget_s: float = BUDGET_S) -> list[float]:
    """Seconds per call, one entry per sample (`sample`)."""
    return sample(fn, repeat, settle_s, budget_s)[0]


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
    """Back-to-back median, p99, minimum and interquartile range of ``fn()`` (at least ``repeat`` samples), and
    with ``gap_rounds`` the median and p99 after idle gaps."""
    with OtherLoad() as load:
        samples, loops = sample(fn, repeat, settle_s)
    timing = Timing(*summary(samples), iqr_s=interquartile_range(samples), min_s=min(samples), samples=len(samples),
                    loops=loops, other_load=load.share)
    if gap_rounds:
        timing.gap_median_s, timing.gap_p99_s = summary(after_gap(fn, gap_rounds, gap_s))
    return timing
