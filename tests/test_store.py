"""Store URLs, the stored form of events, and store failures."""

from __future__ import annotations

import json
import re
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

import psycopg
import pytest
from eventsourcing.persistence import (
    IntegrityError,
    InternalError,
    OperationalError,
    ProgrammingError,
)
from hypothesis import given
from hypothesis import strategies as st

from amends import (
    ComplaintDesk,
    ConfigurationError,
    DeskClosed,
    HistoryViolation,
    Stage,
    StoreUnavailable,
)
from amends.infra import reporting, store
from amends.infra.desk import store_errors
from amends.infra.reporting import VIEWS_CONNECT_TIMEOUT
from amends.infra.settings import (
    DEFAULT_STORE_URL,
    redacted_url,
    resolve_store_url,
    store_settings,
)
from amends.infra.store import _lost_a_ddl_race, notification_rows

from helpers import RECEIVE, walk_to


def test_memory_url() -> None:
    assert store_settings("memory://") == {"PERSISTENCE_MODULE": "eventsourcing.popo"}


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///amends.db", "amends.db"),
        ("sqlite:////var/lib/a.db", "/var/lib/a.db"),
    ],
)
def test_sqlite_urls(url: str, path: str) -> None:
    settings = store_settings(url)
    assert settings["PERSISTENCE_MODULE"] == "eventsourcing.sqlite"
    assert settings["SQLITE_DBNAME"] == path


def test_postgres_url_with_options() -> None:
    settings = store_settings(
        "postgresql://alice:s%40cret@db.example:6543/complaints?schema=cs&connect_timeout=2"
    )
    assert settings["POSTGRES_HOST"] == "db.example"
    assert settings["POSTGRES_PORT"] == "6543"
    assert settings["POSTGRES_USER"] == "alice"
    assert settings["POSTGRES_PASSWORD"] == "s@cret"
    assert settings["POSTGRES_DBNAME"] == "complaints"
    assert settings["POSTGRES_SCHEMA"] == "cs"
    assert settings["POSTGRES_CONNECT_TIMEOUT"] == "2"


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("mysql://root@localhost/x", "scheme"),
        ("sqlite://", "sqlite:///"),
        ("postgresql://localhost", "dbname"),
        ("postgresql://localhost/db?colour=red", "unknown option 'colour'"),
        ("postgresql://localhost:notaport/db", "port"),
        # The library opens the file itself: the option was silently ignored.
        ("sqlite:///x.db?mode=ro", r"takes no options \(\?mode=ro\)"),
    ],
)
def test_bad_urls_say_what_is_wrong(url: str, words: str) -> None:
    with pytest.raises(ConfigurationError, match=words):
        store_settings(url)


def test_store_url_comes_from_argument_then_environment_then_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AMENDS_STORE_URL", raising=False)
    assert resolve_store_url(None) == DEFAULT_STORE_URL == "sqlite:///amends.db"
    monkeypatch.setenv("AMENDS_STORE_URL", "memory://")
    assert resolve_store_url(None) == "memory://"
    assert resolve_store_url("sqlite:///x.db") == "sqlite:///x.db"


@pytest.mark.parametrize(
    "variable", ["AMENDS_STORE_URL", "AMENDS_VIEWS_URL", "AMENDS_CIPHER_KEY"]
)
@pytest.mark.parametrize("value", ["", "  "])
def test_a_variable_set_but_blank_is_refused_not_taken_for_unset(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str, value: str
) -> None:
    """A secret that failed to arrive, or a template's blank: taken for
    unset, the store was ./amends.db wherever the process ran, and an empty
    cipher key stored customers' names in the clear."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(variable, value)
    url = None if variable == "AMENDS_STORE_URL" else f"sqlite:///{tmp_path / 's.db'}"
    with (
        pytest.raises(ConfigurationError, match=f"{variable} is set but empty"),
        ComplaintDesk(url) as desk,
    ):
        desk.reports.backlog()
    assert not (tmp_path / "amends.db").exists()


def test_a_url_padded_with_spaces_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A trailing space made a store file whose name ends in one, which the
    next command, given the URL as meant, did not find."""
    padded = f"sqlite:///{tmp_path / 's.db'} "
    monkeypatch.setenv("AMENDS_STORE_URL", padded)
    with pytest.raises(ConfigurationError, match="starts or ends with a space"):
        resolve_store_url(None)
    with pytest.raises(ConfigurationError, match="starts or ends with a space"):
        ComplaintDesk(f"sqlite:///{tmp_path / 's.db'}", views_url=padded)
    assert list(tmp_path.iterdir()) in ([], [tmp_path / "s.db"])


