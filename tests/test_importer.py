"""Importing case histories: exactly the conformant cases, every row accounted.

The fixture log (tests/fixtures/import/helpdesk.csv) mixes conformant cases
with one broken case of each kind; generated logs (hypothesis) hold walks
along the lifecycle and mutated ones, and an independent check replays each
case through `ComplaintDesk`, one command at a time, in a fresh store.
"""

from __future__ import annotations

import csv
import json
import random
import sqlite3
import tempfile
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amends import AmendsError, ComplaintDesk, Stage, WorkerDied
from amends.domain.commands import COMMAND_TYPES
from amends.domain.events import PlanCommitted, UpdatePosted
from amends.domain.values import UNPRINTABLE, shown
from amends.infra import importer
from amends.infra.importer import (
    RESERVED_FIELDS,
    ImportLogError,
    ImportMapping,
    ImportMappingError,
    ImportSummary,
    Offence,
    RowStatus,
    complaint_id_for,
    import_log,
    load_mapping,
    parse_mapping,
    read_log,
)
from amends.infra.settings import new_cipher_key

from conftest import NOW, FixedClock
from helpers import RECEIVE, judges_die, load_rows, outcome_within

FIXTURES = Path(__file__).parent / "fixtures" / "import"
HELPDESK = FIXTURES / "helpdesk.csv"
CONFORMANT = {"HD-1001", "HD-1002", "HD-1003", "HD-1011"}
"""The cases of the helpdesk log that follow the lifecycle."""
HELPDESK_MAPPING = FIXTURES / "mapping.toml"


@pytest.fixture
def sqlite_desk(tmp_path: Path) -> Iterator[ComplaintDesk]:
    with ComplaintDesk(
        f"sqlite:///{tmp_path / 'events.db'}", clock=FixedClock()
    ) as desk:
        yield desk


def data_rows(path: Path) -> list[tuple[int, dict[str, str] | None]]:
    """The log's rows as a plain reader sees them: (line, values or None)."""
    rows: list[tuple[int, dict[str, str] | None]] = []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        for record in reader:
            if not record:
                continue
            values = dict(zip(header, record, strict=False))
            rows.append(
                (reader.line_num, values if len(record) == len(header) else None)
            )
    return rows


def line_of(case: str, activity: str, occurrence: int = 1) -> int:
    seen = 0
    for line, values in data_rows(HELPDESK):
        if values and values["case_id"] == case and values["activity"] == activity:
            seen += 1
            if seen == occurrence:
                return line
    raise LookupError(f"{case} {activity} not in the fixture")


# ----------------------------------------------------------- the fixture log


EXPECTED_REJECTIONS = {
    "HD-1004": (Offence.SKIPPED_STEP, ("Apology sent", 1)),
    "HD-1005": (Offence.WENT_BACKWARDS, ("First reply sent", 2)),
    "HD-1006": (Offence.AFTER_END, ("Progress update", 2)),
    "HD-1007": (Offence.BAD_FIELD, ("Plan agreed", 1)),
    "HD-1008": (Offence.BAD_ROW, ("First reply sent", 1)),
    "HD-1009": (Offence.BAD_FIELD, ("Ticket opened", 1)),
    "HD-1010": (Offence.NOT_RECEIVED_FIRST, ("First reply sent", 1)),
}


def test_mixed_log_imports_exactly_the_conformant_cases(
    sqlite_desk: ComplaintDesk,
) -> None:
    mapping = load_mapping(HELPDESK_MAPPING)
    summary = import_log(sqlite_desk, HELPDESK, mapping)

    assert {case.case for case in summary.imported} == CONFORMANT
    rejected = {case.case: case for case in summary.rejected}
    for case, (offence, (activity, occurrence)) in EXPECTED_REJECTIONS.items():
        assert rejected[case].offence is offence, rejected[case]
        assert rejected[case].line == line_of(case, activity, occurrence)
    # A row too short to read, but naming its case, stops that case.
    assert rejected["HD-1012"].offence is Offence.BAD_ROW
    assert "fields" in rejected["HD-1012"].reason
    assert set(rejected) == {*EXPECTED_REJECTIONS, "HD-1012"}
    assert "no time zone" in rejected["HD-1008"].reason

    rows = data_rows(HELPDESK)
    assert summary.rows == len(rows)
    assert summary.accounted == len(rows)
    no_case = [
        line for line, values in rows if values is not None and not values["case_id"]
    ]
    assert [row.line for row in summary.unreadable] == no_case
    ignored = {"Email opened", "Survey sent"}
    assert summary.rows_by_status[RowStatus.SKIPPED] == sum(
        1 for _, values in rows if values and values["activity"] in ignored
    )
    assert summary.rows_by_status[RowStatus.OFFENDING] == len(summary.rejected)
    assert summary.rows_by_status[RowStatus.CASE_REJECTED] == sum(
        case.rows - 1 for case in summary.rejected
    )
    imported_rows = [
        values
        for _, values in rows
        if values
        and values["case_id"] in {c.case for c in summary.imported}
        and values["activity"] not in ignored
    ]
    assert summary.rows_by_status[RowStatus.IMPORTED] == len(imported_rows)
    assert summary.events == len(imported_rows) == sqlite_desk.last_position()

    assert sqlite_desk.verify().ok
    reopened = sqlite_desk.get(complaint_id_for("HD-1002"))
    assert (reopened.stage, reopened.owner, reopened.reopen_count) == (
        Stage.PREVENTION_LOGGED,
        "Ewa Nowak",
        1,
    )
    assert reopened.external_ref == "HD-1002"
    open_case = sqlite_desk.get(complaint_id_for("HD-1003"))
    assert (open_case.stage, open_case.waiting, open_case.waits) == (
        Stage.UPDATING,
        False,
        1,
    )
    shuffled = sqlite_desk.get(complaint_id_for("HD-1011"))
    assert shuffled.stage is Stage.APOLOGIZED
    for case in rejected.values():
        with pytest.raises(AmendsError):
            sqlite_desk.get(case.complaint_id)


def test_dry_run_writes_nothing_and_reports_the_same(
    sqlite_desk: ComplaintDesk,
) -> None:
    """Also from one reading of the log (`read_log`, as the command line
    reads it before it opens the store): importing does not use it up."""
    mapping = load_mapping(HELPDESK_MAPPING)
    log = read_log(HELPDESK, mapping)
    dry = import_log(sqlite_desk, log, mapping, dry_run=True)
    assert sqlite_desk.last_position() == 0
    assert dry.dry_run
    assert dry.batches == 0
    real = import_log(sqlite_desk, log, mapping)
    assert sqlite_desk.last_position() == real.events == dry.events > 0
    for name in ("rows", "rows_by_status", "imported", "rejected", "unreadable"):
        assert getattr(dry, name) == getattr(real, name), name
    assert "would import 4 cases" in dry.to_text()
    assert "imported 4 cases" in real.to_text()
    with pytest.raises(ValueError, match="another mapping"):
        import_log(sqlite_desk, log, generic_mapping(), dry_run=True)


