"""Shared by the audit, projection and memory sections: latency percentiles and
the "what bounds the figure" paragraphs.

A section that misses its target profiles one more run of the work (never a
measured one) and names the amends functions behind the figure with their
share of the time, in the report itself. cProfile slows every Python call, so
its shares overstate pure-Python code next to SQLite's C code; where that
matters a section adds stage timers (`bench.probes`), which cost next to
nothing.
"""

from __future__ import annotations

import gc
import math
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event

from bench.probes import StageTimes
from bench.profiling import (
    FunctionKey,
    Profile,
    component_of,
    readable,
    share_table,
)


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile: the smallest value with p% at or below it."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(math.ceil(p / 100 * len(ordered)), 1)
    return ordered[rank - 1]


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Move every object alive now out of the collector's sight for the block.

    `timed_ms` collects garbage before each sample; with the harness's
    long-lived objects (imports, generated stores) frozen, that costs a
    fraction of a millisecond instead of tens, and the objects a call makes
    are still collected as they would be.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def timed_ms(work: Callable[[], Any]) -> float:
    """Milliseconds one call takes, after collecting the garbage earlier calls
    left (so one sample does not pay for another's; the call's own garbage
    collections still count)."""
    gc.collect()
    started = time.perf_counter()
    work()
    return (time.perf_counter() - started) * 1e3


COMPONENT_ORDER = (
    "amends",
    "pydantic",
    "SQLAlchemy",
    "eventsourcing",
    "database driver",
    "benchmark driver",
    "standard library and built-ins",
)


def component(key: FunctionKey) -> str:
    """`bench.profiling.component_of`, with SQLAlchemy told apart (the views)."""
    if "sqlalchemy" in key[0]:
        return "SQLAlchemy"
    return component_of(key)


def profile_text(
    profile: Profile,
    *,
    what: str,
    per: str,
    units: int,
    amends_count: int = 6,
    others: int = 3,
) -> str:
    """One paragraph: shares by component, then the amends functions ranked.

    `units` is how many `per` (events, calls) the profiled work did, so the
    call counts read per unit.
    """
    whole = profile.total or 1e-9
    totals = dict.fromkeys(COMPONENT_ORDER, 0.0)
    ranked: dict[str, list[tuple[str, int, float, float]]] = {
        name: [] for name in COMPONENT_ORDER
    }
    for key, (calls, self_time, inclusive) in profile.stats.items():
        name = component(key)
        totals[name] += self_time
        ranked[name].append((readable(key), calls, self_time, inclusive))
    for rows in ranked.values():
        rows.sort(key=lambda row: row[2], reverse=True)
    components = ", ".join(
        f"{name} {seconds / whole:.0%}"
        for name, seconds in totals.items()
        if seconds / whole >= 0.005
    )
    amends = "; ".join(
        f"`{name}` {self_time / whole:.0%} self, {inclusive / whole:.0%} inclusive "
        f"({_per(calls, units, per)})"
        for name, calls, self_time, inclusive in ranked["amends"][:amends_count]
    )
    rest = [
        f"{name}: "
        + ", ".join(
            f"`{function}` {self_time / whole:.0%}"
            for function, _, self_time, _ in ranked[name][:others]
        )
        for name in (
            "database driver",
            "SQLAlchemy",
            "pydantic",
            "standard library and built-ins",
        )
        if ranked[name] and totals[name] / whole >= 0.02
    ]
    return (
        f"cProfile of {what} ({whole:.2f} s under the profiler, which slows "
        "Python calls most, so pure-Python shares read high). Self time by "
        f"component: {components}. amends functions with the most self time, "
        f"as shares of the whole: {amends or 'none'}. Most self time elsewhere: "
        + "; ".join(rest)
        + "."
    )


def _per(calls: int, units: int, per: str) -> str:
    if calls * 100 < units:
        return f"{calls:,} calls in all"
    return f"{calls / units:.3g} calls per {per}"