def test_library_environment_variables_cannot_redirect_the_store(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PERSISTENCE_MODULE", "eventsourcing.popo")
    path = tmp_path / "here.db"
    with ComplaintDesk(f"sqlite:///{path}") as desk:
        desk.receive(**RECEIVE)
    assert path.exists()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM stored_events").fetchone() == (1,)


def test_events_are_stored_as_json_under_stable_topics(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with ComplaintDesk(f"sqlite:///{path}") as desk:
        complaint_id = walk_to(desk, Stage.ACKNOWLEDGED)
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT originator_version, topic, state FROM stored_events "
            "ORDER BY originator_version"
        ).fetchall()
    assert [(v, t) for v, t, _ in rows] == [
        (1, "amends.complaint.Received"),
        (2, "amends.complaint.Acknowledged"),
    ]
    payload = json.loads(rows[0][2])
    assert payload["customer"] == "Jo Smith"
    assert payload["severity"] == "high"
    assert "originator_id" not in payload
    assert str(complaint_id).replace("-", "") not in rows[0][2].decode()


def test_a_payload_edited_into_nonsense_is_a_named_history_violation(
    tmp_path: Path,
) -> None:
    path = tmp_path / "a.db"
    with ComplaintDesk(f"sqlite:///{path}") as desk:
        complaint_id = walk_to(desk, Stage.ACKNOWLEDGED)
    with sqlite3.connect(path) as db:
        db.execute(
            "UPDATE stored_events SET state = ? WHERE originator_version = 2",
            (json.dumps({"paraphrase": ""}).encode(),),
        )
    with (
        ComplaintDesk(f"sqlite:///{path}") as desk,
        pytest.raises(HistoryViolation) as caught,
    ):
        desk.get(complaint_id)
    assert caught.value.version == 2
    assert "paraphrase" in str(caught.value)


def test_a_skip_written_into_the_store_is_refused_on_read(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with ComplaintDesk(f"sqlite:///{path}") as desk:
        complaint_id = walk_to(desk, Stage.ACKNOWLEDGED)
    with sqlite3.connect(path) as db:
        db.execute(
            "UPDATE stored_events SET topic = 'amends.complaint.Apologized', state = ? "
            "WHERE originator_version = 2",
            (
                json.dumps(
                    {
                        "apology": "sorry",
                        "by": "ana",
                        "timestamp": "2026-03-02T09:00:00Z",
                    }
                ).encode(),
            ),
        )
    with (
        ComplaintDesk(f"sqlite:///{path}") as desk,
        pytest.raises(HistoryViolation, match="Apologized is not allowed in RECEIVED"),
    ):
        desk.get(complaint_id)


def test_an_unreachable_postgres_is_store_unavailable_at_once_saying_why() -> None:
    """A closed port is refused by the operating system at once: the desk
    says so then, in the driver's words, not after the pool's whole connect
    timeout with only "couldn't get a connection"."""
    url = "postgresql://postgres@127.0.0.1:1/test?connect_timeout=5"
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as caught:
        ComplaintDesk(url)
    assert time.monotonic() - started < 2
    assert "127.0.0.1:1" in str(caught.value)
    assert "Connection refused" in str(caught.value)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"path": "/amends_no_such_db"}, 'database "amends_no_such_db" does not exist'),
        ({"netloc_user": "amends_no_such_role"}, 'role "amends_no_such_role" does not'),
    ],
    ids=["database", "user"],
)
def test_a_database_or_user_the_server_does_not_know_is_a_setting_to_fix(
    postgres_url: str, change: dict[str, str], words: str
) -> None:
    parts = urlsplit(postgres_url)
    if "path" in change:
        parts = parts._replace(path=change["path"])
    else:
        parts = parts._replace(
            netloc=f"{change['netloc_user']}@{parts.hostname}:{parts.port or 5432}"
        )
    with pytest.raises(ConfigurationError, match=re.escape(words)):
        ComplaintDesk(urlunsplit(parts))
    # The same URL for the views: a setting to fix too (exit 2), not a views
    # database to wait for (StoreUnavailable, exit 4), as it was.
    with (
        ComplaintDesk("memory://", views_url=urlunsplit(parts)) as desk,
        pytest.raises(ConfigurationError, match=re.escape(words)),
    ):
        desk.reports.backlog()