def test_a_case_imported_before_is_already_imported_not_duplicated(
    sqlite_desk: ComplaintDesk,
) -> None:
    """The same log imported again (an interrupted import rerun): the cases
    the store holds event for event as this import would write them are
    already imported, no refusal. Before, each was refused as already in
    the store (exit 3), and a script could not tell a resumed import from
    real refusals."""
    mapping = load_mapping(HELPDESK_MAPPING)
    first = import_log(sqlite_desk, HELPDESK, mapping)
    stored = sqlite_desk.last_position()
    for dry_run in (True, False):
        again = import_log(sqlite_desk, HELPDESK, mapping, dry_run=dry_run)
        assert again.imported == ()
        assert sqlite_desk.last_position() == stored
        assert again.already_imported == first.imported
        assert {c.case for c in again.rejected} == {c.case for c in first.rejected}
        assert not any(c.offence is Offence.ALREADY_IN_STORE for c in again.rejected)
        assert (
            again.rows_by_status[RowStatus.ALREADY_IMPORTED]
            == (first.rows_by_status[RowStatus.IMPORTED])
        )
        assert again.accounted == again.rows == first.rows
        assert "already imported 4 cases" in again.to_text()
    assert sqlite_desk.verify().ok


def test_cases_an_earlier_release_imported_are_already_imported(
    sqlite_desk: ComplaintDesk,
) -> None:
    """The helpdesk log as the release before this one imported it
    (fixtures/import/helpdesk-imported-v1.jsonl: its satisfaction answers
    are version 1 events). Imported again after the upgrade, its cases are
    the same events read back, not "already in the store": compared by
    stored digest, every case with an answer was refused, on every run."""
    load_rows(sqlite_desk.store_url, FIXTURES / "helpdesk-imported-v1.jsonl")
    stored = sqlite_desk.last_position()
    mapping = load_mapping(HELPDESK_MAPPING)
    again = import_log(sqlite_desk, HELPDESK, mapping)
    assert {c.case for c in again.already_imported} == CONFORMANT
    assert not any(c.offence is Offence.ALREADY_IN_STORE for c in again.rejected)
    assert sqlite_desk.last_position() == stored


def imported_again_as_stored_before(
    desk: ComplaintDesk,
    tmp_path: Path,
    lines: list[str],
    older: Callable[[dict[str, Any]], bool],
) -> ImportSummary:
    """Import `lines` (one case, HD-1001), rewrite each stored payload that
    `older` changes (in place, saying so) as an earlier release stored it,
    and import the log again: nothing more may be written."""
    log = tmp_path / "log.csv"
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    mapping = load_mapping(HELPDESK_MAPPING)
    first = import_log(desk, log, mapping)
    assert [c.case for c in first.imported] == ["HD-1001"]
    with sqlite3.connect(tmp_path / "events.db") as db:
        rows = db.execute("SELECT rowid, state FROM stored_events").fetchall()
        for rowid, state in rows:
            payload = json.loads(state)
            if older(payload):
                stored = json.dumps(payload, sort_keys=True, separators=(",", ":"))
                db.execute(
                    "UPDATE stored_events SET state = ? WHERE rowid = ?",
                    (stored.encode(), rowid),
                )
    before = desk.last_position()
    again = import_log(desk, log, mapping)
    assert desk.last_position() == before
    return again


def test_an_answer_while_waiting_an_earlier_release_imported_is_already_imported(
    tmp_path: Path, sqlite_desk: ComplaintDesk
) -> None:
    """An answer given while waiting on the customer, imported by the release
    before this one (a version 1 event, without `ended_wait`), reads back as
    not ending the wait, while this release decides that it did. That field
    was filled in reading, not decided by that release: the case is already
    imported, not refused as another one ("already in the store")."""
    rows = HELPDESK.read_text(encoding="utf-8").splitlines()
    case = [r for r in rows[1:] if r.startswith("HD-1001,")]
    fixed, answer = case[:7], case[7]
    assert answer.startswith("HD-1001,Customer happy,")
    waiting = "HD-1001,Waiting on customer,2026-01-07T09:00:00+00:00,Ana Ribeiro"
    lines = [rows[0], *fixed, waiting + ",,,,,Which account?,,,", answer]
    answers: list[bool] = []

    def version_1(payload: dict[str, Any]) -> bool:
        if "ended_wait" not in payload:
            return False
        answers.append(payload.pop("ended_wait"))
        del payload["class_version"]
        return True

    again = imported_again_as_stored_before(sqlite_desk, tmp_path, lines, version_1)
    assert answers == [True]
    assert [c.case for c in again.already_imported] == ["HD-1001"]
    assert again.rejected == ()


def test_names_an_earlier_release_kept_decomposed_are_already_imported(
    tmp_path: Path, sqlite_desk: ComplaintDesk
) -> None:
    """A log whose agent is "José" typed with a combining accent: an earlier
    release stored the name as typed, this one stores it composed. Imported
    again, the case is the same as read, names composed: already imported,
    not refused as another case."""
    decomposed = "Jose\u0301 Ribeiro"
    rows = HELPDESK.read_text(encoding="utf-8").splitlines()
    case = [
        r.replace("Ana Ribeiro", decomposed) for r in rows if r.startswith("HD-1001,")
    ]

    def as_typed(payload: dict[str, Any]) -> bool:
        if payload.get("by") != "Jos\u00e9 Ribeiro":
            return False
        payload["by"] = decomposed
        return True

    again = imported_again_as_stored_before(
        sqlite_desk, tmp_path, [rows[0], *case], as_typed
    )
    assert [c.case for c in again.already_imported] == ["HD-1001"]
    assert again.rejected == ()


def test_a_case_in_the_store_with_other_events_is_refused(
    tmp_path: Path, sqlite_desk: ComplaintDesk
) -> None:
    """The log tells a case otherwise than the store holds it (an event more,
    or another text): already in the store, refused, nothing written."""
    mapping = load_mapping(HELPDESK_MAPPING)
    import_log(sqlite_desk, HELPDESK, mapping)
    stored = sqlite_desk.last_position()
    log = tmp_path / "log.csv"
    text = HELPDESK.read_text(encoding="utf-8")
    log.write_text(text.replace("Charged twice", "Charged thrice", 1), encoding="utf-8")
    again = import_log(sqlite_desk, log, mapping)
    changed = {c.case for c in again.rejected if c.offence is Offence.ALREADY_IN_STORE}
    assert changed == {"HD-1001"}
    assert "HD-1001" not in {c.case for c in again.already_imported}
    assert sqlite_desk.last_position() == stored


def test_a_case_in_the_store_with_another_kind_of_event_is_refused_not_a_crash(
    tmp_path: Path, sqlite_desk: ComplaintDesk
) -> None:
    """The log tells one event as another kind (a note where the store holds
    an update, at the same place): already in the store, refused. Compared
    field by field, the note's text had no counterpart in the update, and the
    import ended as "a bug" (KeyError), in some runs and not others."""
    rows = HELPDESK.read_text(encoding="utf-8").splitlines()
    update = next(r for r in rows if r.startswith("HD-1001,Progress update,"))
    later = update.replace("T11:00:00", "T11:30:00", 1)
    assert later != update

    def log_with(extra: str) -> Path:
        path = tmp_path / f"{len(extra)}.csv"
        at = rows.index(update) + 1
        path.write_text(
            "\n".join([*rows[:at], extra, *rows[at:]]) + "\n", encoding="utf-8"
        )
        return path

    first = log_with(later.replace(",Progress update,", ",Internal note,", 1))
    second = log_with(later)
    mapping = load_mapping(HELPDESK_MAPPING)
    import_log(sqlite_desk, first, mapping)
    stored = sqlite_desk.last_position()
    again = import_log(sqlite_desk, second, mapping)
    refused = {c.case for c in again.rejected if c.offence is Offence.ALREADY_IN_STORE}
    assert "HD-1001" in refused
    assert sqlite_desk.last_position() == stored


