"""Small builders shared by the desk tests, and raw access to a store."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from amends import ComplaintDesk, Stage
from amends.domain.values import MAX_TEXT_LENGTH
from amends.infra import importer

FAR_FUTURE = datetime(2099, 1, 1, tzinfo=UTC)

RECEIVE: dict[str, Any] = {
    "by": "ana",
    "customer": "Jo Smith",
    "summary": "Charged twice for March",
    "channel": "phone",
    "category": "billing",
    "severity": "high",
    "expectation": "Refund of the duplicate charge",
}


def walk_to(
    desk: ComplaintDesk, stage: Stage, complaint_id: UUID | None = None
) -> UUID:
    """Receive a complaint (unless given) and move it forward until `stage`."""
    if complaint_id is None:
        complaint_id = desk.receive(**RECEIVE)
    while (current := desk.get(complaint_id).stage) is not stage:
        step_forward(desk, complaint_id, current)
    return complaint_id


def step_forward(desk: ComplaintDesk, complaint_id: UUID, stage: Stage) -> None:
    owner = desk.get(complaint_id).owner
    if stage is Stage.RECEIVED:
        desk.acknowledge(complaint_id, by=owner, paraphrase="You were billed twice.")
    elif stage is Stage.ACKNOWLEDGED:
        desk.apologize(complaint_id, by=owner, apology="I am sorry.")
    elif stage is Stage.APOLOGIZED:
        at = desk.get(complaint_id).last_event_at
        desk.commit_plan(
            complaint_id, by=owner, steps=["Refund"], due=at + timedelta(days=1)
        )
    elif stage in (Stage.PLAN_COMMITTED,):
        desk.post_update(complaint_id, by=owner, note="Refund requested.")
    elif stage is Stage.UPDATING:
        desk.resolve(
            complaint_id, by=owner, resolution="Refunded", explanation="Retry bug."
        )
    elif stage is Stage.RESOLVED:
        desk.confirm_satisfaction(complaint_id, by=owner, satisfied=True)
    elif stage is Stage.SATISFACTION_CONFIRMED:
        desk.log_prevention(
            complaint_id,
            by=owner,
            root_cause="Retries",
            preventive_action="Idempotency keys",
            informed=["payments"],
        )
    else:
        raise AssertionError(f"no step forward from {stage}")


def valid_arguments(command: str, owner: str) -> dict[str, Any]:
    """Arguments that are valid on their own, for any command but receive."""
    other = "zed" if owner != "zed" else "yan"
    return {
        "acknowledge": {"paraphrase": "You were billed twice."},
        "apologize": {"apology": "Sorry."},
        "commit_plan": {"steps": ["Refund"], "due": FAR_FUTURE},
        "post_update": {"note": "Working on it."},
        "resolve": {"resolution": "Refunded", "explanation": "Bug."},
        "confirm_satisfaction": {"satisfied": True},
        "log_prevention": {
            "root_cause": "Bug",
            "preventive_action": "Fix",
            "informed": ["team"],
        },
        "transfer_ownership": {"to": other, "reason": "Leave", "customer_told": False},
        "add_note": {"text": "Called back."},
        "await_customer": {"reason": "Waiting for the bank statement"},
        "customer_replied": {"note": "Statement received"},
        "offer_gesture": {"description": "Voucher"},
    }[command] | {"by": owner}


ODD_TEXTS = [
    "",
    " ",
    "\t\n",
    "\x00",
    "bell\x07",
    "\x1b[31mred",
    "\ud800",
    "\u202eevil",
    "\u200b",
    "\u2028",
    "e\u0301",
    "🙂" * 3,
    "x" * (MAX_TEXT_LENGTH + 1),
    "y" * 100_000,
]
"""Text no field should take or choke on: blank, control and bidi characters,
a lone surrogate, combining marks, over the length limit, huge."""


class RawStore:
    """Edits the events table behind amends' back, as a tamperer would."""

    def __init__(self, store_url: str) -> None:
        self.url = store_url
        self.sqlite = store_url.startswith("sqlite")

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        if self.sqlite:
            db = sqlite3.connect(self.url.removeprefix("sqlite:///"))
            try:
                yield db.cursor()
                db.commit()
            finally:
                db.close()
        else:
            import psycopg

            base, _, schema = self.url.partition("?schema=")
            with psycopg.connect(base, autocommit=True) as conn, conn.cursor() as cur:
                cur.execute(f'SET search_path TO "{schema}"')
                yield cur

    def _event(self, complaint_id: UUID, version: int) -> tuple[str, str, str, Any]:
        """The events table, its parameter mark, and the clause (with its
        parameters) that picks one event."""
        if self.sqlite:
            table, p, cid = "stored_events", "?", complaint_id.hex
        else:
            table, p, cid = "amends_events", "%s", complaint_id
        where = f"WHERE originator_id = {p} AND originator_version = {p}"
        return table, p, where, (cid, version)

    def state(self, complaint_id: UUID, version: int) -> dict[str, Any]:
        return dict(json.loads(self.stored_state(complaint_id, version)))

    def stored_state(self, complaint_id: UUID, version: int) -> bytes:
        """The event's state as stored (encrypted, if the store is)."""
        table, _, where, key = self._event(complaint_id, version)
        with self._cursor() as cur:
            cur.execute(f"SELECT state FROM {table} {where}", key)
            (state,) = cur.fetchone()
        return bytes(state)

    def set_state(
        self,
        complaint_id: UUID,
        version: int,
        state: dict[str, Any] | bytes,
        topic: str = "",
    ) -> None:
        """Store `state` as the event's (a dict as plain JSON, bytes as given)."""
        table, p, where, key = self._event(complaint_id, version)
        changes = {
            "state": state if isinstance(state, bytes) else json.dumps(state).encode(),
            **({"topic": topic} if topic else {}),
        }
        assignments = ", ".join(f"{column} = {p}" for column in changes)
        with self._cursor() as cur:
            cur.execute(
                f"UPDATE {table} SET {assignments} {where}", (*changes.values(), *key)
            )

    def delete(self, complaint_id: UUID, version: int) -> None:
        table, _, where, key = self._event(complaint_id, version)
        with self._cursor() as cur:
            cur.execute(f"DELETE FROM {table} {where}", key)

    def swap(self, complaint_id: UUID, first: int, second: int) -> None:
        """Swap two events' positions in the complaint's sequence."""
        with self._cursor() as cur:
            for old, new in ((first, -1), (second, first), (-1, second)):
                table, p, where, key = self._event(complaint_id, old)
                cur.execute(
                    f"UPDATE {table} SET originator_version = {p} {where}", (new, *key)
                )


