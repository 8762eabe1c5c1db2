"""Reports for the desk: the views' engine, the event feed, and catch-up on ask.

The views live in the event store's database unless `views_url` (or
`AMENDS_VIEWS_URL`) names another SQLAlchemy database.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, urlsplit, urlunsplit
from uuid import UUID

import psycopg
from eventsourcing.persistence import ApplicationRecorder, PersistenceError
from eventsourcing.postgres import (
    PostgresAggregateRecorder,
    PostgresApplicationRecorder,
)
from eventsourcing.sqlite import SQLiteAggregateRecorder
from psycopg.sql import SQL, Identifier
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.pool import StaticPool

from amends.domain.commands import field_problems
from amends.domain.errors import (
    FieldProblem,
    HistoryViolation,
    InvalidCommand,
    first_line,
    stored_complaint_id,
    stored_version,
)
from amends.domain.events import EVENT_TYPES
from amends.domain.sla import DEFAULT_POLICY_NAME, PolicySchedule, SlaPolicy, preset
from amends.infra.errors import (
    ConfigurationError,
    DeskClosed,
    StoreUnavailable,
    names_a_missing_schema,
    names_a_setting_to_fix,
    names_no_database,
)
from amends.infra.inflight import InFlight
from amends.infra.mapper import PydanticMapper, UnreadableRecord
from amends.infra.settings import (
    POSTGRES_URL_OPTIONS,
    check_postgres_url,
    from_environment,
    redacted_url,
    unpadded,
)
from amends.infra.store import (
    NotificationRow,
    complaint_rows,
    complaint_source,
    notification_rows,
    stored_complaint_ids,
)
from amends.projections.reports import (
    DEFAULT_LIMIT,
    BacklogReport,
    OwnershipReport,
    RecurrenceReport,
    ReportFilter,
    ReportQueries,
    SlaReport,
    TimeToResolutionReport,
)
from amends.projections.runner import (
    REPLACED_ATTEMPTS,
    FeedItem,
    ProjectionRunner,
    StoredAt,
    ViewsBeingReplaced,
)

logger = logging.getLogger("amends.projections")

VIEWS_URL_VARIABLE = "AMENDS_VIEWS_URL"
SQLITE_VIEWS_PRAGMAS = ("journal_mode=WAL", "secure_delete=FAST", "threads=2")
"""Each SQLite views connection's settings. `secure_delete=FAST`: some builds
(Debian's) zero every freed page, so dropping the views of 100,000 complaints
wrote 4 s of zeros before a rebuild; the views hold no customer's words or
name, and every value in them is in the events too. `threads=2`: a rebuild's
indexes are sorted with a second thread's help (ADR 0008)."""
VIEWS_CONNECT_TIMEOUT = "5"
"""Seconds a PostgreSQL views database has to answer, as the store has: an
unreachable server is `StoreUnavailable`, never a report that hangs."""


KNOWN_IDS = 20_000
"""Complaint ids a feed keeps parsed: those of the complaints in progress
across many weeks of traffic, at about 200 bytes each."""


class StoreFeed:
    """The event store's notification log, decoded for the projection runner."""

    def __init__(self, recorder: ApplicationRecorder, mapper: PydanticMapper) -> None:
        self.recorder = recorder
        self.mapper = mapper
        self._ids: dict[UUID | str, UUID] = {}
        self._source = complaint_source(recorder)
        """Where a rebuild reads the events complaint by complaint, if it can."""

    def read(self, after: int, limit: int) -> Sequence[FeedItem]:
        return self._decoded(notification_rows(self.recorder, after, limit))

    @property
    def reads_complaints(self) -> bool:
        return self._source is not None

    def stored_complaints(self) -> Sequence[str]:
        assert isinstance(
            self.recorder, SQLiteAggregateRecorder | PostgresAggregateRecorder
        )
        return stored_complaint_ids(self.recorder)

    def read_complaints(self, first: str, last: str, upto: int) -> Sequence[FeedItem]:
        assert self._source is not None, "this store is not read by complaint"
        return self._decoded(complaint_rows(self._source, first, last, upto))

    def _decoded(self, rows: Iterable[NotificationRow]) -> list[FeedItem]:
        items = []
        decode = self.mapper.decode_state
        ids = self._ids
        for position, originator_id, version, topic, state in rows:
            complaint_id = ids.get(originator_id)
            if complaint_id is None:
                complaint_id = self._complaint_id(originator_id, version)
            if type(version) is not int:  # a hand edit: refused, by name
                stored_version(complaint_id, version)
            try:
                event_type = EVENT_TYPES[topic]
                payload = decode(state)
                from_version = payload.pop("class_version", 1)
                if from_version != event_type.class_version:
                    payload = event_type.upcast(payload, from_version)
            except ConfigurationError:
                raise  # the cipher key: as everywhere else, not the history
            except (KeyError, UnreadableRecord, ValueError, TypeError) as exc:
                # The views stop here, and say where: verify() names the rest.
                raise HistoryViolation(
                    complaint_id,
                    version,
                    f"the report views cannot read this stored event: {exc}",
                ) from None
            # tuple.__new__ builds the named tuple without a Python-level call.
            items.append(
                tuple.__new__(
                    FeedItem, (position, complaint_id, version, topic, payload)
                )
            )
        return items

    def _complaint_id(self, originator_id: UUID | str, version: object) -> UUID:
        """The id as a UUID, kept for the complaint's next events: a complaint
        has about ten, and parsing its id each time was a tenth of a read."""
        complaint_id = stored_complaint_id(originator_id, version)
        if len(self._ids) >= KNOWN_IDS:
            self._ids.clear()
        self._ids[originator_id] = complaint_id
        return complaint_id

    def last_position(self) -> int:
        return self.recorder.max_notification_id() or 0

    def event_at(self, position: int) -> StoredAt | None:
        if position < 1:
            return None
        for found, originator_id, version, _, state in notification_rows(
            self.recorder, position - 1, 1
        ):
            if found == position:
                complaint_id = self._complaint_id(originator_id, version)
                return StoredAt(
                    complaint_id,
                    stored_version(complaint_id, version),
                    _fingerprint(state),
                )
        return None

    def holds(self, complaint_id: UUID, version: int) -> bool:
        return bool(
            self.recorder.select_events(
                complaint_id, gt=version - 1, lte=version, limit=1
            )
        )


LISTEN_SLICE = 0.1
"""Seconds a listener waits at a time, so that a stop is seen that soon."""
LISTEN_RETRY = 1.0
"""Seconds between attempts to listen again while the listener has no
connection (the follower looks at the log at each attempt)."""
LISTEN_CONNECT_TIMEOUT = 5
"""Seconds at most a listener's connection attempt may take: a stop waits
for it, so it is kept short whatever the store's own timeout."""
LISTEN_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}
"""TCP keepalives: a connection that only ever reads would not notice its
peer gone (a NAT or load balancer dropping idle connections) without them;
with them the loss surfaces as an error within about a minute."""


