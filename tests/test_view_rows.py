"""The runner's fast paths write exactly what the slow, obvious ones would.

Catch-up writes view rows with the driver's executemany and its own value
conversions, and keeps each complaint's facts as JSON written by pydantic's
serializer. These tests hold both to the plain path: SQLAlchemy's own insert
for the rows, and a round trip through the JSON for the facts.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Boolean, Column, Float, Integer, Table, create_engine, insert

from amends import ComplaintDesk
from amends.projections import tables as t
from amends.projections.facts import ComplaintFacts
from amends.projections.runner import _upsert_many
from amends.testing import lifecycles

from conftest import FixedClock

START = datetime(2025, 1, 6, 9, tzinfo=UTC)


def aware_times() -> st.SearchStrategy[datetime]:
    """Times in UTC and in other fixed zones, down to the microsecond."""
    zones = st.sampled_from(
        [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
    )
    return st.builds(
        lambda seconds, zone: (START + timedelta(microseconds=seconds)).astimezone(
            zone
        ),
        st.integers(-(10**13), 10**13),
        zones,
    )


def cell(column: Column[Any]) -> st.SearchStrategy[Any]:
    kind = column.type
    if isinstance(kind, t.UtcDateTime):
        value: st.SearchStrategy[Any] = aware_times()
    elif isinstance(kind, Boolean):
        value = st.booleans()
    elif isinstance(kind, Float):
        value = st.floats(-1e9, 1e9, allow_nan=False)
    elif isinstance(kind, Integer):
        value = st.integers(-(2**31), 2**31 - 1)
    else:
        value = st.text(max_size=12)
    return value | st.none() if column.nullable else value


def rows_of(table: Table) -> st.SearchStrategy[list[tuple[Any, ...]]]:
    """Rows with distinct primary keys, every column drawn from its type."""
    keys = [i for i, c in enumerate(table.columns) if c.primary_key]
    row = st.tuples(*(cell(column) for column in table.columns))
    return st.lists(
        row, min_size=1, max_size=20, unique_by=lambda r: tuple(r[i] for i in keys)
    )


def stored(engine: Any, table: Table) -> list[tuple[Any, ...]]:
    """The table as the database holds it, with no result processing."""
    with engine.connect() as conn:
        return sorted(
            conn.exec_driver_sql(f"SELECT * FROM {table.name}").all(), key=repr
        )


@pytest.mark.parametrize("table", t.VIEW_TABLES, ids=lambda table: table.name)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_the_runners_upsert_stores_what_sqlalchemys_insert_stores(
    table: Table, data: st.DataObject
) -> None:
    rows = data.draw(rows_of(table))
    fast, plain = create_engine("sqlite://"), create_engine("sqlite://")
    for engine in (fast, plain):
        t.metadata.create_all(engine, tables=[table])
    with fast.begin() as conn:
        _upsert_many(conn, table, rows)
    names = [column.name for column in table.columns]
    with plain.begin() as conn:
        conn.execute(
            insert(table), [dict(zip(names, row, strict=True)) for row in rows]
        )
    assert stored(fast, table) == stored(plain, table)


def test_a_naive_time_is_refused_and_nothing_is_written() -> None:
    engine = create_engine("sqlite://")
    t.metadata.create_all(engine, tables=[t.gestures])
    naive = datetime(2025, 1, 6, 9)
    rows = [("c1", 0, START, "ana", "5", "EUR"), ("c1", 1, naive, "ana", "5", "EUR")]

    def write() -> None:
        with engine.begin() as conn:
            _upsert_many(conn, t.gestures, rows)

    with pytest.raises(ValueError, match="naive datetime"):
        write()
    assert stored(engine, t.gestures) == []


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lifecycle=lifecycles(max_steps=16, start=st.just(START), forward_bias=0.5))
def test_facts_read_back_from_their_json_as_they_were_written(lifecycle: Any) -> None:
    later = FixedClock(datetime(2030, 1, 1, tzinfo=UTC))
    with ComplaintDesk("memory://", clock=later) as desk:
        lifecycle.run(desk)
        runner = desk.reports.runner
        facts: dict[UUID, ComplaintFacts] = {}
        for item in runner.feed.read(0, 1_000):
            facts[item.complaint_id] = runner.folder.apply(
                facts.get(item.complaint_id),
                item.complaint_id,
                item.version,
                item.topic,
                item.payload,
            )
    (folded,) = facts.values()
    text = folded.to_json()
    assert ComplaintFacts.from_json(text) == folded
    assert ComplaintFacts.from_json(text.encode()) == folded
    # Facts JSON written by earlier releases (the standard library's encoder,
    # ASCII-escaped) reads back the same.
    assert ComplaintFacts.from_json(json.dumps(json.loads(text))) == folded


@settings(max_examples=300, deadline=None)
@given(
    times=st.lists(
        st.datetimes(
            min_value=datetime(1900, 1, 1),
            max_value=datetime(2200, 1, 1),
            timezones=st.sampled_from(
                [
                    UTC,
                    timezone(timedelta(hours=5, minutes=30)),
                    timezone(-timedelta(hours=8)),
                ]
            ),
        ),
        min_size=1,
        max_size=10,
    )
)
def test_stored_seconds_always_read_back_as_the_same_time_and_sort_as_time_does(
    times: list[datetime],
) -> None:
    """SQLite's views keep times as seconds since the epoch: each must read back
    as the same instant to the microsecond, and compare as the times do (the
    reports sort and compare them as stored)."""
    stored_values = [t.utc_seconds(moment) for moment in times]
    assert [t.from_seconds(value) for value in stored_values] == times
    for a, stored_a in zip(times, stored_values, strict=True):
        for b, stored_b in zip(times, stored_values, strict=True):
            assert (a < b) == (stored_a < stored_b)
            assert (a == b) == (stored_a == stored_b)


def test_a_naive_time_is_refused_as_stored_seconds() -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        t.utc_seconds(datetime(2025, 1, 6, 9))
