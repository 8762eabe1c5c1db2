"""Where the time goes: cProfile, summarised by component and by function.

Used by a section that misses its target, to name the functions behind the
figure in the report itself rather than in a message that gets lost. cProfile
slows Python calls far more than C calls (SQLite, pydantic-core, the kernel),
so its figures overstate pure-Python code: they rank functions and show call
counts, while `bench.probes` gives the shares of time.
"""

from __future__ import annotations

import cProfile
import pstats
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import eventsourcing

import amends
import bench

FunctionKey = tuple[str, int, str]

_AMENDS_DIR = str(Path(amends.__file__).resolve().parent)
_EVENTSOURCING_DIR = str(Path(eventsourcing.__file__).resolve().parent)
_BENCH_DIR = str(Path(bench.__file__).resolve().parent)

COMPONENTS = (
    "amends",
    "pydantic",
    "eventsourcing",
    "database driver",
    "benchmark driver",
    "standard library and built-ins",
)


@dataclass(frozen=True)
class Profile:
    """One profiled run: per-function (self, inclusive) seconds and call counts."""

    stats: dict[FunctionKey, tuple[int, float, float]]
    """(calls, self seconds, inclusive seconds) by (file, line, name)."""

    @classmethod
    def of(cls, work: Callable[[], Any]) -> Profile:
        profiler = cProfile.Profile()
        profiler.enable()
        try:
            work()
        finally:
            profiler.disable()
        raw: dict[FunctionKey, Any] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
        return cls(stats={key: (int(v[1]), v[2], v[3]) for key, v in raw.items()})

    @property
    def total(self) -> float:
        """Seconds spent in all functions (the sum of self times)."""
        return sum(self_time for _, self_time, _ in self.stats.values())

    def by_component(self) -> dict[str, float]:
        """Self time per component: whose code the interpreter was running."""
        totals = dict.fromkeys(COMPONENTS, 0.0)
        for key, (_, self_time, _) in self.stats.items():
            totals[component_of(key)] += self_time
        return totals

    def top(
        self, component: str, count: int = 8
    ) -> list[tuple[str, int, float, float]]:
        """The `count` functions of `component` with most self time."""
        rows = [
            (readable(key), calls, self_time, inclusive)
            for key, (calls, self_time, inclusive) in self.stats.items()
            if component_of(key) == component
        ]
        return sorted(rows, key=lambda row: row[2], reverse=True)[:count]


def component_of(key: FunctionKey) -> str:
    filename, _, name = key
    path = str(Path(filename).resolve()) if filename != "~" else ""
    if path.startswith(_AMENDS_DIR):
        return "amends"
    if path.startswith(_BENCH_DIR):
        return "benchmark driver"
    if "pydantic" in path or "pydantic_core" in name:
        return "pydantic"
    if path.startswith(_EVENTSOURCING_DIR):
        return "eventsourcing"
    if any(part in path or part in name for part in ("sqlite3", "psycopg")):
        return "database driver"
    return "standard library and built-ins"


def readable(key: FunctionKey) -> str:
    """`module.py:function` for Python code, the built-in's own name otherwise."""
    filename, _, name = key
    if filename == "~":
        method = re.fullmatch(r"<method '(\w+)' of '(?:[\w.]*\.)?(\w+)' objects>", name)
        return f"{method[2]}.{method[1]}" if method else name.strip("<>")
    path = Path(filename)
    for root in (_AMENDS_DIR, _EVENTSOURCING_DIR, _BENCH_DIR):
        if str(path.resolve()).startswith(root):
            package = Path(root).name
            relative = path.resolve().relative_to(root)
            return f"{package}/{relative}:{name}"
    return f"{path.name}:{name}"


def share_table(
    title: str,
    columns: Iterable[str],
    rows: Iterable[tuple[str, Iterable[str]]],
) -> str:
    """A small Markdown table for a note body."""
    names = list(columns)
    out = [f"| {title} | " + " | ".join(names) + " |"]
    out.append("|---|" + "--:|" * len(names))
    out += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows]
    return "\n".join(out)