def test_a_store_file_that_is_no_database_is_a_setting_to_fix(tmp_path: Path) -> None:
    """A path that names some other file: the library let SQLite's raw
    `DatabaseError` out, and the command line called it a bug (exit 1)."""
    junk = tmp_path / "notes.db"
    junk.write_text("not a database, only notes\n" * 100)
    with pytest.raises(ConfigurationError, match="not a SQLite database"):
        ComplaintDesk(f"sqlite:///{junk}")
    result = run_cli("--store", f"sqlite:///{junk}", "report", "sla", cwd=tmp_path)
    assert result.returncode == 2, result
    assert result.stderr.count("\n") == 1
    assert "not a SQLite database" in result.stderr
    # The same file as the views: a setting to fix too, not a views
    # database to wait for (exit 4).
    with (
        ComplaintDesk("memory://", views_url=f"sqlite:///{junk}") as desk,
        pytest.raises(ConfigurationError, match=r"report views at .* not a SQLite"),
    ):
        desk.reports.backlog()


def test_a_pool_whose_connections_are_all_in_use_is_named_as_such(
    postgres_url: str,
) -> None:
    """The pool's one connection held by another thread: no connection comes
    within the timeout, but the server takes a new one at once, so the
    message says the pool was used up, not that the server is away."""
    url = f"{postgres_url}&pool_size=1&max_overflow=0&connect_timeout=1"
    with ComplaintDesk(url) as desk:
        complaint_id = desk.receive(**RECEIVE)
        pool = desk._app.recorder.datastore.pool  # type: ignore[attr-defined]
        with (
            pool.connection(),
            pytest.raises(StoreUnavailable, match="pool was in use") as caught,
        ):
            desk.get(complaint_id)
        assert "couldn't get a connection" in str(caught.value)
        assert desk.get(complaint_id).version == 1


def test_a_write_that_waits_out_the_lock_timeout_gives_up_at_once(
    postgres_url: str,
) -> None:
    """`lock_timeout` is how long a write waits for the events table's lock.
    The server's "lock timeout" is an OperationalError like a dropped
    connection's, and the write was tried twice more: `lock_timeout=1`
    gave up after 3 s. A lock not granted is no broken connection: the
    command fails once, naming the lock timeout, records nothing, and the
    next command works."""
    from psycopg.sql import SQL, Identifier

    with ComplaintDesk(f"{postgres_url}&lock_timeout=1") as desk:
        complaint_id = desk.receive(**RECEIVE)
        recorder = desk._app.recorder  # type: ignore[attr-defined]
        table = Identifier(recorder.datastore.schema, recorder.events_table_name)
        with psycopg.connect(postgres_url.partition("?")[0]) as holder:
            holder.execute(SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(table))
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="lock timeout"):
                desk.add_note(complaint_id, by="ana", text="waits for the lock")
            waited = time.monotonic() - started
            holder.rollback()
        assert waited < 2, f"gave up after {waited:.1f} s, not about 1 s"
        assert desk.retries == 0
        assert desk.get(complaint_id).version == 1
        desk.add_note(complaint_id, by="ana", text="the lock is free")
        assert desk.get(complaint_id).version == 2


