"""The benchmark report keeps the sections a partial run did not measure.

`python -m bench --sections X` measures X again; the other sections must stay
as the run that measured them wrote them, saying which run that was, and
their figures must still be there for the next run's repeatability note.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from bench.report import (
    CarriedSection,
    Note,
    Row,
    Section,
    Target,
    read_previous,
    render,
    repeatability_note,
)

FIRST = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
SECOND = datetime(2026, 12, 1, 11, 0, tzinfo=UTC)
THIRD = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def section(key: str, value: float, baseline: float) -> Section:
    return Section(
        key=key,
        title=f"Section {key}",
        intro=f"What {key} measures.",
        rows=[
            Row(
                key=f"{key}.row",
                figure=f"{key} figure",
                value=value,
                unit="events/s",
                baseline=baseline,
                baseline_label="raw",
                target=Target(0.85),
            )
        ],
        notes=[Note("Method", f"how {key} was measured --> carefully")],
        settings={"rounds": 3},
    )


def write(path: Path, parts: list[Section | CarriedSection], date: datetime) -> None:
    text = render(
        parts,
        facts=[("CPUs", "2")],
        command="python -m bench",
        date=date,
        source=f"commit {date:%H}",
        duration_seconds=61,
    )
    path.write_text(text, encoding="utf-8")


def test_a_partial_run_keeps_the_other_sections_as_their_run_wrote_them(
    tmp_path: Path,
) -> None:
    report = tmp_path / "benchmarks.md"
    write(report, [section("alpha", 90, 100), section("beta", 50, 100)], FIRST)
    first = read_previous(report)
    assert first is not None
    kept = first.carried("alpha")
    assert kept is not None

    beta = section("beta", 60, 100)
    write(report, [kept, beta], SECOND)
    text = report.read_text(encoding="utf-8")

    assert "## 1. Section alpha" in text
    assert "## 2. Section beta" in text
    assert "how alpha was measured --> carefully" in text
    assert "| alpha figure | 90 events/s | raw: 100 events/s | 0.90 |" in text
    assert (
        "*Carried over from the run of 2026-12-01 10:00 UTC (amends source "
        "commit 10): this run did not measure it again" in text
    )
    assert "| beta figure | 60 events/s |" in text
    assert text.count("## ") == 3  # the machine table and the two sections

    # A third run of beta alone: alpha still says it was measured at 10:00,
    # once, and beta's repeatability note compares with the 11:00 run.
    second = read_previous(report)
    assert second is not None
    assert second.measured("alpha") == ("2026-12-01 10:00 UTC", "commit 10")
    again = second.carried("alpha")
    assert again is not None
    assert again.data["rows"]["alpha.row"]["ratio"] == 0.9
    write(report, [again, section("beta", 61, 100)], THIRD)
    text = report.read_text(encoding="utf-8")
    assert text.count("*Carried over from the run of") == 1
    assert "2026-12-01 10:00 UTC" in text

    note = repeatability_note(section("alpha", 91, 100), read_previous(report), "x")
    assert note is not None
    assert "0.90 in the previous run (2026-12-01 10:00 UTC)" in note.body
    assert "The amends source differed: commit 10 then, x now." in note.body


def test_a_report_without_section_marks_carries_nothing(tmp_path: Path) -> None:
    report = tmp_path / "benchmarks.md"
    write(report, [section("alpha", 90, 100)], FIRST)
    unmarked = report.read_text(encoding="utf-8").replace("<!-- bench-section", "<!--")
    report.write_text(unmarked, encoding="utf-8")
    previous = read_previous(report)
    assert previous is not None
    assert previous.carried("alpha") is None
    # Its figures still serve the repeatability note.
    assert previous.ratios(section("alpha", 1, 1)) == {"alpha.row": 0.9}


def test_a_row_shown_as_context_still_shows_that_it_misses(tmp_path: Path) -> None:
    """Rows a decision leaves unjudged (ADR 0013) keep their target and say
    whether they meet it: the decision never turns a miss into a dash."""
    judged = section("latency", 30, 1)
    judged.rows.append(
        Row(
            key="latency.broad",
            figure="a broad filter's p95",
            value=30,
            unit="ms",
            target=Target(20, on_ratio=False, higher_is_better=False),
            context="ADR 0013",
        )
    )
    out = tmp_path / "benchmarks.md"
    write(out, [judged], FIRST)
    line = next(
        line for line in out.read_text(encoding="utf-8").splitlines() if "broad" in line
    )
    assert line.endswith("| ≤ 20 ms | **no** (context: ADR 0013) |")