def test_a_case_received_through_the_desk_is_not_imported_again(
    sqlite_desk: ComplaintDesk,
) -> None:
    sqlite_desk.receive(
        by="Ana Ribeiro",
        customer="Jo Smith",
        summary="Charged twice",
        channel="phone",
        category="billing",
        severity="high",
        expectation="A refund",
        external_ref="HD-1001",
        at=NOW - timedelta(days=100),
    )
    summary = import_log(sqlite_desk, HELPDESK, load_mapping(HELPDESK_MAPPING))
    refused = {c.case: c for c in summary.rejected}
    assert refused["HD-1001"].offence is Offence.ALREADY_IN_STORE
    assert refused["HD-1001"].line == line_of("HD-1001", "Ticket opened")
    assert "HD-1001" not in {c.case for c in summary.imported}
    assert sqlite_desk.get(complaint_id_for("HD-1001")).version == 1
    assert summary.accounted == summary.rows


def test_summary_renders_as_json_and_text(sqlite_desk: ComplaintDesk) -> None:
    summary = import_log(sqlite_desk, HELPDESK, load_mapping(HELPDESK_MAPPING))
    assert ImportSummary.model_validate_json(summary.to_json()) == summary
    document = json.loads(summary.to_json())
    assert sum(document["rows_by_status"].values()) == document["rows"]
    text = summary.to_text()
    first = summary.rejected[0]
    assert f"{first.case}: line {first.line}" in text
    assert f"total {summary.rows}" in text
    assert "line 25: no case id" in text


# ------------------------------------------------------- mapping and log errors


BASE_MAPPING = """\
[columns]
case = "case"
activity = "activity"
timestamp = "at"
actor = "by"

[activities]
"Opened" = "receive"

[fields.receive]
customer = "customer"
summary = "summary"
channel = "channel"
category = "category"
severity = "severity"
expectation = { value = "A fix" }
"""


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (('"Opened" = "receive"', '"Opened" = "recieve"'), "activities.Opened.command"),
        (('case = "case"\n', ""), "columns.case: is required"),
        (('customer = "customer"', 'client = "customer"'), "fields.receive.client"),
        (('customer = "customer"', 'by = "customer"'), "fields.receive.by"),
        (('customer = "customer"\n', ""), "needs customer"),
        (
            ("[columns]", '[log]\ntimezone = "Mars/Olympus"\n\n[columns]'),
            "log.timezone",
        ),
        (("[columns]", "[log]\ncolour = 1\n\n[columns]"), "log.colour"),
        (
            ('expectation = { value = "A fix" }', "expectation = { hours_after = 2 }"),
            "fields.receive.expectation",
        ),
        (
            # A century at most: 1e9 hours passed and stopped the import
            # later ("unexpected error", exit 1) at the first row it dated.
            (
                'expectation = { value = "A fix" }',
                "expectation = { hours_after = 1e9 }",
            ),
            "less than or equal to 876600",
        ),
        (
            (
                'expectation = { value = "A fix" }',
                'expectation = { column = "e", value = "x" }',
            ),
            "exactly one of",
        ),
        (
            (
                '"Opened" = "receive"',
                '"Opened" = { command = "add_note", fields = { text = "summary" } }',
            ),
            "no activity maps to receive",
        ),
        (
            ("[fields.receive]", '[fields.close]\nx = "y"\n\n[fields.receive]'),
            "fields.close",
        ),
        (("[columns]", "[columns"), "not valid TOML"),
        (
            ("[columns]", '[log]\ntimestamp_format = "%d%d/%m/%Y"\n\n[columns]'),
            "log.timestamp_format: '%d%d/%m/%Y' is not a strptime pattern",
        ),
        (
            ("[columns]", '[log]\ntimestamp_format = "%Q"\n\n[columns]'),
            "'%Q' is not a strptime pattern",
        ),
        (
            ("[columns]", '[log]\ntimestamp_format = "%H:%M"\n\n[columns]'),
            "does not name a whole date",
        ),
        (
            ("[columns]", "x = " + "[" * 5000 + "]" * 5000 + "\n\n[columns]"),
            "nested too deeply",
        ),
    ],
)
def test_a_malformed_mapping_is_one_clear_error(
    tmp_path: Path, change: tuple[str, str], named: str
) -> None:
    old, new = change
    assert old in BASE_MAPPING
    path = tmp_path / "mapping.toml"
    path.write_text(BASE_MAPPING.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(ImportMappingError) as caught:
        load_mapping(path)
    message = str(caught.value)
    assert named in message
    assert str(path) in message
    assert "\n" not in message


def test_the_base_mapping_loads(tmp_path: Path) -> None:
    path = tmp_path / "mapping.toml"
    path.write_text(BASE_MAPPING, encoding="utf-8")
    mapping = load_mapping(path)
    assert mapping.activities["Opened"].command == "receive"


def test_a_blank_timestamp_format_means_iso_8601_as_it_always_did(
    tmp_path: Path,
) -> None:
    path = tmp_path / "mapping.toml"
    blank = BASE_MAPPING.replace(
        "[columns]", '[log]\ntimestamp_format = ""\n\n[columns]'
    )
    path.write_text(blank, encoding="utf-8")
    assert load_mapping(path).log.timestamp_format is None


def test_a_missing_mapping_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ImportMappingError, match=r"nowhere\.toml"):
        load_mapping(tmp_path / "nowhere.toml")


def test_a_log_without_a_mapped_column_is_refused_before_anything_is_written(
    tmp_path: Path, sqlite_desk: ComplaintDesk
) -> None:
    log = tmp_path / "log.csv"
    text = HELPDESK.read_text(encoding="utf-8").replace(",priority,", ",urgency,", 1)
    log.write_text(text, encoding="utf-8")
    with pytest.raises(ImportLogError, match="'priority'"):
        import_log(sqlite_desk, log, load_mapping(HELPDESK_MAPPING))
    assert sqlite_desk.last_position() == 0


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("log.txt", "x", "extension"),
        ("missing.csv", None, "cannot read"),
        ("empty.csv", "", "empty"),
        # A byte order mark alone is empty too (it said the header had no
        # column the mapping reads, "it has ''").
        ("bom.csv", "\ufeff", "is empty"),
        # Not there: the extension is not what is wrong.
        ("missing.txt", None, "no such file"),
        ("latin.csv", "case_id\n\xe9\n", "not utf-8 text"),
    ],
)
def test_an_unreadable_log_is_one_clear_error(
    tmp_path: Path,
    sqlite_desk: ComplaintDesk,
    name: str,
    content: str | None,
    message: str,
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content.encode("utf-8" if name == "bom.csv" else "latin-1"))
    with pytest.raises(ImportLogError, match=message):
        import_log(sqlite_desk, path, load_mapping(HELPDESK_MAPPING))
    assert sqlite_desk.last_position() == 0


