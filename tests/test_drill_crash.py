"""Crash-safe projections: a follower killed with SIGKILL 20 times while it
catches up with 50,000 events ends with the reports of a full rebuild.

The store is a year of realistic traffic made by `bench.bulk.build` (every
event decided by the domain). A follower process (`tests/drill_follower.py`,
the runner behind `python -m amends project --follow` with 500-event batches)
is started, and killed at a random moment inside its second or third batch:
the drill waits for that batch to begin, then sleeps a random fraction of the
previous batch's duration, so kills fall while it folds, while its write
transaction is open and between batches. The follower writes a trail of where
it is, so each kill's landing place is known, and after each kill the drill
checks that the views hold exactly the batches committed before it: the
tracking position is where the trail says, and the complaints' versions add
up to that position (no event lost or folded twice). Then the follower is
restarted. At the end it catches up, and every report, read with
`catch_up=False`, equals the reports of views rebuilt from zero in another
database, and the oracle's (`tests/oracle.py`).

Bounded: about 40 seconds on SQLite and 45 on PostgreSQL, on 2 cores.
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from amends import ComplaintDesk
from amends.infra.reporting import policy_schedule
from amends.projections import tables
from amends.projections.reports import ReportFilter
from oracle import Oracle

from conftest import FixedClock

ROOT = Path(__file__).resolve().parents[1]
FOLLOWER = Path(__file__).with_name("drill_follower.py")
EVENTS = 50_000
KILLS = 20
BATCH_SIZE = 500
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
REPORTS = ("ownership", "time_to_resolution", "sla", "backlog", "recurrence")
INSIDE_A_BATCH = ("folding", "before writing", "writing", "committing")


@dataclass
class Figures:
    events: int = 0
    complaints: int = 0
    landed: Counter[str] = field(default_factory=Counter)
    """Where each kill landed: folding, writing, committing, between batches."""
    mid_catch_up: int = 0
    """Kills with events still to apply."""
    restart_seconds: list[float] = field(default_factory=list)
    """From a restart to its first batch committed."""
    final_catch_up_seconds: float = 0.0
    final_events: int = 0


def build_store(store_url: str) -> int:
    """50,000 events of a year's traffic; returns how many complaints."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from bench.bulk import build

    store = build(store_url, complaints=6_000, max_events=EVENTS, now=NOW, workers=1)
    assert store.events == EVENTS
    return store.complaints


