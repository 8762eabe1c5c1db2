"""Reliability drills: concurrent writers on PostgreSQL, two SQLite processes.

Bounded (a few thousand commands), so they run in every `.ci/run`; the
figures they print are the ones `docs/reliability.md` reports.
"""

from __future__ import annotations

import multiprocessing
import random
import sqlite3
from collections import Counter
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from amends import (
    ComplaintDesk,
    ConcurrencyConflict,
    InvalidCommand,
    InvalidTransition,
    Stage,
    StoreUnavailable,
)
from amends.domain.complaint import replay
from amends.domain.sla import PolicySchedule, preset
from amends.projections.reports import ReportFilter
from oracle import Oracle

from helpers import RECEIVE, valid_arguments
from spec import ALL_COMMANDS, allowed, is_legal_walk

WORKERS = 4
COMMANDS_PER_WORKER = 500
COMPLAINTS = 50


def _worker(store_url: str, ids: list[str], seed: int, out: Any) -> None:
    """Send commands, valid and not, at shared complaints; report every outcome."""
    rng = random.Random(seed)
    accepted: list[tuple[str, int, str]] = []
    outcomes: Counter[str] = Counter()
    with ComplaintDesk(store_url, max_attempts=10) as desk:
        for _ in range(COMMANDS_PER_WORKER):
            complaint_id = rng.choice(ids)
            seen = desk.get(complaint_id)
            if rng.random() < 0.7 and allowed(seen.stage, seen.waiting):
                command = rng.choice(sorted(allowed(seen.stage, seen.waiting)))
            else:
                command = rng.choice(sorted(ALL_COMMANDS))
            arguments = valid_arguments(command, seen.owner)
            if command == "confirm_satisfaction":
                arguments["satisfied"] = rng.random() < 0.7
                arguments["reason"] = "Still not right"
            if rng.random() < 0.1:
                arguments["by"] = " "  # invalid on purpose
            try:
                view = getattr(desk, command)(complaint_id, **arguments)
            except InvalidTransition:
                outcomes["refused: wrong stage"] += 1
            except InvalidCommand:
                outcomes["refused: bad arguments"] += 1
            except ConcurrencyConflict:
                outcomes["refused: conflict"] += 1
            else:
                outcomes["accepted"] += 1
                accepted.append((complaint_id, view.version, command))
        outcomes["retried"] = desk.retries
    out.put((accepted, dict(outcomes)))


def test_concurrent_writers_on_postgres_lose_nothing(postgres_url: str) -> None:
    clock_start = datetime.now(UTC) - timedelta(days=1)
    with ComplaintDesk(postgres_url) as desk:
        ids = [str(desk.receive(**RECEIVE, at=clock_start)) for _ in range(COMPLAINTS)]
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    processes = [
        context.Process(target=_worker, args=(postgres_url, ids, seed, queue))
        for seed in range(WORKERS)
    ]
    for process in processes:
        process.start()
    results = [queue.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    totals: Counter[str] = Counter()
    accepted: list[tuple[str, int, str]] = []
    for worker_accepted, outcomes in results:
        accepted.extend(worker_accepted)
        totals.update(outcomes)
    sent = WORKERS * COMMANDS_PER_WORKER
    print(f"\nconcurrent writers: {dict(totals)} of {sent} sent")
    assert sum(v for k, v in totals.items() if k != "retried") == sent
    assert totals["accepted"] > sent // 4
    assert totals["retried"] > 0, "the drill raced no writer: it proves nothing"

    with ComplaintDesk(postgres_url, cache_size=0, snapshot_every=0) as reader:
        stored = {UUID(i): reader.events(UUID(i)) for i in ids}
        # No event lost: every accepted command is in the store, where it said.
        for complaint_id, version, command in accepted:
            events = stored[UUID(complaint_id)]
            assert len(events) >= version
            history = reader.history(complaint_id)
            assert history.records[version - 1].command == command
        # Everything stored is a legal walk, and reads back as its replay.
        assert len(accepted) == sum(len(e) - 1 for e in stored.values())
        for complaint_id, events in stored.items():
            assert is_legal_walk(reader.history(complaint_id).stages)
            assert reader.get(complaint_id) == replay(events)
        assert reader.verify().ok
        # And the reports equal the oracle's.
        schedule = PolicySchedule.always(preset("promise_keeping"))
        reader.reports.catch_up()
        now = datetime.now(UTC)
        oracle = Oracle(stored, schedule)
        f = ReportFilter()
        assert reader.reports.queries.backlog(now, f) == oracle.backlog(now, f)
        assert reader.reports.queries.ownership(now, f, 10) == oracle.ownership(
            now, f, 10
        )


def _sqlite_writer(store_url: str, seed: int, out: Any) -> None:
    rng = random.Random(seed)
    made, busy = 0, 0
    with ComplaintDesk(store_url) as desk:
        for _ in range(150):
            try:
                complaint_id = desk.receive(**RECEIVE)
                desk.add_note(complaint_id, by="ana", text=f"writer {seed}")
                made += 2
            except StoreUnavailable:
                busy += 1
            if rng.random() < 0.1:
                try:
                    desk.reports.catch_up()
                except StoreUnavailable:
                    busy += 1
    out.put((made, busy))


def test_two_processes_share_one_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    store_url = f"sqlite:///{path}"
    ComplaintDesk(store_url).close()  # create the tables once
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    processes = [
        context.Process(target=_sqlite_writer, args=(store_url, seed, queue))
        for seed in range(2)
    ]
    for process in processes:
        process.start()
    results = [queue.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    print(f"\ntwo SQLite writers (events made, busy errors): {results}")
    assert all(made > 0 for made, _ in results), "both made progress"
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with ComplaintDesk(store_url) as desk:
        report = desk.verify()
        assert report.ok
        assert report.events == sum(made for made, _ in results)
        backlog = desk.reports.backlog()
        assert backlog.reached[Stage.RECEIVED] == report.complaints


def test_dropped_postgres_connections_are_survived(postgres_url: str) -> None:
    import psycopg

    base = postgres_url.partition("?")[0]
    with ComplaintDesk(postgres_url) as desk:
        complaint_id = desk.receive(**RECEIVE)
        with psycopg.connect(base, autocommit=True) as admin:
            dropped = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE pid <> pg_backend_pid() AND datname = current_database() "
                "AND backend_type = 'client backend' AND application_name = ''"
            ).fetchone()
        assert dropped is not None
        assert dropped[0] >= 1
        with suppress(StoreUnavailable):  # refused whole; the next must work
            desk.add_note(complaint_id, by="ana", text="after the drop")
        desk.add_note(complaint_id, by="ana", text="once more")
        notes = list(desk.events(complaint_id)[1:])
        assert 1 <= len(notes) <= 2
        assert desk.verify(complaint_id).ok


def _open_and_receive(store_url: str, out: Any) -> None:
    with ComplaintDesk(store_url) as desk:
        out.put(str(desk.receive(**RECEIVE)))


def test_processes_starting_together_on_a_fresh_postgres_schema(
    postgres_url: str,
) -> None:
    """Each start creates the library's tables, types and functions: they race."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    processes = [
        context.Process(target=_open_and_receive, args=(postgres_url, queue))
        for _ in range(WORKERS)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [p.exitcode for p in processes] == [0] * WORKERS
    ids = {queue.get(timeout=10) for _ in processes}
    assert len(ids) == WORKERS
    with ComplaintDesk(postgres_url) as desk:
        assert desk.verify().complaints == WORKERS