def test_a_byte_that_is_not_utf8_deep_in_a_log_is_placed_by_line_and_byte(
    tmp_path: Path, sqlite_desk: ComplaintDesk
) -> None:
    """The decoder's own offset counts from the start of its last 8 KiB
    chunk: a bad byte at line 40,003 was said to be at byte 1,383."""
    lines = HELPDESK.read_bytes().splitlines(keepends=True)
    body = lines[0] + b"".join(lines[1:] * 200)
    bad = len(body) + 4  # the offset of \xe9, counted from 0
    log = tmp_path / "log.csv"
    log.write_bytes(body + b"HD-1\xe9" + lines[1][4:])
    with pytest.raises(ImportLogError) as refused:
        import_log(sqlite_desk, log, load_mapping(HELPDESK_MAPPING))
    line = len(body.splitlines()) + 1
    assert f"at line {line}, byte {bad}" in str(refused.value)
    assert bad > 8192
    assert sqlite_desk.last_position() == 0


@pytest.mark.parametrize("split", [0, 1, 2])
def test_a_bad_byte_after_a_character_split_between_reads_is_placed_exactly(
    tmp_path: Path, split: int
) -> None:
    """The file is read a mebibyte at a time: a character split across two
    reads is held over, and the offset of a bad byte after it counted from
    the held bytes, one byte off."""
    from amends.infra.importer import _first_undecodable

    data = b"a\n" * 3 + b"x" * ((1 << 20) - 6 - split) + "é".encode() + b"\xff\n"
    path = tmp_path / "log.csv"
    path.write_bytes(data)
    with pytest.raises(UnicodeDecodeError) as caught:
        data.decode("utf-8")
    where = _first_undecodable(path, "utf-8", caught.value)
    assert where == f"invalid start byte at line 4, byte {caught.value.start}"


def test_a_quote_that_never_closes_refuses_the_log_naming_its_line(
    tmp_path: Path, sqlite_desk: ComplaintDesk
) -> None:
    """A quote opened in a field and never closed: the csv module's lenient
    reading took every later line, rows and cases, into that one field, and
    the import reported success with them missing. Now the log is refused,
    naming the line where the quote opened, and nothing is written."""
    lines = HELPDESK.read_text(encoding="utf-8").splitlines(keepends=True)
    broken = lines[2].rstrip("\n") + ',"never closed\n'
    log = tmp_path / "log.csv"
    log.write_text("".join([*lines[:2], broken, *lines[3:]]), encoding="utf-8")
    with pytest.raises(ImportLogError, match=r"starting on line 3 .*never closes"):
        import_log(sqlite_desk, log, load_mapping(HELPDESK_MAPPING))
    assert sqlite_desk.last_position() == 0


def test_a_time_past_the_last_there_is_refuses_its_row_not_the_import(
    tmp_path: Path, sqlite_desk: ComplaintDesk
) -> None:
    """9999-12-31T23:59:59-01:00 is past the last instant Python has: the
    whole import used to stop there ("unexpected error", exit 1)."""
    walk = conformant_walks(2, seed=5)
    path = tmp_path / "log.jsonl"
    write_jsonl(path, walk, random.Random(5))
    rows = path.read_text(encoding="utf-8").splitlines()
    first = json.loads(rows[0])
    first["at"] = "9999-12-31T23:59:59-01:00"
    path.write_text("\n".join([json.dumps(first), *rows[1:]]) + "\n", encoding="utf-8")
    summary = import_log(sqlite_desk, path, generic_mapping())
    (rejected,) = summary.rejected
    assert rejected.case == first["case"]
    assert "is out of range (the years 1900 to 2999)" in rejected.reason
    assert [case.case for case in summary.imported] == [
        w.case for w in walk if w.case != first["case"]
    ]


def test_a_key_named_twice_in_a_json_lines_row_makes_it_unreadable(
    tmp_path: Path, sqlite_desk: ComplaintDesk
) -> None:
    """Which of the two values the source system meant is a guess (a CSV
    column named twice is refused as well): before, the last one counted."""
    path = tmp_path / "log.jsonl"
    path.write_text(
        '{"case": "A", "activity": "receive", "by": "ana", "by": "ben", '
        '"at": "2025-01-01T00:00:00Z"}\n',
        encoding="utf-8",
    )
    summary = import_log(sqlite_desk, path, generic_mapping())
    assert summary.imported == ()
    assert "names 'by' twice" in str(summary.model_dump())


def test_a_json_lines_row_nested_too_deeply_is_unreadable_and_the_rest_imported(
    tmp_path: Path, sqlite_desk: ComplaintDesk
) -> None:
    """Arrays nested a hundred thousand deep ran the parser's stack out: the
    whole import ended as "a bug" (exit 1). The row is unreadable, counted,
    and the other rows are imported."""
    path = tmp_path / "log.jsonl"
    deep = "[" * 100_000 + "]" * 100_000
    received = {
        "case": "A",
        "activity": "receive",
        "by": "ana",
        "at": "2025-01-01T00:00:00Z",
        **{k: v for k, v in RECEIVE.items() if k != "by"},
    }
    rows = [json.dumps(received), f'{{"case": "B", "x": {deep}}}']
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    summary = import_log(sqlite_desk, path, generic_mapping())
    ((line, reason),) = [(u.line, u.reason) for u in summary.unreadable]
    assert (line, reason) == (2, "nested too deeply to read")
    assert [c.case for c in summary.imported] == ["A"]


@settings(max_examples=40, deadline=None)
@given(
    case=st.text(min_size=1, max_size=8).filter(str.strip),
    activity=st.text(min_size=1, max_size=8),
    by=st.text(min_size=1, max_size=8),
    at=st.text(max_size=8),
)
def test_import_text_never_contains_an_unprintable_character(
    case: str, activity: str, by: str, at: str
) -> None:
    """The summary quotes the log's case ids, activities and values as the
    source system wrote them: each of its lines is printed with every
    `UNPRINTABLE` character escaped, so a right-to-left override in a case id
    cannot reverse the rest of its line, nor a line break split it."""
    rows = [
        {"case": case, "activity": activity, "by": by, "at": at},
        {"case": case, "activity": "acknowledge", "by": by, "at": at},
    ]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "log.jsonl"
        path.write_text(
            "".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8"
        )
        with ComplaintDesk("memory://", clock=FixedClock()) as desk:
            summary = import_log(desk, path, generic_mapping(), dry_run=True)
    text = summary.to_text()
    assert summary.rejected  # the case is named, with why, its id escaped
    assert shown(case.strip()) in text
    assert text.count("\n") == len(text.splitlines())
    for line in text.split("\n"):
        assert not any(unicodedata.category(ch) in UNPRINTABLE for ch in line), line


# -------------------------------------------------- generated logs (JSON Lines)


