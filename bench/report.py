"""The report: sections of measured rows, rendered into `docs/benchmarks.md`.

A section is data (`Section`: a title, `Row`s, `Note`s), not prose, so that
every section renders the same table (figure, measured, baseline from the same
run, ratio, target, met) and so that the next run can read this run's figures
back from the JSON embedded at the end of the file to say how repeatable they
were. Sections are registered in `bench/__main__.py`; see `bench/__init__.py`
for how to add one.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import sqlite3
import subprocess
import time
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.harness import median

DATA_MARKER = "bench-data"
SECTION_MARKER = "bench-section"
"""Marks where each section starts, so a later run of fewer sections
(`--sections`) can keep the others as they were."""
REPEATABILITY_TOLERANCE = 0.10
"""Two runs' ratios agree when they differ by at most this share."""


@dataclass(frozen=True)
class Target:
    """What a row should reach: a ratio to its baseline, or an absolute value."""

    threshold: float
    on_ratio: bool = True
    higher_is_better: bool = True

    def describe(self, unit: str) -> str:
        sign = "≥" if self.higher_is_better else "≤"
        if self.on_ratio:
            return f"{sign} {self.threshold:g} of baseline"
        return f"{sign} {_number(self.threshold)} {unit}"

    def met_by(self, value: float, ratio: float | None) -> bool | None:
        measured = ratio if self.on_ratio else value
        if measured is None:
            return None
        if self.higher_is_better:
            return measured >= self.threshold
        return measured <= self.threshold


@dataclass(frozen=True)
class Row:
    """One measured figure, with the baseline it is judged against, if any.

    `key` is stable across runs ("sqlite.amends"): the repeatability note pairs
    rows of two runs by it.
    """

    key: str
    figure: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_label: str = ""
    target: Target | None = None
    paired_ratio: float | None = None
    """The ratio when the section measured it pair by pair (the median of
    each round's figure over the baseline measured beside it), which a slow
    spell of the machine moves less than the ratio of the two medians."""
    context: str = ""
    """Why the row is shown beside its target but not judged by it (an ADR),
    if so: whether it meets the target still shows, so a miss is never
    hidden by the decision not to judge it."""

    @property
    def ratio(self) -> float | None:
        if self.paired_ratio is not None:
            return self.paired_ratio
        if self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline

    @property
    def met(self) -> bool | None:
        return self.target.met_by(self.value, self.ratio) if self.target else None


@dataclass(frozen=True)
class Note:
    """A titled paragraph under a section's table; the body may be Markdown."""

    title: str
    body: str


@dataclass
class Section:
    """One part of the report: what was measured, the rows, and what to know."""

    key: str
    title: str
    intro: str
    rows: list[Row] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    """What shapes the figures (sizes, rounds, stores): runs compare only when
    these are equal."""


@dataclass(frozen=True)
class CarriedSection:
    """A section of an earlier report that this run did not measure again, kept
    as it was written, with the run that measured it."""

    key: str
    markdown: str
    """From its heading to the next section's marker."""
    data: dict[str, Any]
    """Its embedded figures (settings, rows, date, source)."""


@dataclass(frozen=True)
class PreviousRun:
    """The figures a previous report embedded, for the repeatability note."""

    date: str
    source: str
    sections: dict[str, dict[str, Any]]
    markdown: dict[str, str] = field(default_factory=dict)
    """Each section's text by key, where the report marked its sections."""

    def ratios(self, section: Section) -> dict[str, float] | None:
        """Ratios by row key, if that run measured this section the same way."""
        data = self.sections.get(section.key)
        if not data or data.get("settings") != _jsonable(section.settings):
            return None
        return {
            key: row["ratio"]
            for key, row in data.get("rows", {}).items()
            if row.get("ratio") is not None
        }

    def measured(self, key: str) -> tuple[str, str]:
        """(date, source) of the run that measured section `key`: a section
        carried over from an even earlier run keeps that run's."""
        data = self.sections.get(key, {})
        return str(data.get("date", self.date)), str(data.get("source", self.source))

    def carried(self, key: str) -> CarriedSection | None:
        """Section `key` as that report holds it, if it can be carried over."""
        if key not in self.markdown or key not in self.sections:
            return None
        date, source = self.measured(key)
        data = {**self.sections[key], "date": date, "source": source}
        return CarriedSection(key, self.markdown[key], data)


