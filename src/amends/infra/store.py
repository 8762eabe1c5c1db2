"""The event store: the eventsourcing library's `Application` and its recorders.

amends adds nothing to how events are written or read; it only chooses the
recorder from a store URL and plugs in its pydantic mapper.
"""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple, TypeVar
from uuid import UUID

import eventsourcing.postgres
import psycopg
from eventsourcing.application import Application
from eventsourcing.persistence import (
    ApplicationRecorder,
    IntegrityError,
    InterfaceError,
    InternalError,
    Mapper,
    OperationalError,
    ProgrammingError,
    StoredEvent,
)
from eventsourcing.postgres import (
    PostgresAggregateRecorder,
    PostgresApplicationRecorder,
)
from eventsourcing.sqlite import SQLiteAggregateRecorder
from eventsourcing.utils import Environment, EnvType
from psycopg.sql import Identifier
from psycopg_pool import PoolTimeout

from amends.domain.errors import (
    HistoryViolation,
    first_line,
    stored_complaint_id,
    stored_version,
)
from amends.infra.errors import names_a_setting_to_fix
from amends.infra.mapper import PydanticMapper

DDL_ATTEMPTS = 5


def _lost_a_ddl_race(exc: BaseException) -> bool:
    """Whether `exc` is a start that collided with another on the same schema.

    The library creates its tables, types and functions whenever an
    application starts, so processes starting together can collide; a moment
    later the objects exist and the same statements succeed. PostgreSQL
    reports a collision three ways: a concurrent `CREATE OR REPLACE`
    ("tuple concurrently updated"), a `CREATE ... IF NOT EXISTS` that found
    the winner's object after all ("already exists"), or one that tripped a
    catalog's unique index.

    A found object is told by its SQLSTATE where the driver's error gives one:
    the message is in the server's language (`lc_messages`), the code is not.
    The first and last cases read the message safely: "tuple concurrently
    updated" is one PostgreSQL never translates, and the index's name is an
    identifier, quoted as it is in any language.
    """
    message = str(exc)
    if isinstance(exc, InternalError):
        return "concurrently" in message
    if isinstance(exc, ProgrammingError):
        state = getattr(exc.__cause__, "sqlstate", None)
        if state is not None:
            return state in _FOUND_ALREADY
        return message.endswith("already exists")
    return isinstance(exc, IntegrityError) and any(
        index in message for index in _CATALOG_INDEXES
    )


_FOUND_ALREADY = frozenset({"42P06", "42P07", "42710", "42723"})
"""SQLSTATEs of a CREATE that found its object made: duplicate schema, table
(or index), object (a type) and function."""

_CATALOG_INDEXES = (
    "pg_type_typname_nsp_index",
    "pg_class_relname_nsp_index",
    "pg_proc_proname_args_nsp_index",
)


class EventStoreApplication(Application[UUID]):
    """The library's application, configured only by the settings it is given.

    The library would also read `os.environ`; we do not let it, so the store URL
    is the single source of truth and a stray `PERSISTENCE_MODULE` in a host
    application's environment cannot redirect amends' events.
    """

    name = "amends"

    def __init__(self, settings: Mapping[str, str]) -> None:
        for attempt in range(1, DDL_ATTEMPTS + 1):
            try:
                super().__init__(env=dict(settings))
                return
            except BaseException as exc:
                # A store that cannot be reached leaves a half-made connection
                # pool whose threads the garbage collector would otherwise shut
                # down at some random later moment, in some random thread.
                factory = getattr(self, "factory", None)
                if factory is not None:
                    factory.close()
                if attempt == DDL_ATTEMPTS or not _lost_a_ddl_race(exc):
                    raise
                time.sleep(0.05 * attempt)

    def construct_env(self, name: str, env: EnvType | None = None) -> Environment:
        return Environment(name, dict(env or {}))

    def construct_mapper(self) -> Mapper[UUID]:
        return PydanticMapper(
            transcoder=self.factory.transcoder(),
            compressor=self.factory.compressor(),
            cipher=self.factory.cipher(),
        )


