"""Reports for the desk: the views' engine, the event feed, and catch-up on ask.

The views live in the event store's database unless `views_url` (or
`AMENDS_VIEWS_URL`) names another SQLAlchemy database.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlsplit, urlunsplit
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder, PersistenceError
from pydantic import ValidationError
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.pool import StaticPool

from amends.domain.errors import FieldProblem, HistoryViolation, InvalidCommand
from amends.domain.events import EVENT_TYPES
from amends.domain.sla import DEFAULT_POLICY_NAME, PolicySchedule, SlaPolicy, preset
from amends.infra.errors import ConfigurationError, StoreUnavailable
from amends.infra.mapper import PydanticMapper, UnreadableRecord
from amends.infra.settings import POSTGRES_URL_OPTIONS
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
from amends.projections.runner import FeedItem, ProjectionRunner

VIEWS_URL_VARIABLE = "AMENDS_VIEWS_URL"
VIEWS_CONNECT_TIMEOUT = "5"
"""Seconds a PostgreSQL views database has to answer, as the store has: an
unreachable server is `StoreUnavailable`, never a report that hangs."""


class StoreFeed:
    """The event store's notification log, decoded for the projection runner."""

    def __init__(self, recorder: ApplicationRecorder, mapper: PydanticMapper) -> None:
        self.recorder = recorder
        self.mapper = mapper

    def read(self, after: int, limit: int) -> Sequence[FeedItem]:
        items = []
        for notification in self.recorder.select_notifications(after + 1, limit):
            originator_id = notification.originator_id
            complaint_id = (
                originator_id
                if isinstance(originator_id, UUID)
                else UUID(originator_id)
            )
            try:
                event_type = EVENT_TYPES[notification.topic]
                payload = self.mapper.decode_payload(notification)
                from_version = payload.pop("class_version", 1)
                payload = event_type.upcast(payload, from_version)
            except (KeyError, UnreadableRecord, ValueError, TypeError) as exc:
                # The views stop here, and say where: verify() names the rest.
                raise HistoryViolation(
                    complaint_id,
                    notification.originator_version,
                    f"the report views cannot read this stored event: {exc}",
                ) from None
            items.append(
                FeedItem(
                    position=notification.id,
                    complaint_id=complaint_id,
                    version=notification.originator_version,
                    topic=notification.topic,
                    payload=payload,
                )
            )
        return items

    def last_position(self) -> int:
        return self.recorder.max_notification_id() or 0


def policy_schedule(
    policies: PolicySchedule | SlaPolicy | str | None,
) -> PolicySchedule:
    """A schedule from a schedule, one policy, a preset name, or the default."""
    if isinstance(policies, PolicySchedule):
        return policies
    if isinstance(policies, SlaPolicy):
        return PolicySchedule.always(policies)
    try:
        return PolicySchedule.always(preset(policies or DEFAULT_POLICY_NAME))
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None


def views_engine(store_url: str, views_url: str | None) -> Engine:
    """The SQLAlchemy engine for the views: beside the events, or at `views_url`."""
    url = views_url or os.environ.get(VIEWS_URL_VARIABLE) or _beside(store_url)
    try:
        return _engine(url)
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        raise ConfigurationError(f"views URL {url!r}: {exc}") from None


def _engine(url: str) -> Engine:
    if url == "sqlite://":
        return create_engine(
            url, poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
    parts = urlsplit(url)
    if parts.scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        query = parse_qs(parts.query)
        schema = query.pop("schema", [None])[-1]
        timeout = query.pop("connect_timeout", [VIEWS_CONNECT_TIMEOUT])[-1]
        # The store's URL serves the views too, so its options are accepted;
        # the ones for the store's own pool and locks do not apply here.
        unknown = sorted(set(query) - POSTGRES_URL_OPTIONS)
        if unknown:
            known = ", ".join(sorted(POSTGRES_URL_OPTIONS))
            raise ValueError(f"unknown option(s) {', '.join(unknown)} (known: {known})")
        if not timeout.isdigit() or int(timeout) < 1:
            raise ValueError(f"connect_timeout must be whole seconds, not {timeout!r}")
        base = urlunsplit(("postgresql+psycopg", parts.netloc, parts.path, "", ""))
        options: dict[str, object] = {"connect_timeout": int(timeout)}
        if schema:
            options["options"] = f"-csearch_path={schema}"
        return create_engine(base, connect_args=options, pool_pre_ping=True)
    if parts.scheme == "sqlite":
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _wal(dbapi_connection: object, _record: object) -> None:
            cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        return engine
    return create_engine(url)


def _beside(store_url: str) -> str:
    if store_url.startswith("memory:"):
        return "sqlite://"
    return store_url


@contextmanager
def _views_errors() -> Iterator[None]:
    """The views' database failing (locked, gone) is a `StoreUnavailable`."""
    try:
        yield
    except (DBAPIError, PersistenceError, OSError) as exc:
        raise StoreUnavailable(f"report views unavailable: {exc}") from exc


class ReportDesk:
    """The five reports, caught up with the store before answering by default."""

    def __init__(
        self,
        runner: ProjectionRunner,
        queries: ReportQueries,
        clock: Callable[[], datetime],
    ) -> None:
        self.runner = runner
        self.queries = queries
        self.clock = clock

    def catch_up(self) -> int:
        """Apply every stored event the views have not seen; returns how many."""
        with _views_errors():
            return self.runner.catch_up()

    def rebuild(self) -> int:
        """Drop the views and replay the whole store into them."""
        with _views_errors():
            return self.runner.rebuild()

    @contextmanager
    def _prepared(
        self, catch_up: bool, **filters: object
    ) -> Iterator[tuple[datetime, ReportFilter]]:
        try:
            report_filter = ReportFilter.model_validate(filters)
        except ValidationError as exc:
            raise InvalidCommand(
                "report",
                [
                    FieldProblem(".".join(map(str, e["loc"])), e["msg"])
                    for e in exc.errors()
                ],
            ) from None
        with _views_errors():
            if catch_up:
                self.runner.catch_up()
            else:
                self.runner.ensure_tables()
            yield self.clock(), report_filter

    def ownership(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        owner: str | None = None,
        category: str | None = None,
        limit: int = DEFAULT_LIMIT,
        catch_up: bool = True,
    ) -> OwnershipReport:
        with self._prepared(
            catch_up, since=since, until=until, owner=owner, category=category
        ) as (now, f):
            return self.queries.ownership(now, f, limit)

    def time_to_resolution(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        owner: str | None = None,
        category: str | None = None,
        limit: int = DEFAULT_LIMIT,
        catch_up: bool = True,
    ) -> TimeToResolutionReport:
        with self._prepared(
            catch_up, since=since, until=until, owner=owner, category=category
        ) as (now, f):
            return self.queries.time_to_resolution(now, f, limit)

    def sla(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        owner: str | None = None,
        category: str | None = None,
        horizon: timedelta = timedelta(hours=24),
        limit: int = DEFAULT_LIMIT,
        catch_up: bool = True,
    ) -> SlaReport:
        with self._prepared(
            catch_up, since=since, until=until, owner=owner, category=category
        ) as (now, f):
            return self.queries.sla(now, f, horizon, limit)

    def backlog(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        owner: str | None = None,
        category: str | None = None,
        catch_up: bool = True,
    ) -> BacklogReport:
        with self._prepared(
            catch_up, since=since, until=until, owner=owner, category=category
        ) as (now, f):
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
        with self._prepared(
            catch_up, since=since, until=until, owner=owner, category=category
        ) as (now, f):
            return self.queries.recurrence(now, f, min_count)
