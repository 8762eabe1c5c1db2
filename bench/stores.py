"""Fresh, isolated stores: a new SQLite file or a new PostgreSQL schema per run.

Every measurement starts from an empty store so that no run reads what an
earlier one wrote (index depth, WAL size and table bloat would otherwise favour
whichever ran first). amends gets a store URL; the bare library gets the
eventsourcing settings amends itself derives from such a URL (same lock
timeout, same pool), so that the store is the same and only the code differs.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit
from uuid import uuid4

import psycopg
from psycopg import sql

from bench.harness import RunConfig


@dataclass(frozen=True)
class StoreTarget:
    """A kind of store a section measures on: SQLite always, PostgreSQL if asked."""

    kind: str
    """"sqlite" or "postgresql"."""
    label: str
    postgres_url: str | None = None


@dataclass(frozen=True)
class FreshStore:
    """One empty store, addressed both ways."""

    amends_url: str
    raw_env: dict[str, str]
    where: str


@dataclass(frozen=True)
class PostgresAddress:
    host: str
    port: int
    dbname: str
    user: str
    password: str
    query: str

    @classmethod
    def parse(cls, url: str) -> PostgresAddress:
        parts = urlsplit(url)
        dbname = unquote(parts.path.lstrip("/"))
        if not parts.hostname or not dbname:
            raise ValueError(
                "AMENDS_TEST_POSTGRES_URL: write postgresql://user@host/db"
            )
        return cls(
            host=parts.hostname,
            port=parts.port or 5432,
            dbname=dbname,
            user=unquote(parts.username or "postgres"),
            password=unquote(parts.password or ""),
            query=parts.query,
        )

    def connect(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host=self.host,
            port=self.port,
            dbname=self.dbname,
            user=self.user,
            password=self.password or None,
            autocommit=True,
            connect_timeout=5,
        )


def store_targets(config: RunConfig) -> list[StoreTarget]:
    targets = [StoreTarget("sqlite", "SQLite file")]
    if config.postgres_url:
        targets.append(StoreTarget("postgresql", "PostgreSQL", config.postgres_url))
    return targets


@contextmanager
def fresh_store(target: StoreTarget) -> Iterator[FreshStore]:
    """An empty store for one measurement, removed afterwards.

    Close every desk and application on it before leaving the block: the
    PostgreSQL schema is dropped then.
    """
    if target.kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="amends-bench-") as directory:
            path = Path(directory) / "events.db"
            yield FreshStore(
                amends_url=f"sqlite:///{path}",
                raw_env={
                    "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                    "SQLITE_DBNAME": str(path),
                    "SQLITE_LOCK_TIMEOUT": "10",
                },
                where=str(path),
            )
        return
    assert target.postgres_url is not None
    address = PostgresAddress.parse(target.postgres_url)
    schema = f"bench_{uuid4().hex[:12]}"
    with address.connect() as connection:
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        base, _, query = target.postgres_url.partition("?")
        options = f"{query}&schema={schema}" if query else f"schema={schema}"
        amends_url = f"{base}?{options}"
        yield FreshStore(
            amends_url=amends_url,
            raw_env={
                "PERSISTENCE_MODULE": "eventsourcing.postgres",
                "POSTGRES_DBNAME": address.dbname,
                "POSTGRES_HOST": address.host,
                "POSTGRES_PORT": str(address.port),
                "POSTGRES_USER": address.user,
                "POSTGRES_PASSWORD": address.password,
                "POSTGRES_CONNECT_TIMEOUT": "5",
                "POSTGRES_POOL_SIZE": "5",
                "POSTGRES_MAX_OVERFLOW": "5",
                "POSTGRES_SCHEMA": schema,
            },
            where=f"schema {schema}",
        )
    finally:
        with address.connect() as connection:
            connection.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(schema)
                )
            )


def postgres_server_version(url: str) -> str:
    """The server's version string, for the report's machine facts."""
    with PostgresAddress.parse(url).connect() as connection:
        row = connection.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "unknown"


def redacted(url: str) -> str:
    """The URL without its password, fit for a report that gets committed."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
