"""Follows the event store's notification log into the read models, exactly once.

Each batch is applied in one database transaction that writes the view rows
and moves the tracking position together, and the position only moves if no
other runner moved it first. A crash mid-batch rolls back both, so a restarted
runner applies that batch again from the same position: nothing is lost and
nothing is counted twice.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import multiprocessing as mp
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import as_completed
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any, NamedTuple, Protocol, runtime_checkable
from uuid import UUID, uuid4

from eventsourcing.persistence import PersistenceError
from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Dialect,
    Engine,
    Float,
    Table,
    delete,
    insert,
    inspect,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.exc import InternalError as SqlInternalError

from amends.domain.errors import (
    AmendsError,
    HistoryViolation,
    first_line,
    stored_complaint_id,
)
from amends.domain.sla import PolicySchedule
from amends.domain.stages import Stage
from amends.projections import forking, summary
from amends.projections import tables as t
from amends.projections.facts import (
    ComplaintFacts,
    Folder,
    PolicyMismatch,
    policy_key,
)

logger = logging.getLogger("amends.projections")


class ViewsOfAnotherStore(AmendsError):
    """The views hold what the store does not: they were built from another
    store (a views URL two stores share, a store restored from an older
    backup), and reports read from them would describe that store."""


DEFAULT_PROJECTION = "amends.reports"
DEFAULT_BATCH_SIZE = 100_000
"""Events per transaction at most: the fewer batches a complaint's events fall
into, the fewer times its rows are written."""
DEFAULT_BATCH_COMPLAINTS = 10_000
"""Complaints one transaction touches at most: what bounds a batch's memory
(their facts and rows, a few KB each), however dense the traffic."""
READ_SIZE = 5_000
"""Events per read of the log: a batch is read and folded this many at a time,
so its events are never held all at once."""
VIEWS_FORMAT = "views/17"
"""The layout of the view tables; views of an earlier layout are rebuilt, and
views of a later one refused (`ViewsOfLaterRelease`)."""
DEFAULT_CACHE_SIZE = 10_000
"""Open complaints whose facts a runner keeps between batches."""
LOAD_COMPLAINTS = 500
"""Complaints a rebuild that loads complaint by complaint folds, writes and
commits at a time (all their events: about 5,000). Small enough that the
workers finish together (the last part runs alone), large enough that each
part's query and commit cost little beside its folding."""
RETRY_SECONDS = 1.0
"""The longest a follower waits before trying again after a failure it waits
out (a locked or unreachable database, tables dropped by a rebuild)."""
WAIT_SAID_EVERY = 60.0
"""Seconds: a follower waiting out a failure says so when it begins, when the
failure changes and then once a minute, not at every look (an hour's outage
wrote 7,200 lines, twice a second), and says when it goes on."""
REPLACED_ATTEMPTS = 5
"""How often a catch-up, or a report, reads views a rebuild in another
process replaced meanwhile before it gives up (`ViewsBeingReplaced`)."""
PARALLEL_FROM_EVENTS = 20_000
"""Smaller logs are loaded in this process: forking would cost more than it saves."""


class StoredAt(NamedTuple):
    """Which stored event is at a position of the log."""

    complaint_id: UUID
    version: int
    fingerprint: str
    """SHA-256 of its bytes as stored (hex): another event there, even one
    of the same complaint and version, has another."""


class FeedItem(NamedTuple):
    """One stored event, decoded to its (upcast) JSON payload."""

    position: int
    complaint_id: UUID
    version: int
    topic: str
    payload: dict[str, Any]


class EventFeed(Protocol):
    """Where a runner reads events from: the notification log, decoded."""

    def read(self, after: int, limit: int) -> Sequence[FeedItem]:
        """Up to `limit` events with positions greater than `after`, in order."""
        ...

    def last_position(self) -> int: ...

    def holds(self, complaint_id: UUID, version: int) -> bool:
        """Whether the store holds that complaint's event of that version."""
        ...

    def event_at(self, position: int) -> StoredAt | None:
        """The event at `position`, if any: its complaint, version and the
        hash of its bytes as stored."""
        ...


@runtime_checkable
class ComplaintFeed(EventFeed, Protocol):
    """A feed that can also read the log complaint by complaint, from any
    process (forked workers too), which is how a rebuild loads the views."""

    @property
    def reads_complaints(self) -> bool:
        """Whether this store can be read so (a SQLite file or PostgreSQL can)."""
        ...

    def stored_complaints(self) -> Sequence[str]:
        """The ids of the stored complaints, as stored, in order."""
        ...

    def read_complaints(self, first: str, last: str, upto: int) -> Sequence[FeedItem]:
        """The events at positions up to `upto` of the complaints with ids from
        `first` to `last`, complaint by complaint, each in version order."""
        ...


class Listener(Protocol):
    """Tells an idle follower that events may have been stored."""

    def wait(self, seconds: float, stop: threading.Event) -> bool:
        """Return True as soon as events may have been stored, False after
        `seconds` without word of any, or once `stop` is set."""
        ...


class _Sleeper:
    """No word from the store: wait the whole poll (SQLite, memory)."""

    def wait(self, seconds: float, stop: threading.Event) -> bool:
        stop.wait(seconds)
        return False


class ProjectionConflict(Exception):
    """Another runner applied this batch first; this one rolled back."""


class ViewsOfLaterRelease(AmendsError):
    """The views were written by a later release of amends, in a layout this
    one does not know. Rebuilding them in this one's layout would make the
    later release rebuild them again, each process undoing the other's for
    as long as both run (a rolling deploy); so this one leaves them alone."""

    def __init__(self, layout: str) -> None:
        super().__init__(
            f"the report views were written by a later release of amends "
            f"(layout {layout}; this one writes {VIEWS_FORMAT}): run this "
            "process with that release, give it views of its own "
            "(AMENDS_VIEWS_URL), or, if that release is gone, rebuild them "
            "for this one (amends project --rebuild)"
        )


def _layout_of(label: str) -> str:
    """The layout a tracking row's label names ("views/17"): its first word."""
    return label.split(" ", 1)[0]


def _is_earlier(layout: str) -> bool:
    """Whether `layout` is an earlier one than this release's (a layout not
    named "views/N" is: the first layouts named none); a later one is
    refused (`ViewsOfLaterRelease`)."""
    number = layout.removeprefix("views/")
    mine = int(VIEWS_FORMAT.removeprefix("views/"))
    if number.isdigit() and int(number) > mine:
        raise ViewsOfLaterRelease(layout)
    return layout != VIEWS_FORMAT


class ViewsBeingReplaced(AmendsError):
    """The views have no tracking row as a read sees them: a rebuild in
    another process replaced them since this process made sure of it (on
    PostgreSQL a read may find the new tables before it may see their rows).
    Reading again soon finds the new views."""

    def __init__(self, projection: str) -> None:
        super().__init__(
            f"the views of {projection} were replaced by a rebuild while being read"
        )


