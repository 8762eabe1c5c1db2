"""Defects found in review, each held by a test so it cannot come back."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from amends import ComplaintDesk, HistoryViolation, InvalidCommand, Stage
from amends.domain.sla import PolicySchedule, Targets, preset
from amends.projections.facts import PolicyMismatch
from amends.projections.runner import ProjectionRunner

from conftest import FixedClock
from helpers import RECEIVE, walk_to

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def test_threads_asking_for_reports_at_once_leave_the_views_whole() -> None:
    clock = FixedClock(START + timedelta(days=30))
    with ComplaintDesk("memory://", clock=clock) as desk:
        for n in range(30):
            complaint = desk.receive(**RECEIVE, at=START + timedelta(hours=n))
            desk.add_note(complaint, by="ana", text="n", at=START + timedelta(hours=n))
        desk.reports.runner.batch_size = 7
        errors: list[BaseException] = []

        def ask() -> None:
            try:
                desk.reports.backlog()
            except BaseException as exc:  # pragma: no cover - the failure itself
                errors.append(exc)

        threads = [threading.Thread(target=ask) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert desk.reports.runner.lag() == 0
        assert desk.reports.backlog().reached[Stage.RECEIVED] == 30


def test_two_runners_at_once_on_postgres_back_off_instead_of_colliding(
    postgres_url: str,
) -> None:
    clock = FixedClock(START + timedelta(days=30))
    with ComplaintDesk(postgres_url, clock=clock) as desk:
        for n in range(40):
            desk.receive(**RECEIVE, at=START + timedelta(minutes=n))
        first = desk.reports.runner
        first.ensure_tables()
        second = ProjectionRunner(
            first.feed, first.engine, PolicySchedule.always(preset("promise_keeping"))
        )
        first.batch_size = second.batch_size = 5
        errors: list[BaseException] = []

        def run(runner: ProjectionRunner) -> None:
            try:
                runner.catch_up()
            except BaseException as exc:  # pragma: no cover - the failure itself
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(r,)) for r in (first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert desk.reports.backlog().reached[Stage.RECEIVED] == 40


def test_views_built_under_another_policy_are_refused_by_name(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    clock = FixedClock(START + timedelta(days=3))
    with ComplaintDesk(url, clock=clock, sla_policies="fca_disp") as desk:
        desk.receive(**RECEIVE, at=START)
        desk.reports.catch_up()
    with ComplaintDesk(url, clock=clock) as other:
        with pytest.raises(PolicyMismatch, match="fca_disp@3 #"):
            other.reports.sla()
        other.reports.rebuild()  # the remedy the message names
        assert other.reports.sla().by_target
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "amends",
            "--store",
            url,
            "--sla",
            "fca_disp",
            "report",
            "sla",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("amends: the report views were built"), (
        result.stderr
    )
    assert "Traceback" not in result.stderr


def test_a_schedule_cannot_reuse_a_name_and_version_for_another_policy() -> None:
    team = preset("promise_keeping").model_copy(update={"name": "team"})
    changed = team.model_copy(
        update={
            "targets": {
                s: Targets(update_every=timedelta(hours=72)) for s in team.targets
            }
        }
    )
    with pytest.raises(ValueError, match="give the changed one a new version"):
        PolicySchedule(entries=((START, team), (START + timedelta(days=30), changed)))
    renewed = changed.model_copy(update={"version": 2})
    PolicySchedule(entries=((START, team), (START + timedelta(days=30), renewed)))


def _edit(path: Path, version: int, change: dict[str, object]) -> None:
    with sqlite3.connect(path) as db:
        (state,) = db.execute(
            "SELECT state FROM stored_events WHERE originator_version = ?", (version,)
        ).fetchone()
        data = {**json.loads(state), **change}
        db.execute(
            "UPDATE stored_events SET state = ? WHERE originator_version = ?",
            (json.dumps(data).encode(), version),
        )


def test_a_naive_timestamp_on_the_newest_event_is_a_finding(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with ComplaintDesk(f"sqlite:///{path}") as desk:
        complaint = walk_to(desk, Stage.ACKNOWLEDGED)
    _edit(path, 2, {"timestamp": "2026-01-05T10:00:00"})
    with ComplaintDesk(f"sqlite:///{path}") as desk:
        report = desk.verify()
        bundle = desk.export_case(complaint)
    assert {(f.kind, f.version) for f in report.findings} >= {("unreadable", 2)}
    assert not bundle.verify().ok


def test_envelope_names_smuggled_into_a_payload_are_a_finding(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with ComplaintDesk(f"sqlite:///{path}") as desk:
        walk_to(desk, Stage.APOLOGIZED)
        seal = desk.seal()
    _edit(path, 2, {"topic": "x", "originator_version": 9})
    with ComplaintDesk(f"sqlite:///{path}") as desk:
        report = desk.verify(seal=seal)
    assert ("unreadable", 2) in {(f.kind, f.version) for f in report.findings}


def test_a_bad_stored_row_stops_the_views_with_a_named_violation(
    tmp_path: Path,
) -> None:
    path = tmp_path / "a.db"
    with ComplaintDesk(f"sqlite:///{path}") as desk:
        walk_to(desk, Stage.ACKNOWLEDGED)
    with sqlite3.connect(path) as db:
        db.execute(
            "UPDATE stored_events SET state = ? WHERE originator_version = 2", (b"{",)
        )
    with (
        ComplaintDesk(f"sqlite:///{path}") as desk,
        pytest.raises(HistoryViolation) as caught,
    ):
        desk.reports.backlog()
    assert caught.value.version == 2
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "amends",
            "--store",
            f"sqlite:///{path}",
            "report",
            "backlog",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stderr.count("\n")) == (3, 1), result.stderr


def test_execute_refuses_arguments_named_like_its_own_parameters() -> None:
    with ComplaintDesk("memory://") as desk:
        complaint = desk.receive(**RECEIVE)
        for command, arguments in (
            ("receive", {**RECEIVE, "complaint_id": complaint}),
            ("add_note", {"by": "ana", "text": "t", "command_type": "x"}),
        ):
            target = None if command == "receive" else complaint
            with pytest.raises(InvalidCommand) as caught:
                desk.execute(command, target, **arguments)
            assert set(caught.value.fields) & {"complaint_id", "command_type"}


def test_command_line_environment_problems_are_one_line(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    for args, env in (
        (["demo", "--complaints", "3", "--charts", str(blocked / "charts")], {}),
        (["report", "backlog"], {"AMENDS_VIEWS_URL": "nosuch://x"}),
    ):
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "amends",
                "--store",
                f"sqlite:///{tmp_path / 'a.db'}",
                *args,
            ],
            capture_output=True,
            text=True,
            check=False,
            cwd=tmp_path,
            env={**__import__("os").environ, **env},
        )
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