def read_previous(path: Path) -> PreviousRun | None:
    """The data embedded in an earlier report at `path`, if any."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return None
    match = re.search(rf"<!-- {DATA_MARKER} (.*?) -->", text, re.DOTALL)
    if not match:
        return None
    try:
        data = json.loads(match.group(1))
        return PreviousRun(
            date=str(data["date"]),
            source=str(data.get("source", "unknown")),
            sections=dict(data["sections"]),
            markdown=_marked_sections(text[: match.start()]),
        )
    except (ValueError, KeyError, TypeError):
        return None


def _marked_sections(text: str) -> dict[str, str]:
    """Each marked section's Markdown by key, without its marker."""
    parts = re.split(rf"^<!-- {SECTION_MARKER} (\S+) -->\n", text, flags=re.MULTILINE)
    return {
        key: body.rstrip("\n") + "\n"
        for key, body in zip(parts[1::2], parts[2::2], strict=True)
    }


def repeatability_note(
    section: Section, previous: PreviousRun | None, source: str
) -> Note | None:
    """This run's ratios beside the previous run's, and whether they agree.

    Only rows with a target count: those are the figures the report judges.
    """
    judged = [r for r in section.rows if r.ratio is not None and r.target]
    if not judged:
        return None
    earlier = previous.ratios(section) if previous else None
    if not earlier:
        return Note(
            "Repeatability",
            "no earlier run of the same size in this file to compare with; run "
            "the same command again to get this note.",
        )
    assert previous is not None
    then, then_source = previous.measured(section.key)
    lines = []
    agree = True
    for row in judged:
        if row.ratio is None or row.key not in earlier:
            continue
        before = earlier[row.key]
        spread = abs(row.ratio - before) / before if before else float("inf")
        agree = agree and spread <= REPEATABILITY_TOLERANCE
        lines.append(
            f"{row.figure}: {before:.2f} in the previous run ({then}), "
            f"{row.ratio:.2f} in this one ({spread:.1%} apart)"
        )
    if not lines:
        return None
    verdict = "within" if agree else "NOT within"
    caveat = (
        ""
        if then_source == source
        else f" The amends source differed: {then_source} then, {source} now."
    )
    return Note(
        "Repeatability",
        f"ratios of two runs of the same command are {verdict} "
        f"{REPEATABILITY_TOLERANCE:.0%} of each other: "
        + "; ".join(lines)
        + "."
        + caveat,
    )


# ----------------------------------------------------------------- machine


def machine_facts() -> list[tuple[str, str]]:
    """What the figures depend on, read from the machine rather than assumed."""
    return [
        ("CPUs (nproc)", str(len(os.sched_getaffinity(0)))),
        ("memory", _memory()),
        ("CPU model", _cpu_model()),
        ("OS", f"{_os_name()}, {platform.system()} {platform.release()}"),
        ("Python", platform.python_version()),
        ("eventsourcing", _version("eventsourcing")),
        (
            "pydantic",
            f"{_version('pydantic')} (pydantic-core {_version('pydantic-core')})",
        ),
        ("SQLAlchemy", _version("SQLAlchemy")),
        ("psycopg", _version("psycopg")),
        ("SQLite library", sqlite3.sqlite_version),
        ("amends", _version("amends")),
    ]


SPEED_STEPS = 5_000_000
"""Steps of the fixed Python loop that `machine_speed` times."""
SPEED_ROWS = 100_000
"""Rows of the fixed SQLite insert that `machine_speed` times."""


def machine_speed() -> str:
    """How fast this machine ran a fixed piece of Python and of SQLite, now.

    A shared machine of the same kind can run two or three times slower on
    one day than on another; every figure in the report then moves with it,
    while ratios to a baseline of the same run do not. Timed at the start and
    at the end of a run, so a report says how fast its machine was, and
    whether that changed while it ran. Median of five tries of each.
    """
    loops = []
    for _ in range(5):
        started = time.perf_counter()
        total = 0
        for step in range(SPEED_STEPS):
            total += step
        loops.append(time.perf_counter() - started)
    inserts = []
    for _ in range(5):
        with closing(sqlite3.connect(":memory:")) as connection:
            connection.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
            started = time.perf_counter()
            connection.executemany(
                "INSERT INTO t VALUES (?, ?)",
                ((row, f"value {row}") for row in range(SPEED_ROWS)),
            )
            inserts.append(time.perf_counter() - started)
    loop = median(loops) / SPEED_STEPS * 1e9
    insert = SPEED_ROWS / median(inserts)
    return (
        f"a Python loop step {loop:.0f} ns; SQLite (in memory) {insert:,.0f} inserts/s"
    )


