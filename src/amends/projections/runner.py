"""Follows the event store's notification log into the read models, exactly once.

Each batch is applied in one database transaction that writes the view rows
and moves the tracking position together, and the position only moves if no
other runner moved it first. A crash mid-batch rolls back both, so a restarted
runner applies that batch again from the same position: nothing is lost and
nothing is counted twice.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.persistence import PersistenceError
from sqlalchemy import Connection, Engine, Table, delete, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.exc import InternalError as SqlInternalError

from amends.domain.errors import HistoryViolation
from amends.domain.sla import PolicySchedule
from amends.domain.stages import Stage
from amends.projections import tables as t
from amends.projections.facts import (
    ComplaintFacts,
    Folder,
    PolicyMismatch,
    policy_key,
)

logger = logging.getLogger("amends.projections")

DEFAULT_PROJECTION = "amends.reports"
DEFAULT_BATCH_SIZE = 2_000


@dataclass(frozen=True)
class FeedItem:
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


class ProjectionConflict(Exception):
    """Another runner applied this batch first; this one rolled back."""


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
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.feed = feed
        self.engine = engine
        self.name = name
        self.batch_size = batch_size
        self.folder = Folder(policies)
        self._policies = schedule_label(policies)
        self._tables_ready = False
        self._lock = threading.RLock()

    # ------------------------------------------------------------ public

    def ensure_tables(self) -> None:
        """Create the views if missing; processes starting together may race."""
        for attempt in range(1, 6):
            if self._tables_ready:
                return
            try:
                t.metadata.create_all(self.engine)
                self._tables_ready = True
            except (IntegrityError, ProgrammingError, SqlInternalError):
                # Another process created them between our check and create.
                if attempt == 5:
                    raise
                time.sleep(0.05 * attempt)

    def position(self) -> int:
        self.ensure_tables()
        with self.engine.connect() as conn:
            return self._position(conn)

    def lag(self) -> int:
        """How many stored events the views have not seen yet."""
        return max(0, self.feed.last_position() - self.position())

    def catch_up(self, *, max_batches: int | None = None) -> int:
        """Apply every event stored so far; returns how many were applied.

        One thread at a time per runner: threads of one process share its
        views' connections (all of them, for in-memory views).
        """
        with self._lock:
            return self._catch_up(max_batches)

    def _catch_up(self, max_batches: int | None) -> int:
        self.ensure_tables()
        applied = 0
        batches = 0
        while max_batches is None or batches < max_batches:
            position = self.position()
            items = self.feed.read(position, self.batch_size)
            if not items:
                break
            try:
                self.apply_batch(position, items)
            except ProjectionConflict:
                continue  # someone else applied it; read on from their position
            applied += len(items)
            batches += 1
        return applied

    def rebuild(self) -> int:
        """Drop the views, start from position zero, and catch up."""
        with self._lock:
            t.metadata.drop_all(self.engine, tables=[*t.VIEW_TABLES, t.tracking])
            self._tables_ready = False
            return self._catch_up(None)

    def follow(
        self,
        stop: threading.Event,
        *,
        poll: timedelta = timedelta(seconds=0.5),
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        """Keep catching up until `stop` is set, polling when idle.

        A database that is briefly locked or unreachable is waited out: the
        batch rolled back, and the next poll applies it again.
        """
        while not stop.is_set():
            try:
                applied = self.catch_up(max_batches=1)
            except (OperationalError, PersistenceError, IntegrityError) as exc:
                logger.warning("projection %s waits: %s", self.name, exc)
                stop.wait(poll.total_seconds())
                continue
            if on_batch is not None and applied:
                on_batch(applied)
            if not applied:
                stop.wait(poll.total_seconds())

    # ------------------------------------------------------------ a batch

    def apply_batch(self, position: int, items: Sequence[FeedItem]) -> None:
        """Fold `items` (read after `position`) into the views, in one transaction.

        The tracking row moves first: on PostgreSQL its row lock makes a second
        runner wait for this transaction, then find the position moved and
        roll back, instead of colliding on the view rows.
        """
        with self.engine.begin() as conn:
            moved = conn.execute(
                update(t.tracking)
                .where(t.tracking.c.projection == self.name)
                .where(t.tracking.c.position == position)
                .values(position=items[-1].position)
            )
            if moved.rowcount != 1:
                raise ProjectionConflict(self.name)
            touched = self._load(conn, {item.complaint_id for item in items})
            for item in items:
                facts = touched.get(item.complaint_id)
                if facts is not None and item.version <= facts.version:
                    continue  # already folded (a replayed batch)
                try:
                    touched[item.complaint_id] = self.folder.apply(
                        facts, item.complaint_id, item.version, item.topic, item.payload
                    )
                except (KeyError, ValueError, TypeError) as exc:
                    raise HistoryViolation(
                        item.complaint_id,
                        item.version,
                        f"the report views cannot fold this stored event: {exc!r}",
                    ) from None
            self._write(conn, touched.values())

    def _position(self, conn: Connection) -> int:
        found = conn.execute(
            select(t.tracking.c.position, t.tracking.c.policies).where(
                t.tracking.c.projection == self.name
            )
        ).first()
        if found is None:
            conn.execute(
                insert(t.tracking).values(
                    projection=self.name, position=0, policies=self._policies
                )
            )
            conn.commit()
            return 0
        position, policies = found
        if policies != self._policies:
            raise PolicyMismatch(
                f"the report views were built under SLA policies {policies}, not "
                f"{self._policies}: use the same sla_policies (--sla) everywhere, "
                "or rebuild the views"
            )
        return int(position)

    def _load(self, conn: Connection, ids: set[UUID]) -> dict[UUID, ComplaintFacts]:
        loaded: dict[UUID, ComplaintFacts] = {}
        keys = [str(i) for i in ids]
        for chunk in _chunks(keys, 500):
            rows = conn.execute(
                select(t.complaints.c.facts).where(t.complaints.c.id.in_(chunk))
            )
            for (text,) in rows:
                facts = ComplaintFacts.from_json(text)
                loaded[facts.id] = facts
        return loaded

    def _write(self, conn: Connection, touched: Iterable[ComplaintFacts]) -> None:
        facts_list = list(touched)
        keys = [str(f.id) for f in facts_list]
        for chunk in _chunks(keys, 500):
            for table in t.VIEW_TABLES:
                column = table.c.id if table is t.complaints else table.c.complaint_id
                conn.execute(delete(table).where(column.in_(chunk)))
        rows: dict[str, list[dict[str, Any]]] = {
            table.name: [] for table in t.VIEW_TABLES
        }
        for facts in facts_list:
            for name, table_rows in self.rows_of(facts).items():
                rows[name].extend(table_rows)
        for table in t.VIEW_TABLES:
            if rows[table.name]:
                _insert_many(conn, table, rows[table.name])

    def rows_of(self, facts: ComplaintFacts) -> dict[str, list[dict[str, Any]]]:
        """The view rows that stand for one complaint's facts."""
        policy = self.folder.policy_of(facts)
        key = str(facts.id)
        first_resolved = facts.first_resolved_at
        complaint: dict[str, Any] = {
            "id": key,
            "version": facts.version,
            "policy": facts.policy,
            "received_at": facts.received_at,
            "week": week_of(facts.received_at),
            "received_by": facts.received_by,
            "owner": facts.owner,
            "channel": facts.channel,
            "category": facts.category,
            "severity": facts.severity.value,
            "stage": facts.stage.value,
            "is_open": facts.is_open,
            "waiting": facts.waiting,
            "first_resolved_at": first_resolved,
            "resolved_by": facts.resolved_by,
            "ttr_wall": (
                (first_resolved - facts.received_at).total_seconds()
                if first_resolved is not None
                else None
            ),
            "ttr_sla": (
                facts.sla_elapsed(policy, first_resolved).total_seconds()
                if first_resolved is not None
                else None
            ),
            "resolutions": facts.resolutions,
            "reopens": facts.reopens,
            "satisfied_first": facts.satisfied_first,
            "satisfied_after_reopen": facts.satisfied_after_reopen,
            "prevention_at": facts.prevention_at,
            "handoffs": facts.handoffs,
            "last_event_at": facts.last_event_at,
            "facts": facts.to_json(),
        }
        for stage, column in t.STAGE_COLUMNS.items():
            complaint[column] = facts.reached.get(stage)
        deadline_rows = []
        for seq, deadline in enumerate(facts.deadlines):
            due = facts.due(deadline, policy)
            # Whose deadline it was: the owner when it fell due, or, for one
            # met while the clock stood still, the owner who met it.
            moment = due if due is not None else deadline.met_at
            deadline_rows.append(
                {
                    "complaint_id": key,
                    "seq": seq,
                    "target": deadline.target,
                    "started_at": deadline.start,
                    "due_at": due,
                    "met_at": deadline.met_at,
                    "owner_at_due": owner_at(facts, moment) if moment else None,
                }
            )
        return {
            t.complaints.name: [complaint],
            t.spans.name: [
                {
                    "complaint_id": key,
                    "seq": seq,
                    "owner": span.owner,
                    "start_at": span.start,
                    "end_at": span.end,
                    "via": span.via,
                }
                for seq, span in enumerate(facts.spans)
            ],
            t.deadlines.name: deadline_rows,
            t.gestures.name: [
                {
                    "complaint_id": key,
                    "seq": seq,
                    "at": gesture.at,
                    "owner": gesture.owner,
                    "value": gesture.value,
                    "currency": gesture.currency,
                }
                for seq, gesture in enumerate(facts.gestures)
            ],
        }