def generic_mapping(**log: Any) -> ImportMapping:
    """Activity names are command names; every field has a key of its name."""
    return parse_mapping(
        {
            "log": {"format": "jsonl", **log},
            "columns": {
                "case": "case",
                "activity": "activity",
                "timestamp": "at",
                "actor": "by",
            },
            "activities": {name: name for name in COMMAND_TYPES},
            "fields": {
                name: {
                    f: {"column": f}
                    for f in command.model_fields
                    if f not in RESERVED_FIELDS
                }
                for name, command in COMMAND_TYPES.items()
            },
        }
    )


@dataclass
class Step:
    command: str
    at: datetime
    by: str
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class Walk:
    case: str
    steps: list[Step]


TEXT = {
    "receive": {
        "customer": "Jo Smith",
        "summary": "Charged twice",
        "channel": "phone",
        "category": "billing",
        "severity": "high",
        "expectation": "A refund",
    },
    "acknowledge": {"paraphrase": "You were charged twice."},
    "apologize": {"apology": "Sorry."},
    "post_update": {"note": "Refund requested."},
    "resolve": {"resolution": "Refunded.", "explanation": "A retry bug."},
    "log_prevention": {
        "root_cause": "Retries",
        "preventive_action": "Idempotency keys",
        "informed": ["payments"],
    },
    "add_note": {"text": "Called the customer."},
    "await_customer": {"reason": "Need the receipt."},
    "customer_replied": {"note": "Receipt sent."},
}
OWNERS = ("ana", "ben", "chidi")


def walk_path(rng: random.Random, case: str, start: datetime, stop: int) -> Walk:
    """A conformant history up to step `stop` of 8, with extras and reopens."""
    steps: list[Step] = []
    at = start
    owner = rng.choice(OWNERS)

    def add(command: str, **fields: Any) -> None:
        nonlocal at
        steps.append(Step(command, at, owner, {**TEXT.get(command, {}), **fields}))
        at += timedelta(minutes=rng.randint(1, 600))

    def extras() -> None:
        nonlocal owner
        roll = rng.random()
        if roll < 0.15:
            add("add_note")
        elif roll < 0.3:
            new = rng.choice([o for o in OWNERS if o != owner])
            add("transfer_ownership", to=new, reason="Specialist", customer_told=True)
            owner = new
        elif roll < 0.4:
            add("await_customer")
            add("customer_replied")

    add("receive")
    for position in range(1, stop):
        extras()
        if position == 1:
            add("acknowledge")
        elif position == 2:
            add("apologize")
        elif position == 3:
            add(
                "commit_plan",
                steps=["Refund"],
                due=(at + timedelta(days=2)).isoformat(),
            )
        elif position == 4:
            add("post_update")
        elif position == 5:
            add("resolve")
        elif position == 6:
            if rng.random() < 0.2:
                add("confirm_satisfaction", satisfied=False, reason="Still charged")
                add("post_update")
                add("resolve")
            add("confirm_satisfaction", satisfied=True)
        elif position == 7:
            add("log_prevention")
    return Walk(case, steps)


MUTATIONS = ("none", "drop", "swap", "after_end", "bad_due")


def mutate(rng: random.Random, walk: Walk, mutation: str) -> Walk:
    steps = list(walk.steps)
    if mutation == "drop" and len(steps) > 1:
        del steps[rng.randrange(len(steps))]
    elif mutation == "swap" and len(steps) > 1:
        i = rng.randrange(len(steps) - 1)
        a, b = steps[i], steps[i + 1]
        steps[i] = Step(b.command, a.at, b.by, b.fields)
        steps[i + 1] = Step(a.command, b.at, a.by, a.fields)
    elif mutation == "after_end":
        last = steps[-1]
        command = rng.choice(["add_note", "post_update", "acknowledge"])
        steps.append(
            Step(
                command,
                last.at + timedelta(hours=1),
                last.by,
                dict(TEXT.get(command, {})),
            )
        )
    elif mutation == "bad_due":
        for i, step in enumerate(steps):
            if step.command == "commit_plan":
                due = (step.at - timedelta(hours=1)).isoformat()
                steps[i] = Step(
                    step.command, step.at, step.by, {**step.fields, "due": due}
                )
    return Walk(walk.case, steps)


@st.composite
def logs(draw: st.DrawFn) -> list[Walk]:
    seed = draw(st.integers(0, 2**32 - 1))
    shape = draw(
        st.lists(
            st.tuples(st.integers(1, 8), st.sampled_from(MUTATIONS)),
            min_size=1,
            max_size=6,
        )
    )
    rng = random.Random(seed)
    start = NOW - timedelta(days=90)
    return [
        mutate(
            rng,
            walk_path(
                rng,
                f"G-{n}",
                start + timedelta(days=n, minutes=rng.randint(0, 99)),
                stop,
            ),
            mutation,
        )
        for n, (stop, mutation) in enumerate(shape)
    ]


def write_jsonl(path: Path, walks: list[Walk], rng: random.Random) -> int:
    """One row per step, all cases' rows shuffled: order comes from the times."""
    rows = [
        {
            "case": walk.case,
            "activity": step.command,
            "at": step.at.isoformat(),
            "by": step.by,
            **step.fields,
        }
        for walk in walks
        for step in walk.steps
    ]
    rng.shuffle(rows)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return len(rows)


def desk_verdicts(walks: list[Walk]) -> dict[str, datetime | None]:
    """The independent check: each case through the desk, a command at a time.

    Gives, per case, the time of the step the desk refused (None: accepted).
    """
    verdicts: dict[str, datetime | None] = {}
    with ComplaintDesk("memory://", clock=FixedClock()) as desk:
        for walk in walks:
            verdicts[walk.case] = None
            try:
                replay_through(desk, walk)
            except Refused as refused:
                verdicts[walk.case] = refused.at
    return verdicts


class Refused(Exception):
    def __init__(self, at: datetime) -> None:
        self.at = at


