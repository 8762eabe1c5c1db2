"""The demo (the README's main job): a plausible month, its reports, its charts."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from amends import ComplaintDesk, Stage
from amends.infra.demo import plan, simulate

from conftest import FixedClock


@pytest.mark.parametrize("seed", range(6))
def test_every_simulated_story_fits_the_lifecycle(seed: int) -> None:
    clock = FixedClock(datetime(2026, 6, 1, tzinfo=UTC))
    with ComplaintDesk("memory://", clock=clock) as desk:
        summary = simulate(desk, complaints=40, days=20, seed=seed)
        assert summary.refused == 0
        assert summary.complaints == 40
        assert desk.verify().ok
        backlog = desk.reports.backlog()
        # A month of work leaves complaints at several stages, some reopened.
        assert len(backlog.open_by_stage) >= 2
        assert backlog.reached[Stage.PREVENTION_LOGGED] > 0


def test_the_plan_is_the_same_for_the_same_seed_and_ends_at_now() -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    first = plan(complaints=30, days=10, seed=3, now=now)
    assert first == plan(complaints=30, days=10, seed=3, now=now)
    assert first != plan(complaints=30, days=10, seed=4, now=now)
    assert all(step.at <= now for step in first)
    assert [s.at for s in first] == sorted(s.at for s in first)
    commands = {s.command for s in first}
    assert {"transfer_ownership", "await_customer", "offer_gesture"} <= commands


def test_the_demo_command_prints_both_reports_and_draws_charts(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "amends",
            "demo",
            "--complaints",
            "60",
            "--days",
            "15",
            "--charts",
            str(tmp_path / "charts"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Ownership (as of" in result.stdout
    assert "Time to resolution (as of" in result.stdout
    assert "simulated 60 complaints" in result.stdout
    charts = sorted((tmp_path / "charts").glob("*.png"))
    assert [p.name for p in charts] == [
        "open_backlog.png",
        "sla_by_week.png",
        "ttr_by_owner.png",
    ]
    assert all(p.stat().st_size > 10_000 for p in charts)  # drawn, not blank
    with ComplaintDesk(f"sqlite:///{tmp_path / 'amends.db'}") as desk:
        report = desk.verify()
        assert report.ok
        assert report.complaints == 60
