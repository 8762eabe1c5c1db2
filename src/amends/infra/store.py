"""The event store: the eventsourcing library's `Application` and its recorders.

amends adds nothing to how events are written or read; it only chooses the
recorder from a store URL and plugs in its pydantic mapper.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.persistence import (
    ApplicationRecorder,
    IntegrityError,
    InternalError,
    Mapper,
)
from eventsourcing.postgres import PostgresAggregateRecorder
from eventsourcing.sqlite import SQLiteAggregateRecorder
from eventsourcing.utils import Environment, EnvType
from psycopg.sql import SQL, Identifier

from amends.infra.mapper import PydanticMapper

DDL_ATTEMPTS = 5


def _lost_a_ddl_race(exc: BaseException) -> bool:
    """PostgreSQL refuses concurrent `CREATE OR REPLACE` of the same object.

    The library creates its tables, types and functions whenever an
    application starts, so processes starting together can collide; a moment
    later the objects exist and the same statements succeed.
    """
    message = str(exc)
    if isinstance(exc, InternalError):
        return "concurrently" in message
    # Two CREATE ... IF NOT EXISTS at once: the loser trips the catalog's key.
    return isinstance(exc, IntegrityError) and any(
        index in message for index in _CATALOG_INDEXES
    )


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


def complaint_ids(recorder: ApplicationRecorder) -> set[UUID]:
    """Every originator id in the events table.

    The library's recorders read by id or along the notification log; an audit
    needs the ids themselves, so SQLite and PostgreSQL are asked directly
    (an index-only scan), and the in-memory store walks its log.
    """
    if isinstance(recorder, SQLiteAggregateRecorder):
        with recorder.datastore.transaction(commit=False) as cursor:
            cursor.execute(
                f"SELECT DISTINCT originator_id FROM {recorder.events_table_name}"
            )
            return {_uuid(row["originator_id"]) for row in cursor.fetchall()}
    if isinstance(recorder, PostgresAggregateRecorder):
        statement = SQL("SELECT DISTINCT originator_id FROM {schema}.{table}").format(
            schema=Identifier(recorder.datastore.schema),
            table=Identifier(recorder.events_table_name),
        )
        with recorder.datastore.transaction(commit=False) as pg_cursor:
            pg_cursor.execute(statement)
            return {_uuid(row["originator_id"]) for row in pg_cursor.fetchall()}
    ids: set[UUID] = set()
    start = 1
    while batch := recorder.select_notifications(start, 1_000):
        ids.update(_uuid(n.originator_id) for n in batch)
        start = batch[-1].id + 1
    return ids


def _uuid(value: UUID | str) -> UUID:
    return value if isinstance(value, UUID) else UUID(value)