def replay_through(desk: ComplaintDesk, walk: Walk) -> None:
    complaint_id = None
    for step in sorted(walk.steps, key=lambda s: s.at):
        try:
            if step.command == "receive":
                if complaint_id is not None:
                    raise Refused(step.at)
                complaint_id = desk.execute(
                    "receive",
                    by=step.by,
                    at=step.at,
                    external_ref=walk.case,
                    **step.fields,
                ).id
            else:
                if complaint_id is None:
                    raise Refused(step.at)
                desk.execute(
                    step.command, complaint_id, by=step.by, at=step.at, **step.fields
                )
        except AmendsError:
            raise Refused(step.at) from None


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(walks=logs(), order_seed=st.integers(0, 1000))
def test_generated_logs_import_what_the_desk_accepts(
    walks: list[Walk], order_seed: int
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        log = Path(directory) / "log.jsonl"
        rows = write_jsonl(log, walks, random.Random(order_seed))
        with ComplaintDesk("memory://", clock=FixedClock()) as desk:
            summary = import_log(desk, log, generic_mapping(), batch_size=7)
            verdicts = desk_verdicts(walks)
            accepted = {case for case, refused in verdicts.items() if refused is None}
            assert {c.case for c in summary.imported} == accepted
            written = log.read_text(encoding="utf-8").splitlines()
            for case in summary.rejected:
                offending = json.loads(written[case.line - 1])
                assert offending["case"] == case.case
                assert datetime.fromisoformat(offending["at"]) == verdicts[case.case]
            assert summary.rows == rows == summary.accounted
            assert desk.last_position() == summary.events
            assert desk.verify().ok
            for case in summary.imported:
                assert desk.get(case.complaint_id).version == case.events


def conformant_walks(count: int, seed: int) -> list[Walk]:
    rng = random.Random(seed)
    start = NOW - timedelta(days=60)
    return [
        walk_path(rng, f"W-{n}", start + timedelta(hours=7 * n), rng.randint(1, 8))
        for n in range(count)
    ]


def replay_interleaved(desk: ComplaintDesk, walks: list[Walk]) -> None:
    ids = {}
    timeline = sorted(
        ((step.at, walk.case, step) for walk in walks for step in walk.steps),
        key=lambda item: item[:2],
    )
    for _, case, step in timeline:
        if step.command == "receive":
            ids[case] = desk.execute(
                "receive", by=step.by, at=step.at, external_ref=case, **step.fields
            ).id
        else:
            desk.execute(step.command, ids[case], by=step.by, at=step.at, **step.fields)


def test_imported_events_are_those_the_desk_writes_and_reports_agree(
    tmp_path: Path,
) -> None:
    walks = conformant_walks(40, seed=3)
    before, after = walks[:10], walks[10:]
    log = tmp_path / "log.jsonl"
    write_jsonl(log, after, random.Random(1))
    clock = FixedClock()
    with (
        ComplaintDesk(f"sqlite:///{tmp_path / 'imported.db'}", clock=clock) as imported,
        ComplaintDesk(f"sqlite:///{tmp_path / 'desk.db'}", clock=clock) as by_desk,
    ):
        for walk in before:
            replay_through(imported, walk)
        imported.reports.catch_up()  # the views are current before the import
        summary = import_log(imported, log, generic_mapping(), batch_size=50)
        assert len(summary.imported) == len(after)
        # The desk records the same history as a live team would: all cases
        # interleaved in time order (the import writes case after case).
        replay_interleaved(by_desk, walks)

        for walk in walks:
            complaint_id = complaint_id_for(walk.case)
            rows = imported._app.recorder.select_events(complaint_id)
            expected = by_desk._app.recorder.select_events(complaint_id)
            assert [(r.topic, r.state) for r in rows] == [
                (r.topic, r.state) for r in expected
            ]
        assert imported.verify().ok
        assert imported.reports.ownership() == by_desk.reports.ownership()
        assert (
            imported.reports.time_to_resolution()
            == by_desk.reports.time_to_resolution()
        )
        assert imported.reports.sla() == by_desk.reports.sla()
        backlog = imported.reports.backlog()
        assert backlog == by_desk.reports.backlog()
        assert backlog.reached[Stage.RECEIVED] == len(walks)
        assert imported.reports.recurrence(min_count=1) == by_desk.reports.recurrence(
            min_count=1
        )


def test_worker_processes_decide_as_this_process_does(tmp_path: Path) -> None:
    walks = [
        mutate(random.Random(n), w, MUTATIONS[n % len(MUTATIONS)])
        for n, w in enumerate(conformant_walks(120, seed=5))
    ]
    log = tmp_path / "log.jsonl"
    write_jsonl(log, walks, random.Random(2))
    results = []
    for workers in (1, 2):
        with ComplaintDesk(
            f"sqlite:///{tmp_path / f'{workers}.db'}", clock=FixedClock()
        ) as desk:
            summary = import_log(
                desk, log, generic_mapping(), workers=workers, batch_size=100
            )
            stored = [
                (r.originator_id, r.originator_version, r.state)
                for r in desk._app.recorder.select_notifications(1, 100_000)
            ]
            results.append((summary, stored))
    (inline, inline_rows), (forked, forked_rows) = results
    for name in ("rows_by_status", "imported", "rejected", "events", "batches"):
        assert getattr(inline, name) == getattr(forked, name), name
    assert inline_rows == forked_rows
    assert inline.rejected
    assert inline.imported


def test_a_worker_that_dies_ends_the_import_and_a_second_import_finishes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker killed while deciding (for want of memory, say) ends the
    import at once with `WorkerDied`; the batches written stay, and importing
    the log again writes the rest, listing those as already in the store.
    With a `multiprocessing.Pool` the import waited for ever on the dead
    worker's range."""
    walks = conformant_walks(60, seed=9)
    log = tmp_path / "log.jsonl"
    write_jsonl(log, walks, random.Random(4))
    # The case that appears last is decided last, in the last range: a
    # worker takes it only once the ranges before it were decided.
    lines = log.read_text(encoding="utf-8").splitlines()
    victim = list(dict.fromkeys(json.loads(line)["case"] for line in lines))[-1]
    monkeypatch.setattr(importer, "CHUNK_ROWS", 40)  # many ranges, the last fatal
    judge = judges_die(monkeypatch, victim)
    url = f"sqlite:///{tmp_path / 'i.db'}"

    def first_import() -> ImportSummary:
        with ComplaintDesk(url, clock=FixedClock()) as desk:
            return import_log(desk, log, generic_mapping(), workers=2, batch_size=20)

    ended = outcome_within(60, first_import)
    assert isinstance(ended, WorkerDied), ended
    assert "import the log again" in str(ended)
    monkeypatch.setattr(importer._Judge, "__call__", judge)
    with ComplaintDesk(url, clock=FixedClock()) as desk:
        written = {
            r.originator_id for r in desk._app.recorder.select_notifications(1, 100_000)
        }
        assert 0 < len(written) < len(walks)
        again = import_log(desk, log, generic_mapping(), workers=2)
        assert {c.complaint_id for c in again.already_imported} == written
        assert again.clean
        assert len(again.imported) + len(written) == len(walks)
        assert desk.verify().ok


def test_batches_hold_whole_cases(tmp_path: Path) -> None:
    walks = conformant_walks(30, seed=8)
    log = tmp_path / "log.jsonl"
    write_jsonl(log, walks, random.Random(3))
    with ComplaintDesk(f"sqlite:///{tmp_path / 'e.db'}", clock=FixedClock()) as desk:
        summary = import_log(desk, log, generic_mapping(), batch_size=20)
        sizes = [case.events for case in summary.imported]
        batches, pending = 0, 0
        for size in sizes:
            pending += size
            if pending >= 20:
                batches, pending = batches + 1, 0
        assert summary.batches == batches + (1 if pending else 0)
        assert summary.events == sum(sizes) == desk.last_position()


def test_snapshots_are_taken_where_the_desk_takes_them(tmp_path: Path) -> None:
    walks = [w for w in conformant_walks(10, seed=4) if len(w.steps) >= 6]
    log = tmp_path / "log.jsonl"
    write_jsonl(log, walks, random.Random(4))
    with ComplaintDesk(
        f"sqlite:///{tmp_path / 'e.db'}", clock=FixedClock(), snapshot_every=3
    ) as desk:
        summary = import_log(desk, log, generic_mapping())
        for case in summary.imported:
            assert desk._app.snapshots is not None
            versions = [
                s.originator_version for s in desk._app.snapshots.get(case.complaint_id)
            ]
            assert versions == list(range(3, case.events + 1, 3))
        assert desk.verify().ok


# --------------------------------------------------------------- time zones


def test_naive_times_take_the_declared_zone(tmp_path: Path) -> None:
    walk = conformant_walks(1, seed=1)[0]
    log = tmp_path / "log.jsonl"
    rows = []
    for step in walk.steps:
        local = step.at.astimezone(UTC).replace(tzinfo=None) + timedelta(hours=2)
        rows.append(
            {
                "case": walk.case,
                "activity": step.command,
                "at": local.isoformat(),
                "by": step.by,
                **step.fields,
            }
        )
    log.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with ComplaintDesk("memory://", clock=FixedClock()) as desk:
        refused = import_log(desk, log, generic_mapping(), dry_run=True)
        assert refused.rejected[0].offence is Offence.BAD_ROW
        assert "no time zone" in refused.rejected[0].reason
        summary = import_log(desk, log, generic_mapping(timezone="Africa/Cairo"))
        assert [c.case for c in summary.imported] == [walk.case]
        complaint = desk.get(complaint_id_for(walk.case))
        assert complaint.received_at == walk.steps[0].at.astimezone(UTC)


def test_date_fields_are_read_as_the_timestamps_are_or_set_hours_after_the_row(
    tmp_path: Path,
) -> None:
    """`due` and `revised_due` are dates: text without an offset takes the
    log's zone, `timestamp_format` reads them, and `hours_after` sets them
    from the row's own time (docs/import.md)."""
    received = (NOW - timedelta(days=30)).replace(microsecond=0)
    pattern = "%d/%m/%Y %H:%M"

    def local(moment: datetime) -> str:  # Johannesburg is UTC+2 all year
        return (moment.astimezone(UTC) + timedelta(hours=2)).strftime(pattern)

    steps = [
        ("receive", {"customer": "Jo", "summary": "S", "channel": "phone"}),
        ("acknowledge", {"paraphrase": "P"}),
        ("apologize", {"apology": "A"}),
        ("commit_plan", {"steps": "Refund", "due": local(received + timedelta(2))}),
        (
            "post_update",
            {
                "note": "N",
                "revised_due": local(received + timedelta(5)),
                "revision_reason": "Bank delay",
            },
        ),
    ]
    log = tmp_path / "log.csv"
    columns = ["case", "activity", "at", "by", "customer", "summary", "channel"]
    columns += ["paraphrase", "apology", "steps", "due", "note", "revised_due"]
    columns += ["revision_reason"]
    with log.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        for n, (activity, values) in enumerate(steps):
            at = local(received + timedelta(hours=n))
            writer.writerow(
                {"case": "D-1", "activity": activity, "at": at, "by": "ana", **values}
            )
    mapping: dict[str, Any] = {
        "log": {"timezone": "Africa/Johannesburg", "timestamp_format": pattern},
        "columns": {"case": "case", "activity": "activity"}
        | {"timestamp": "at", "actor": "by"},
        "activities": {name: name for name, _ in steps},
        "fields": {
            "receive": {
                "customer": "customer",
                "summary": "summary",
                "channel": "channel",
                "category": {"value": "billing"},
                "severity": {"value": "high"},
                "expectation": {"value": "A fix"},
            },
            "acknowledge": {"paraphrase": "paraphrase"},
            "apologize": {"apology": "apology"},
            "commit_plan": {"steps": "steps", "due": "due"},
            "post_update": {
                "note": "note",
                "revised_due": "revised_due",
                "revision_reason": "revision_reason",
            },
        },
    }

    def dues(desk: ComplaintDesk) -> tuple[datetime, datetime | None]:
        plan, update = desk.events(complaint_id_for("D-1"))[3:5]
        assert isinstance(plan, PlanCommitted)
        assert isinstance(update, UpdatePosted)
        return plan.due, update.revised_due

    with ComplaintDesk("memory://", clock=FixedClock()) as desk:
        summary = import_log(desk, log, parse_mapping(mapping))
        assert [c.case for c in summary.imported] == ["D-1"], summary.to_text()
        assert dues(desk) == (received + timedelta(2), received + timedelta(5))
        assert desk.get(complaint_id_for("D-1")).due == received + timedelta(5)

    mapping["fields"]["commit_plan"]["due"] = {"hours_after": 72}
    mapping["fields"]["post_update"]["revised_due"] = {"hours_after": 24}
    with ComplaintDesk("memory://", clock=FixedClock()) as desk:
        summary = import_log(desk, log, parse_mapping(mapping))
        assert [c.case for c in summary.imported] == ["D-1"], summary.to_text()
        assert dues(desk) == (
            received + timedelta(hours=3 + 72),
            received + timedelta(hours=4 + 24),
        )


def test_a_local_time_the_clocks_skipped_stops_its_case_and_a_repeated_one_is_first(
    tmp_path: Path,
) -> None:
    """In London 01:30 on 29 March 2026 never happened (clocks went from 01:00
    to 02:00): a log saying so is wrong, and guessing would shift the row by
    an hour. 01:30 on 25 October happened twice; the first (BST) is taken."""
    log = tmp_path / "log.jsonl"
    rows = [
        {"case": "GAP", "activity": "receive", "at": "2026-03-29T01:30:00"},
        {"case": "TWICE", "activity": "receive", "at": "2026-10-25T01:30:00"},
    ]
    log.write_text(
        "".join(
            json.dumps({**row, "by": "ana", **TEXT["receive"]}) + "\n" for row in rows
        ),
        encoding="utf-8",
    )
    clock = FixedClock(datetime(2026, 12, 1, tzinfo=UTC))
    with ComplaintDesk("memory://", clock=clock) as desk:
        summary = import_log(desk, log, generic_mapping(timezone="Europe/London"))
        (refused,) = summary.rejected
        assert (refused.case, refused.offence) == ("GAP", Offence.BAD_ROW)
        assert "never happened in Europe/London" in refused.reason
        assert [c.case for c in summary.imported] == ["TWICE"]
        received = desk.get(complaint_id_for("TWICE")).received_at
        assert received == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)

    # In Santiago 6 September 2026 begins at 01:00: the date alone is that
    # day's first instant, not a time that never happened.
    rows = [{"case": "DAY", "activity": "receive", "at": "2026-09-06"}]
    log.write_text(
        "".join(
            json.dumps({**row, "by": "ana", **TEXT["receive"]}) + "\n" for row in rows
        ),
        encoding="utf-8",
    )
    day_mapping = generic_mapping(timezone="America/Santiago")
    with ComplaintDesk("memory://", clock=clock) as desk:
        summary = import_log(desk, log, day_mapping)
        assert [c.case for c in summary.imported] == ["DAY"], summary.to_text()
        received = desk.get(complaint_id_for("DAY")).received_at
        assert received == datetime(2026, 9, 6, 4, tzinfo=UTC)


