"""Following the store: on PostgreSQL a follower is woken by the notification
the recorder sends on every write, not by its next poll; it survives losing
that connection (and closes it when done), retries calmly when it cannot
connect, and stops when told, however long its poll."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
from sqlalchemy.exc import OperationalError, ProgrammingError

from amends import ComplaintDesk, StoreUnavailable
from amends.infra.reporting import PostgresListener, store_listener
from amends.projections import runner as runner_module

from conftest import POSTGRES_URL_VARIABLE, FixedClock
from helpers import RECEIVE

LONG_POLL = timedelta(seconds=60)
"""Longer than any test waits: a follower that looked only when its poll
ran out would never see the events these tests store."""
PROMPT = 5.0
"""Seconds in which a woken follower must have applied a write (it takes
milliseconds; the margin is for a loaded machine)."""


@dataclass
class Follower:
    """`desk.reports.follow` running in a thread of its own."""

    thread: threading.Thread
    stop: threading.Event
    applied: list[int]
    """The sizes of the batches it applied."""
    failed: list[BaseException]
    """What ended it, if anything but its stop did."""


def start_following(desk: ComplaintDesk, poll: timedelta = LONG_POLL) -> Follower:
    stop = threading.Event()
    applied: list[int] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            desk.reports.follow(stop, poll=poll, on_batch=applied.append)
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return Follower(thread, stop, applied, failed)


@contextmanager
def following(
    desk: ComplaintDesk, poll: timedelta = LONG_POLL
) -> Iterator[tuple[threading.Event, list[int]]]:
    """`desk.reports.follow` in a thread; yields its stop and the sizes of
    the batches it applied. Leaving stops it and checks it stopped."""
    follower = start_following(desk, poll)
    try:
        yield follower.stop, follower.applied
    finally:
        follower.stop.set()
        follower.thread.join(PROMPT)
    assert not follower.thread.is_alive(), "the follower did not stop when told"
    assert not follower.failed, follower.failed


def wait_for(condition: Callable[[], bool], seconds: float = PROMPT) -> float:
    """Seconds until `condition` held; fails after `seconds`."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, "not within the time allowed"
        time.sleep(0.01)
    return time.monotonic() - started


def counting_looks(desk: ComplaintDesk) -> list[int]:
    """The position the desk's runner starts each look at the log from."""
    runner = desk.reports.runner
    looks: list[int] = []
    catch_up = runner.catch_up

    def counted(**kwargs: Any) -> int:
        looks.append(runner.position())
        return catch_up(**kwargs)

    runner.catch_up = counted  # type: ignore[method-assign]
    return looks


def keeping_listeners(desk: ComplaintDesk) -> list[PostgresListener]:
    """Every listener the desk's follower makes, kept for the test to see."""
    listeners: list[PostgresListener] = []
    make = desk.reports.listener

    def kept() -> PostgresListener | None:
        listener = make()
        assert listener is not None
        listeners.append(listener)
        return listener

    desk.reports.listener = kept
    return listeners


def _backend(listener: PostgresListener) -> int | None:
    """The server process of the listener's connection, if it has one."""
    conn = listener._conn
    return None if conn is None else conn.info.backend_pid


def _backends() -> set[int]:
    """The server processes connected to the test database now."""
    with psycopg.connect(os.environ[POSTGRES_URL_VARIABLE], autocommit=True) as c:
        return {pid for (pid,) in c.execute("SELECT pid FROM pg_stat_activity")}


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
        looks = counting_looks(desk)
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
        assert desk.reports.runner.position() == 1


def test_a_follower_that_loses_its_listening_connection_listens_again(
    postgres_url: str, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        ComplaintDesk(postgres_url, clock=clock) as writer,
        ComplaintDesk(postgres_url, clock=clock) as follower,
    ):
        listeners = keeping_listeners(follower)
        with following(follower) as (_, applied):
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
            # It listens again within a retry, not at the end of its poll...
            wait_for(lambda: _backend(listener) not in (None, lost))
            # ... and is woken by the next write.
            writer.receive(**RECEIVE)
            wait_for(lambda: sum(applied) == 2)
            kept = _backend(listener)
            assert kept in _backends()
        # Stopped, the follower closed its listening connection.
        wait_for(lambda: kept not in _backends())