class PostgresListener:
    """Hears the notification the library's PostgreSQL recorder sends on
    every write (`NOTIFY` on its events table's channel, delivered at commit),
    so an idle follower looks at the log at once instead of at its next poll.

    A notification says only that some write committed, here or in another
    store of the same database whose events table has the same name: the
    follower then reads the log as it always does, so a notification lost,
    doubled or foreign changes when it looks, never what it applies. The
    connection is its own, outside the store's pool, which keeps the size
    the store was given, opened with the pool's own settings. Without one
    (lost, or the server unreachable) the follower looks every
    `LISTEN_RETRY` seconds while the listener tries again; the outage is
    logged once, and its end too.
    """

    def __init__(self, recorder: PostgresApplicationRecorder) -> None:
        self._pool = recorder.datastore.pool
        self._channel = recorder.channel_name
        self._conn: psycopg.Connection[Any] | None = None
        self._deaf = False

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def wait(self, seconds: float, stop: threading.Event) -> bool:
        deadline = time.monotonic() + seconds
        while not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                if self._conn is None:
                    # A write may have committed before LISTEN took effect,
                    # unheard: the follower looks once more, now listening.
                    self._listen()
                    return True
                # Notifications that arrived together come together, so a
                # round of writes usually wakes the follower once (a look
                # too many costs a read of the log, nothing more).
                heard = self._conn.notifies(
                    timeout=min(left, LISTEN_SLICE), stop_after=1
                )
                if list(heard):
                    return True
            except psycopg.Error as exc:
                self.close()
                if not self._deaf:
                    self._deaf = True
                    logger.warning(
                        "views listener has no connection; looking every %s s "
                        "until it listens again: %s",
                        LISTEN_RETRY,
                        exc,
                    )
                stop.wait(max(0.0, min(deadline - time.monotonic(), LISTEN_RETRY)))
                return False
        return False

    def _listen(self) -> None:
        """A connection of its own (the pool's settings), listening."""
        pool = self._pool
        conninfo = pool.conninfo() if callable(pool.conninfo) else pool.conninfo
        found = pool.kwargs() if callable(pool.kwargs) else pool.kwargs
        options: dict[str, Any] = {**(found or {})}
        password = getattr(pool, "get_password_func", None)
        if password is not None:
            options["password"] = password()
        options.update(
            LISTEN_KEEPALIVES,
            autocommit=True,
            connect_timeout=max(
                1,
                round(
                    min(pool.timeout or LISTEN_CONNECT_TIMEOUT, LISTEN_CONNECT_TIMEOUT)
                ),
            ),
        )
        conn = psycopg.connect(conninfo or "", **options)
        try:
            conn.execute(SQL("LISTEN {0}").format(Identifier(self._channel)))
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        if self._deaf:
            self._deaf = False
            logger.info("views listener listens again")