def test_hours_after_counts_real_hours_across_a_change_of_the_clocks(
    tmp_path: Path,
) -> None:
    """London's clocks go forward on 29 March 2026: 24 hours after noon on
    the 28th (GMT) is 13:00 BST on the 29th, not noon."""
    log = tmp_path / "log.jsonl"
    steps = [
        ("receive", "2026-03-28T09:00:00", TEXT["receive"]),
        ("acknowledge", "2026-03-28T10:00:00", TEXT["acknowledge"]),
        ("apologize", "2026-03-28T11:00:00", TEXT["apologize"]),
        ("commit_plan", "2026-03-28T12:00:00", {"steps": ["Refund"]}),
    ]
    log.write_text(
        "".join(
            json.dumps({"case": "C", "activity": a, "at": at, "by": "ana", **fields})
            + "\n"
            for a, at, fields in steps
        ),
        encoding="utf-8",
    )
    mapping = generic_mapping(timezone="Europe/London")
    mapping.fields["commit_plan"]["due"] = importer.FieldSource(hours_after=24)
    clock = FixedClock(datetime(2026, 12, 1, tzinfo=UTC))
    with ComplaintDesk("memory://", clock=clock) as desk:
        summary = import_log(desk, log, mapping)
        assert [c.case for c in summary.imported] == ["C"], summary.to_text()
        plan = desk.events(complaint_id_for("C"))[3]
        assert isinstance(plan, PlanCommitted)
        assert plan.due == datetime(2026, 3, 29, 12, tzinfo=UTC)