def statement_spans(
    engine: Engine, work: Callable[[], Any]
) -> tuple[float, list[tuple[str, float]]]:
    """Run `work` once, unprofiled, and split its time by SQL statement.

    Each span runs from one statement's execution to the next one's (the
    last to the end of `work`), so it holds the query, fetching its rows and
    whatever Python does with them before the next query: on SQLite the
    driver steps through rows as they are fetched, so this is the only split
    that counts a query's whole cost. Returns the whole time and the spans,
    the time before the first statement first.
    """
    marks: list[tuple[float, str]] = []

    def before(*arguments: Any) -> None:
        marks.append((time.perf_counter(), str(arguments[2])))

    event.listen(engine, "before_cursor_execute", before)
    try:
        gc.collect()
        started = time.perf_counter()
        work()
        ended = time.perf_counter()
    finally:
        event.remove(engine, "before_cursor_execute", before)
    spans = [
        ("(before the first statement)", (marks[0][0] if marks else ended) - started)
    ]
    ends = [mark for mark, _ in marks[1:]] + [ended]
    spans += [
        (summarize_sql(sql), end - mark)
        for (mark, sql), end in zip(marks, ends, strict=True)
    ]
    return ended - started, spans


def summarize_sql(sql: str, width: int = 220) -> str:
    """One line: view-table prefixes dropped, subqueries elided, long text cut."""
    text = re.sub(r"\s+", " ", sql).strip()
    text = re.sub(r"\bamends_view_\w+\.", "", text)
    text = re.sub(r"\bamends_view_", "", text)
    out, depth, index = [], 0, 0
    while index < len(text):
        if text.startswith("(SELECT", index) and depth == 0:
            depth, start = 1, index
            index += 1
            while index < len(text) and depth:
                depth += {"(": 1, ")": -1}.get(text[index], 0)
                index += 1
            out.append("(subquery)" if depth == 0 else text[start:])
            depth = 0
            continue
        out.append(text[index])
        index += 1
    text = "".join(out)
    return text if len(text) <= width else text[: width - 1] + "…"


def own_times(times: StageTimes, labels: Sequence[str]) -> dict[str, float]:
    """Each label's inclusive time minus that of the listed labels directly
    inside it, so that the stages add up to the time they cover."""
    own: dict[str, float] = {}
    for label in labels:
        inner = sum(
            seconds
            for (name, parent), seconds in times.within.items()
            if parent == label and name in labels
        )
        own[label] = times.seconds[label] - inner
    return own


def stage_table(
    times: StageTimes,
    whole: float,
    rows: Sequence[tuple[str, str]],
    *,
    units: int,
    per: str,
    rest: str = "everything else",
) -> str:
    """A table of stage timers: (label, description) rows, shares of `whole`.

    Stages whose function was never called (amends changes; a stage may no
    longer exist) are left out; their time, if any, is in `rest`.
    """
    called = [(label, text) for label, text in rows if times.calls[label]]
    return compare_stages([("", times, whole, units)], called, per=per, rest=rest)


def compare_stages(
    runs: Sequence[tuple[str, StageTimes, float, int]],
    rows: Sequence[tuple[str, str]],
    *,
    per: str,
    rest: str = "everything else",
) -> str:
    """Stage timers of one or more runs side by side: (title, times, whole
    seconds, units) per run; µs per unit, share and calls per unit each."""
    labels = [label for label, _ in rows]
    owns = [own_times(times, labels) for _, times, _, _ in runs]
    columns: list[str] = []
    for title, _, _, _ in runs:
        suffix = f", {title}" if title else ""
        columns += [f"µs per {per}{suffix}", "share", "calls"]
    body: list[tuple[str, list[str]]] = []
    for label, description in rows:
        cells: list[str] = []
        for (_, times, whole, units), own in zip(runs, owns, strict=True):
            cells += [
                f"{own[label] / units * 1e6:,.1f}",
                f"{own[label] / whole:.0%}",
                _calls(times.calls[label], units),
            ]
        body.append((description, cells))
    others: list[str] = []
    total: list[str] = []
    for (_, _, whole, units), own in zip(runs, owns, strict=True):
        left = whole - sum(own.values())
        others += [f"{left / units * 1e6:,.1f}", f"{left / whole:.0%}", ""]
        total += [f"**{whole / units * 1e6:,.1f}**", "100%", ""]
    body += [(rest, others), ("**whole**", total)]
    return share_table(f"per {per} (stage timers)", columns, body)


def _calls(calls: int, units: int) -> str:
    """Calls per unit, or in all when fewer than one per hundred units."""
    if calls * 100 < units:
        return f"{calls:,} in all"
    return f"{calls / units:.3g}"