def store_listener(recorder: ApplicationRecorder) -> PostgresListener | None:
    """A listener for stores that notify on write (PostgreSQL); None for the
    others, which a follower polls."""
    if isinstance(recorder, PostgresApplicationRecorder):
        return PostgresListener(recorder)
    return None


def policy_schedule(
    policies: PolicySchedule | SlaPolicy | str | None,
) -> PolicySchedule:
    """A schedule from a schedule, one policy, a preset name, or the default."""
    if isinstance(policies, PolicySchedule):
        return policies
    if isinstance(policies, SlaPolicy):
        return PolicySchedule.always(policies)
    if policies is not None and not isinstance(policies, str):
        raise ConfigurationError(
            f"sla_policies must be a PolicySchedule, an SlaPolicy or a preset "
            f"name, not {type(policies).__name__} (a schedule's entries: "
            "PolicySchedule(entries=((from, policy), ...)))"
        )
    try:
        return PolicySchedule.always(preset(policies or DEFAULT_POLICY_NAME))
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None


def resolve_views_url(store_url: str, views_url: str | None) -> str:
    """The views' URL: the one given, else `AMENDS_VIEWS_URL`, else beside
    the events."""
    given = views_url or from_environment(VIEWS_URL_VARIABLE, "views beside the store")
    return _beside(store_url) if given is None else unpadded(given, "views URL")


def views_engine(url: str) -> Engine:
    """The SQLAlchemy engine for the views at `url` (see `resolve_views_url`)."""
    try:
        return _engine(url)
    except ConfigurationError:
        raise
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        raise ConfigurationError(f"views URL {redacted_url(url)!r}: {exc}") from None


