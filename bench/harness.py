"""What every section shares: the run's configuration and how time is taken.

Kept apart from the sections so that each new one measures the same way:
wall-clock time (`time.perf_counter`) around the work only, after a full
garbage collection. A throughput measured in rounds of seconds is reported as
its best round (`best`), as `timeit` does; one measured in short rounds that
alternate with its baseline, by medians (of each side, or of each round's
ratio); a latency as its nearest-rank percentiles over many interleaved
calls. ADR 0011 says why.
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

FULL_COMPLAINTS = 2_000
QUICK_COMPLAINTS = 200
DEFAULT_ROUNDS = 3
QUICK_ROUNDS = 2


@dataclass(frozen=True)
class RunConfig:
    """What the command line asked for, as every section reads it.

    `postgres_url` is `AMENDS_TEST_POSTGRES_URL` (None: SQLite only).
    """

    quick: bool
    complaints: int
    rounds: int
    postgres_url: str | None
    profile: bool = True
    """Whether a section may profile when it misses its target (costs seconds)."""


def timed(work: Callable[[], T]) -> tuple[float, T]:
    """Seconds `work` took and what it returned; collects garbage first, and
    keeps what was alive before it out of the collector's sight meanwhile.

    Collecting first means one measurement does not pay for the garbage the
    previous one left, which would penalise whichever ran second. Freezing
    the heap (`gc.freeze`) means it does not pay for the harness's own
    objects either: each of the collector's passes during `work` rescans
    everything alive, so the same read of the log ran about a third slower
    while the harness held one more store's figures, and the ratios of two
    runs moved with what each section happened to keep. What `work` itself
    allocates is collected as usual.
    """
    gc.collect()
    gc.freeze()
    try:
        started = time.perf_counter()
        result = work()
        return time.perf_counter() - started, result
    finally:
        gc.unfreeze()


def best(rates: Sequence[float]) -> float:
    """The highest of some rounds' rates: what the machine gives the work when
    nothing else runs on it. Another tenant of a shared machine only ever
    slows a round, by up to half for seconds or minutes at a time here, so
    the best of a few rounds moves far less between runs than their median."""
    if not rates:
        raise ValueError("no rates to take the best of")
    return max(rates)


def median(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("no values to take the median of")
    return float(statistics.median(values))


def per_second(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def log(message: str) -> None:
    """Progress on stderr, so a long run shows it is alive; stdout stays clean."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