def _drop_pooled_connections(desk: ComplaintDesk, postgres_url: str) -> int:
    """Terminate on the server every idle connection in the desk's store pool
    (as a restart or a proxy would cut them: the pool learns of it only when
    it uses one), and wait until they are gone. How many there were."""
    pool = desk._app.recorder.datastore.pool  # type: ignore[attr-defined]
    with ExitStack() as borrowed:
        pids = [
            borrowed.enter_context(pool.connection()).info.backend_pid
            for _ in range(pool.get_stats()["pool_available"])
        ]
    with psycopg.connect(postgres_url.partition("?")[0], autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s) AS pid", [pids])
        deadline = time.monotonic() + 5
        while admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", [pids]
        ).fetchone() != (0,):
            assert time.monotonic() < deadline, "the connections outlived the drop"
            time.sleep(0.02)
    return len(pids)


@pytest.mark.parametrize("call", ["verify one", "verify all", "seal"])
def test_verify_and_seal_work_at_once_after_the_connections_were_dropped(
    postgres_url: str, call: str
) -> None:
    """`verify()` and `seal()` read the store themselves, not through the
    library's recorder, and those reads were not tried again after a drop:
    each failed once for every dead connection the pool still held (five or
    more calls in a row), where a command or `get` works at once. Now the
    first call after a drop works, as theirs do."""
    with ComplaintDesk(postgres_url) as desk:
        complaint_id = walk_to(desk, Stage.RESOLVED)
        desk.receive(**RECEIVE)
        sealed = desk.seal().complaints
        checks: dict[str, Callable[[], bool]] = {
            "verify one": lambda: desk.verify(complaint_id).ok,
            "verify all": lambda: desk.verify().ok,
            "seal": lambda: desk.seal().complaints == sealed,
        }
        assert _drop_pooled_connections(desk, postgres_url) >= 2
        assert all(checks[call]() for _ in range(3))