def source_state() -> str:
    """The commit measured, and a fingerprint of any uncommitted change to src/.

    amends changes often (and others may be editing it while the bench runs);
    a figure is only comparable with the code it measured, and the fingerprint
    tells two runs on different uncommitted code apart.
    """
    root = Path(__file__).resolve().parent.parent

    def git(*arguments: str) -> str:
        return subprocess.run(
            ["git", *arguments], cwd=root, capture_output=True, text=True, check=True
        ).stdout

    try:
        commit = git("rev-parse", "--short", "HEAD").strip()
        diff = git("diff", "HEAD", "--", "src")
        changed = git("diff", "HEAD", "--name-only", "--", "src").split()
        untracked = git("ls-files", "--others", "--exclude-standard", "--", "src")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    fingerprint = hashlib.sha256(diff.encode())
    for name in untracked.split():
        fingerprint.update(name.encode() + b"\0" + (root / name).read_bytes())
    files = sorted({*changed, *untracked.split()})
    if not files:
        return f"commit {commit}"
    return (
        f"commit {commit} with uncommitted changes (fingerprint "
        f"{fingerprint.hexdigest()[:10]}) to {', '.join(files)}"
    )


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                kib = int(line.split()[1])
                return f"{kib / 1024**2:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.platform()


# ------------------------------------------------------------------ render


def render(
    sections: list[Section | CarriedSection],
    *,
    facts: list[tuple[str, str]],
    command: str,
    date: datetime,
    source: str,
    duration_seconds: float,
) -> str:
    """The whole report as Markdown, ending with the data the next run reads."""
    out = [
        "# Benchmarks",
        "",
        "Measurements, not pass/fail checks: every figure sits next to a baseline "
        "measured in the same process run on the same kind of store. This file is "
        "written by `python -m bench` (see `bench/__init__.py`); edit the harness, "
        "not this file, since the next run rewrites it.",
        "",
        "## Machine, versions, command",
        "",
        "| | |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in facts),
        f"| amends source | {source} |",
        f"| date | {date:%Y-%m-%d %H:%M} UTC |",
        f"| command | `{command}` |",
        f"| duration | {_duration(duration_seconds)} |",
        "",
    ]
    run_date = f"{date:%Y-%m-%d %H:%M} UTC"
    sections_data = {}
    for number, section in enumerate(sections, start=1):
        out.append(f"<!-- {SECTION_MARKER} {section.key} -->")
        if isinstance(section, CarriedSection):
            out += _render_carried(number, section)
            sections_data[section.key] = section.data
            continue
        out += _render_section(number, section)
        sections_data[section.key] = {
            "settings": _jsonable(section.settings),
            "rows": {
                row.key: {"value": row.value, "ratio": row.ratio}
                for row in section.rows
            },
            "date": run_date,
            "source": source,
        }
    data = {"date": run_date, "source": source, "sections": sections_data}
    out += [f"<!-- {DATA_MARKER} {json.dumps(data, sort_keys=True)} -->", ""]
    return "\n".join(out)


CARRIED_LINE = "*Carried over from the run of {date} (amends source {source}): "
"""The start of the line under a carried section's heading; the line says
that this run did not measure the section again."""


def _render_carried(number: int, section: CarriedSection) -> list[str]:
    """The section as it was, renumbered, saying which run measured it."""
    heading, _, body = section.markdown.partition("\n")
    title = re.sub(r"^## \d+\. ", "", heading)
    lines = body.strip("\n").split("\n")
    if lines and lines[0].startswith("*Carried over from the run of "):
        lines = lines[2:]  # said again below, of the run that measured it
    said = CARRIED_LINE.format(date=section.data["date"], source=section.data["source"])
    return [
        f"## {number}. {title}",
        "",
        said + "this run did not measure it again (`--sections`).*",
        "",
        *lines,
        "",
    ]


def _render_section(number: int, section: Section) -> list[str]:
    out = [f"## {number}. {section.title}", "", section.intro, ""]
    if section.rows:
        out += [
            "| figure | measured | baseline (same run) | ratio | target | met |",
            "|---|--:|---|--:|---|---|",
        ]
        for row in section.rows:
            baseline = (
                f"{row.baseline_label}: {_number(row.baseline)} {row.unit}"
                if row.baseline is not None
                else "—"
            )
            ratio = f"{row.ratio:.2f}" if row.ratio is not None else "—"
            target = row.target.describe(row.unit) if row.target else "— (context)"
            met = {True: "yes", False: "**no**", None: "—"}[row.met]
            if row.context and row.met is not None:
                met += f" (context: {row.context})"
            out.append(
                f"| {row.figure} | {_number(row.value)} {row.unit} | {baseline} "
                f"| {ratio} | {target} | {met} |"
            )
        out.append("")
    for note in section.notes:
        out += [f"**{note.title}.** {note.body}", ""]
    return out


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def _jsonable(value: Any) -> Any:
    """`value` as it reads back from JSON, so settings compare equal across runs."""
    return json.loads(json.dumps(value, sort_keys=True))