def test_a_row_in_the_future_stops_its_case(tmp_path: Path) -> None:
    walk = conformant_walks(1, seed=2)[0]
    late = Step(
        "add_note", NOW + timedelta(days=3), walk.steps[-1].by, dict(TEXT["add_note"])
    )
    if walk.steps[-1].command == "log_prevention":
        walk.steps.insert(-1, late)
        walk.steps[-1] = Step(
            walk.steps[-1].command,
            NOW + timedelta(days=4),
            walk.steps[-1].by,
            walk.steps[-1].fields,
        )
    else:
        walk.steps.append(late)
    log = tmp_path / "log.jsonl"
    write_jsonl(log, [walk], random.Random(0))
    with ComplaintDesk("memory://", clock=FixedClock()) as desk:
        summary = import_log(desk, log, generic_mapping())
        assert summary.imported == ()
        assert "in the future" in summary.rejected[0].reason
        assert desk.last_position() == 0


# ------------------------------------------------------------ stores and keys


def test_every_store_kind_imports_once_and_knows_it_the_second_time(
    store_url: str,
) -> None:
    mapping = load_mapping(HELPDESK_MAPPING)
    with ComplaintDesk(store_url, clock=FixedClock()) as desk:
        first = import_log(desk, HELPDESK, mapping, batch_size=10)
        assert len(first.imported) == 4
        assert first.batches > 1
        stored = desk.last_position()
        assert stored == first.events
        again = import_log(desk, HELPDESK, mapping, batch_size=10)
        assert again.imported == ()
        assert desk.last_position() == stored
        assert again.already_imported == first.imported
        assert desk.verify().ok


@pytest.mark.parametrize("workers", [1, 2])
def test_an_encrypted_store_gets_encrypted_imports(
    tmp_path: Path, workers: int
) -> None:
    walks = conformant_walks(12, seed=6)
    log = tmp_path / "log.jsonl"
    write_jsonl(log, walks, random.Random(5))
    url = f"sqlite:///{tmp_path / 'e.db'}"
    key = new_cipher_key()
    with ComplaintDesk(url, clock=FixedClock(), cipher_key=key) as desk:
        summary = import_log(desk, log, generic_mapping(), workers=workers)
        assert len(summary.imported) == len(walks)
        assert desk.verify().ok
        rows = desk._app.recorder.select_notifications(1, 10_000)
        assert rows
        assert not any(b"Jo Smith" in row.state for row in rows)
        received = desk.get(complaint_id_for(walks[0].case))
        assert received.customer == "Jo Smith"


def test_a_byte_order_mark_before_the_header_is_no_column_name(
    tmp_path: Path, sqlite_desk: ComplaintDesk
) -> None:
    log = tmp_path / "excel.csv"
    log.write_text("\ufeff" + HELPDESK.read_text(encoding="utf-8"), encoding="utf-8")
    summary = import_log(sqlite_desk, log, load_mapping(HELPDESK_MAPPING))
    assert len(summary.imported) == 4


def test_a_byte_order_mark_before_the_first_json_line_is_no_part_of_it(
    tmp_path: Path, sqlite_desk: ComplaintDesk
) -> None:
    """Before, the first row was unreadable and its case refused as not
    starting with a receipt."""
    with HELPDESK.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    log = tmp_path / "export.jsonl"
    lines = "".join(json.dumps(row) + "\n" for row in rows)
    log.write_text("\ufeff" + lines, encoding="utf-8")
    summary = import_log(sqlite_desk, log, load_mapping(HELPDESK_MAPPING))
    assert len(summary.imported) == 4
    assert 1 not in {row.line for row in summary.unreadable}


def test_a_column_named_twice_in_the_header_is_refused_by_name(
    tmp_path: Path, sqlite_desk: ComplaintDesk
) -> None:
    """Which of the two a value came from would be a guess (the csv reader
    kept the last, silently, in what became a stored summary)."""
    log = tmp_path / "log.csv"
    header, rest = HELPDESK.read_text(encoding="utf-8").split("\n", 1)
    log.write_text(f"{header},details\n{rest}", encoding="utf-8")
    with pytest.raises(ImportLogError, match="names column 'details', which the"):
        import_log(sqlite_desk, log, load_mapping(HELPDESK_MAPPING))
    assert sqlite_desk.last_position() == 0
    # Columns the mapping does not read may repeat: a spreadsheet's export
    # often ends every line with empty ones.
    blank = tmp_path / "blank.csv"
    lines = HELPDESK.read_text(encoding="utf-8").splitlines()
    blank.write_text("".join(f"{line},,\n" for line in lines), encoding="utf-8")
    summary = import_log(sqlite_desk, blank, load_mapping(HELPDESK_MAPPING))
    assert len(summary.imported) == 4


def test_a_field_longer_than_the_csv_modules_limit_stops_its_case_only(
    tmp_path: Path, sqlite_desk: ComplaintDesk
) -> None:
    """A 200,000-character summary is refused with its case, named by line,
    as in JSON Lines; before, the whole log was unreadable. The csv module's
    limit is the process's, and is as it was after the import."""
    text = HELPDESK.read_text(encoding="utf-8")
    long = "x" * 200_000
    opened = "Jo Smith,phone,billing,P2,Charged twice for the January invoice"
    assert text.count(opened) == 1  # HD-1001's receipt
    log = tmp_path / "log.csv"
    log.write_text(
        text.replace(opened, opened.replace("Charged twice", long)), encoding="utf-8"
    )
    limit = csv.field_size_limit()
    summary = import_log(sqlite_desk, log, load_mapping(HELPDESK_MAPPING))
    assert csv.field_size_limit() == limit
    (refused,) = [c for c in summary.rejected if c.case == "HD-1001"]
    assert refused.offence is Offence.BAD_FIELD
    assert "summary" in refused.reason
    assert refused.line == line_of("HD-1001", "Ticket opened")
    assert len(summary.imported) == 3