def _insert_many(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert rows with the driver's executemany, converting values once.

    Same values as `conn.execute(insert(table), rows)`, through the same column
    types' bind processors, without SQLAlchemy's per-row parameter machinery,
    which was most of the catch-up time.
    """
    dialect = conn.dialect
    columns = list(table.columns)
    processors = [column.type.bind_processor(dialect) for column in columns]
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    preparer = dialect.identifier_preparer
    statement = (
        f"INSERT INTO {preparer.format_table(table)} "
        f"({', '.join(preparer.format_column(c) for c in columns)}) "
        f"VALUES ({', '.join(mark for _ in columns)})"
    )
    names = [column.name for column in columns]
    values = [
        tuple(
            process(row.get(name)) if process is not None else row.get(name)
            for name, process in zip(names, processors, strict=True)
        )
        for row in rows
    ]
    conn.exec_driver_sql(statement, values)


def schedule_label(policies: PolicySchedule) -> str:
    """Names the schedule's policies and fingerprints their every figure."""
    names = ",".join(policy_key(p) for _, p in policies.entries)
    digest = hashlib.sha256(policies.model_dump_json().encode()).hexdigest()[:12]
    return f"{names} #{digest}"


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
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_PROJECTION",
    "EventFeed",
    "FeedItem",
    "ProjectionConflict",
    "ProjectionRunner",
    "Stage",
    "owner_at",
    "week_of",
]
