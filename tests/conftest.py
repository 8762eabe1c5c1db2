"""Fixtures: a desk per store kind, with a fixed clock.

PostgreSQL tests run when AMENDS_TEST_POSTGRES_URL is set (`.ci/run` sets it);
each test works in a schema of its own, dropped at its end, so whole-store
checks (verify, seal) see only that test's complaints.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from amends import ComplaintDesk

POSTGRES_URL_VARIABLE = "AMENDS_TEST_POSTGRES_URL"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class FixedClock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> datetime:
        self.now += timedelta(**kwargs)
        return self.now


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A store URL in a fresh schema of the test PostgreSQL database."""
    base = os.environ.get(POSTGRES_URL_VARIABLE)
    if not base:
        if os.environ.get("CI"):
            pytest.fail(f"{POSTGRES_URL_VARIABLE} must be set in CI")
        pytest.skip(f"{POSTGRES_URL_VARIABLE} is not set: PostgreSQL tests skipped")
    import psycopg

    schema = f"amends_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in base else "?"
    try:
        yield f"{base}{separator}schema={schema}"
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    kind = request.param
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'amends.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return _store_url(request, tmp_path)


@pytest.fixture(params=["sqlite", "postgres"])
def shared_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store that several desks (or processes) can open at once."""
    return _store_url(request, tmp_path)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


def _desk_maker(
    store_url: str, clock: FixedClock
) -> Iterator[Callable[..., ComplaintDesk]]:
    desks: list[ComplaintDesk] = []

    def make(**kwargs: Any) -> ComplaintDesk:
        desk = ComplaintDesk(store_url, clock=clock, **kwargs)
        desks.append(desk)
        return desk

    yield make
    for desk in desks:
        desk.close()


@pytest.fixture
def make_desk(
    store_url: str, clock: FixedClock
) -> Iterator[Callable[..., ComplaintDesk]]:
    yield from _desk_maker(store_url, clock)


@pytest.fixture
def make_shared_desk(
    shared_store_url: str, clock: FixedClock
) -> Iterator[Callable[..., ComplaintDesk]]:
    """Desks that all open the same store."""
    yield from _desk_maker(shared_store_url, clock)


@pytest.fixture
def desk(make_desk: Callable[..., ComplaintDesk]) -> ComplaintDesk:
    return make_desk()