def _engine(url: str) -> Engine:
    if url == "sqlite://":
        return create_engine(
            url, poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
    parts = urlsplit(url)
    if parts.scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        check_postgres_url(url, "views URL")
        query = parse_qs(parts.query)
        schema = query.pop("schema", [None])[-1]
        timeout = query.pop("connect_timeout", [VIEWS_CONNECT_TIMEOUT])[-1]
        # The store's URL serves the views too, so its options are accepted;
        # the ones for the store's own pool and locks do not apply here.
        unknown = sorted(set(query) - POSTGRES_URL_OPTIONS)
        if unknown:
            known = ", ".join(sorted(POSTGRES_URL_OPTIONS))
            raise ValueError(f"unknown option(s) {', '.join(unknown)} (known: {known})")
        base = urlunsplit(("postgresql+psycopg", parts.netloc, parts.path, "", ""))
        options: dict[str, object] = {"connect_timeout": int(timeout)}
        if schema:
            options["options"] = f"-csearch_path={schema}"
        return create_engine(base, connect_args=options, pool_pre_ping=True)
    if parts.scheme in ("sqlite", "sqlite+pysqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})
        if engine.url.database and Path(engine.url.database).is_dir():
            raise ValueError(f"{engine.url.database} is a directory, not a file")

        @event.listens_for(engine, "connect")
        def _settings(dbapi_connection: object, _record: object) -> None:
            cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
            for pragma in SQLITE_VIEWS_PRAGMAS:
                cursor.execute(f"PRAGMA {pragma}")
            cursor.close()

        return engine
    raise ValueError(
        "the views live in SQLite (sqlite:///PATH, or sqlite:// in memory) or "
        "PostgreSQL (postgresql://USER@HOST/DB)"
    )


def _beside(store_url: str) -> str:
    if store_url.startswith("memory:"):
        return "sqlite://"
    return store_url


@contextmanager
def _views_errors(where: str) -> Iterator[None]:
    """The views' database failing (locked, gone) is a `StoreUnavailable`
    that names it (`where`: its URL as given, schema included, password
    hidden) and the first line of what
    its driver said, not the SQL statement (the cause keeps it all); the
    event store failing while the views catch up is one that says so."""
    try:
        yield
    except PersistenceError as exc:  # the library's: reading the event store
        raise StoreUnavailable(f"event store failed: {first_line(exc)}") from exc
    except ViewsBeingReplaced as exc:  # each of a catch-up's attempts
        raise StoreUnavailable(
            f"report views at {where}: {exc}, each of {REPLACED_ATTEMPTS} times "
            "(rebuilds in another process): ask again once they end"
        ) from exc
    except (DBAPIError, OSError) as exc:
        said = exc.orig if isinstance(exc, DBAPIError) and exc.orig else exc
        if names_no_database(said):
            raise ConfigurationError(
                f"report views at {where}: the file is not a SQLite database "
                f"({first_line(said)})"
            ) from exc
        if names_a_missing_schema(said):
            raise ConfigurationError(
                f"report views at {where}: {first_line(said)} (create it, or "
                "name another with ?schema=)"
            ) from exc
        if names_a_setting_to_fix(said):
            raise ConfigurationError(
                f"report views at {where}: {first_line(said)}"
            ) from exc
        raise StoreUnavailable(
            f"report views unavailable at {where}: {first_line(said)}"
        ) from exc


_CLOSED = "the desk these reports belong to is closed: open a new ComplaintDesk"


class _Following:
    """One running `follow`: its stop, its thread, and when it has ended."""

    def __init__(self, stop: threading.Event, thread: int) -> None:
        self.stop = stop
        self.thread = thread
        self.ended = threading.Event()


def _fingerprint(state: object) -> str:
    """SHA-256 of an event's state as stored. A driver may hand back a
    buffer, and a hand edit may have left text, a number or NULL (SQLite):
    each is hashed as what it is, so that any edit changes the hash."""
    if isinstance(state, bytes | bytearray | memoryview):
        raw = bytes(state)
    else:
        raw = f"{type(state).__name__}:{state!r}".encode()
    return hashlib.sha256(raw).hexdigest()


class ReportDesk:
    """The five reports, caught up with the store before answering by default."""

    def __init__(
        self,
        runner: ProjectionRunner,
        queries: ReportQueries,
        clock: Callable[[], datetime],
        listener: Callable[[], PostgresListener | None] = lambda: None,
        views_where: str = "the views' database",
        desk: object = None,
        in_flight: InFlight | None = None,
        check_store_file: Callable[[], None] = lambda: None,
    ) -> None:
        self._check_store_file = check_store_file
        """Refuses a store whose SQLite file was replaced or removed since the
        desk opened it (the desk's): a follower kept reading the old file."""
        self._desk = desk
        """The desk these reports belong to, kept alive with them: a desk
        collected as garbage closes the store's connections (the library's
        `Application.__del__`), and `desk.reports` kept alone would fail."""
        self._in_flight = in_flight or InFlight(_CLOSED)
        """The desk's calls under way, this one's among them: closing the
        desk waits for a report to end before closing its connections; each
        call checks the desk's cipher key as it begins."""
        self.runner = runner
        self.views_where = views_where
        """The views' URL as given (password hidden), for messages: the
        engine's own URL lacks a PostgreSQL schema, a connection option."""
        self.queries = queries
        self.clock = clock
        self.listener = listener
        """Makes what tells `follow` of writes, if the store can (see
        `store_listener`)."""
        self._closed = False
        self._following_lock = threading.Lock()
        self._following: list[_Following] = []
        """Each `follow` running: stopped, and waited for, when the desk closes."""

    def close(self) -> None:
        """Called by the desk's `close()` before it closes the connections:
        from then on every use raises `DeskClosed`, and every `follow`
        running in another thread is told to stop and waited for. A
        connection closed under a thread that is using it can crash the
        interpreter (SQLite's does), so the follower's last batch ends first.
        """
        with self._following_lock:
            self._closed = True
            running = list(self._following)
        for following in running:
            following.stop.set()
        for following in running:
            if following.thread != threading.get_ident():
                following.ended.wait()

    def _check_open(self) -> None:
        if self._closed:
            raise DeskClosed(_CLOSED)

    @contextmanager
    def _views_errors(self) -> Iterator[None]:
        with self._in_flight.call(_CLOSED):
            self._check_open()
            with _views_errors(self.views_where):
                yield

    def catch_up(self) -> int:
        """Apply every stored event the views have not seen; returns how many."""
        with self._views_errors():
            return self.runner.catch_up()

    def position(self) -> int:
        """The notification log position the views have applied events up to."""
        with self._views_errors():
            return self.runner.position()

    def rebuild(self) -> int:
        """Drop the views and replay the whole store into them."""
        with self._views_errors():
            return self.runner.rebuild()

    def follow(
        self,
        stop: threading.Event,
        *,
        poll: timedelta = timedelta(seconds=0.5),
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        """Keep the views caught up until `stop` is set: after each write on
        PostgreSQL, which notifies, and at least every `poll` (the only way
        on SQLite).

        Closing the desk from another thread sets `stop` and waits for the
        follower's batch in hand to end before closing the connections; the
        follower then ends with `DeskClosed` rather than returning as if
        stopped by its caller.
        """
        following = _Following(stop, threading.get_ident())
        with self._following_lock:
            self._check_open()
            self._in_flight.begin(_CLOSED)  # the cipher key, as any call checks
            self._following.append(following)
        listener = self.listener()
        try:
            with _views_errors(self.views_where):
                self.runner.follow(
                    stop,
                    poll=poll,
                    on_batch=on_batch,
                    listener=listener,
                    before_each_look=self._check_store_file,
                )
        except Exception as exc:
            if self._closed:
                raise DeskClosed(_CLOSED) from exc
            raise
        finally:
            if listener is not None:
                listener.close()
            with self._following_lock:
                self._following.remove(following)
            following.ended.set()
        self._check_open()

    @contextmanager
    def _prepared(
        self,
        catch_up: bool,
        since: object,
        until: object,
        owner: object,
        category: object,
        **arguments: object,
    ) -> Iterator[tuple[datetime, ReportFilter, ReportArguments]]:
        """The moment of asking, the filter and the report's own arguments,
        the views caught up first if asked; a bad filter or argument is
        refused, every problem named, before anything is read."""
        filters = {"since": since, "until": until, "owner": owner, "category": category}
        problems: list[FieldProblem] = []
        checked = []
        for model, given in ((ReportFilter, filters), (ReportArguments, arguments)):
            try:
                checked.append(model.model_validate(given))
            except ValidationError as exc:
                problems += field_problems(exc, "report")
        if problems:
            raise InvalidCommand("report", problems)
        report_filter, report_arguments = checked
        assert isinstance(report_filter, ReportFilter)
        assert isinstance(report_arguments, ReportArguments)
        with self._views_errors():
            for attempt in range(1, REPLACED_ATTEMPTS + 1):
                with self.runner.reading_lock():
                    ready = self._checked(catch_up)
                    with self.queries.snapshot() as conn:
                        tracking = self.runner.tracking_in(conn) if ready else None
                        if tracking is not None and tracking.load_to is None:
                            yield self.clock(), report_filter, report_arguments
                            return
                if tracking is not None and not catch_up:
                    raise StoreUnavailable(
                        "the report views are being rebuilt (by a rebuild, or "
                        "after an upgrade to a new layout of the views) and "
                        "hold only some complaints so far: ask again once a "
                        "catch-up (a report, `project`, a follower) has loaded "
                        "them, or with catch_up=True to load them first"
                    )
                # Replaced since the check, or a load begun since the catch-up
                # (a rebuild in another process): the catch-up finishes it.
                if attempt < REPLACED_ATTEMPTS:
                    time.sleep(0.05 * attempt)
            raise StoreUnavailable(
                f"the report views were replaced {REPLACED_ATTEMPTS} times while "
                "being read (rebuilds in another process): ask again once they end"
            )

    def _checked(self, catch_up: bool) -> bool:
        """Catch the views up (or check them once against the store); False
        when the check found them replaced meanwhile (see
        `ViewsBeingReplaced`). A catch-up looks again itself, and says so
        when it gives up: looking again here too would multiply its
        attempts."""
        if catch_up:
            self.runner.catch_up()
            return True
        try:
            self.runner.check_store(once=True)
        except ViewsBeingReplaced:
            return False
        return True

    def ownership(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        owner: str | None = None,
        category: str | None = None,
        limit: int | None = DEFAULT_LIMIT,
        catch_up: bool = True,
    ) -> OwnershipReport:
        """Per owner, the chains of owners, and the complaints handed off
        three or more times; `limit` cuts each list (None: every item)."""
        with self._prepared(catch_up, since, until, owner, category, limit=limit) as (
            now,
            f,
            a,
        ):
            return self.queries.ownership(now, f, a.uncut_limit)

    def time_to_resolution(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        owner: str | None = None,
        category: str | None = None,
        limit: int | None = DEFAULT_LIMIT,
        catch_up: bool = True,
    ) -> TimeToResolutionReport:
        """Distributions, reopens, and each complaint's times to its stages,
        newest first; `limit` cuts that list (None: every complaint)."""
        with self._prepared(catch_up, since, until, owner, category, limit=limit) as (
            now,
            f,
            a,
        ):
            return self.queries.time_to_resolution(now, f, a.uncut_limit)

    def sla(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        owner: str | None = None,
        category: str | None = None,
        horizon: timedelta = timedelta(hours=24),
        limit: int | None = DEFAULT_LIMIT,
        catch_up: bool = True,
    ) -> SlaReport:
        """Breaches, compliance, and the deadlines due within `horizon` from
        now (at risk); `limit` cuts the two lists (None: every item)."""
        with self._prepared(
            catch_up, since, until, owner, category, limit=limit, horizon=horizon
        ) as (now, f, a):
            return self.queries.sla(now, f, a.horizon, a.uncut_limit)

    def backlog(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        owner: str | None = None,
        category: str | None = None,
        catch_up: bool = True,
    ) -> BacklogReport:
        with self._prepared(catch_up, since, until, owner, category) as (now, f, _):
            return self.queries.backlog(now, f)

    def recurrence(
        self,
        *,
        min_count: int = 3,
        since: datetime | None = None,
        until: datetime | None = None,
        owner: str | None = None,
        category: str | None = None,
        catch_up: bool = True,
    ) -> RecurrenceReport:
        """The categories with at least `min_count` complaints selected."""
        with self._prepared(
            catch_up, since, until, owner, category, min_count=min_count
        ) as (now, f, a):
            return self.queries.recurrence(now, f, a.min_count)


MAX_COUNT = 2**31 - 1
"""The largest limit or minimum count a report takes: PostgreSQL reads a
LIMIT, and a count compared in SQL, as a 32-bit integer."""
MAX_HORIZON = timedelta(days=36_525)
"""A hundred years: far beyond any deadline, and far from the edge of the
datetime range that `now + horizon` must stay inside."""


class ReportArguments(BaseModel):
    """A report's own arguments, checked as a command's are (and named in
    the refusal as a command's fields): a whole number is neither a string
    nor a bool, and each stays in the range both databases take."""

    model_config = ConfigDict(strict=True, frozen=True)

    limit: Annotated[int, Field(ge=0, le=MAX_COUNT)] | None = DEFAULT_LIMIT
    """Items per list at most; None: every item."""
    horizon: Annotated[timedelta, Field(ge=timedelta(0), le=MAX_HORIZON)] = timedelta(
        hours=24
    )
    min_count: Annotated[int, Field(ge=1, le=MAX_COUNT)] = 3

    @property
    def uncut_limit(self) -> int:
        """The limit as the queries take it: None (every item) as the
        largest limit both databases accept."""
        return MAX_COUNT if self.limit is None else self.limit