class Trail:
    """The follower's trail file, read from where the current process began."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def restart(self) -> None:
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def lines(self) -> list[str]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as trail:
            trail.seek(self.offset)
            return trail.read().decode().splitlines()


def start_follower(store_url: str, trail: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(FOLLOWER), store_url, str(trail), str(BATCH_SIZE)],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        stdout=subprocess.DEVNULL,
    )


def wait_for_batch(
    process: subprocess.Popen[bytes], trail: Trail, nth: int
) -> list[float]:
    """Wait until the follower begins its `nth` batch; returns when it began
    each batch so far (as this process saw them)."""
    seen: list[float] = []
    deadline = time.monotonic() + 60
    while len(seen) < nth:
        assert process.poll() is None, "the follower died on its own"
        assert time.monotonic() < deadline, "the follower made no progress"
        batches = sum(line.startswith("fold ") for line in trail.lines())
        seen += [time.monotonic()] * (batches - len(seen))
        time.sleep(0.002)
    return seen


def landed(lines: list[str]) -> tuple[str, set[int]]:
    """Where the kill landed, and the tracking positions that allows."""
    last = lines[-1]
    if last.startswith("fold "):
        return "folding", {int(last.split()[1])}
    batches = [line.split() for line in lines if line.startswith("batch ")]
    begun, end = int(batches[-1][1]), int(batches[-1][2])
    if last.startswith("batch "):
        return "before writing", {begun}
    if last == "write":
        return "writing", {begun}
    if last == "commit":
        return "committing", {begun, end}  # the commit may or may not have ended
    assert last.startswith("done "), last
    return "between batches", {end}


def views_hold(desk: ComplaintDesk) -> tuple[int, int]:
    """The views' tracking position, and how many events their complaints add
    up to (each complaint's version counts the events folded into it).

    One statement, so one snapshot: on PostgreSQL a killed follower's commit
    may still be finishing on the server while the drill looks.
    """
    runner = desk.reports.runner
    runner.ensure_tables()
    folded = select(func.coalesce(func.sum(tables.complaints.c.version), 0))
    with runner.engine.connect() as conn:
        position, total = conn.execute(
            select(tables.tracking.c.position, folded.scalar_subquery()).where(
                tables.tracking.c.projection == runner.name
            )
        ).one()
    return int(position), int(total)


def kill_and_restart(store_url: str, tmp_path: Path, seed: int) -> Figures:
    rng = random.Random(seed)
    figures = Figures(events=EVENTS, complaints=build_store(store_url))
    trail = Trail(tmp_path / "trail.log")
    with ComplaintDesk(store_url) as watcher:
        assert watcher.last_position() == EVENTS, "positions run 1..EVENTS"
        for _ in range(KILLS):
            trail.restart()
            started = time.monotonic()
            process = start_follower(store_url, trail.path)
            try:
                began = wait_for_batch(process, trail, rng.choice((2, 3)))
                time.sleep(rng.uniform(0, began[-1] - began[-2]))
            finally:
                process.kill()
                process.wait()
            lines = trail.lines()
            where, allowed = landed(lines)
            figures.landed[where] += 1
            position, folded = views_hold(watcher)
            assert position in allowed, (where, position, allowed)
            assert folded == position, f"{where}: {folded} events folded by {position}"
            figures.mid_catch_up += position < EVENTS
            # The second batch begins as soon as the first is committed.
            figures.restart_seconds.append(began[1] - started)
        trail.restart()
        started = time.monotonic()
        process = start_follower(store_url, trail.path)
        try:
            deadline = started + 120
            while watcher.reports.runner.position() < EVENTS:
                assert process.poll() is None, "the follower died on its own"
                assert time.monotonic() < deadline, "the follower did not catch up"
                time.sleep(0.05)
            figures.final_catch_up_seconds = time.monotonic() - started
        finally:
            process.terminate()
            process.wait(timeout=30)
        assert views_hold(watcher) == (EVENTS, EVENTS)
        figures.final_events = EVENTS - min(
            int(line.split()[1]) for line in trail.lines() if line.startswith("batch ")
        )
    return figures


def assert_reports_equal_a_rebuild_and_the_oracle(
    store_url: str, tmp_path: Path
) -> None:
    clock = FixedClock(NOW)
    f = ReportFilter()
    with (
        ComplaintDesk(store_url, clock=clock) as followed,
        ComplaintDesk(
            store_url, clock=clock, views_url=f"sqlite:///{tmp_path / 'rebuilt.db'}"
        ) as rebuilt,
    ):
        assert rebuilt.reports.rebuild() == EVENTS
        for name in REPORTS:
            mine: Any = getattr(followed.reports, name)(catch_up=False)
            theirs = getattr(rebuilt.reports, name)(catch_up=False)
            assert mine == theirs, (name, differences(mine, theirs))
        ids = [entry.complaint_id for entry in followed.seal().complaints]
        oracle = Oracle({i: followed.events(i) for i in ids}, policy_schedule(None))
        q = followed.reports.queries
        assert q.ownership(NOW, f, 10) == oracle.ownership(NOW, f, 10)
        assert q.backlog(NOW, f) == oracle.backlog(NOW, f)
        assert q.time_to_resolution(NOW, f, 10) == oracle.time_to_resolution(NOW, f, 10)


def differences(mine: Any, theirs: Any) -> list[str]:
    """Where two reports differ, as paths into their JSON, for the failure."""
    found: list[str] = []

    def walk(a: Any, b: Any, path: str) -> None:
        if a == b or len(found) >= 5:
            return
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b), key=str):
                walk(a.get(key), b.get(key), f"{path}.{key}")
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for index, (x, y) in enumerate(zip(a, b, strict=True)):
                walk(x, y, f"{path}[{index}]")
        else:
            found.append(f"{path}: {a!r:.300} != {b!r:.300}")

    walk(mine.model_dump(mode="json"), theirs.model_dump(mode="json"), "")
    return found


def report(kind: str, figures: Figures, seconds: float) -> None:
    inside = sum(figures.landed[where] for where in INSIDE_A_BATCH)
    restarts = figures.restart_seconds
    print(
        f"\ncrash drill ({kind}): {figures.events:,} events, "
        f"{figures.complaints:,} complaints; {KILLS} kills, "
        f"{figures.mid_catch_up} mid-catch-up, {inside} inside a batch "
        f"({dict(figures.landed)}); restart to first batch median "
        f"{statistics.median(restarts):.2f} s, max {max(restarts):.2f} s; "
        f"last follower applied the remaining {figures.final_events:,} events "
        f"in {figures.final_catch_up_seconds:.1f} s; whole drill {seconds:.0f} s"
    )


def run_drill(kind: str, store_url: str, tmp_path: Path) -> None:
    started = time.monotonic()
    figures = kill_and_restart(store_url, tmp_path, seed=len(kind))
    assert_reports_equal_a_rebuild_and_the_oracle(store_url, tmp_path)
    report(kind, figures, time.monotonic() - started)
    assert figures.mid_catch_up == KILLS, "a kill fell after the catch-up"
    assert sum(figures.landed[where] for where in INSIDE_A_BATCH) >= KILLS // 2
    assert figures.landed["writing"] >= 1, "no kill inside a write transaction"


def test_a_follower_killed_20_times_on_sqlite_ends_equal_to_a_rebuild(
    tmp_path: Path,
) -> None:
    run_drill("SQLite", f"sqlite:///{tmp_path / 'store.db'}", tmp_path)


def test_a_follower_killed_20_times_on_postgres_ends_equal_to_a_rebuild(
    postgres_url: str, tmp_path: Path
) -> None:
    run_drill("PostgreSQL", postgres_url, tmp_path)
