"""The benchmark's baselines do the work they are said to do.

`docs/benchmarks.md` judges catch-up beside the bare library reading the
whole log in the same round (`bench.projections.catch_up_round`), and reconstruction
beside the bare library reading from its own snapshots
(`bench.audit.SnapshottingRawDesk`). A baseline that read less, or took no
snapshots, would flatter amends' ratios without anyone noticing.
"""

from __future__ import annotations

from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from bench.audit import (
    DEFAULT_SNAPSHOT_EVERY,
    NotedAggregate,
    SnapshottingRawDesk,
    build_raw,
)
from bench.bulk import BulkStore
from bench.projections import Store, catch_up_round
from bench.raw import RawDesk

from amends import ComplaintDesk

from conftest import FixedClock


def test_a_catch_up_round_reads_every_event_raw_and_rebuilds_the_same_views(
    shared_store_url: str,
) -> None:
    """On both databases: the library names PostgreSQL's tables after its
    application, so a raw read under another name would find none there."""
    url = shared_store_url
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
    assert events == 6
    store = Store(BulkStore(url, complaints=3, events=events))
    for rebuild_first in (True, False):
        rebuilt, read = catch_up_round(store, rebuild_first=rebuild_first)
        assert rebuilt > 0
        assert read > 0
        with ComplaintDesk(url, clock=clock) as desk:
            assert desk.reports.ownership(catch_up=False).model_dump(
                exclude={"generated_at"}
            ) == plain.model_dump(exclude={"generated_at"})
    short = Store(BulkStore(url, complaints=3, events=events + 1))
    with pytest.raises(RuntimeError, match="not 7"):
        catch_up_round(short, rebuild_first=True)


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