def test_a_scan_whose_connection_drops_between_batches_goes_on_from_where_it_was(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scan reads the store in batches, each in a transaction of its own.
    One whose connection broke is read again from the same key; the rows
    already handed out are not handed out again, and none is missed."""
    monkeypatch.setattr(store, "SCAN_BATCH", 2)
    with ComplaintDesk(postgres_url) as desk:
        for _ in range(3):
            walk_to(desk, Stage.ACKNOWLEDGED)
        recorder = desk._app.recorder  # type: ignore[attr-defined]
        whole = list(store.stored_events_in_order(recorder))
        assert len(whole) == 6
        scan = store.stored_events_in_order(recorder)
        read = [next(scan), next(scan)]
        assert _drop_pooled_connections(desk, postgres_url) >= 1
        read.extend(scan)
        assert read == whole


def test_a_store_failure_is_named_in_the_first_line_of_what_the_driver_said() -> None:
    """Drivers add the statement and hints on further lines; the error names
    the store and the failure, in the one line a failure is given (as the
    views' errors do)."""
    said = 'relation "stored_events" does not exist\nLINE 1: SELECT * FROM ...'
    with (
        pytest.raises(StoreUnavailable) as caught,
        store_errors("postgresql://postgres:hunter2@db/x"),
    ):
        raise OperationalError(said)
    assert str(caught.value) == (
        "event store postgresql://postgres:***@db/x failed: "
        'relation "stored_events" does not exist'
    )


def test_an_unwritable_sqlite_path_is_store_unavailable(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable):
        ComplaintDesk(f"sqlite:///{tmp_path}/missing/dir/a.db")


def test_passwords_never_reach_error_messages() -> None:
    url = "postgresql://postgres:hunter2@127.0.0.1:1/test?connect_timeout=1"
    with pytest.raises(StoreUnavailable) as caught:
        ComplaintDesk(url)
    assert "hunter2" not in str(caught.value)


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "amends", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_walkthrough_walks_a_complaint_and_reads_it_back(tmp_path: Path) -> None:
    result = run_cli(
        "--store", f"sqlite:///{tmp_path / 'demo.db'}", "walkthrough", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    for command in ("receive", "acknowledge", "log_prevention"):
        assert command in result.stdout
    assert "stage PREVENTION_LOGGED, owner ben, version 10" in result.stdout


def test_the_store_defaults_to_amends_db_in_the_working_directory(
    tmp_path: Path,
) -> None:
    result = run_cli("walkthrough", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "amends.db").exists()


def test_command_line_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    result = run_cli("--store", "mysql://nope", cwd=tmp_path)
    assert (result.returncode, result.stderr.count("\n")) == (2, 1), result.stderr
    assert "scheme" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_cli(
        "--store", "postgresql://postgres@127.0.0.1:1/x?connect_timeout=1", cwd=tmp_path
    )
    assert result.returncode == 4, result.stderr
    assert "Traceback" not in result.stderr, result.stderr


def test_views_on_a_server_that_never_answers_fail_within_the_timeout() -> None:
    """A PostgreSQL views database that accepts the connection and then says
    nothing (a hung server, a proxy with nothing behind it) makes a report
    fail with `StoreUnavailable` after the default connect timeout, as the
    store does, instead of hanging."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes the handshake; nobody answers
        port = silent.getsockname()[1]
        views = f"postgresql://postgres@127.0.0.1:{port}/test"
        with ComplaintDesk("memory://", views_url=views) as desk:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="report views unavailable"):
                desk.reports.backlog()
            waited = time.monotonic() - started
    assert (
        float(VIEWS_CONNECT_TIMEOUT) - 0.5 <= waited < 2 * float(VIEWS_CONNECT_TIMEOUT)
    )


BAD_OPTIONS = [
    ("?connect_timeout=soon", "connect_timeout must be whole seconds, 1 or more"),
    ("?connect_timeout=0", "connect_timeout must be whole seconds, 1 or more"),
    ("?pre_ping=maybe", "pre_ping must be yes or no, not 'maybe'"),
    ("?pool_size=abc", "pool_size must be a whole number, not 'abc'"),
    ("?max_overflow=-3", "max_overflow must be a whole number, not '-3'"),
    ("?lock_timeout=x", "lock_timeout must be whole seconds"),
    ("?schema=Support", "schema must be a lower-case name"),
    ("?schema=support-eu", "schema must be a lower-case name"),
    ("?schema=support%20eu", "schema must be a lower-case name"),
    ('?schema=a"b', "schema must be a lower-case name"),
]
"""Option values the store cannot use: refused when the URL is read, by
name (before: a bare ValueError, a StoreUnavailable with a syntax error, or
views in another schema than the one named)."""


@pytest.mark.parametrize(
    ("query", "words"),
    [("?colour=blue", "unknown option(s) colour"), *BAD_OPTIONS],
)
def test_a_views_url_with_a_bad_option_is_refused_by_name(
    query: str, words: str
) -> None:
    views = f"postgresql://postgres@127.0.0.1:5432/test{query}"
    with pytest.raises(ConfigurationError, match=re.escape(words)):
        ComplaintDesk("memory://", views_url=views)


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("?colour=blue", "unknown option 'colour'"),
        *BAD_OPTIONS,
        ("?pool_size=0&max_overflow=0", "allow no connection at all"),
    ],
)
def test_a_store_url_with_a_bad_option_is_refused_by_name(
    query: str, words: str
) -> None:
    store = f"postgresql://postgres@127.0.0.1:5432/test{query}"
    with pytest.raises(ConfigurationError, match=re.escape(words)):
        store_settings(store)


@pytest.mark.parametrize("where", ["store", "views"])
def test_an_unescaped_at_sign_in_a_password_is_refused_and_never_shown(
    where: str,
) -> None:
    """The driver reads the host after the last `@`, SQLAlchemy after the
    first: the same URL would reach two hosts, and messages showed the end
    of the password."""
    url = "postgresql://ana:se@cret@127.0.0.1:5432/test"

    def read() -> object:
        if where == "store":
            return store_settings(url)
        return ComplaintDesk("memory://", views_url=url)

    with pytest.raises(ConfigurationError, match="must be written %40") as refused:
        read()
    assert "cret" not in str(refused.value)
    assert redacted_url(url) == "postgresql://ana:***@127.0.0.1:5432/test"
    assert redacted_url("postgresql://ana:p%40ss@h/db?x=1@2") == (
        "postgresql://ana:***@h/db?x=1@2"
    )


_SECRET = st.text(
    st.characters(codec="ascii", categories=["L", "N"]), min_size=6, max_size=20
).map(lambda text: f"S3{text}")


@given(
    secret=_SECRET,
    scheme=st.sampled_from(["postgresql", "postgres", "postgresql+psycopg2", "x"]),
    where=st.sampled_from(
        ["netloc", "query first", "query after", "ssl", "encoded", "sqlite"]
    ),
)
def test_a_url_is_never_shown_with_its_password(
    secret: str, scheme: str, where: str
) -> None:
    """Hidden wherever the URL names it: in the network location, or as
    libpq's `?password=`, which a refusal for naming an option amends does
    not take printed whole; and in every message of a refused URL."""
    url = {
        "netloc": f"{scheme}://ana:{secret}@db.internal:5432/amends",
        "query first": f"{scheme}://ana@db/amends?password={secret}&schema=s",
        "query after": f"{scheme}://ana@db/amends?schema=s&PassWord={secret}#x",
        "ssl": f"{scheme}://ana@db/amends?sslpassword={secret}",
        "encoded": f"{scheme}://ana@db/amends?pass%77ord={secret}",
        "sqlite": f"sqlite:///amends.db?password={secret}",
    }[where]
    assert secret not in redacted_url(url)
    refusal = ""
    try:
        store_settings(url)
    except ConfigurationError as exc:
        refusal = str(exc)
    # Refused for its scheme or its password option; taken with its password
    # in the network location (a scheme amends reads).
    assert bool(refusal) == (
        where != "netloc" or scheme.startswith(("x", "postgresql+"))
    )
    assert secret not in refusal


def test_a_desk_is_named_without_its_password(postgres_url: str) -> None:
    """Its name is in logs and in `DeskClosed`, which requests arriving during
    a shutdown raise; the CLI's follower prints its URL too. (The server
    trusts local connections: it never asks for the password given.)"""
    parts = urlsplit(postgres_url)
    user, _, host = parts.netloc.rpartition("@")
    url = urlunsplit(parts._replace(netloc=f"{user}:S3cretPW@{host}"))
    desk = ComplaintDesk(url)
    assert "S3cretPW" not in repr(desk)
    assert f"{user}:***@" in repr(desk)
    desk.close()
    with pytest.raises(DeskClosed) as closed:
        desk.get(uuid.uuid4())
    assert "S3cretPW" not in str(closed.value)
    follower = subprocess.Popen(
        [sys.executable, "-m", "amends", "--store", url, "project", "--follow"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        first = follower.stdout.readline()
    finally:
        follower.terminate()
        follower.wait(30)
    assert first.startswith("following postgresql://")
    assert "S3cretPW" not in first


def test_a_views_url_that_cannot_work_is_refused_before_the_store_is_opened(
    tmp_path: Path,
) -> None:
    """Refused when the desk is made, not at its first report: a service
    finds a mistyped `AMENDS_VIEWS_URL` when it starts, not hours later."""
    store = tmp_path / "events.db"
    with pytest.raises(ConfigurationError, match=re.escape("views URL 'nosuch://x'")):
        ComplaintDesk(f"sqlite:///{store}", views_url="nosuch://x")
    assert not store.exists()


@pytest.mark.parametrize("views", ["mysql://u@localhost/x", "sqlite+nosuch:///v.db"])
def test_views_on_a_database_amends_does_not_support_are_refused_naming_the_url(
    views: str,
) -> None:
    """Not an `ImportError` of a driver the first report would load."""
    with pytest.raises(ConfigurationError) as refused:
        ComplaintDesk("memory://", views_url=views)
    assert str(refused.value).startswith(f"views URL {views!r}: the views live in")


def test_views_failing_on_postgresql_are_named_with_their_schema(
    postgres_url: str,
) -> None:
    """The schema is what tells one views database from another there; one
    the database lacks is a setting to fix (exit 2), not a failure to retry."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(postgres_url)
    netloc = parts.netloc.replace("@", ":s3cret@", 1)
    missing = f"amends_missing_{uuid.uuid4().hex[:8]}"
    views = urlunsplit((parts.scheme, netloc, parts.path, f"schema={missing}", ""))
    with (
        ComplaintDesk("memory://", views_url=views) as desk,
        pytest.raises(ConfigurationError) as failed,
    ):
        desk.reports.backlog()
    said = str(failed.value)
    assert f"report views at {parts.scheme}://" in said
    assert f"?schema={missing}: " in said
    assert ":***@" in said
    assert "s3cret" not in said


def test_a_store_in_a_schema_the_database_lacks_is_a_setting_to_fix(
    postgres_url: str, tmp_path: Path
) -> None:
    """Not StoreUnavailable (exit 4, "try again"): no retry creates the
    schema. The CLI exits 2, naming the schema, without the password."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(postgres_url)
    netloc = parts.netloc.replace("@", ":s3cret@", 1)
    missing = f"amends_missing_{uuid.uuid4().hex[:8]}"
    url = urlunsplit((parts.scheme, netloc, parts.path, f"schema={missing}", ""))
    with pytest.raises(ConfigurationError) as refused:
        ComplaintDesk(url)
    assert f'schema "{missing}" does not exist' in str(refused.value)
    assert "s3cret" not in str(refused.value)
    result = run_cli("--store", url, "report", "backlog", cwd=tmp_path)
    assert result.returncode == 2, result
    assert result.stderr.count("\n") == 1
    assert missing in result.stderr


def test_a_refused_views_url_does_not_print_its_password() -> None:
    with pytest.raises(ConfigurationError) as refused:
        ComplaintDesk("memory://", views_url="mysql://ana:s3cret@db/views")
    assert "views URL 'mysql://ana:***@db/views'" in str(refused.value)
    assert "s3cret" not in str(refused.value)


def test_views_at_a_sqlite_url_naming_its_driver_are_accepted(tmp_path: Path) -> None:
    views = f"sqlite+pysqlite:///{tmp_path / 'v.db'}"
    with ComplaintDesk("memory://", views_url=views) as desk:
        desk.receive(**RECEIVE)
        assert desk.reports.backlog().reached[Stage.RECEIVED] == 1
    assert (tmp_path / "v.db").exists()


def test_views_that_fail_name_where_they_are_and_not_the_sql(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "v.db"
    with (
        ComplaintDesk("memory://", views_url=f"sqlite:///{missing}") as desk,
        pytest.raises(StoreUnavailable) as failed,
    ):
        desk.reports.backlog()
    assert str(failed.value) == (
        f"report views unavailable at sqlite:///{missing}: unable to open database file"
    )


def test_a_store_url_with_store_options_also_serves_as_the_views_url() -> None:
    url = "postgresql://postgres@127.0.0.1:1/test?pool_size=3&lock_timeout=2&connect_timeout=1"
    with (
        ComplaintDesk("memory://", views_url=url) as desk,
        pytest.raises(StoreUnavailable),
    ):
        desk.reports.backlog()


def caused_by(error: Exception, cause: Exception) -> Exception:
    """`error` as the library raises it: from the driver's `cause`."""
    error.__cause__ = cause
    return error


@pytest.mark.parametrize(
    ("error", "raced"),
    [
        # Each seen when four processes first opened one fresh schema together.
        (ProgrammingError('type "amends_snapshots" already exists'), True),
        (ProgrammingError('relation "amends_events" already exists'), True),
        (InternalError("tuple concurrently updated"), True),
        (
            IntegrityError(
                "duplicate key value violates unique constraint "
                '"pg_type_typname_nsp_index"'
            ),
            True,
        ),
        # Real faults: trying again would only hide them for a while.
        (ProgrammingError('relation "amends_events" does not exist'), False),
        (ProgrammingError("permission denied for schema amends"), False),
        (IntegrityError('duplicate key value violates unique constraint "x"'), False),
        (OperationalError('type "amends_snapshots" already exists'), False),
        # The driver's error names the case by its code, in any language.
        (
            caused_by(
                ProgrammingError("Relation »amends_events« existiert bereits"),
                psycopg.errors.DuplicateTable(),
            ),
            True,
        ),
        (
            caused_by(
                ProgrammingError("le type « amends_snapshots » existe déjà"),
                psycopg.errors.DuplicateObject(),
            ),
            True,
        ),
        (
            caused_by(
                ProgrammingError("keine Berechtigung für Schema amends"),
                psycopg.errors.InsufficientPrivilege(),
            ),
            False,
        ),
    ],
)
def test_only_a_lost_race_to_create_the_schema_is_tried_again(
    error: Exception, raced: bool
) -> None:
    assert _lost_a_ddl_race(error) is raced


def test_the_sqlite_log_read_as_rows_holds_what_the_library_reads(
    tmp_path: Path,
) -> None:
    """The views' feed reads the SQLite log's rows itself (the library's
    reader is slower; other stores are read through it): every window of the
    log, any start and length, must hold what `select_notifications` gives
    for it, in its order."""
    with ComplaintDesk(f"sqlite:///{tmp_path / 'log.db'}") as desk:
        for stage in (Stage.PREVENTION_LOGGED, Stage.APOLOGIZED, Stage.RECEIVED):
            walk_to(desk, stage)
        recorder = desk.reports.runner.feed.recorder
        last = recorder.max_notification_id() or 0
        assert last >= 12
        for after in range(last + 1):
            for limit in (1, 3, last + 5):
                notifications = recorder.select_notifications(after + 1, limit)
                rows = notification_rows(recorder, after, limit)
                assert [(p, UUID(str(i)), v, t, s) for p, i, v, t, s in rows] == [
                    (
                        n.id,
                        UUID(str(n.originator_id)),
                        n.originator_version,
                        n.topic,
                        n.state,
                    )
                    for n in notifications
                ]


def test_the_feed_keeps_parsed_ids_within_its_bound(
    make_desk: Callable[..., ComplaintDesk], monkeypatch: pytest.MonkeyPatch
) -> None:
    """However many complaints outrun the ids it keeps, every event comes with
    its own complaint's id, and the feed never keeps more than its bound."""
    monkeypatch.setattr(reporting, "KNOWN_IDS", 2)
    desk = make_desk()
    ids = [desk.receive(**RECEIVE) for _ in range(5)]
    for complaint_id in reversed(ids):
        walk_to(desk, Stage.APOLOGIZED, complaint_id)
    feed = desk.reports.runner.feed
    expected = [
        (n.id, n.originator_id, n.originator_version, n.topic)
        for n in feed.recorder.select_notifications(1, 100)
    ]
    items = [item for after in range(0, 15, 3) for item in feed.read(after, 3)]
    assert [(i.position, i.complaint_id, i.version, i.topic) for i in items] == [
        (p, UUID(str(i)), v, t) for p, i, v, t in expected
    ]
    assert all(isinstance(i.complaint_id, UUID) for i in items)
    assert len(feed._ids) <= 2