class ProjectionRunner:
    """Applies the notification log to the read models in tracked batches."""

    def __init__(
        self,
        feed: EventFeed,
        engine: Engine,
        policies: PolicySchedule,
        *,
        name: str = DEFAULT_PROJECTION,
        batch_size: int = DEFAULT_BATCH_SIZE,
        batch_complaints: int = DEFAULT_BATCH_COMPLAINTS,
        cache_size: int = DEFAULT_CACHE_SIZE,
        workers: int = 1,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if batch_complaints < 1:
            raise ValueError("batch_complaints must be at least 1")
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.feed = feed
        self.engine = engine
        self.name = name
        self.batch_size = batch_size
        self.batch_complaints = batch_complaints
        self.workers = workers
        """Processes a rebuild of a large log folds in (`_load_complaints`)."""
        self.load_complaints = LOAD_COMPLAINTS
        self.folder = Folder(policies)
        self._policies = schedule_label(policies)
        self._tables_ready = False
        self._lock = threading.RLock()
        self._cache = FactsCache(cache_size)
        self._cached_at: int | None = None
        """The position the cache holds facts for; None when it holds none."""
        self._store_checked = False
        """Whether `check_store` found the views to be this store's."""

    # ------------------------------------------------------------ public

    def ensure_tables(self) -> None:
        """Create the views if missing; processes starting together may race."""
        for attempt in range(1, 6):
            if self._tables_ready:
                return
            began = time.monotonic()
            try:
                self._create_missing_tables()
                if self._outdated():
                    logger.warning(
                        "projection %s: the views were written by an earlier "
                        "release of amends; rebuilding them",
                        self.name,
                    )
                    # Set up as a rebuild sets them up: a report that does not
                    # catch up is refused until the load ends, rather than
                    # answering from empty views as if the store held nothing.
                    self._swap_in_empty_views(self._load_to())
                self._tables_ready = True
            except (
                IntegrityError,
                ProgrammingError,
                SqlInternalError,
                OperationalError,
            ) as exc:
                # Another process or thread created them between our check
                # and create. SQLite says so as an OperationalError: "table
                # ... already exists", or "database is locked" when the check
                # read before the other's commit (a reader cannot then become
                # the writer); any other OperationalError is raised.
                if attempt == 5 or (
                    isinstance(exc, OperationalError)
                    and not _created_meanwhile(exc, time.monotonic() - began)
                ):
                    raise
                time.sleep(0.05 * attempt)

    def _create_missing_tables(self) -> None:
        with self.engine.connect() as conn:
            tables = inspect(conn).get_table_names()
            if all(table.name in tables for table in t.metadata.sorted_tables):
                return
            _hold_views_ddl_lock(conn)
            t.metadata.create_all(conn)
            conn.commit()

    def _swap_in_empty_views(self, load_to: int | None) -> None:
        """Replace the views (and the tables only earlier layouts had) with
        empty ones, in one transaction: set up to be loaded complaint by
        complaint up to position `load_to` (their secondary indexes left out
        until the rows are in), or to be caught up from position 0.

        Other processes read and write the views meanwhile: a report, a
        follower, another rebuild. Dropped and made in several transactions,
        the views were missing for a moment ("no such table", a report
        failing), or empty with no load set up, so that another process's
        catch-up began replaying them event by event and this load then took
        its half-folded complaints for loaded ones: the store check then found
        them behind the log and called them another store's. In one
        transaction every other process sees the old views or the new ones
        with their load set up. On SQLite the transaction takes the write
        lock first (`BEGIN IMMEDIATE`); on PostgreSQL it locks the tracking
        table first, the table every reader and writer of the views reads
        first, so that none holds it while waiting for a table this one
        holds (a deadlock). Brand-new views have no tracking table to lock:
        there, and for every maker or replacer of the views on PostgreSQL, an
        advisory lock comes first (`_hold_views_ddl_lock`).
        """
        with self.engine.connect() as conn:
            quote = conn.dialect.identifier_preparer.quote
            if conn.dialect.name == "postgresql":
                _hold_views_ddl_lock(conn)
                if conn.execute(
                    text("SELECT to_regclass(:name)"), {"name": t.tracking.name}
                ).scalar():
                    conn.execute(
                        text(
                            f"LOCK TABLE {quote(t.tracking.name)} "
                            "IN ACCESS EXCLUSIVE MODE"
                        )
                    )
            elif not t.shares_one_connection(self.engine):
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            t.metadata.drop_all(conn, tables=[*t.VIEW_TABLES, t.tracking])
            for name in t.FORMER_TABLES:
                conn.execute(text(f"DROP TABLE IF EXISTS {quote(name)}"))
            t.metadata.create_all(conn)
            if load_to is not None:
                for index in t.DEFERRED_INDEXES:
                    index.drop(conn)
            conn.execute(
                insert(t.tracking).values(
                    projection=self.name,
                    position=0,
                    policies=self._policies,
                    load_to=load_to,
                    load_id=None if load_to is None else uuid4().hex,
                )
            )
            conn.commit()

    def _outdated(self) -> bool:
        """Whether the views were written for an earlier layout: the tracking
        table lacks a column of this layout's (the first layouts kept no
        policies), or its row names another layout. Views of a later layout
        are refused (`ViewsOfLaterRelease`), never rebuilt in this one's."""
        with self.engine.connect() as conn:
            columns = {c["name"] for c in inspect(conn).get_columns(t.tracking.name)}
            if not columns.issuperset(t.tracking.columns.keys()):
                return True
            labels = conn.execute(select(t.tracking.c.policies)).scalars().all()
        # Every label judged before answering, so that a later layout is
        # refused even beside an earlier one.
        earlier = [_is_earlier(_layout_of(label)) for label in labels]
        return any(earlier)

    def _load_to(self) -> int | None:
        """Where views made empty are to be loaded complaint by complaint to:
        the log's present end, where the feed can read the log by complaint
        and the log holds events; None: caught up from position 0."""
        if isinstance(self.feed, ComplaintFeed) and self.feed.reads_complaints:
            return self.feed.last_position() or None
        return None

    def position(self) -> int:
        return self._tracking().position

    def reading_lock(self) -> AbstractContextManager[object]:
        """What a reader of the views holds while it reads. In-memory views
        are one connection, which the runner's writes use too (under its
        lock): a report reading between a catch-up's statements ended its
        transaction, half of a batch committed and its tracking row not
        moved, so the next catch-up applied the batch again and the views
        counted complaints twice. Elsewhere each reader has a connection."""
        return self._lock if t.shares_one_connection(self.engine) else nullcontext()

    def loading(self) -> bool:
        """Whether a rebuild is loading the views complaint by complaint: until
        it ends they hold some complaints whole and others not at all."""
        return self._tracking().load_to is not None

    def _tracking(self) -> Tracking:
        self.ensure_tables()
        with self.engine.connect() as conn:
            return self._tracked(conn)

    def check_store(self, *, once: bool = False) -> None:
        """Refuse views built from another store (`ViewsOfAnotherStore`).

        The views name no store, so three lookups stand in for it: the views
        have read no further into the log than the store's end (nor set out
        to load further); the store's event at the views' position is the one
        the views last applied (the same bytes as stored, by their hash; its
        complaint there at that version or later); and the store holds the
        views' first complaint (by id) at the version they show. Another
        store's views, or a store restored from an older backup and written
        to since, fail one of them. Every catch-up checks
        (it writes the store's events into the views); a report that does not
        catch up checks `once` per runner.
        """
        if once and self._store_checked:
            return
        self._tracking()  # the views and their tracking row, made if missing
        c = t.complaints.c
        with t.snapshot(self.engine) as conn:
            tracking = self.tracking_in(conn)
            if tracking is None:
                raise ViewsBeingReplaced(self.name)
            first = conn.execute(
                select(c.id, c.version).order_by(c.id).limit(1)
            ).first()
            at_position = self.feed.event_at(tracking.position)
            applied = None
            if at_position is not None:
                applied = conn.execute(
                    select(c.version).where(c.id == str(at_position.complaint_id))
                ).scalar()
        end = self.feed.last_position()
        furthest = max(tracking.position, tracking.load_to or 0)
        if furthest > end:
            found = (
                f"have read the event log to position {furthest}, past its end at {end}"
            )
        elif tracking.position and (
            at_position is None or applied is None or applied < at_position.version
        ):
            found = (
                f"have read the event log to position {tracking.position}, "
                "and the store's event there is not one they applied"
            )
        elif (
            tracking.position
            and tracking.stored_event is not None
            and at_position is not None
            and tracking.stored_event != at_position.fingerprint
        ):
            found = (
                f"have read the event log to position {tracking.position}, "
                "and the store's event there is not one they applied: it is of "
                f"complaint {at_position.complaint_id} version "
                f"{at_position.version}, as theirs was, but not the same bytes "
                "(if no backup was restored, an event was edited: amends "
                "verify names it)"
            )
        elif first is not None and not self.feed.holds(UUID(first.id), first.version):
            found = (
                f"hold complaint {first.id} at version {first.version}, "
                "which the store does not"
            )
        else:
            self._store_checked = True
            return
        self._store_checked = False
        raise ViewsOfAnotherStore(
            f"the report views {found}: they were built from another store "
            "(views shared by two stores, or a store restored from an older "
            "backup); give this store views of its own (AMENDS_VIEWS_URL), or "
            "rebuild them (amends project --rebuild)"
        )

    def lag(self) -> int:
        """How many stored events the views have not seen yet."""
        return max(0, self.feed.last_position() - self.position())

    def catch_up(self, *, max_batches: int | None = None) -> int:
        """Apply every event stored so far; returns how many were applied.

        One thread at a time per runner: threads of one process share its
        views' connections (all of them, for in-memory views).
        """
        with self._lock:
            for attempt in range(1, REPLACED_ATTEMPTS + 1):
                try:
                    return self._catch_up(max_batches)
                except ViewsBeingReplaced:
                    # A rebuild elsewhere replaced the views under a read:
                    # the new ones are there in moments.
                    if attempt == REPLACED_ATTEMPTS:
                        raise
                    time.sleep(0.05 * attempt)
            raise AssertionError("unreachable")

    def _catch_up(self, max_batches: int | None) -> int:
        self.check_store()
        applied = 0
        batches = 0
        while max_batches is None or batches < max_batches:
            tracking = self._tracking()
            if tracking.load_to is not None:
                applied += self._load_complaints(tracking)
                batches += 1
                continue
            position = tracking.position
            with collector_paused():
                batch = self._read_and_fold(position)
                if batch is None:
                    break
                try:
                    self._commit(batch)
                except ProjectionConflict:
                    # Someone else applied it: read on from their position,
                    # once it is known to be a position in this store's log.
                    # Two stores starting at once on one fresh set of views
                    # both pass the first check (empty views suit any store);
                    # the one that loses the race finds out here.
                    self.check_store()
                    continue
            applied += batch.events
            batches += 1
        return applied

    def rebuild(self) -> int:
        """Drop the views, start from position zero, and catch up.

        Where the feed can read the log complaint by complaint (a SQLite
        file, PostgreSQL), the views are first loaded that way up to the log's
        present end (`_load_complaints`), and the events stored meanwhile are
        then caught up as usual.
        """
        with self._lock:
            self._store_checked = False
            self._cache.clear()
            self._cached_at = None
            self._swap_in_empty_views(self._load_to())
            self._tables_ready = True
            # Another rebuild replacing these views meanwhile rebuilds them
            # from zero too: this one joins its load.
            return self.catch_up()

    def follow(
        self,
        stop: threading.Event,
        *,
        poll: timedelta = timedelta(seconds=0.5),
        on_batch: Callable[[int], None] | None = None,
        listener: Listener | None = None,
        before_each_look: Callable[[], None] = lambda: None,
    ) -> None:
        """Keep catching up until `stop` is set, waiting when idle.

        Idle, it waits one `poll` at most: less when `listener` hears that
        events were stored (PostgreSQL's notifications). A database that is
        briefly locked or unreachable is waited out: the batch rolled back,
        and the next look applies it again. One that cannot clear by itself
        (read-only) ends the follow with the error, as does whatever
        `before_each_look` raises (the store's file replaced under it).
        """
        seconds = poll.total_seconds()
        idle = listener or _Sleeper()
        waiting = _Waiting(self.name)
        while not stop.is_set():
            before_each_look()
            try:
                applied = self.catch_up(max_batches=1)
            except (
                OperationalError,
                PersistenceError,
                IntegrityError,
                ProgrammingError,
                ViewsBeingReplaced,
            ) as exc:
                if isinstance(exc, ProgrammingError) and not _tables_gone(exc):
                    raise
                if _cannot_clear(exc):
                    raise
                waiting.failed(first_line(exc))
                # Looked at again soon, not a whole poll later: a rebuild in
                # another process drops and makes the tables in moments, and
                # writes meanwhile notify no one (a follower blind for a
                # 30-second poll fell hundreds of events behind).
                stop.wait(min(seconds, RETRY_SECONDS))
                continue
            waiting.ended()
            if on_batch is not None and applied:
                on_batch(applied)
            if not applied:
                idle.wait(seconds, stop)

    # ------------------------------------------------------------ a batch

    def apply_batch(self, position: int, items: Sequence[FeedItem]) -> None:
        """Fold `items` (read after `position`) into the views, in one transaction."""
        if not items:
            return
        batch = Batch(position, last=position)
        with collector_paused():
            with self._forgetting_on_failure():
                self._start(position)
                self._fold(items, batch)
            self._commit(batch)

    def _read_and_fold(self, position: int) -> Batch | None:
        """Read the log after `position` and fold it, a read at a time, until
        the batch holds `batch_size` events or touches `batch_complaints`
        complaints; None when there is nothing to read."""
        batch = Batch(position, last=position)
        with self._forgetting_on_failure():
            self._start(position)
            while (
                batch.events < self.batch_size
                and len(batch.changes) < self.batch_complaints
            ):
                # Each event touches one complaint at most, so a read no
                # longer than the room left keeps the batch within bounds.
                room = self.batch_complaints - len(batch.changes)
                wanted = min(READ_SIZE, self.batch_size - batch.events, room)
                items = self.feed.read(batch.last, wanted)
                if not items:
                    break
                self._fold(items, batch)
        return batch if batch.events else None

    def _start(self, position: int) -> None:
        """Forget facts kept for another position than the batch starts from."""
        if self._cached_at != position:
            self._cache.clear()
            self._cached_at = None

    @contextmanager
    def _forgetting_on_failure(self) -> Iterator[None]:
        """Any failure empties the in-memory state, which may hold facts the
        database never saw."""
        try:
            yield
        except BaseException:
            self._cache.clear()
            self._cached_at = None
            raise

    def _commit(self, batch: Batch) -> None:
        """Write a folded batch's rows and move the tracking row, together.

        The fold ran first, outside the write transaction, so a SQLite file is
        locked only while the rows are written. The tracking row moves first
        in the write transaction, and only from where the batch started: a
        second runner that applied it meanwhile makes this one roll back
        (`ProjectionConflict`), and on PostgreSQL its row lock makes the second
        runner wait rather than collide on the view rows. Only the rows that
        changed are written.
        """
        changes = list(batch.changes.values())
        stored_event = self._stored_event(batch.last)
        with self._forgetting_on_failure(), self.engine.begin() as conn:
            moved = conn.execute(
                update(t.tracking)
                .where(t.tracking.c.projection == self.name)
                .where(t.tracking.c.position == batch.position)
                .where(t.tracking.c.load_to.is_(None))
                .values(position=batch.last, stored_event=stored_event)
            )
            if moved.rowcount != 1:
                raise ProjectionConflict(self.name)
            self._write(conn, changes)
        for change in changes:
            self._cache.keep(change)
        self._cached_at = batch.last

    # ------------------------------------------------------------ a rebuild's load

    def _load_complaints(self, tracking: Tracking) -> int:
        """Load the views complaint by complaint up to position
        `tracking.load_to`, going on with the complaints not loaded yet;
        returns the events written.

        Each complaint is folded once, from all its events, and written once,
        so no complaint is written again as its events fall into later batches
        of the log, and none of its old rows is subtracted from the totals.
        The rows go in without the secondary indexes, which are made once at
        the end, when the percentiles are found and the tracking position
        moves to `upto`, all in one transaction. Each part of
        `load_complaints` complaints is folded and written in a transaction of
        its own (`load_part`), so a load stopped by a crash keeps the parts
        written and goes on with the rest; a complaint is loaded once its row
        is in the views. A large log is loaded by `workers` forked processes,
        each folding and writing whole parts: the parts are independent, so
        nothing is handed back but a count. Another runner that loads or
        finishes the same load meanwhile makes this one stop (the caller then
        reads the tracking row again), so no complaint is written twice. Each
        write names the load by its id (`Tracking.load_id`): a rebuild that
        replaced the views meanwhile, to load them up to the same position,
        makes this one stop rather than write into its views, or end its
        load with the complaints this one found loaded in the views before.
        """
        upto, load_id = tracking.load_to, tracking.load_id
        assert upto is not None
        assert load_id is not None
        parts = self._remaining_parts()
        workers = self.workers if upto >= PARALLEL_FROM_EVENTS else 1
        applied = 0
        try:
            with self._forgetting_on_failure():
                for events in _loaded(self, parts, upto, load_id, workers):
                    applied += events
                stored_event = self._stored_event(upto)
                with self.engine.begin() as conn:
                    self._still_loading(
                        conn,
                        load_id,
                        position=upto,
                        load_to=None,
                        load_id=None,
                        stored_event=stored_event,
                    )
                    for index in t.DEFERRED_INDEXES:
                        index.create(conn, checkfirst=True)
                    _write_percentiles(conn, summary.measured_groups(conn))
                self._vacuum()
        except ProjectionConflict:
            pass  # another runner went on with the load: the caller reads where
        self._cached_at = None
        return applied

    def _vacuum(self) -> None:
        """On PostgreSQL, vacuum the loaded views and gather their statistics.

        Tables filled in one go have neither until autovacuum's next look
        (never, where it is off). Without statistics PostgreSQL guessed
        hundreds of deadlines a complaint and read the filtered ownership
        report's breaches through a bitmap of every late deadline: 11.3 ms at
        10,000 complaints, 0.5 ms after `ANALYZE`. Without a vacuum no page is
        marked all-visible, so an index holding every column a statement
        needs is no use alone: each row is fetched from the table as well
        (reading a year of one category's complaints by the category index
        took 40 ms so at 100,000 complaints, 1.7 ms after). `VACUUM` cannot
        run inside a transaction, so it runs on a connection of its own in
        autocommit; it locks out no reader or writer. SQLite plans well
        without statistics (the plan tests check its indexes) and reads its
        indexes alone without a vacuum, so it is left as is.
        """
        if self.engine.dialect.name != "postgresql":
            return
        preparer = self.engine.dialect.identifier_preparer
        tables = ", ".join(preparer.format_table(table) for table in t.VIEW_TABLES)
        with self.engine.connect().execution_options(
            isolation_level="AUTOCOMMIT"
        ) as conn:
            conn.exec_driver_sql(f"VACUUM (ANALYZE) {tables}")

    def _remaining_parts(self) -> list[tuple[str, str]]:
        """The complaints of the store not loaded into the views yet."""
        assert isinstance(self.feed, ComplaintFeed)
        with self.engine.connect() as conn:
            loaded = {
                UUID(key) for key in conn.execute(select(t.complaints.c.id)).scalars()
            }
        return remaining_parts(
            self.feed.stored_complaints(), loaded, self.load_complaints
        )

    def _still_loading(self, conn: Connection, load: str, **values: Any) -> None:
        """Check, first thing in a load's write transaction (so that it holds
        the tracking row, and on SQLite the write lock), that the load with
        the id `load` is still under way; `values` update the tracking row."""
        c = t.tracking.c
        moved = conn.execute(
            update(t.tracking)
            .where(c.projection == self.name)
            .where(c.load_id == load)
            .values(**(values or {"load_id": load}))
        )
        if moved.rowcount != 1:
            raise ProjectionConflict(self.name)

    def load_part(self, first: str, last: str, upto: int, load_id: str) -> int:
        """Fold the complaints with ids from `first` to `last` from their
        events up to position `upto`, and write their rows and what they add
        to the totals in one transaction, if the load `load_id` is still under
        way; returns the events folded."""
        load = self.fold_complaints(first, last, upto)
        try:
            with _write_turn(), self.engine.begin() as conn:
                self._still_loading(conn, load_id)
                for table in t.ROW_TABLES:
                    if load.rows[table.name]:
                        _insert_many(conn, table, load.rows[table.name])
                _write_totals(conn, load.delta)
        except IntegrityError:
            # Another runner loaded one of these complaints first.
            raise ProjectionConflict(self.name) from None
        return load.events

    def fold_complaints(self, first: str, last: str, upto: int) -> Load:
        """Fold the complaints with ids from `first` to `last` from their
        events up to position `upto`: their rows and what they add to the
        totals (no complaint is in the views yet)."""
        assert isinstance(self.feed, ComplaintFeed)
        with collector_paused():
            folded: list[ComplaintFacts] = []
            facts: ComplaintFacts | None = None
            items = self.feed.read_complaints(first, last, upto)
            for item in items:
                if facts is not None and item.complaint_id != facts.id:
                    folded.append(facts)
                    facts = None
                facts = self._apply(facts, item)
            if facts is not None:
                folded.append(facts)
            rows: Rows = {table.name: [] for table in t.ROW_TABLES}
            delta = summary.Delta()
            for facts in folded:
                complaint_rows = self.rows_of(facts)
                delta.add(complaint_rows)
                for name, table_rows in complaint_rows.items():
                    rows[name] += table_rows
            return Load(len(items), rows, delta)

    def _fold(self, items: Sequence[FeedItem], batch: Batch) -> None:
        """Fold `items` into the batch: each touched complaint's facts after
        them, with its rows as the views hold them."""
        before = batch.changes
        ids = [
            i
            for i in dict.fromkeys(item.complaint_id for item in items)
            if i not in before
        ]
        before.update(self._cache.take(ids))
        missing = [i for i in ids if i not in before]
        if missing:
            with self.engine.connect() as conn:
                for loaded in self._load(conn, missing):
                    before[loaded.id] = Change(loaded, self.rows_of(loaded))
        for item in items:
            change = before.get(item.complaint_id)
            facts = change.facts if change is not None else None
            if facts is not None and item.version <= facts.version:
                continue  # already folded (a replayed batch)
            folded = self._apply(facts, item)
            if change is None:
                before[item.complaint_id] = Change(folded, EMPTY_ROWS)
        batch.events += len(items)
        batch.last = items[-1].position

    def _apply(self, facts: ComplaintFacts | None, item: FeedItem) -> ComplaintFacts:
        try:
            return self.folder.apply(
                facts, item.complaint_id, item.version, item.topic, item.payload
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise HistoryViolation(
                item.complaint_id,
                item.version,
                f"the report views cannot fold this stored event: {exc!r}",
            ) from None

    def _stored_event(self, position: int) -> str | None:
        """The hash of the stored event at `position` (see `check_store`)."""
        found = self.feed.event_at(position)
        return found.fingerprint if found is not None else None

    def _tracked(self, conn: Connection) -> Tracking:
        """The tracking row, made if missing: another process making it at
        the same moment (a report beside a rebuild starting) is no failure."""
        for _ in range(3):
            found = self.tracking_in(conn)
            if found is not None:
                return found
            try:
                conn.execute(
                    insert(t.tracking).values(
                        projection=self.name, position=0, policies=self._policies
                    )
                )
                conn.commit()
            except IntegrityError:
                conn.rollback()
                continue
            return Tracking(0, None, None)
        raise ViewsBeingReplaced(self.name)

    def tracking_in(self, conn: Connection) -> Tracking | None:
        """The tracking row as `conn` sees it (None: there is none); refuses
        views built under other SLA policies (`PolicyMismatch`)."""
        c = t.tracking.c
        found = conn.execute(
            select(c.position, c.policies, c.load_to, c.stored_event, c.load_id).where(
                c.projection == self.name
            )
        ).first()
        if found is None:
            return None
        position, policies, load_to, stored_event, load_id = found
        if _is_earlier(_layout_of(policies)):
            # An earlier release rebuilt them since this process made sure of
            # them (a rolling deploy): rebuilt once more on the next look (a
            # later release's are refused in `_is_earlier`).
            self._tables_ready = False
            raise ViewsBeingReplaced(self.name)
        if policies != self._policies:
            built, given = (
                label.removeprefix(f"{VIEWS_FORMAT} ")
                for label in (policies, self._policies)
            )
            raise PolicyMismatch(
                f"the report views were built under SLA policies {built}, not "
                f"this desk's {given}: use the same sla_policies (--sla) "
                "everywhere, or rebuild the views"
            )
        return Tracking(int(position), load_to, stored_event, load_id)

    def _load(self, conn: Connection, ids: Sequence[UUID]) -> list[ComplaintFacts]:
        loaded = []
        keys = [str(i) for i in ids]
        for chunk in _chunks(keys, 500):
            rows = conn.execute(
                select(t.complaints.c.facts).where(t.complaints.c.id.in_(chunk))
            )
            loaded += [ComplaintFacts.from_json(text) for (text,) in rows]
        return loaded

    def _write(self, conn: Connection, changes: Iterable[Change]) -> None:
        """Upsert each complaint's row, and the child rows that changed.

        Spans, deadlines and gestures only grow (a fold appends to them and
        amends the last few), so most of a touched complaint's child rows are
        the same as before and are left alone.
        """
        upserts: dict[str, list[tuple[Any, ...]]] = {
            table.name: [] for table in t.ROW_TABLES
        }
        removed: dict[str, list[tuple[str, int]]] = {
            table.name: [] for table in t.CHILD_TABLES
        }
        delta = summary.Delta()
        for change in changes:
            rows = self.rows_of(change.facts)
            delta.change(change.rows, rows)
            upserts[t.complaints.name] += rows[t.complaints.name]
            for table in t.CHILD_TABLES:
                old, new = change.rows[table.name], rows[table.name]
                upserts[table.name] += [
                    row
                    for seq, row in enumerate(new)
                    if seq >= len(old) or old[seq] != row
                ]
                key = str(change.facts.id)
                removed[table.name] += [(key, seq) for seq in range(len(new), len(old))]
            change.rows = _without_facts(rows)
        for table in t.CHILD_TABLES:
            _delete_keys(conn, table, removed[table.name])
        for table in t.ROW_TABLES:
            if upserts[table.name]:
                # In key order, so each insert lands beside the last one in
                # the table's B-tree instead of on a random page.
                upserts[table.name].sort(key=_KEY_OF[table.name])
                _upsert_many(conn, table, upserts[table.name])
        _write_summary(conn, delta)

    def rows_of(self, facts: ComplaintFacts) -> Rows:
        """The view rows that stand for one complaint's facts, in column order."""
        policy = self.folder.policy_of(facts)
        key = str(facts.id)
        first_resolved = facts.first_resolved_at
        reached = facts.reached
        complaint = (
            key,
            facts.version,
            facts.policy,
            facts.received_at,
            week_of(facts.received_at),
            facts.received_by,
            facts.owner,
            facts.channel,
            facts.category,
            facts.severity.value,
            facts.stage.value,
            facts.is_open,
            facts.waiting,
            *(reached.get(stage) for stage in t.STAGE_COLUMNS),
            first_resolved,
            facts.resolved_by,
            (
                (first_resolved - facts.received_at).total_seconds()
                if first_resolved is not None
                else None
            ),
            (
                facts.sla_elapsed(policy, first_resolved).total_seconds()
                if first_resolved is not None
                else None
            ),
            facts.resolutions,
            facts.reopens,
            facts.satisfied_first,
            facts.satisfied_after_reopen,
            facts.prevention_at,
            (
                (facts.prevention_at - facts.last_resolved_at).total_seconds()
                if facts.prevention_at is not None
                and facts.last_resolved_at is not None
                else None
            ),
            facts.handoffs,
            facts.last_event_at,
            facts.to_json(),
        )
        deadline_rows = []
        for seq, deadline in enumerate(facts.deadlines):
            due = facts.due(deadline, policy)
            # Whose deadline it was: the owner who met it in time (or while
            # the clock stood still, when it has no due time), else the owner
            # when it fell due, who let it lapse. Handing a complaint on after
            # a deadline was met must not pass the credit to the next owner.
            met = deadline.met_at
            if met is not None and (due is None or met <= due):
                owner = deadline.met_by
            else:
                owner = owner_at(facts, due) if due is not None else None
            deadline_rows.append(
                (key, seq, deadline.target, deadline.start, due, met, owner)
            )
        return {
            t.complaints.name: [complaint],
            t.spans.name: [
                (
                    key,
                    seq,
                    span.owner,
                    span.start,
                    span.end,
                    span.via,
                    facts.received_at,
                )
                for seq, span in enumerate(facts.spans)
            ],
            t.deadlines.name: deadline_rows,
            t.gestures.name: [
                (key, seq, gesture.at, gesture.owner, gesture.value, gesture.currency)
                for seq, gesture in enumerate(facts.gestures)
            ],
        }


Rows = dict[str, list[tuple[Any, ...]]]
"""View rows per table name, each a tuple in the table's column order."""

EMPTY_ROWS: Rows = {table.name: [] for table in t.ROW_TABLES}


def remaining_parts(
    stored: Iterable[str], loaded: set[UUID], size: int
) -> list[tuple[str, str]]:
    """The stored complaint ids (in order) not in `loaded`, as (first, last)
    ranges of `size` ids at most, none spanning a loaded one: a part is read
    as every complaint from its first id to its last."""
    parts: list[tuple[str, str]] = []
    run: list[str] = []
    for stored_id in stored:
        if stored_complaint_id(stored_id) in loaded:
            if run:
                parts.append((run[0], run[-1]))
                run = []
            continue
        run.append(stored_id)
        if len(run) == size:
            parts.append((run[0], run[-1]))
            run = []
    if run:
        parts.append((run[0], run[-1]))
    return parts


def _hold_views_ddl_lock(conn: Connection) -> None:
    """On PostgreSQL, wait for whoever else is making or replacing the views
    in this schema, until this transaction ends. Two processes creating the
    same tables at once collide in PostgreSQL's catalog ("duplicate key value
    violates unique constraint pg_type_typname_nsp_index"): two rebuilds on
    brand-new views failed this way, one of them or both. Taken only by
    makers and replacers, first thing in their transaction, never by a
    reader, so that no one holds a view's table while waiting for it. SQLite
    needs none: its writers take the whole file's lock."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:key || current_schema()))"),
            {"key": f"{t.tracking.name} "},
        )


class _Waiting:
    """What a follower says while it waits out a failure (`WAIT_SAID_EVERY`)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.since: float | None = None
        self.said: tuple[str, float] | None = None
        self.looks = 0

    def failed(self, problem: str) -> None:
        now = time.monotonic()
        if self.since is None:
            self.since = now
        self.looks += 1
        if (
            self.said is None
            or self.said[0] != problem
            or now - self.said[1] >= WAIT_SAID_EVERY
        ):
            again = "" if self.looks == 1 else f" (looked {self.looks} times)"
            logger.warning("projection %s waits: %s%s", self.name, problem, again)
            self.said = (problem, now)

    def ended(self) -> None:
        if self.since is not None:
            logger.warning(
                "projection %s goes on after %.1f s of waiting",
                self.name,
                time.monotonic() - self.since,
            )
        self.since, self.said, self.looks = None, None, 0


def _cannot_clear(error: BaseException) -> bool:
    """A failure no wait gets past: the file or database is read-only to this
    process. Waited out, a follower said "waits" twice a second for ever.
    Told by the driver's error code, not the message, which carries the
    statement's parameters (an owner named "read-only team")."""
    driver = getattr(error, "orig", None)
    code = getattr(driver, "sqlite_errorcode", None)
    return (
        # SQLite's extended codes (a read-only directory: 1544) keep the
        # primary one in their low byte.
        (isinstance(code, int) and code & 0xFF == sqlite3.SQLITE_READONLY)
        or getattr(driver, "sqlstate", None) == "25006"  # read_only_sql_transaction
    )


LOCK_WAITED = 1.0
"""Seconds: SQLite's "database is locked" after this long came from waiting
out the busy timeout (another writer's long transaction), not from a reader
that could not become the writer because another made the views meanwhile,
which SQLite says at once."""


def _created_meanwhile(error: OperationalError, waited: float) -> bool:
    """Whether SQLite's error says another process made the views between our
    look and our make. A lock waited for is not: trying four times more
    waited out the busy timeout four times more (a first report beside a
    writer holding the lock gave up after 150 s, not 30)."""
    message = str(error.orig)
    return "already exists" in message or (
        "database is locked" in message and waited < LOCK_WAITED
    )


def _tables_gone(error: ProgrammingError) -> bool:
    """PostgreSQL said a view table or index is not there: a rebuild in
    another process dropped it and is making it again (SQLite says so with
    an `OperationalError`). Any other programming error is a bug."""
    return getattr(error.orig, "sqlstate", None) in ("42P01", "42704")


class Tracking(NamedTuple):
    """A projection's tracking row."""

    position: int
    load_to: int | None
    """While a rebuild loads the views complaint by complaint: the log
    position it loads up to (the position stays 0 until it ends)."""
    stored_event: str | None
    """The hash of the stored event at `position`, as the views applied it."""
    load_id: str | None = None
    """While a rebuild loads the views: which load (see `_load_complaints`)."""


class Load(NamedTuple):
    """Complaints folded by a rebuild's load, to be written together."""

    events: int
    rows: Rows
    delta: summary.Delta


@dataclass
class Batch:
    """Events read after `position` up to `last`, folded, not yet written."""

    position: int
    last: int
    events: int = 0
    changes: dict[UUID, Change] = field(default_factory=dict)


@dataclass
class Change:
    """A complaint's facts, and the view rows last written for them."""

    facts: ComplaintFacts
    rows: Rows


class FactsCache:
    """The facts of recently touched open complaints, as last committed.

    Saves a catch-up from reading and parsing a complaint's facts again in the
    next batch. Bounded (least recently used first out); a closed complaint
    takes no more events, so it is not kept.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[UUID, Change] = OrderedDict()

    def take(self, ids: Iterable[UUID]) -> dict[UUID, Change]:
        """Remove and return the entries for `ids` that are here."""
        found = {}
        for complaint_id in ids:
            change = self._entries.pop(complaint_id, None)
            if change is not None:
                found[complaint_id] = change
        return found

    def keep(self, change: Change) -> None:
        if not change.facts.is_open or self.capacity < 1:
            return
        self._entries[change.facts.id] = change
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


_FORKED: ProjectionRunner | None = None
"""In a forked worker, the runner it loads for (its folder, policies, feed and
views' engine), inherited from the parent (see `forking`); only counts come
back. None in the parent."""
_WRITE_TURN: Any = None
"""Shared by a load's forked workers: one writes at a time, and the next
starts the moment it is done (waiting on the database's own lock would poll,
sleeping up to 100 ms at a time on SQLite)."""
_STOP: Any = None
"""Set by the parent when a load stops early (a history a worker cannot fold,
another runner's load, an interrupt): the workers take no further part, and
the parts they are loading finish. Terminating the workers instead could kill
one while it sent a result, holding the result queue's lock, and shutting the
pool down then waited on that lock for ever (seen once in a test run, on
PostgreSQL). Only a worker that dies makes the executor terminate the others
(their parts roll back): nothing reads the queues after that."""


@contextmanager
def _write_turn() -> Iterator[None]:
    if _WRITE_TURN is None:
        yield
        return
    with _WRITE_TURN:
        yield


_WORKER_DIED = (
    "a worker process loading the report views ended abruptly (killed, perhaps "
    "for want of memory); the complaints loaded so far are kept: catch the views "
    "up (or ask for a report, which does) to load the rest"
)


def _loaded(
    runner: ProjectionRunner,
    parts: Sequence[tuple[str, str]],
    upto: int,
    load_id: str,
    workers: int,
) -> Iterator[int]:
    """The events of each part as it is loaded: here, one part after the
    other, or by `workers` forked processes, each folding and writing whole
    parts (SQLite lets one of them write at a time; the others fold
    meanwhile). A worker that dies is a `WorkerDied` (see `forking`)."""
    if workers <= 1 or len(parts) <= 1 or not forking.can_fork():
        for first, last in parts:
            yield runner.load_part(first, last, upto, load_id)
        return
    context = mp.get_context("fork")
    stop = context.Event()
    with forking.forked(
        _load_forked,
        [(*part, upto, load_id) for part in parts],
        workers,
        (runner, context.Lock(), stop),
        died=_WORKER_DIED,
        initializer=_forked_worker,
    ) as futures:
        try:
            for future in as_completed(futures):
                done = future.result()
                if isinstance(done, _Refused):
                    raise HistoryViolation(
                        done.complaint_id, done.version, done.problem
                    )
                if done is None:
                    raise ProjectionConflict(runner.name)
                yield done
        finally:
            stop.set()  # the parts not started yet are skipped


def _forked_worker() -> None:
    """A forked worker takes what it inherited, and opens connections of its
    own: the pool's connections belong to the parent, which goes on using
    them."""
    global _FORKED, _WRITE_TURN, _STOP
    _FORKED, _WRITE_TURN, _STOP = forking.inherited()
    _FORKED.engine.dispose(close=False)


class _Refused(NamedTuple):
    """A `HistoryViolation` met in a worker, sent back as plain data (the
    exception itself does not survive pickling)."""

    complaint_id: UUID | str
    version: int | str
    problem: str


def _load_forked(part: tuple[str, str, int, str]) -> int | _Refused | None:
    """A part loaded by a forked worker: its events, the history it could not
    fold, or None when another runner loaded the part or finished the load."""
    assert _FORKED is not None, "only forked workers load parts"
    if _STOP is not None and _STOP.is_set():
        return 0  # the load stopped early: the parent reads no more
    try:
        return _FORKED.load_part(*part)
    except HistoryViolation as exc:
        return _Refused(exc.complaint_id, exc.version, exc.problem)
    except ProjectionConflict:
        return None


_paused = 0
_paused_lock = threading.Lock()
_was_enabled = False


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for one batch.

    A batch allocates hundreds of thousands of small objects (payloads, facts,
    row tuples) that hold no reference cycles, and each allocation spree makes
    the collector scan everything alive again: about a third of a rebuild's
    time. Off for the batch, on again after it (as it was), so whatever cycles
    a batch does leave are collected between batches. Nested and concurrent
    batches (threads) share one pause; the last to finish restores it.
    """
    global _paused, _was_enabled
    with _paused_lock:
        if _paused == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _paused += 1
    try:
        yield
    finally:
        with _paused_lock:
            _paused -= 1
            if _paused == 0 and _was_enabled:
                gc.enable()


assert list(t.complaints.columns)[-1] is t.complaints.c.facts  # see `_without_facts`


_KEY_OF: dict[str, Callable[[tuple[Any, ...]], Any]] = {
    table.name: itemgetter(
        *(list(table.columns).index(column) for column in table.primary_key.columns)
    )
    for table in t.ROW_TABLES
}
"""Each row table's primary key, picked out of a row in column order."""


def _without_facts(rows: Rows) -> Rows:
    """The rows as kept for the next comparison: the complaint's row is always
    written again whole, so its facts JSON (most of its size) is not kept."""
    return {
        **rows,
        t.complaints.name: [(*row[:-1], "") for row in rows[t.complaints.name]],
    }


def _write_summary(conn: Connection, delta: summary.Delta) -> None:
    """Add the batch's changes to the running totals and bucket counts, and
    find again the percentiles of every group whose values it changed (from
    the complaints' rows, written just before)."""
    _write_totals(conn, delta)
    _write_percentiles(conn, delta.changed)


def _write_totals(conn: Connection, delta: summary.Delta) -> None:
    counts = [(*key, n) for key, n in sorted(delta.counts.items()) if n]
    if counts:
        _upsert_many(conn, t.counts, counts, add=True)
    buckets = [(*key, n) for key, n in sorted(delta.buckets.items()) if n]
    if buckets:
        _upsert_many(conn, t.buckets, buckets, add=True)


def _write_percentiles(conn: Connection, groups: set[summary.Group]) -> None:
    if groups:
        found = summary.distributions_of(conn, groups)
        _delete_keys(conn, t.percentiles, sorted(groups - found.keys()))
        rows = [(*group, n, *points) for group, (n, points) in sorted(found.items())]
        if rows:
            _upsert_many(conn, t.percentiles, rows)


def _delete_keys(
    conn: Connection, table: Table, keys: Sequence[tuple[Any, ...]]
) -> None:
    """Delete the rows of `table` with these primary keys, 500 to a statement
    (each key is several parameters; SQLite limits them per statement)."""
    key = tuple_(*table.primary_key.columns)
    for start in range(0, len(keys), 500):
        conn.execute(delete(table).where(key.in_(keys[start : start + 500])))


def _upsert_many(
    conn: Connection, table: Table, rows: list[tuple[Any, ...]], *, add: bool = False
) -> None:
    """Insert rows, or update them where the key exists, with the driver's
    executemany, converting values once (`_driver_values`).

    `ON CONFLICT ... DO UPDATE` reads the same on SQLite (3.24 and later) and
    PostgreSQL. With `add`, an existing row's other columns are increased by
    the new values instead of replaced.
    """
    table_name, names = _named(conn.dialect, table)
    keys = [
        conn.dialect.identifier_preparer.format_column(c)
        for c in table.primary_key.columns
    ]
    updates = ", ".join(
        f"{n} = {table_name}.{n} + excluded.{n}" if add else f"{n} = excluded.{n}"
        for n in names
        if n not in keys
    )
    conn.exec_driver_sql(
        f"{_insert_statement(conn.dialect, table_name, names)} "
        f"ON CONFLICT ({', '.join(keys)}) "
        + (f"DO UPDATE SET {updates}" if updates else "DO NOTHING"),
        _driver_values(conn.dialect, table, rows),
    )


def _insert_many(conn: Connection, table: Table, rows: list[tuple[Any, ...]]) -> None:
    """Insert rows new to `table` (a rebuild's load): a row whose key exists
    is an `IntegrityError`, so a complaint written twice fails rather than
    double-counts. On PostgreSQL by `COPY` (see `_copy`), elsewhere with the
    driver's executemany."""
    table_name, names = _named(conn.dialect, table)
    values = _driver_values(conn.dialect, table, rows)
    if conn.dialect.name == "postgresql":
        _copy(conn, f"COPY {table_name} ({', '.join(names)}) FROM STDIN", values)
    else:
        conn.exec_driver_sql(_insert_statement(conn.dialect, table_name, names), values)


def _named(dialect: Dialect, table: Table) -> tuple[str, list[str]]:
    """The table's name and its columns' names, quoted as `dialect` needs."""
    preparer = dialect.identifier_preparer
    return preparer.format_table(table), [
        preparer.format_column(c) for c in table.columns
    ]


def _insert_statement(dialect: Dialect, table_name: str, names: list[str]) -> str:
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    return (
        f"INSERT INTO {table_name} ({', '.join(names)}) "
        f"VALUES ({', '.join(mark for _ in names)})"
    )


def _driver_values(
    dialect: Dialect, table: Table, rows: list[tuple[Any, ...]]
) -> list[tuple[Any, ...]]:
    """The rows' values as the driver takes them: the same values as
    SQLAlchemy's own insert, through the same column types' bind processors
    (`_binder`), without its per-row parameter machinery, which was most of
    the catch-up time."""
    converting = [
        (index, process)
        for index, column in enumerate(table.columns)
        if (process := _binder(column, dialect))
    ]
    if not converting:
        return rows
    values: list[tuple[Any, ...]] = []
    for row in rows:
        cells = list(row)
        for index, process in converting:
            cells[index] = process(cells[index])
        values.append(tuple(cells))
    return values


def _copy(conn: Connection, statement: str, values: list[tuple[Any, ...]]) -> None:
    """New rows into a PostgreSQL table by COPY, in the connection's own
    transaction: psycopg's executemany sends one INSERT a row, and waiting on
    them was half of a load's time there. A key that exists fails the COPY,
    as a plain insert would (`IntegrityError`)."""
    driver = conn.connection.driver_connection
    assert driver is not None
    try:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for row in values:
                copy.write_row(row)
    except conn.dialect.loaded_dbapi.IntegrityError as exc:
        raise IntegrityError(statement, None, exc) from None


def _binder(column: Column[Any], dialect: Dialect) -> Callable[[Any], Any] | None:
    """What a value of `column` goes through on its way to the driver, if
    anything: the column type's own bind processor, except where the runner's
    values need none or a plainer one does the same.

    The runner's flags are Python bools and its durations floats, which both
    drivers take as they are, and SQLite's times go straight to their seconds.
    Calling SQLAlchemy's generic processors for every cell (a wrapper around
    `process_bind_param`, a no-op float conversion, bool to int) cost about a
    tenth of a rebuild.
    """
    if isinstance(column.type, t.UtcDateTime):
        return t.utc_seconds if dialect.name == "sqlite" else t.as_utc
    if isinstance(column.type, Boolean | Float):
        return None
    return column.type.bind_processor(dialect)


def schedule_label(policies: PolicySchedule) -> str:
    """Names the schedule's policies and fingerprints their every figure."""
    names = ",".join(policy_key(p) for _, p in policies.entries)
    digest = hashlib.sha256(policies.model_dump_json().encode()).hexdigest()[:12]
    return f"{VIEWS_FORMAT} {names} #{digest}"


def owner_at(facts: ComplaintFacts, moment: datetime) -> str:
    """Who owned the complaint at `moment` (the current owner from now on)."""
    for span in facts.spans:
        if span.start <= moment and (span.end is None or moment < span.end):
            return span.owner
    return facts.spans[0].owner  # before intake: only for a due before receipt


def week_of(moment: datetime) -> str:
    """The Monday (UTC) of the ISO week `moment` falls in, as YYYY-MM-DD."""
    day = moment.astimezone(UTC).date()
    return (day - timedelta(days=day.weekday())).isoformat()


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


__all__ = [
    "DEFAULT_BATCH_COMPLAINTS",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_CACHE_SIZE",
    "DEFAULT_PROJECTION",
    "EventFeed",
    "FeedItem",
    "Listener",
    "ProjectionConflict",
    "ProjectionRunner",
    "Stage",
    "ViewsOfAnotherStore",
    "ViewsOfLaterRelease",
    "owner_at",
    "week_of",
]
