"""Following the store: on PostgreSQL a follower is woken by the notification
the recorder sends on every write, not by its next poll; it survives losing
that connection, and it stops when told, however long its poll."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from amends import ComplaintDesk
from amends.infra.reporting import PostgresListener, store_listener

from conftest import POSTGRES_URL_VARIABLE, FixedClock
from helpers import RECEIVE

LONG_POLL = timedelta(seconds=60)
"""Longer than any test waits: a follower that looked only when its poll
ran out would never see the events these tests store."""
PROMPT = 5.0
"""Seconds in which a woken follower must have applied a write (it takes
milliseconds; the margin is for a loaded machine)."""


@contextmanager
def following(
    desk: ComplaintDesk, poll: timedelta = LONG_POLL
) -> Iterator[tuple[threading.Event, list[int]]]:
    """`desk.reports.follow` in a thread; yields its stop and the sizes of
    the batches it applied. Leaving stops it and checks it stopped."""
    stop = threading.Event()
    applied: list[int] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            desk.reports.follow(stop, poll=poll, on_batch=applied.append)
        except BaseException as exc:  # pragma: no cover - reported below
            failed.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield stop, applied
    finally:
        stop.set()
        thread.join(PROMPT)
    assert not thread.is_alive(), "the follower did not stop when told"
    assert not failed, failed


def wait_for(condition: Callable[[], bool], seconds: float = PROMPT) -> float:
    """Seconds until `condition` held; fails after `seconds`."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, "not within the time allowed"
        time.sleep(0.01)
    return time.monotonic() - started


def idle(desk: ComplaintDesk) -> Callable[[], bool]:
    """Whether the follower has applied every stored event."""
    return lambda: desk.reports.runner.lag() == 0


def test_a_follower_on_postgresql_applies_a_write_at_once_not_at_its_poll(
    postgres_url: str, clock: FixedClock
) -> None:
    with (
        ComplaintDesk(postgres_url, clock=clock) as writer,
        ComplaintDesk(postgres_url, clock=clock) as follower,
    ):
        writer.receive(**RECEIVE)
        with following(follower) as (_, applied):
            wait_for(lambda: sum(applied) == 1)
            for expected in (2, 3, 4):
                writer.receive(**RECEIVE)
                wait_for(lambda n=expected: sum(applied) == n)  # type: ignore[misc]
        assert follower.reports.backlog(catch_up=False).reached["RECEIVED"] == 4


def test_a_notification_without_a_write_wakes_the_follower_and_applies_nothing(
    postgres_url: str, clock: FixedClock
) -> None:
    with ComplaintDesk(postgres_url, clock=clock) as desk:
        desk.receive(**RECEIVE)
        runner = desk.reports.runner
        looks: list[int] = []
        catch_up = runner.catch_up

        def counted(**kwargs: Any) -> int:
            looks.append(runner.position())
            return catch_up(**kwargs)

        runner.catch_up = counted  # type: ignore[method-assign]
        recorder: Any = desk._app.recorder
        with following(desk) as (_, applied):
            wait_for(lambda: sum(applied) == 1 and len(looks) >= 2)
            before = len(looks)
            # A NOTIFY of the channel's name with no write behind it, as
            # another store in this database with the same table would send.
            with psycopg.connect(
                os.environ[POSTGRES_URL_VARIABLE], autocommit=True
            ) as other:
                for _ in range(3):
                    other.execute(f'NOTIFY "{recorder.channel_name}"')
                    time.sleep(0.05)
            wait_for(lambda: len(looks) > before)
        assert applied == [1]
        assert set(looks[before:]) == {1}
        assert runner.position() == 1


def test_a_follower_that_loses_its_listening_connection_listens_again(
    postgres_url: str, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    poll = timedelta(seconds=4)
    listeners: list[PostgresListener] = []
    with (
        ComplaintDesk(postgres_url, clock=clock) as writer,
        ComplaintDesk(postgres_url, clock=clock) as follower,
    ):
        make = follower.reports.listener

        def kept() -> PostgresListener | None:
            listener = make()
            assert listener is not None
            listeners.append(listener)
            return listener

        follower.reports.listener = kept
        with following(follower, poll=poll) as (_, applied):
            wait_for(lambda: bool(listeners) and _backend(listeners[0]) is not None)
            (listener,) = listeners
            writer.receive(**RECEIVE)
            wait_for(lambda: sum(applied) == 1)
            lost = _backend(listener)
            with psycopg.connect(
                os.environ[POSTGRES_URL_VARIABLE], autocommit=True
            ) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (lost,))
            wait_for(lambda: "listener has no connection" in caplog.text)
            # It polls out the rest of that wait, then listens again.
            wait_for(
                lambda: _backend(listener) not in (None, lost),
                poll.total_seconds() + PROMPT,
            )
            writer.receive(**RECEIVE)
            woken_in = wait_for(lambda: sum(applied) == 2)
        assert woken_in < poll.total_seconds() / 2


def _backend(listener: PostgresListener) -> int | None:
    """The server process of the listener's connection, if it has one."""
    conn = listener._conn
    return None if conn is None else conn.info.backend_pid


def test_a_listener_hears_each_round_of_writes_once(
    postgres_url: str, clock: FixedClock
) -> None:
    stop = threading.Event()
    with ComplaintDesk(postgres_url, clock=clock) as desk:
        listener = store_listener(desk._app.recorder)
        assert listener is not None
        with closing(listener):
            # Just listening: a write may have gone unheard before LISTEN.
            assert listener.wait(LONG_POLL.total_seconds(), stop)
            started = time.monotonic()
            assert not listener.wait(0.3, stop)
            assert time.monotonic() - started >= 0.3
            for _ in range(3):
                desk.receive(**RECEIVE)
            started = time.monotonic()
            assert listener.wait(LONG_POLL.total_seconds(), stop)
            assert time.monotonic() - started < PROMPT
            # The three writes were heard together: one look reads them all.
            assert not listener.wait(0.3, stop)
            stop.set()
            started = time.monotonic()
            assert not listener.wait(LONG_POLL.total_seconds(), stop)
            assert time.monotonic() - started < PROMPT


def test_a_follower_stops_when_told_however_long_its_poll(
    shared_store_url: str, clock: FixedClock
) -> None:
    with ComplaintDesk(shared_store_url, clock=clock) as desk:
        desk.receive(**RECEIVE)
        with following(desk) as (stop, applied):
            wait_for(lambda: sum(applied) == 1)
            time.sleep(0.2)  # idle now: waiting on the long poll
            stop.set()
            started = time.monotonic()
        # `following` joined the thread; it must not have waited for the poll.
        assert time.monotonic() - started < PROMPT


def test_a_follower_on_sqlite_polls(tmp_path: Any, clock: FixedClock) -> None:
    store = f"sqlite:///{tmp_path / 'store.db'}"
    with ComplaintDesk(store, clock=clock) as desk:
        assert desk.reports.listener() is None
        with following(desk, poll=timedelta(seconds=0.05)) as (_, applied):
            desk.receive(**RECEIVE)
            wait_for(lambda: sum(applied) == 1)
            desk.receive(**RECEIVE)
            wait_for(lambda: sum(applied) == 2)


def test_only_postgresql_stores_get_a_listener(
    postgres_url: str, tmp_path: Any
) -> None:
    with ComplaintDesk(postgres_url) as pg, ComplaintDesk("memory://") as memory:
        assert isinstance(store_listener(pg._app.recorder), PostgresListener)
        assert store_listener(memory._app.recorder) is None