RETRIES_AFTER_A_DROP = 2
"""How often a read or write whose connection broke is tried again."""

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def _retried_while_reachable(method: F) -> F:
    """The library's recorder method with retries that end.

    The library tries a read or write 10 times on a connection error, and each
    try may wait the whole connect timeout for a connection: with the server
    down, a command took 20 to 50 seconds to fail. Here it is tried as
    `_tried_after_a_drop` tries any call of the store's.
    """
    plain: Callable[..., Any] = getattr(method, "__wrapped__", method)

    @functools.wraps(plain)
    def retried(self: PostgresAggregateRecorder, *args: Any, **kwargs: Any) -> Any:
        return _tried_after_a_drop(self, lambda: plain(self, *args, **kwargs))

    return retried  # type: ignore[return-value]


def _tried_after_a_drop(
    recorder: PostgresAggregateRecorder, call: Callable[[], T]
) -> T:
    """`call`, one read or write on a connection of `recorder`'s pool, tried
    again while its connection broke.

    A connection that broke (dropped, or the server restarted) is tried again
    after the pool has checked its other idle connections, which broke with
    it (unchecked, each of them failed one later call in turn); no connection
    within the connect timeout means the server cannot be reached, and fails
    at once as `StoreUnavailable`. So does a lock not granted within the
    store's `lock_timeout`: the server reports it as the same kind of error,
    on a connection that works, and tried again a write waited three times
    the time the URL gives it.
    """
    for attempt in range(RETRIES_AFTER_A_DROP + 1):
        try:
            return call()
        except (InterfaceError, OperationalError) as exc:
            if (
                attempt == RETRIES_AFTER_A_DROP
                or timed_out_on_the_pool(exc)
                or timed_out_on_a_lock(exc)
            ):
                raise
            recorder.datastore.pool.check()
    raise AssertionError("unreachable")  # pragma: no cover


PROBE_SECONDS = 2
"""The longest a probe for why no connection came may take (see
`why_no_connection`)."""


