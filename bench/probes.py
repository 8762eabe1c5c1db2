"""Stage timers: wall time of a few coarse functions, with next to no overhead.

cProfile times every call, so code made of many small calls (a list
comprehension calling `unicodedata.category` per character, say) looks several
times dearer than it is, next to SQLite's C code. Wrapping only the dozen
functions that mark the stages of a command (validate, read, decode, decide,
encode, write) costs well under a microsecond per wrapped call and keeps the
shares honest. Used only in a diagnosis run, never in a measured one.
"""

from __future__ import annotations

import functools
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

_MISSING = object()


@dataclass(frozen=True)
class Probe:
    """Time `owner.attribute` under `label`: a plain function of a module, or a
    method of a class (patched on that class, so every instance sees it)."""

    owner: Any
    attribute: str
    label: str


@dataclass
class StageTimes:
    """Inclusive seconds and calls per label, split by the enclosing label."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    within: dict[tuple[str, str | None], float] = field(
        default_factory=lambda: defaultdict(float)
    )
    """Seconds by (label, innermost enclosing label or None)."""
    calls_within: dict[tuple[str, str | None], int] = field(
        default_factory=lambda: defaultdict(int)
    )
    missing: list[str] = field(default_factory=list)
    """Labels whose function no longer exists (amends is changing under us)."""
    _stack: list[str] = field(default_factory=list)

    def wrap(self, label: str, function: Callable[..., Any]) -> Callable[..., Any]:
        stack = self._stack
        seconds, calls = self.seconds, self.calls
        within, calls_within = self.within, self.calls_within
        clock = time.perf_counter

        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if label in stack:  # re-entered (an override calling its base)
                return function(*args, **kwargs)
            parent = stack[-1] if stack else None
            stack.append(label)
            started = clock()
            try:
                return function(*args, **kwargs)
            finally:
                elapsed = clock() - started
                stack.pop()
                seconds[label] += elapsed
                calls[label] += 1
                within[label, parent] += elapsed
                calls_within[label, parent] += 1

        return timed


@contextmanager
def probed(probes: list[Probe]) -> Iterator[StageTimes]:
    """Wrap every probe's function for the duration of the block, then restore."""
    times = StageTimes()
    restore: list[tuple[Any, str, Any]] = []
    try:
        for probe in probes:
            original = getattr(probe.owner, probe.attribute, _MISSING)
            if not callable(original):
                times.missing.append(probe.label)
                continue
            own = vars(probe.owner).get(probe.attribute, _MISSING)
            restore.append((probe.owner, probe.attribute, own))
            setattr(probe.owner, probe.attribute, times.wrap(probe.label, original))
        yield times
    finally:
        for owner, attribute, own in reversed(restore):
            if own is _MISSING:
                delattr(owner, attribute)
            else:
                setattr(owner, attribute, own)
