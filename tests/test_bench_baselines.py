"""The benchmark's baselines do the work they are said to do.

`docs/benchmarks.md` judges catch-up beside the bare library reading the
same pages of the log (`bench.projections.PairedFeed`), and reconstruction
beside the bare library reading from its own snapshots
(`bench.audit.SnapshottingRawDesk`). A baseline that read less, or took no
snapshots, would flatter amends' ratios without anyone noticing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.audit import (
    DEFAULT_SNAPSHOT_EVERY,
    NotedAggregate,
    SnapshottingRawDesk,
    build_raw,
)
from bench.projections import PairedFeed
from bench.raw import RawDesk

from amends import ComplaintDesk
from amends.infra.settings import store_settings
from amends.projections.runner import FeedItem

from conftest import FixedClock


@dataclass
class Page:
    state: bytes


class Recorder:
    """Stands in for the library's recorder: pages of `size` rows at most."""

    def __init__(self, calls: list[tuple[str, int, int]], last: int) -> None:
        self.calls = calls
        self.last = last

    def select_notifications(self, start: int, limit: int) -> list[Page]:
        self.calls.append(("raw", start, limit))
        rows = max(min(limit, self.last - start + 1), 0)
        return [Page(json.dumps({"n": start + i}).encode()) for i in range(rows)]


class Feed:
    def __init__(self, calls: list[tuple[str, int, int]]) -> None:
        self.calls = calls

    def read(self, after: int, limit: int) -> Sequence[FeedItem]:
        self.calls.append(("runner", after, limit))
        return []

    def last_position(self) -> int:
        return 0


def test_the_paired_feed_reads_each_page_raw_too_first_before_then_after() -> None:
    calls: list[tuple[str, int, int]] = []
    feed = PairedFeed(Feed(calls), Recorder(calls, last=12))  # type: ignore[arg-type]
    for after, limit in ((0, 5), (5, 5), (10, 5)):
        feed.read(after, limit)
    assert calls == [
        ("raw", 1, 5),
        ("runner", 0, 5),
        ("runner", 5, 5),
        ("raw", 6, 5),
        ("raw", 11, 5),
        ("runner", 10, 5),
    ]
    assert feed.raw_events == 12
    assert feed.raw_seconds > 0


def test_a_rebuild_through_the_paired_feed_reads_every_event_raw_and_folds_the_same(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    at = datetime(2030, 1, 1, tzinfo=UTC)
    clock = FixedClock(at + timedelta(days=1))
    with ComplaintDesk(url, clock=clock) as desk:
        for n in range(3):
            complaint_id = desk.receive(
                by="amira",
                customer=f"Customer {n}",
                summary="The card was charged twice.",
                channel="email",
                category="billing",
                severity="normal",
                expectation="A refund.",
                at=at + timedelta(hours=n),
            )
            desk.acknowledge(
                complaint_id,
                by="amira",
                paraphrase="You were charged twice.",
                at=at + timedelta(hours=n, minutes=30),
            )
        plain = desk.reports.ownership(catch_up=True)
        events = desk.reports.runner.position()
    with (
        ComplaintDesk(url, clock=clock) as desk,
        closing(RawDesk(store_settings(url))) as app,
    ):
        paired = PairedFeed(desk.reports.runner.feed, app.recorder)
        desk.reports.runner.feed = paired
        assert desk.reports.rebuild() == events == 6
        assert paired.raw_events == events
        assert desk.reports.ownership(catch_up=False).model_dump(
            exclude={"generated_at"}
        ) == plain.model_dump(exclude={"generated_at"})


def test_the_snapshotting_library_takes_a_snapshot_every_interval_and_reads_from_it(
    tmp_path: Path,
) -> None:
    events = 2 * DEFAULT_SNAPSHOT_EVERY + 30
    start = datetime(2030, 1, 1, tzinfo=UTC)
    times = [start + timedelta(minutes=i) for i in range(events)]
    env: dict[str, Any] = {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(tmp_path / "raw.db"),
    }
    with closing(SnapshottingRawDesk(env)) as app:
        raw_id = build_raw(app, times)
        assert app.snapshots is not None
        taken = [snapshot.originator_version for snapshot in app.snapshots.get(raw_id)]
        assert taken == [DEFAULT_SNAPSHOT_EVERY, 2 * DEFAULT_SNAPSHOT_EVERY]
        latest: NotedAggregate = app.repository.get(raw_id)
        assert (latest.version, latest.notes) == (events, events - 1)
        at_version: NotedAggregate = app.repository.get(raw_id, version=150)
        assert (at_version.version, at_version.notes) == (150, 149)
        assert at_version.last_event_at == times[149]
    with closing(RawDesk(env)) as plain:
        # The same tables: the plain library reads the very same history.
        replayed: NotedAggregate = plain.repository.get(raw_id)
        assert replayed.version == events
