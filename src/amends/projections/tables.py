"""The read models: SQLAlchemy 2 tables that the reports query.

One row per complaint (with the projection's working state as JSON), and one
row per ownership span, SLA deadline and gesture. The tables live beside the
events by default (the same SQLite file or PostgreSQL database), or wherever
`AMENDS_VIEWS_URL` points.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    DateTime,
    Dialect,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    text,
    type_coerce,
)
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeDecorator, TypeEngine

from amends.domain.stages import Stage


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on SQLite (which keeps no zone) too.

    On SQLite the value is stored as seconds since the epoch (a REAL), which
    sorts and compares as time does and round-trips to the microsecond for
    any time before 2242. Taking a time's `timestamp()` is several times
    cheaper than formatting it as text, and a catch-up writes three or four
    times per event (ADR 0008).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(Float())
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        return utc_seconds(value) if dialect.name == "sqlite" else as_utc(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, float | int):
            return from_seconds(value)
        moment: datetime = value
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """An aware time in UTC; a naive one is refused (its zone is unknown)."""
    if value is None or value.tzinfo is UTC:  # the views' own times are UTC
        return value
    if value.utcoffset() is None:
        raise ValueError("naive datetime given to a view column")
    return value.astimezone(UTC)


def utc_seconds(value: datetime | None) -> float | None:
    """An aware time as the seconds since the epoch the SQLite views store; a
    naive one is refused (`timestamp()` would take it as local time)."""
    if value is None:
        return None
    if value.tzinfo is not UTC and value.utcoffset() is None:
        raise ValueError("naive datetime given to a view column")
    return value.timestamp()


def seconds_of(dialect: Dialect) -> Callable[[Any], ColumnElement[float]]:
    """How a report reads a time column of the views as seconds since the
    epoch (`utc_seconds` takes a time there, `from_seconds` back).

    Seconds compare and sort as time does, so a report that sorts and
    compares many times (and returns few) converts only what it returns.
    SQLite keeps times so. PostgreSQL keeps `timestamptz`, which psycopg turns
    into an aware datetime per value: reading the 87,000 deadlines of a year
    of one category took 270 ms so, 195 ms as `date_part('epoch', ...)`, a
    double precision that reads back to the microsecond as SQLite's do.
    """
    return _as_float if dialect.name == "sqlite" else _epoch_seconds


def _as_float(column: Any) -> ColumnElement[float]:
    return type_coerce(column, Float())


def _epoch_seconds(column: Any) -> ColumnElement[float]:
    return func.date_part("epoch", column, type_=Float())


def from_seconds(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


metadata = MetaData()

STAGE_COLUMNS = {stage: f"reached_{stage.lower()}" for stage in Stage}
"""The column holding when a complaint first reached each stage."""

GROUPING_COLUMNS = {
    "owner": "resolved_by",
    "category": "category",
    "channel": "channel",
    "severity": "severity",
    "week": "week",
}
"""How times to resolution are grouped, and the complaints' column holding
each grouping's key (a time to resolution counts for whoever resolved it)."""
CLOCK_COLUMNS = {"wall": "ttr_wall", "sla": "ttr_sla"}
"""Each clock's time to resolution: the complaints' column holding it."""
LAG_COLUMNS = ("category", "prevention_lag")
"""Resolution-to-prevention time: its key column and its value column."""
MEASURED_COLUMNS = (
    *(
        (key, value)
        for value in CLOCK_COLUMNS.values()
        for key in GROUPING_COLUMNS.values()
    ),
    LAG_COLUMNS,
)
"""(key column, value column) of every measured duration."""