def test_a_listener_that_cannot_connect_is_logged_once_and_retried_calmly(
    tmp_path: Any, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as spare:  # a port nothing listens on
        spare.bind(("127.0.0.1", 0))
        port = spare.getsockname()[1]
    pool = SimpleNamespace(
        conninfo="",
        kwargs={"host": "127.0.0.1", "port": port, "user": "postgres"},
        timeout=1,
    )
    recorder: Any = SimpleNamespace(
        datastore=SimpleNamespace(pool=pool), channel_name="amends_events"
    )
    unreachable = PostgresListener(recorder)
    with ComplaintDesk(f"sqlite:///{tmp_path / 'store.db'}", clock=clock) as desk:
        desk.reports.listener = lambda: unreachable
        looks = counting_looks(desk)
        with following(desk):
            time.sleep(2.5)
        seconds_apart = 2.5 / max(1, len(looks) - 1)
    # A look each retry (about a second), neither a busy loop nor a whole
    # poll between looks.
    assert 2 <= len(looks) <= 6, looks
    assert seconds_apart >= 0.4
    warnings = [r for r in caplog.records if "no connection" in r.getMessage()]
    assert len(warnings) == 1


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
            # The three writes, heard together, woke it once.
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
        looks = counting_looks(desk)
        with following(desk) as (stop, applied):
            # Idle: it looked again, found nothing, and waits on its poll.
            wait_for(lambda: sum(applied) == 1 and len(looks) >= 2)
            time.sleep(0.2)
            stop.set()
            started = time.monotonic()
        # `following` joined the thread; it must not have waited for the poll.
        assert time.monotonic() - started < PROMPT


@pytest.mark.parametrize(
    ("said", "waits"),
    [
        (psycopg.errors.UndefinedTable('relation "amends_view_tracking"'), True),
        (psycopg.errors.UndefinedObject('index "ix_amends_view_x"'), True),
        (psycopg.errors.SyntaxError("syntax error at or near"), False),
    ],
)
def test_a_follower_waits_out_views_a_rebuild_dropped_and_nothing_else(
    clock: FixedClock,
    caplog: pytest.LogCaptureFixture,
    said: Exception,
    waits: bool,
) -> None:
    """`project --rebuild` in another process drops the views and makes them
    again; a PostgreSQL follower that reads meanwhile is told the table is
    not there. It waits and goes on, as on SQLite (where that is an
    `OperationalError`); any other programming error is a bug, and ends it.
    Before, the PostgreSQL follower died with exit 1 (a bug). It looks again
    within a second, not a whole poll later (writes meanwhile notify no one)."""
    with ComplaintDesk("memory://", clock=clock) as desk:
        failing_catch_ups(desk, [ProgrammingError("SELECT ...", {}, said)])
        desk.receive(**RECEIVE)
        follower = start_following(desk)
        applied, ended = follower.applied, follower.failed
        if waits:
            wait_for(lambda: applied == [1])
            follower.stop.set()
        follower.thread.join(PROMPT)
        assert not follower.thread.is_alive()
        if waits:
            assert ended == []
            warning, went_on = [r.getMessage() for r in caplog.records]
            assert "goes on after" in went_on
            assert "UndefinedTable" in warning or "UndefinedObject" in warning
            assert "\n" not in warning  # the driver's first line, not the SQL
        else:
            # The views' failure, said as such (exit 4), the driver's cause kept.
            assert [type(e) for e in ended] == [StoreUnavailable]
            assert isinstance(ended[0].__cause__, ProgrammingError)
            assert applied == []


def test_a_follower_on_sqlite_polls(tmp_path: Any, clock: FixedClock) -> None:
    store = f"sqlite:///{tmp_path / 'store.db'}"
    with ComplaintDesk(store, clock=clock) as desk:
        assert desk.reports.listener() is None
        with following(desk, poll=timedelta(seconds=0.05)) as (_, applied):
            desk.receive(**RECEIVE)
            wait_for(lambda: sum(applied) == 1)
            desk.receive(**RECEIVE)
            wait_for(lambda: sum(applied) == 2)


@pytest.mark.parametrize("how", ["replaced", "removed"])
def test_a_follower_whose_store_file_was_replaced_or_removed_says_so(
    tmp_path: Any, clock: FixedClock, how: str
) -> None:
    """A backup restored by renaming it into place, or the file removed: the
    follower's connections still read the old file, so it went on for ever
    hearing none of the writes to the new one (or failed on "database disk
    image is malformed", as a bug). Now it ends, `StoreUnavailable` saying
    why (exit 4): started again, it reads the file there now."""
    path = tmp_path / "store.db"
    with ComplaintDesk(f"sqlite:///{path}", clock=clock) as desk:
        desk.receive(**RECEIVE)
        with ComplaintDesk(f"sqlite:///{tmp_path / 'backup.db'}", clock=clock) as b:
            b.receive(**RECEIVE)
        follower = start_following(desk, poll=timedelta(seconds=0.05))
        wait_for(lambda: follower.applied == [1])
        if how == "replaced":
            os.replace(tmp_path / "backup.db", path)
        else:
            path.unlink()
        follower.thread.join(PROMPT)
        assert not follower.thread.is_alive()
        (ended,) = follower.failed
        assert isinstance(ended, StoreUnavailable)
        assert f"the store file {path} was {how} since this desk opened it" in str(
            ended
        )


def test_a_follower_on_views_it_cannot_write_ends_rather_than_waits(
    tmp_path: Any, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A read-only views database is not a lock to wait out: the follower
    said "waits" twice a second for ever; it ends, saying why (exit 4)."""
    with ComplaintDesk("memory://", clock=clock) as desk:
        runner = desk.reports.runner
        said = sqlite3.OperationalError("attempt to write a readonly database")
        said.sqlite_errorcode = 1544  # SQLITE_READONLY_DIRECTORY, as Python reports it
        readonly = OperationalError("INSERT ...", {}, said)

        def refused(**kwargs: Any) -> int:
            raise readonly

        runner.catch_up = refused  # type: ignore[method-assign]
        follower = start_following(desk, poll=timedelta(seconds=0.05))
        follower.thread.join(PROMPT)
        assert not follower.thread.is_alive()
        (ended,) = follower.failed
        assert isinstance(ended, StoreUnavailable)
        assert "readonly database" in str(ended)
        assert not [r for r in caplog.records if "waits" in r.getMessage()]


def failing_catch_ups(desk: ComplaintDesk, failures: list[Exception]) -> None:
    """Make each of the desk's catch-ups fail with the next of `failures`
    (the last first) while any remain, then catch up as before."""
    runner = desk.reports.runner
    catch_up = runner.catch_up

    def failing(**kwargs: Any) -> int:
        if failures:
            raise failures.pop()
        return catch_up(**kwargs)

    runner.catch_up = failing  # type: ignore[method-assign]


def follow_through(desk: ComplaintDesk, failures: list[Exception]) -> None:
    """Follow until one complaint received is applied, each look failing with
    the next of `failures` (the last first) while any remain."""
    failing_catch_ups(desk, failures)
    desk.receive(**RECEIVE)
    with following(desk, poll=timedelta(seconds=0.01)) as (_, applied):
        wait_for(lambda: sum(applied) == 1)


def locked(parameters: tuple[str, ...] = ()) -> OperationalError:
    """SQLAlchemy's error for SQLite's "database is locked"."""
    said = sqlite3.OperationalError("database is locked")
    said.sqlite_errorcode = sqlite3.SQLITE_BUSY
    return OperationalError("INSERT ...", parameters, said)


def test_a_follower_waits_out_a_lock_whatever_its_statement_holds(
    clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    """ "database is locked" in a batch for an owner named "read-only team"
    is a lock to wait out: the words in the statement's parameters say
    nothing of the database."""
    with ComplaintDesk("memory://", clock=clock) as desk:
        follow_through(desk, [locked(("read-only team",))])
        assert any("waits" in r.getMessage() for r in caplog.records)


def test_a_follower_waiting_out_a_failure_says_so_once_then_once_a_minute(
    clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Each look at a database still locked said "waits" again: twice a
    second, 7,200 lines an hour's outage. Now the wait is said when it begins
    and when the failure changes (then once a minute, `WAIT_SAID_EVERY`), and
    its end when the follower goes on."""
    other = OperationalError("INSERT ...", (), sqlite3.OperationalError("disk I/O"))
    with ComplaintDesk("memory://", clock=clock) as desk:
        follow_through(desk, [other, *(locked() for _ in range(6))])
    said_lines = [
        r.getMessage() for r in caplog.records if "amends.reports" in r.getMessage()
    ]
    assert len(said_lines) == 3, said_lines
    assert said_lines[0].endswith(") database is locked")
    assert said_lines[1].endswith(") disk I/O (looked 7 times)")
    assert "goes on after" in said_lines[2]


def test_a_long_wait_is_said_again_each_time_the_interval_passes(
    clock: FixedClock,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runner_module, "WAIT_SAID_EVERY", 0.0)
    with ComplaintDesk("memory://", clock=clock) as desk:
        follow_through(desk, [locked() for _ in range(3)])
    said_lines = [r.getMessage() for r in caplog.records]
    assert [line.rsplit(" (", 1)[-1] for line in said_lines[:3]] == [
        "sqlite3.OperationalError) database is locked",
        "looked 2 times)",
        "looked 3 times)",
    ]
    assert "goes on after" in said_lines[3]


def test_only_postgresql_stores_get_a_listener(postgres_url: str) -> None:
    with ComplaintDesk(postgres_url) as pg, ComplaintDesk("memory://") as memory:
        assert isinstance(store_listener(pg._app.recorder), PostgresListener)
        assert store_listener(memory._app.recorder) is None


def test_a_follower_waiting_on_unreachable_views_stops_on_sigterm_naming_them(
    tmp_path: Path,
) -> None:
    """Stopped while its views could not be reached (nothing listens on the
    views' port), the follower's last word was "unexpected error (a bug)"
    and exit 1: reading the views' position to print it failed unmapped. It
    is the views' failure, exit 4, in one line."""
    store = f"sqlite:///{tmp_path / 'a.db'}"
    with ComplaintDesk(store) as desk:
        desk.receive(**RECEIVE)
    env = {
        **os.environ,
        "AMENDS_STORE_URL": store,
        "AMENDS_VIEWS_URL": "postgresql://postgres@127.0.0.1:1/nowhere",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "amends", "project", "--follow", "--poll", "0.05"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stderr is not None
        assert process.stdout.readline().startswith("following ")
        assert "waits" in process.stderr.readline()  # it waits for the views
        process.terminate()
        assert process.wait(PROMPT) == 4
        last = process.stderr.read().strip().splitlines()[-1]
        assert last.startswith("amends: report views unavailable at postgresql"), last
        assert "a bug" not in last
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_follower_of_views_in_a_database_that_does_not_exist_is_refused(
    tmp_path: Path, postgres_url: str
) -> None:
    """Not waited on for ever: a views database that does not exist is the
    setting's fault, refused at the start (exit 2), as `project` refuses it."""
    store = f"sqlite:///{tmp_path / 'a.db'}"
    views = postgres_url.rsplit("/", 1)[0] + "/amends_no_such_database"
    env = {**os.environ, "AMENDS_STORE_URL": store, "AMENDS_VIEWS_URL": views}
    done = subprocess.run(
        [sys.executable, "-m", "amends", "project", "--follow"],
        env=env,
        capture_output=True,
        text=True,
        timeout=PROMPT,
    )
    assert done.returncode == 2, done.stderr
    assert "does not exist" in done.stderr
    assert "following" not in done.stdout


def test_project_follow_on_postgresql_applies_each_write_at_once(
    postgres_url: str, clock: FixedClock
) -> None:
    env = {**os.environ, "AMENDS_STORE_URL": postgres_url}
    process = subprocess.Popen(
        [sys.executable, "-m", "amends", "project", "--follow", "--poll", "60"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().startswith("following ")
        with ComplaintDesk(postgres_url, clock=clock) as desk:
            runner = desk.reports.runner
            wait_for(lambda: runner.position() == 0, 30)  # its views are made
            for expected in (1, 2):
                desk.receive(**RECEIVE)
                wait_for(lambda n=expected: runner.position() == n)  # type: ignore[misc]
        process.terminate()  # SIGTERM: the follower stops between batches
        assert process.wait(PROMPT) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