def outcome_within(seconds: float, call: Callable[[], Any]) -> Any:
    """What `call` returns or raises, run in a thread given `seconds` to end,
    so that a test of something that once waited for ever fails instead."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:  # handed to the test, in its thread
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    return outcome[0]


@contextmanager
def fifo(path: Path) -> Iterator[Path]:
    """A named pipe nobody writes to; on leaving, a reader still waiting on
    it (a regression) is let go: it reads the end of an empty pipe."""
    os.mkfifo(path)
    try:
        yield path
    finally:
        with suppress(OSError):  # no reader waiting: nothing to let go
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))


def judges_die(monkeypatch: pytest.MonkeyPatch, case: str | None = None) -> Any:
    """Make an import's forked workers die as they decide `case` (any case
    when None); returns the judge as it was."""
    parent, judge = os.getpid(), importer._Judge.__call__

    def dying(self: Any, decided: Any) -> Any:
        if case is None or decided.key == case:
            kill_if_forked(parent)
        return judge(self, decided)

    monkeypatch.setattr(importer._Judge, "__call__", dying)
    return judge


def kill_if_forked(parent: int) -> None:
    """End this process at once, as the kernel's out-of-memory killer would,
    unless it is the test's own (`parent`)."""
    if os.getpid() != parent:
        os.kill(os.getpid(), signal.SIGKILL)


def load_rows(store_url: str, path: Path) -> set[UUID]:
    """Insert the stored rows of a fixture (JSON Lines of id, version, topic
    and state, as an earlier release wrote them) with the library's recorder
    alone; returns the complaint ids."""
    from eventsourcing.persistence import StoredEvent

    from amends.infra.settings import store_settings
    from amends.infra.store import EventStoreApplication

    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    app = EventStoreApplication(store_settings(store_url))
    try:
        app.recorder.insert_events(
            [
                StoredEvent(
                    originator_id=UUID(r["originator_id"]),
                    originator_version=r["originator_version"],
                    topic=r["topic"],
                    state=r["state"].encode("utf-8"),
                )
                for r in rows
            ]
        )
    finally:
        app.close()
    return {UUID(r["originator_id"]) for r in rows}


def layout_beside(step: int) -> str:
    """The views layout `step` releases after this one's (before, if negative)."""
    from amends.projections.runner import VIEWS_FORMAT

    return f"views/{int(VIEWS_FORMAT.removeprefix('views/')) + step}"


def relabel_views(store: Path, layout: str) -> None:
    """Make a SQLite store's views' tracking row name `layout`, as a release
    writing that layout would have left it."""
    from amends.projections.runner import VIEWS_FORMAT

    with sqlite3.connect(store) as db:
        db.execute(
            "UPDATE amends_view_tracking SET policies = ? || substr(policies, ?)",
            (layout, len(VIEWS_FORMAT) + 1),
        )