def _caused_by(error: BaseException, cause: Callable[[BaseException], bool]) -> bool:
    """Whether `error`, or an error in the chain that led to it, is `cause`."""
    seen: BaseException | None = error
    while seen is not None:
        if cause(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def timed_out_on_the_pool(error: BaseException) -> bool:
    """Whether `error` is, or was caused by, no pooled connection coming."""
    return _caused_by(error, lambda seen: isinstance(seen, PoolTimeout))


LOCK_NOT_AVAILABLE = "55P03"
"""PostgreSQL's SQLSTATE for a lock not granted within `lock_timeout`."""


def timed_out_on_a_lock(error: BaseException) -> bool:
    """Whether `error` is, or was caused by, the server giving up waiting for
    a lock (the store URL's `lock_timeout`): nothing was written, and the
    connection is sound."""
    return _caused_by(
        error, lambda seen: getattr(seen, "sqlstate", None) == LOCK_NOT_AVAILABLE
    )


def why_no_connection(
    settings: Mapping[str, str], *, at_most: int | None = PROBE_SECONDS
) -> tuple[str, bool] | None:
    """Why the pool of a PostgreSQL store (its `store_settings`) got no
    connection: one connection tried outside it, for the server's or the
    driver's own words (the pool only logs them, and says that it timed
    out), and whether they name a setting to fix. None when that connection
    is made: the pool's were all in use, or the server is back. It waits
    the connect timeout, `at_most` seconds (after the pool has waited the
    whole timeout already)."""
    timeout = int(settings["POSTGRES_CONNECT_TIMEOUT"])
    try:
        with psycopg.connect(
            host=settings["POSTGRES_HOST"],
            port=int(settings["POSTGRES_PORT"]),
            dbname=settings["POSTGRES_DBNAME"],
            user=settings["POSTGRES_USER"],
            password=settings["POSTGRES_PASSWORD"] or None,
            connect_timeout=timeout if at_most is None else min(timeout, at_most),
        ):
            return None
    except psycopg.Error as exc:
        words = first_line(exc).removeprefix("connection failed: ")
        return words, names_a_setting_to_fix(exc)


class _PostgresSnapshots(PostgresAggregateRecorder):
    """The library's recorder for snapshots, with retries that end."""

    insert_events = _retried_while_reachable(PostgresAggregateRecorder.insert_events)
    select_events = _retried_while_reachable(PostgresAggregateRecorder.select_events)


class _PostgresEvents(PostgresApplicationRecorder):
    """The library's recorder for events, with retries that end."""

    insert_events = _retried_while_reachable(PostgresApplicationRecorder.insert_events)
    select_events = _retried_while_reachable(PostgresApplicationRecorder.select_events)
    select_notifications = _retried_while_reachable(
        PostgresApplicationRecorder.select_notifications
    )
    max_notification_id = _retried_while_reachable(
        PostgresApplicationRecorder.max_notification_id
    )


class PostgresFactory(eventsourcing.postgres.PostgresFactory):
    """The library's PostgreSQL persistence, failing within the connect timeout.

    Besides bounding the recorders' retries, it bounds how long the connection
    pool keeps retrying a failed connection in the background to the connect
    timeout (the library: five minutes, at doubling intervals, so a desk could
    stay refused for minutes after the server was back). Within it, attempts
    come a second or two apart; after it, the next command starts afresh.
    """

    aggregate_recorder_class = _PostgresSnapshots
    application_recorder_class = _PostgresEvents

    def __init__(self, env: Environment) -> None:
        super().__init__(env)
        pool = self.datastore.pool
        pool.reconnect_timeout = pool.timeout


def complaint_ids(recorder: ApplicationRecorder) -> set[UUID]:
    """Every originator id in the events table.

    The library's recorders read by id or along the notification log; an audit
    needs the ids themselves, so SQLite and PostgreSQL are asked directly
    (an index-only scan), and the in-memory store walks its log.
    """
    if isinstance(recorder, SQLiteAggregateRecorder | PostgresAggregateRecorder):
        return {
            stored_complaint_id(stored) for stored in stored_complaint_ids(recorder)
        }
    ids: set[UUID] = set()
    start = 1
    while batch := recorder.select_notifications(start, 1_000):
        ids.update(stored_complaint_id(n.originator_id) for n in batch)
        start = batch[-1].id + 1
    return ids


NotificationRow = tuple[int, "UUID | str", int, str, bytes]
"""(position, originator id, version, topic, stored state): one entry of the
notification log, undecoded."""


def notification_rows(
    recorder: ApplicationRecorder, after: int, limit: int
) -> list[NotificationRow]:
    """Up to `limit` entries of the notification log after position `after`.

    On SQLite the log's rows are read as plain tuples: the library's
    `select_notifications` builds a `Notification` and a `UUID` per row through
    name-keyed row access, which took half the time of a catch-up's read. The
    statement is the library's own (its rowid is the position); other stores
    are read through the library.
    """
    if isinstance(recorder, SQLiteAggregateRecorder):
        with recorder.datastore.transaction(commit=False) as cursor:
            cursor.execute(
                "SELECT rowid, originator_id, originator_version, topic, state "
                f"FROM {recorder.events_table_name} "
                "WHERE rowid>? ORDER BY rowid LIMIT ?",
                (after, limit),
            )
            return [tuple(row) for row in cursor.fetchall()]
    return [
        (n.id, n.originator_id, n.originator_version, n.topic, n.state)
        for n in recorder.select_notifications(after + 1, limit)
    ]


class ComplaintSource(NamedTuple):
    """Where a rebuild reads the events complaint by complaint, from any
    process: how to open a connection, never a connection (one made before a
    fork must not be used after it, and a rebuild's readers may be forked
    workers)."""

    table: str
    """The events table, as the statement names it."""
    sqlite_file: str | None = None
    postgres: Mapping[str, Any] | None = None
    """`psycopg.connect`'s arguments, for a PostgreSQL store."""
    password: Callable[[], str] | None = None
    """The PostgreSQL store's password function, asked at each connect."""


def complaint_source(recorder: ApplicationRecorder) -> ComplaintSource | None:
    """Where a rebuild may read the store complaint by complaint: a SQLite
    file or a PostgreSQL database; None for the stores it cannot (memory,
    in-memory SQLite)."""
    if isinstance(recorder, SQLiteAggregateRecorder):
        pool = recorder.datastore.pool
        if not pool.is_sqlite_memory_mode:
            return ComplaintSource(recorder.events_table_name, sqlite_file=pool.db_name)
    if isinstance(recorder, PostgresAggregateRecorder):
        postgres_pool = recorder.datastore.pool
        found = postgres_pool.kwargs
        arguments = dict((found() if callable(found) else found) or {})
        arguments.pop("row_factory", None)  # plain tuples, as from SQLite
        return ComplaintSource(
            _postgres_table(recorder),
            postgres={**arguments, "connect_timeout": int(postgres_pool.timeout)},
            password=postgres_pool.get_password_func,
        )
    return None


def _postgres_table(recorder: PostgresAggregateRecorder) -> str:
    return (
        f"{Identifier(recorder.datastore.schema).as_string()}."
        f"{Identifier(recorder.events_table_name).as_string()}"
    )


def stored_complaint_ids(
    recorder: SQLiteAggregateRecorder | PostgresAggregateRecorder,
) -> list[str]:
    """The originator ids in the events table, in the table's own order (an
    index-only scan of its primary key): SQLite's hex text, PostgreSQL's
    UUIDs written out, whose text sorts as the UUIDs do."""
    if isinstance(recorder, SQLiteAggregateRecorder):
        table = recorder.events_table_name
    else:
        table = _postgres_table(recorder)
    rows = _fetched(
        recorder, f"SELECT DISTINCT originator_id FROM {table} ORDER BY originator_id"
    )
    return [str(row["originator_id"]) for row in rows]


def _fetched(
    recorder: SQLiteAggregateRecorder | PostgresAggregateRecorder,
    statement: str,
    parameters: tuple[object, ...] = (),
) -> list[Any]:
    """Every row of one read, in a transaction of its own.

    On PostgreSQL it is tried again after a drop, as the recorder's own
    reads are (`_tried_after_a_drop`): read directly, `verify()` and
    `seal()` were not, and after a drop each failed once for every dead
    connection left in the pool. The rows are all fetched before any
    reaches the caller, so a read tried again hands none of them out twice.
    """

    def read() -> list[Any]:
        with recorder.datastore.transaction(commit=False) as cursor:
            cursor.execute(statement, parameters)
            return cursor.fetchall()

    if isinstance(recorder, PostgresAggregateRecorder):
        return _tried_after_a_drop(recorder, read)
    return read()


def complaint_rows(
    source: ComplaintSource, first: str, last: str, upto: int
) -> list[NotificationRow]:
    """The events of the complaints with ids from `first` to `last`, complaint
    by complaint in version order, that the log holds at or before position
    `upto` (a rebuild's end): one statement, so one consistent snapshot, on a
    connection of its own (see `ComplaintSource`)."""
    if source.sqlite_file is not None:
        connection = sqlite3.connect(
            source.sqlite_file, uri=True, isolation_level=None, timeout=10
        )
        try:
            return connection.execute(
                "SELECT rowid, originator_id, originator_version, topic, state "
                f"FROM {source.table} WHERE originator_id BETWEEN ? AND ? "
                "AND rowid <= ? ORDER BY originator_id, originator_version",
                (first, last, upto),
            ).fetchall()
        finally:
            connection.close()
    assert source.postgres is not None
    arguments = dict(source.postgres)
    if source.password is not None:
        arguments["password"] = source.password()
    with psycopg.connect(**arguments, autocommit=True) as pg:
        return pg.execute(
            "SELECT notification_id, originator_id, originator_version, topic, state "
            f"FROM {source.table} WHERE originator_id BETWEEN %s AND %s "
            "AND notification_id <= %s ORDER BY originator_id, originator_version",
            (first, last, upto),
        ).fetchall()


def _stored(row: Any) -> StoredEvent | MalformedRow:
    """A scanned row as the event it holds, or as what is wrong with it."""
    complaint_id = None
    try:
        complaint_id = stored_complaint_id(row["originator_id"])
        version = stored_version(complaint_id, row["originator_version"])
    except HistoryViolation as malformed:
        return MalformedRow(complaint_id, None, malformed.problem)
    raw = row["originator_id"]
    if isinstance(raw, str) and raw != complaint_id.hex:
        # The same complaint written another way (upper case, with dashes):
        # no event wrote it so, and it sorts apart from the complaint's other
        # rows, which then looked out of order or missing.
        return MalformedRow(
            complaint_id,
            version,
            f"its complaint id is stored as {raw!r}, not as amends stores ids "
            f"({complaint_id.hex}): edited by hand",
        )
    state = row["state"]
    return StoredEvent(
        originator_id=complaint_id,
        originator_version=version,
        topic=row["topic"],
        state=None if state is None else bytes(state),  # type: ignore[arg-type]
    )


SCAN_BATCH = 5_000


class MalformedRow(NamedTuple):
    """A row of the events table that no event could have written: an id
    that is not a complaint's, or a version that is not a whole number.
    SQLite keeps whatever a hand edit puts in a column."""

    originator_id: UUID | None
    """The complaint, when the id is one."""
    originator_version: int | None
    problem: str


def stored_events_in_order(
    recorder: ApplicationRecorder, only: UUID | None = None
) -> Iterator[StoredEvent | MalformedRow]:
    """Every stored event (or `only` that complaint's), complaint by
    complaint, each in version order, as the rows hold them.

    One index-ordered scan in batches (keyset pagination) rather than one query
    per complaint: an audit of the whole store reads it at the database's pace.
    SQLite's state is read as a BLOB whatever a hand edit left there (TEXT from
    `replace()`, even text that is not UTF-8, or a number): the audit then
    finds the event altered, where the driver would fail on the value. A
    NULL state stays None (the mapper calls it unreadable), and a row whose
    id or version no event could have is a `MalformedRow`.
    """
    if isinstance(recorder, SQLiteAggregateRecorder | PostgresAggregateRecorder):
        yield from _scan(recorder, only)
        return
    for complaint_id in [only] if only is not None else sorted(complaint_ids(recorder)):
        yield from recorder.select_events(complaint_id)


def _scan(
    recorder: SQLiteAggregateRecorder | PostgresAggregateRecorder,
    only: UUID | None,
) -> Iterator[StoredEvent | MalformedRow]:
    sqlite = isinstance(recorder, SQLiteAggregateRecorder)
    mark = "?" if sqlite else "%s"
    columns = "originator_id, originator_version, topic, " + (
        "CAST(state AS BLOB) AS state" if sqlite else "state"
    )
    order = "ORDER BY originator_id, originator_version"
    if sqlite:
        table = recorder.events_table_name
    else:
        assert isinstance(recorder, PostgresAggregateRecorder)
        table = _postgres_table(recorder)
    one: tuple[object, ...] = ()
    where = ""
    if only is not None:
        one = (only.hex if sqlite else only,)
        where = f"originator_id = {mark} AND "
    first = f"SELECT {columns} FROM {table} WHERE {where}TRUE {order} LIMIT {mark}"
    more = (
        f"SELECT {columns} FROM {table} WHERE {where}(originator_id, "
        f"originator_version) > ({mark}, {mark}) {order} LIMIT {mark}"
    )
    last: tuple[object, int] | None = None
    while True:
        # A batch is read whole, then handed out: one that fails (a dropped
        # connection) is read again from the same key, before any of its rows
        # has reached the caller, and the batches before it stay handed out.
        if last is None:
            rows = _fetched(recorder, first, (*one, SCAN_BATCH))
        else:
            rows = _fetched(recorder, more, (*one, *last, SCAN_BATCH))
        for row in rows:
            yield _stored(row)
        if len(rows) < SCAN_BATCH:
            return
        last = (rows[-1]["originator_id"], rows[-1]["originator_version"])