tracking = Table(
    "amends_view_tracking",
    metadata,
    Column("projection", String(100), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("policies", String(500), nullable=False),
    # While a rebuild loads the views complaint by complaint: the log position
    # it loads up to (see the runner's `_load_complaints`). NULL otherwise.
    Column("load_to", Integer),
    # Which load that is (a random id): a runner that joined an earlier load
    # of views a rebuild has since replaced writes nothing into these.
    Column("load_id", String(32)),
    # The stored event at `position`, by a hash of its bytes as stored: a
    # store restored from a backup and written to since holds another event
    # there (see the runner's `check_store`). NULL at position 0.
    Column("stored_event", String(64)),
)

complaints = Table(
    "amends_view_complaints",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("policy", String(120), nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    Column("week", String(10), nullable=False),
    Column("received_by", String(200), nullable=False),
    Column("owner", String(200), nullable=False),
    Column("channel", String(100), nullable=False),
    Column("category", String(100), nullable=False),
    Column("severity", String(10), nullable=False),
    Column("stage", String(30), nullable=False),
    Column("is_open", Boolean, nullable=False),
    Column("waiting", Boolean, nullable=False),
    *(Column(name, UtcDateTime) for name in STAGE_COLUMNS.values()),
    Column("first_resolved_at", UtcDateTime),
    Column("resolved_by", String(200)),
    Column("ttr_wall", Float),
    Column("ttr_sla", Float),
    Column("resolutions", Integer, nullable=False),
    Column("reopens", Integer, nullable=False),
    Column("satisfied_first", Boolean),
    Column("satisfied_after_reopen", Boolean),
    Column("prevention_at", UtcDateTime),
    # Seconds from the resolution that stood (the last) to prevention, kept
    # as the durations above are: a filtered recurrence report takes its
    # medians in SQL.
    Column("prevention_lag", Float),
    Column("handoffs", Integer, nullable=False),
    Column("last_event_at", UtcDateTime, nullable=False),
    Column("facts", Text, nullable=False),
    Index("ix_amends_view_complaints_received", "received_at", "id"),
    Index("ix_amends_view_complaints_owner", "owner", "is_open"),
    # With the id, the complaints a category-and-window filter selects are
    # found in the index alone: the reports that read only their child rows
    # never fetch the (wide) complaint rows. With prevention_at and its lag,
    # the filtered recurrence report is read from the index alone too.
    Index(
        "ix_amends_view_complaints_category",
        "category",
        "received_at",
        "id",
        "prevention_at",
        "prevention_lag",
    ),
    Index("ix_amends_view_complaints_stage", "is_open", "stage", "received_at"),
    Index("ix_amends_view_complaints_handoffs", "handoffs", "id"),
    # Each measured duration in order within its key: the values behind the
    # kept percentiles (see `amends.projections.summary`). Only the rows
    # with a value are in them.
    *(
        Index(
            f"ix_amends_view_complaints_{value}_{key}",
            key,
            value,
            sqlite_where=text(f"{value} IS NOT NULL"),
            postgresql_where=text(f"{value} IS NOT NULL"),
        )
        for key, value in MEASURED_COLUMNS
    ),
)

spans = Table(
    "amends_view_owner_spans",
    metadata,
    Column("complaint_id", String(36), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("owner", String(200), nullable=False),
    Column("start_at", UtcDateTime, nullable=False),
    Column("end_at", UtcDateTime),
    Column("via", String(10), nullable=False),
    # The complaint's receipt, beside each of its spans: an owner filter with
    # a window reads the owner's spans received in it from this index, not
    # every complaint in the window (ADR 0012).
    Column("received_at", UtcDateTime, nullable=False),
    Index("ix_amends_view_owner_spans_owner", "owner", "received_at", "complaint_id"),
    sqlite_with_rowid=False,
)

deadlines = Table(
    "amends_view_deadlines",
    metadata,
    Column("complaint_id", String(36), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("target", String(20), nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("due_at", UtcDateTime),
    Column("met_at", UtcDateTime),
    Column("owner", String(200)),
    # Whose deadline it is (see `runner`): the owner who met it on time, else
    # the owner when it fell due; None only while neither is known.
    # Unmet deadlines by due time: the SLA report's deadlines at risk, its
    # unmet breaches, and the unmet ones not yet due (the ownership report
    # reads the last too). Only unmet deadlines are in it (a few per open
    # complaint): every query of it asks for unmet ones, and most deadlines
    # are met, so writing those costs no index entry. met_at is always NULL
    # here, but the queries name it, and SQLite answers a query from an index
    # alone only when the index holds every column the query names.
    Index(
        "ix_amends_view_deadlines_unmet",
        "due_at",
        "owner",
        "target",
        "met_at",
        sqlite_where=text("met_at IS NULL"),
        postgresql_where=text("met_at IS NULL"),
    ),
    # Deadlines met late, latest due first: the SLA report's list of breaches
    # (the unmet ones come from the index above).
    Index(
        "ix_amends_view_deadlines_late",
        "due_at",
        sqlite_where=text("met_at > due_at"),
        postgresql_where=text("met_at > due_at"),
    ),
    sqlite_with_rowid=False,
)

gestures = Table(
    "amends_view_gestures",
    metadata,
    Column("complaint_id", String(36), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("at", UtcDateTime, nullable=False),
    Column("owner", String(200), nullable=False),
    Column("value", String(20)),
    Column("currency", String(3)),
    sqlite_with_rowid=False,
)

counts = Table(
    "amends_view_counts",
    metadata,
    Column("metric", String(40), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("n", Integer, nullable=False),
    sqlite_with_rowid=False,
)
"""Running totals (see `amends.projections.summary`)."""

buckets = Table(
    "amends_view_buckets",
    metadata,
    Column("measure", String(40), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("bucket", Integer, primary_key=True),
    Column("n", Integer, nullable=False),
    sqlite_with_rowid=False,
)
"""How many values of each measure and key fall in each bucket."""

percentiles = Table(
    "amends_view_percentiles",
    metadata,
    Column("measure", String(40), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("n", Integer, nullable=False),
    Column("p50", Float, nullable=False),
    Column("p90", Float, nullable=False),
    Column("p95", Float, nullable=False),
    Column("top", Float, nullable=False),
    sqlite_with_rowid=False,
)
"""Each measure and key's count, exact nearest-rank p50, p90 and p95, and
maximum, as of the last batch that changed its values."""

CHILD_TABLES = (spans, deadlines, gestures)
"""A complaint's spans, deadlines and gestures. On SQLite they are stored in
key order (`WITHOUT ROWID`), so a complaint's rows sit together and a filtered
report reads them with one seek per complaint, not one page per row."""
SUMMARY_TABLES = (counts, buckets, percentiles)
ROW_TABLES = (complaints, *CHILD_TABLES)
"""The tables a complaint's rows live in (the summaries are totals)."""
VIEW_TABLES = (*ROW_TABLES, *SUMMARY_TABLES)
DEFERRED_INDEXES = tuple(index for table in ROW_TABLES for index in table.indexes)
"""The row tables' secondary indexes: a rebuild that loads complaint by
complaint creates them once, after the rows, instead of keeping each one in
order row by row."""
FORMER_TABLES = ("amends_view_measures",)
"""Tables earlier layouts of the views had and this one has not: dropped with
the views (`views/7` kept every measured value in a table of its own)."""


@contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """A connection that reads the views as they stood at one moment, for
    reads of several statements that must agree (a report's, the store
    check's); rolled back at the end, so it writes nothing.

    A rebuild in another process replaces the views in one transaction (the
    runner's `_swap_in_empty_views`). Each statement on its own could read
    the tracking row of the old views and the rows of the new, empty ones:
    a report of nothing, or views taken for another store's. On SQLite a
    read transaction sees one state of the file from its first read; on
    PostgreSQL REPEATABLE READ does, and the first read (the tracking row,
    by every caller) holds that table against a swap until the end.
    In-memory SQLite views are one connection shared by the process's
    threads, which only the runner's lock (taken by a rebuild) swaps: they
    read as they are.
    """
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execution_options(isolation_level="REPEATABLE READ")
        elif not shares_one_connection(engine):
            conn.exec_driver_sql("BEGIN")
        try:
            yield conn
        finally:
            conn.rollback()


def shares_one_connection(engine: Engine) -> bool:
    """In-memory SQLite views: one connection for every thread."""
    return isinstance(engine.pool, StaticPool)
