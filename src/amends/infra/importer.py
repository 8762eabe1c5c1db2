"""Importing case histories from another system: CSV or JSON Lines, in bulk.

A log holds one row per activity (a case id, an activity name, a timestamp, an
actor, and whatever else that system kept). A TOML mapping says which columns
are which, which amends command each activity stands for, and where each
command field comes from. Every case is replayed in time order through the
pure domain (`parse_command`, `decide`, `evolve`: the same rules the desk
applies), so a history the lifecycle forbids is refused exactly as the desk
would refuse it, and only whole, conformant cases are written.

The events are the desk's own (same commands, same digest chain, same mapper),
written in large batches through the library's recorder, one transaction per
batch and never a case split across two: a crash leaves whole cases or none.
The complaint id of a case is derived from its case id the way
`ComplaintDesk.receive(external_ref=...)` derives it, so importing a case twice,
or receiving it through the desk after importing it, finds the same complaint.

Every input row ends in the summary: imported, skipped by the mapping, the
offending row of a refused case, another row of a refused case, or unreadable.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
import threading
import time
import tomllib
import types
import typing
import unicodedata
from collections import Counter
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal
from uuid import UUID, uuid5
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from eventsourcing.application import Application
from eventsourcing.persistence import Mapper, RecordConflictError, StoredEvent
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from amends.domain import commands as c
from amends.domain.complaint import Complaint, decide, evolve
from amends.domain.digest import no_key_twice
from amends.domain.errors import (
    AmendsError,
    HistoryViolation,
    InvalidCommand,
    InvalidTransition,
)
from amends.domain.events import ComplaintEvent
from amends.domain.lifecycle import TERMINAL, TRANSITIONS
from amends.domain.stages import Stage
from amends.domain.values import FIRST_YEAR, LAST_YEAR, shown
from amends.infra.desk import EXTERNAL_REF_NAMESPACE, ComplaintDesk, store_errors
from amends.infra.errors import StoreUnavailable
from amends.infra.mapper import ComplaintSnapshot, PydanticMapper
from amends.infra.settings import fork_workers, redacted_url
from amends.projections import forking

DEFAULT_BATCH_SIZE = 10_000
"""Events per transaction. Large batches are what make bulk intake fast (one
commit per batch instead of one per command); a case is never split, so a
batch may run over by one case's events."""

RESERVED_FIELDS = frozenset({"complaint_id", "by", "at", "external_ref"})
"""Command fields the importer fills itself: the case id, the actor column and
the timestamp column. `external_ref` is the case id, which is what ties the
imported complaint to its case for good."""

DEFAULT_SPLIT = ";"
"""How a list field (plan steps, people informed) is split when read from text."""

_TRUE = frozenset({"true", "yes", "y", "1"})
_FALSE = frozenset({"false", "no", "n", "0"})

Format = Literal["csv", "jsonl"]
_SUFFIXES: dict[str, Format] = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}


class ImportMappingError(AmendsError, ValueError):
    """The mapping file is missing, not TOML, or names something wrong."""


class ImportLogError(AmendsError, ValueError):
    """The log as a whole cannot be read (missing file, columns, encoding)."""


# ----------------------------------------------------------------- the mapping


MAX_HOURS_AFTER = 24 * 36_525
"""The most hours a mapping's `hours_after` may add: a century. More was no
due date anybody meant, and past year 9999 no time at all (a crash)."""


class FieldSource(BaseModel):
    """Where one command field comes from: a column, a constant, or a time.

    In TOML a bare string is a column name; a table says more:
    `{ column = "prio", values = { P1 = "urgent" }, default = "normal" }`,
    `{ value = true }`, `{ column = "steps", split = "|" }`,
    `{ hours_after = 72 }` (the row's time plus 72 hours, for due dates).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    column: str | None = Field(default=None, min_length=1)
    value: Any = None
    default: Any = None
    values: dict[str, Any] | None = None
    """Translates the column's text (e.g. priority codes to severities)."""
    split: str | None = Field(default=None, min_length=1)
    hours_after: float | None = Field(default=None, gt=0, le=MAX_HOURS_AFTER)

    @model_validator(mode="before")
    @classmethod
    def _column_shorthand(cls, data: Any) -> Any:
        return {"column": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _one_source(self) -> FieldSource:
        sources = [
            name
            for name in ("column", "value", "hours_after")
            if getattr(self, name) is not None
        ]
        if len(sources) != 1:
            raise ValueError(
                "give exactly one of column, value or hours_after"
                + (f" (found {', '.join(sources)})" if sources else "")
            )
        if self.column is None and (
            self.default is not None or self.values is not None
        ):
            raise ValueError("default and values only go with column")
        return self


class ActivityRule(BaseModel):
    """The command an activity stands for, and fields particular to it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    command: str
    fields: dict[str, FieldSource] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _command_shorthand(cls, data: Any) -> Any:
        return {"command": data} if isinstance(data, str) else data

    @field_validator("command")
    @classmethod
    def _known_command(cls, command: str) -> str:
        if command not in c.COMMAND_TYPES:
            raise ValueError(
                f"{command!r} is not an amends command "
                f"(known: {', '.join(c.COMMAND_TYPES)})"
            )
        return command


class Columns(BaseModel):
    """The log's columns (or JSON keys) for the four things every row has."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    case: str = Field(min_length=1)
    activity: str = Field(min_length=1)
    timestamp: str = Field(min_length=1)
    actor: str = Field(min_length=1)


class LogOptions(BaseModel):
    """How to read the log file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Format | None = None
    """csv or jsonl; by default from the extension (.csv, .jsonl, .ndjson)."""
    timezone: str | None = None
    """IANA zone for timestamps written without an offset; without it such a
    timestamp is refused, since guessing a zone would shift every clock."""
    timestamp_format: str | None = None
    """A `strptime` pattern; by default ISO 8601."""
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    encoding: str = "utf-8"
    ignore_activities: tuple[str, ...] = ()
    """Activities that are no part of the complaint's story (e.g. "Email
    opened"): their rows are counted as skipped, never replayed."""

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str | None) -> str | None:
        if name is not None:
            try:
                ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(
                    f"{name!r} is not an IANA time zone (e.g. Europe/London)"
                ) from None
        return name

    @field_validator("timestamp_format")
    @classmethod
    def _usable_pattern(cls, pattern: str | None) -> str | None:
        """A pattern `strptime` cannot use ("%d%d", "%Q") was taken, then
        ended the import as "a bug" or refused every row: a time it writes
        must read back as that time."""
        if pattern is None or not pattern.strip():
            return None  # as the rows read it: ISO 8601
        sample = datetime(2026, 11, 28, 14, 35, 59, tzinfo=UTC)
        try:
            read = datetime.strptime(sample.strftime(pattern), pattern)
        except (ValueError, re.error) as exc:
            raise ValueError(
                f"{pattern!r} is not a strptime pattern it can read ({exc})"
            ) from None
        if read.date() != sample.date():
            raise ValueError(
                f"{pattern!r} does not name a whole date (day, month and year)"
            )
        return pattern

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, name: str) -> str:
        try:
            "".encode(name)
        except LookupError:
            raise ValueError(f"{name!r} is not a text encoding") from None
        return name


class ImportMapping(BaseModel):
    """A parsed, checked mapping; `load_mapping` reads one from TOML."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    log: LogOptions = Field(default_factory=LogOptions)
    columns: Columns
    activities: dict[str, ActivityRule] = Field(min_length=1)
    fields: dict[str, dict[str, FieldSource]] = Field(default_factory=dict)
    """Field sources per command name, shared by every activity of that command."""

    def sources_for(self, activity: str) -> dict[str, FieldSource]:
        rule = self.activities[activity]
        return {**self.fields.get(rule.command, {}), **rule.fields}

    def referenced_columns(self) -> set[str]:
        """Every column the mapping reads, so a log can be checked up front."""
        columns = set(self.columns.model_dump().values())
        for activity in self.activities:
            columns.update(
                s.column for s in self.sources_for(activity).values() if s.column
            )
        return columns


def load_mapping(path: str | Path) -> ImportMapping:
    """Read and check a TOML mapping; `ImportMappingError` names the bad key."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as exc:
        raise ImportMappingError(
            f"mapping {path}: cannot read it ({exc.strerror or exc})"
        ) from None
    except UnicodeDecodeError:
        raise ImportMappingError(f"mapping {path}: is not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
        return parse_mapping(data, source=str(path))
    except tomllib.TOMLDecodeError as exc:
        raise ImportMappingError(f"mapping {path}: not valid TOML: {exc}") from None
    except RecursionError:
        # Arrays nested thousands deep: no mapping needs that, and reading
        # it ended with "a bug" (exit 1).
        raise ImportMappingError(f"mapping {path}: nested too deeply") from None


def parse_mapping(data: Mapping[str, Any], *, source: str = "mapping") -> ImportMapping:
    """Check an already-parsed mapping (as `tomllib` returns it)."""
    try:
        mapping = ImportMapping.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise ImportMappingError(
            f"{source}: {_key_path(error['loc'])}: {_problem_text(error)}"
        ) from None
    problem = _cross_check(mapping)
    if problem is not None:
        raise ImportMappingError(f"{source}: {problem}")
    return mapping


def _cross_check(mapping: ImportMapping) -> str | None:
    """Rules across keys: fields that exist, required fields covered, a receive."""
    for command, sources in mapping.fields.items():
        if command not in c.COMMAND_TYPES:
            return (
                f"{_key_path(('fields', command))}: {command!r} is not an amends "
                f"command (known: {', '.join(c.COMMAND_TYPES)})"
            )
        problem = _check_fields(("fields", command), command, sources)
        if problem:
            return problem
    for activity, rule in mapping.activities.items():
        where = ("activities", activity)
        problem = _check_fields((*where, "fields"), rule.command, rule.fields)
        if problem:
            return problem
        sources = mapping.sources_for(activity)
        command_type = c.COMMAND_TYPES[rule.command]
        missing = [
            name
            for name, info in command_type.model_fields.items()
            if info.is_required()
            and name not in RESERVED_FIELDS
            and name not in sources
        ]
        if missing:
            return (
                f"{_key_path(where)}: {rule.command} needs "
                f"{', '.join(missing)}; map {'it' if len(missing) == 1 else 'them'} "
                f"under [fields.{rule.command}] or in this activity's fields"
            )
    if not any(rule.command == "receive" for rule in mapping.activities.values()):
        return "activities: no activity maps to receive, so no case could start"
    ignored = set(mapping.log.ignore_activities) & set(mapping.activities)
    if ignored:
        return (
            f"log.ignore_activities: {', '.join(sorted(map(repr, ignored)))} "
            "is also mapped under [activities]"
        )
    return None


def _check_fields(
    where: tuple[str, ...], command: str, sources: Mapping[str, FieldSource]
) -> str | None:
    command_type = c.COMMAND_TYPES[command]
    for name, source in sources.items():
        path = _key_path((*where, name))
        if name in RESERVED_FIELDS:
            return (
                f"{path}: the importer fills {name} itself (from the case, actor "
                "and timestamp columns)"
            )
        if name not in command_type.model_fields:
            known = [f for f in command_type.model_fields if f not in RESERVED_FIELDS]
            return (
                f"{path}: {command} has no field {name!r} "
                f"(its fields: {', '.join(known) or 'none'})"
            )
        if source.hours_after is not None and _kind(command_type, name) != "time":
            return f"{path}: hours_after only fits a date field ({name} is not one)"
        if source.split is not None and _kind(command_type, name) != "list":
            return f"{path}: split only fits a list field ({name} is not one)"
    return None


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key_path(loc: Sequence[int | str]) -> str:
    """A pydantic error location written as the TOML key a user would edit."""
    parts = []
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
            continue
        text = part if _BARE_KEY.match(part) else json.dumps(part, ensure_ascii=False)
        parts.append(("." if parts else "") + text)
    return "".join(parts) or "(top level)"


def _problem_text(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a key the mapping knows"
    if kind == "too_short":
        return "must not be empty"
    return str(error["msg"]).removeprefix("Value error, ")


_FieldKind = Literal["time", "list", "bool", "other"]


def _kind(command_type: type[c.Command], name: str) -> _FieldKind:
    """What a command field holds, so text from a CSV can be turned into it."""
    annotation: Any = command_type.model_fields[name].annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (tuple, list):
        return "list"
    if annotation is bool:
        return "bool"
    # pydantic's AwareDatetime (the domain's `Instant`) is a marker class, not
    # a subclass of datetime.
    if annotation is AwareDatetime or (
        isinstance(annotation, type) and issubclass(annotation, datetime)
    ):
        return "time"
    return "other"


# ------------------------------------------------------------------ the summary


class RowStatus(StrEnum):
    """What became of one input row."""

    IMPORTED = "imported"
    ALREADY_IMPORTED = "already_imported"
    """Its case is in the store already, event for event as this import
    would write it: an earlier run of the same import (one interrupted, say)
    wrote it. Left as it is, and no refusal."""
    SKIPPED = "skipped"
    """Its activity is in `log.ignore_activities`."""
    OFFENDING = "offending"
    """The first row of its case that the lifecycle or the mapping refuses."""
    CASE_REJECTED = "case_rejected"
    """Another row of a refused case ("case rejected at line N")."""
    UNREADABLE = "unreadable"
    """Not a row at all (bad JSON, wrong field count) or it names no case."""


class Offence(StrEnum):
    """Why a case was refused, in the words of the lifecycle."""

    NOT_RECEIVED_FIRST = "not_received_first"
    SKIPPED_STEP = "skipped_step"
    WENT_BACKWARDS = "went_backwards"
    AFTER_END = "after_end"
    NOT_ALLOWED = "not_allowed"
    """Allowed in the stage, but not now (e.g. a reply nobody awaited)."""
    BAD_FIELD = "bad_field"
    BAD_ROW = "bad_row"
    """An unknown activity, an unreadable or zone-less timestamp, no actor."""
    ALREADY_IN_STORE = "already_in_store"


class ImportedCase(BaseModel):
    model_config = ConfigDict(frozen=True)

    case: str
    complaint_id: UUID
    events: int
    stage: Stage


class RejectedCase(BaseModel):
    """A case not imported: its first offending row (line number) and why."""

    model_config = ConfigDict(frozen=True)

    case: str
    complaint_id: UUID
    line: int
    activity: str | None
    offence: Offence
    reason: str
    rows: int
    """All its rows (the offending one included), none of them imported."""


class UnreadableRow(BaseModel):
    model_config = ConfigDict(frozen=True)

    line: int
    reason: str


class ImportSummary(BaseModel):
    """What an import did (or, on a dry run, would do), row by row accounted."""

    model_config = ConfigDict(frozen=True)

    log: str
    format: Format
    dry_run: bool
    rows: int
    """Rows read from the log (blank lines and the CSV header are not rows)."""
    rows_by_status: dict[RowStatus, int]
    imported: tuple[ImportedCase, ...]
    already_imported: tuple[ImportedCase, ...] = ()
    """Cases the store already holds exactly as this import would write them."""
    rejected: tuple[RejectedCase, ...]
    unreadable: tuple[UnreadableRow, ...]
    events: int
    """Events written; on a dry run, the events that would have been."""
    batches: int
    """Write transactions (0 on a dry run)."""
    elapsed_seconds: float
    events_per_second: float

    @property
    def accounted(self) -> int:
        return sum(self.rows_by_status.values())

    @property
    def clean(self) -> bool:
        """Whether every row was imported or deliberately skipped."""
        return not self.rejected and not self.unreadable

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    def to_text(self, limit: int = 20) -> str:
        """A report for a terminal; `limit` caps each list (JSON has them all).

        Each line with its `UNPRINTABLE` characters escaped: it quotes the
        log's case ids and activity names as the source system wrote them,
        and a right-to-left override in one reversed the rest of its line."""
        verb = "would import" if self.dry_run else "imported"
        batches = "" if self.dry_run else f" in {_count(self.batches, 'batch')}"
        rate = f"{self.elapsed_seconds:.2f} s, {self.events_per_second:,.0f} events/s"
        lines = [
            f"{'dry run: ' if self.dry_run else ''}{self.log} ({self.format}): "
            f"{self.rows:,} rows",
            f"  {verb} {_count(len(self.imported), 'case')}, "
            f"{_count(self.events, 'event')}{batches} ({rate})",
            *(
                [
                    f"  already imported {_count(len(self.already_imported), 'case')}"
                    " (the store holds them as this log has them; left as they were)"
                ]
                if self.already_imported
                else []
            ),
            f"  rejected {_count(len(self.rejected), 'case')}, "
            f"{_count(len(self.unreadable), 'unreadable row')}",
            "  rows: "
            + ", ".join(
                f"{self.rows_by_status.get(status, 0):,} {status.value}"
                for status in RowStatus
            )
            + f" (total {self.accounted:,})",
        ]
        if self.rejected:
            lines.append("rejected cases (first offending line, why):")
            for case in self.rejected[:limit]:
                lines.append(
                    f"  {case.case}: line {case.line}"
                    + (f" ({case.activity})" if case.activity else "")
                    + f": {case.offence.value}: {case.reason}"
                    + (
                        f"; its {case.rows - 1} other "
                        f"row{'s' if case.rows != 2 else ''} not imported"
                        if case.rows > 1
                        else ""
                    )
                )
            if len(self.rejected) > limit:
                lines.append(f"  ... and {len(self.rejected) - limit:,} more")
        if self.unreadable:
            lines.append("unreadable rows:")
            for row in self.unreadable[:limit]:
                lines.append(f"  line {row.line}: {row.reason}")
            if len(self.unreadable) > limit:
                lines.append(f"  ... and {len(self.unreadable) - limit:,} more")
        return "\n".join(map(shown, lines)) + "\n"


def _count(n: int, noun: str) -> str:
    plural = noun + ("es" if noun.endswith("ch") else "s")
    return f"{n:,} {noun if n == 1 else plural}"


# ------------------------------------------------------------------ reading


@dataclass(slots=True)
class _Row:
    """One readable row: which line, which case, and its values by column."""

    line: int
    case: str
    values: Mapping[str, Any]
    problem: str | None = None
    """Why the row cannot be read although it names its case (it stops the case:
    importing the case without it would tell a different history)."""


@dataclass(slots=True)
class _Unreadable:
    line: int
    reason: str


def log_format(path: Path, mapping: ImportMapping) -> Format:
    if mapping.log.format is not None:
        return mapping.log.format
    found = _SUFFIXES.get(path.suffix.lower())
    if found is None and not path.exists():
        # Its extension is not what is wrong with it.
        raise ImportLogError(f"log {path}: cannot read it (there is no such file)")
    if found is None:
        raise ImportLogError(
            f"log {path}: cannot tell CSV from JSON Lines by the extension "
            f"{path.suffix or '(none)'!r}; set format under [log] in the mapping"
        )
    return found


def _read_rows(
    path: Path, mapping: ImportMapping, fmt: Format
) -> Iterator[_Row | _Unreadable]:
    case_column = mapping.columns.case
    try:
        with path.open(encoding=mapping.log.encoding, newline="") as handle:
            if fmt == "csv":
                yield from _csv_rows(path, handle, mapping, case_column)
            else:
                yield from _jsonl_rows(handle, case_column)
    except OSError as exc:
        raise ImportLogError(
            f"log {path}: cannot read it ({exc.strerror or exc})"
        ) from None
    except UnicodeDecodeError as exc:
        raise ImportLogError(
            f"log {path}: is not {mapping.log.encoding} text "
            f"({_first_undecodable(path, mapping.log.encoding, exc)}); set "
            "encoding under [log] in the mapping"
        ) from None
    except csv.Error as exc:
        raise ImportLogError(f"log {path}: not readable as CSV ({exc})") from None


def _first_undecodable(path: Path, encoding: str, error: UnicodeDecodeError) -> str:
    """Where in the file the text stops decoding, by line and byte. The
    error's own offset counts from the start of the reader's last chunk (8
    KiB), not the file: a bad byte at line 40,003 was said to be at byte
    1,383."""
    decoder = codecs.getincrementaldecoder(encoding)()
    offset = line = 0
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            # The decoder holds the start of a character split between two
            # chunks, and counts its error's offset from there.
            held = len(decoder.getstate()[0])
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                at = offset - held + exc.start
                line += chunk.count(b"\n", 0, max(exc.start - held, 0))
                return f"{exc.reason} at line {line + 1}, byte {at}"
            offset += len(chunk)
            line += chunk.count(b"\n")
    return error.reason


def _csv_records(path: Path, reader: _FieldSized) -> Iterator[list[str]]:
    """The reader's records; malformed CSV is refused naming the line its
    record starts on (where an unclosed quote opened)."""
    while True:
        starting_line = reader.line_num + 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ImportLogError(
                f"log {path}: the record starting on line {starting_line} is "
                f"not readable as CSV ({exc}): a quote there that never closes, "
                "or text after a closing quote?"
            ) from None
        yield record


def _csv_rows(
    path: Path, handle: typing.TextIO, mapping: ImportMapping, case_column: str
) -> Iterator[_Row | _Unreadable]:
    # Strict: a quote never closed used to swallow every later line into one
    # field, silently (the rows, cases and all, were missing from the import,
    # which reported success); text after a closing quote is refused too.
    reader = _FieldSized(
        csv.reader(handle, delimiter=mapping.log.delimiter, strict=True)
    )
    header: list[str] | None = None
    ended = 0
    for record in _csv_records(path, reader):
        line, ended = ended + 1, reader.line_num
        if header is None and record:
            # Spreadsheets often save UTF-8 with a byte order mark; a file of
            # nothing else is empty, not a header of one nameless column.
            record[0] = record[0].removeprefix("\ufeff")
        if not record or (len(record) == 1 and not record[0].strip()):
            continue  # a blank line is not a row
        if header is None:
            # Spreadsheets often save UTF-8 with a byte order mark.
            header = [name.strip() for name in record]
            read = mapping.referenced_columns()
            twice = sorted(
                {name for name in header if name in read and header.count(name) > 1}
            )
            if twice:
                # Which of the two a row's value came from would be a guess;
                # columns the mapping does not read (blank ones after the
                # last, in spreadsheet exports) may repeat.
                raise ImportLogError(
                    f"log {path}: the header names column "
                    f"{', '.join(map(repr, twice))}, which the mapping reads, "
                    "more than once"
                )
            missing = sorted(mapping.referenced_columns() - set(header))
            if missing:
                raise ImportLogError(
                    f"log {path}: the header has no column "
                    f"{', '.join(map(repr, missing))} that the mapping reads "
                    f"(it has {', '.join(map(repr, header))})"
                )
            continue
        problem = None
        if len(record) != len(header):
            problem = f"has {len(record)} fields, the header has {len(header)}"
        values = dict(zip(header, record, strict=False))
        case = values.get(case_column, "").strip()
        if not case:
            yield _Unreadable(line, problem or f"no case id in column {case_column!r}")
            continue
        yield _Row(line, case, values, problem)
    if header is None:
        raise ImportLogError(f"log {path}: is empty (no header row)")


CSV_FIELD_LIMIT = 16 * 1024 * 1024
"""The longest CSV field read (characters), against the csv module's 128 KiB.
A field longer than a command takes is then refused with its row and case,
as in JSON Lines, not as the whole log being unreadable."""


_FIELD_LIMIT_LOCK = threading.Lock()


class _FieldSized:
    """A csv reader that reads fields up to `CSV_FIELD_LIMIT` long.

    The limit is the csv module's, for the whole process: it is raised for
    each row read and put back before the row is handed on, so the host
    application's own CSV reading keeps its limit.
    """

    def __init__(self, reader: Any) -> None:
        self._reader = reader

    def __iter__(self) -> _FieldSized:
        return self

    def __next__(self) -> list[str]:
        with _FIELD_LIMIT_LOCK:  # imports in two threads share the limit
            before = csv.field_size_limit()
            csv.field_size_limit(max(before, CSV_FIELD_LIMIT))
            try:
                return typing.cast(list[str], next(self._reader))
            finally:
                csv.field_size_limit(before)

    @property
    def line_num(self) -> int:
        return int(self._reader.line_num)


def _jsonl_rows(
    handle: typing.TextIO, case_column: str
) -> Iterator[_Row | _Unreadable]:
    for line, text in enumerate(handle, start=1):
        if line == 1:
            # Windows tools often save UTF-8 with a byte order mark.
            text = text.removeprefix("\ufeff")
        if not text.strip():
            continue
        try:
            # A key named twice: which value the source system meant is a
            # guess (a CSV column named twice is refused too).
            values = json.loads(text, object_pairs_hook=no_key_twice)
        except ValueError as exc:
            yield _Unreadable(line, f"not JSON ({exc})")
            continue
        except RecursionError:
            # Arrays or objects nested thousands deep: the parser's stack
            # ran out, which ended the whole import as "a bug".
            yield _Unreadable(line, "nested too deeply to read")
            continue
        if not isinstance(values, dict):
            yield _Unreadable(line, "not a JSON object")
            continue
        case = values.get(case_column)
        if isinstance(case, int) and not isinstance(case, bool):
            case = str(case)
        if not isinstance(case, str) or not case.strip():
            yield _Unreadable(line, f"no case id under {case_column!r}")
            continue
        yield _Row(line, case.strip(), values)


# ------------------------------------------------------------ rows to commands


class _RowProblem(Exception):
    def __init__(self, offence: Offence, reason: str) -> None:
        super().__init__(reason)
        self.offence = offence
        self.reason = reason


@dataclass(slots=True)
class _Step:
    """A row turned into a command, ready to replay."""

    line: int
    activity: str
    command: c.Command


@dataclass(slots=True)
class _BadRow:
    line: int
    activity: str | None
    problem: _RowProblem


class _Translator:
    """Turns rows into commands as the mapping says; refuses with a reason."""

    def __init__(self, mapping: ImportMapping, now: datetime, skew: timedelta):
        self.mapping = mapping
        self.zone = ZoneInfo(mapping.log.timezone) if mapping.log.timezone else None
        self.latest = now + skew
        self.now = now
        self.rules = {
            activity: (
                c.COMMAND_TYPES[rule.command],
                [
                    (name, source, _kind(c.COMMAND_TYPES[rule.command], name))
                    for name, source in mapping.sources_for(activity).items()
                ],
            )
            for activity, rule in mapping.activities.items()
        }

    def activity(self, row: _Row) -> str | None:
        value = row.values.get(self.mapping.columns.activity)
        return value.strip() if isinstance(value, str) else None

    def step(self, row: _Row, activity: str | None, complaint_id: UUID) -> _Step:
        columns = self.mapping.columns
        if not activity:
            raise _RowProblem(
                Offence.BAD_ROW, f"no activity in column {columns.activity!r}"
            )
        rule = self.rules.get(activity)
        if rule is None:
            raise _RowProblem(
                Offence.BAD_ROW,
                f"activity {activity!r} is not in the mapping "
                "(map it under [activities] or list it in log.ignore_activities)",
            )
        command_type, sources = rule
        at = self.instant(row.values.get(columns.timestamp), columns.timestamp)
        actor = row.values.get(columns.actor)
        if not isinstance(actor, str) or not actor.strip():
            raise _RowProblem(Offence.BAD_ROW, f"no actor in column {columns.actor!r}")
        arguments: dict[str, Any] = {}
        for name, source, kind in sources:
            value = self.value(row, source, kind, name, at)
            if value is not None:
                arguments[name] = value
        if command_type is c.Receive:
            arguments["external_ref"] = row.case
        try:
            command = c.parse_command(
                command_type,
                complaint_id=complaint_id,
                by=actor,
                at=at,
                **arguments,
            )
        except InvalidCommand as exc:
            raise _RowProblem(Offence.BAD_FIELD, str(exc)) from None
        if command.at > self.latest:
            raise _RowProblem(
                Offence.BAD_ROW,
                f"timestamp {command.at.isoformat()} is in the future "
                f"(now is {self.now.isoformat()})",
            )
        return _Step(row.line, activity, command)

    def instant(self, value: Any, column: str) -> datetime:
        """A timezone-aware time from a cell; naive only with a declared zone."""
        if isinstance(value, datetime):
            moment = value
        elif isinstance(value, date):
            moment = datetime(value.year, value.month, value.day)
        elif isinstance(value, str) and value.strip():
            text = value.strip()
            pattern = self.mapping.log.timestamp_format
            try:
                moment = (
                    datetime.strptime(text, pattern)
                    if pattern
                    else datetime.fromisoformat(text)
                )
            except ValueError:
                expected = f"the pattern {pattern!r}" if pattern else "ISO 8601"
                raise _RowProblem(
                    Offence.BAD_ROW,
                    f"{column}: {text[:60]!r} is not a time in {expected}",
                ) from None
        elif value is None or value == "":
            raise _RowProblem(Offence.BAD_ROW, f"{column}: no time given")
        else:
            raise _RowProblem(
                Offence.BAD_ROW,
                f"{column}: {str(value)[:60]!r} is not a time (write ISO 8601 text)",
            )
        if moment.utcoffset() is None:
            if self.zone is None:
                raise _RowProblem(
                    Offence.BAD_ROW,
                    f"{column}: {moment.isoformat()} has no time zone and the "
                    "mapping names none (set timezone under [log])",
                )
            local = moment
            moment = moment.replace(tzinfo=self.zone)
            happened = moment.astimezone(UTC).astimezone(self.zone)
            # A midnight the clocks skipped is a date's start (a day that
            # begins at 01:00): the day's first instant. Any other skipped
            # time is no reading of a clock there, and guessing would move
            # the row by the gap.
            midnight = local == datetime.combine(local.date(), datetime.min.time())
            if happened.replace(tzinfo=None) != local and not midnight:
                raise _RowProblem(
                    Offence.BAD_ROW,
                    f"{column}: {local.isoformat()} never happened in {self.zone} "
                    "(the clocks went forward over it)",
                )
        # In UTC: `hours_after` adds real hours, not a local clock's (across
        # a change of the clocks they differ by the change).
        try:
            return moment.astimezone(UTC)
        except OverflowError:
            # 9999-12-31T23:59:59-01:00 is past the last instant Python has:
            # that row's fault, not the import's (it used to stop, exit 1).
            raise _RowProblem(
                Offence.BAD_ROW,
                f"{column}: {moment.isoformat()} is out of range "
                f"(the years {FIRST_YEAR} to {LAST_YEAR})",
            ) from None

    def value(
        self,
        row: _Row,
        source: FieldSource,
        kind: _FieldKind,
        name: str,
        at: datetime,
    ) -> Any:
        if source.hours_after is not None:
            try:
                return at + timedelta(hours=source.hours_after)
            except OverflowError:
                raise _RowProblem(
                    Offence.BAD_FIELD,
                    f"{name}: {source.hours_after:g} hours after "
                    f"{at.isoformat()} is past the last time there is",
                ) from None
        if source.column is None:
            raw = source.value
        else:
            raw = row.values.get(source.column)
            if isinstance(raw, str):
                raw = raw.strip()
            if raw is None or raw == "":
                raw = source.default
            elif source.values is not None:
                key = raw if isinstance(raw, str) else json.dumps(raw)
                if key not in source.values:
                    raise _RowProblem(
                        Offence.BAD_FIELD,
                        f"{name}: {key[:60]!r} in column {source.column!r} is not "
                        f"one of the mapped values ({', '.join(source.values)})",
                    )
                raw = source.values[key]
        if raw is None:
            return None
        return self.convert(raw, kind, name, source)

    def convert(
        self, raw: Any, kind: _FieldKind, name: str, source: FieldSource
    ) -> Any:
        if kind == "time" and isinstance(raw, str | datetime | date):
            return self.instant(raw, name)
        if kind == "list" and isinstance(raw, str):
            separator = source.split or DEFAULT_SPLIT
            return [part.strip() for part in raw.split(separator) if part.strip()]
        if kind == "bool" and isinstance(raw, str):
            word = raw.lower()
            if word in _TRUE:
                return True
            if word in _FALSE:
                return False
            raise _RowProblem(
                Offence.BAD_FIELD, f"{name}: {raw[:60]!r} is not yes/no (true/false)"
            )
        return raw


# ------------------------------------------------------------------ replaying


@dataclass
class _Case:
    """A case's rows (those not skipped), in line order."""

    key: str
    complaint_id: UUID
    rows: list[_Row] = field(default_factory=list)


@dataclass(frozen=True)
class _Decided:
    """A conformant case, encoded for the store: what the writer needs."""

    key: str
    complaint_id: UUID
    line: int
    activity: str | None
    rows: int
    stored: list[StoredEvent]
    stage: Stage
    snapshots: list[Complaint]

    def __reduce__(self) -> tuple[Any, ...]:
        # From a worker process the events travel as plain tuples: pickling
        # thousands of dataclass instances cost more than rebuilding them.
        rows = [(s.originator_version, s.topic, s.state) for s in self.stored]
        fields = (self.key, self.complaint_id, self.line, self.activity, self.rows)
        return _rebuilt, (fields, rows, self.stage, self.snapshots)


def _rebuilt(
    fields: tuple[str, UUID, int, str | None, int],
    rows: list[tuple[int, str, bytes]],
    stage: Stage,
    snapshots: list[Complaint],
) -> _Decided:
    key, complaint_id, line, activity, count = fields
    stored = [StoredEvent(complaint_id, *row) for row in rows]
    return _Decided(key, complaint_id, line, activity, count, stored, stage, snapshots)


_Verdict = _Decided | RejectedCase
_ORDER = {stage: index for index, stage in enumerate(Stage)}


class _Judge:
    """Decides one case with the pure domain and encodes its events.

    Holds nothing but the mapping, the moment the import started and the
    desk's mapper, so worker processes can each hold a copy.
    """

    def __init__(
        self,
        mapping: ImportMapping,
        now: datetime,
        skew: timedelta,
        snapshot_every: int,
        mapper: PydanticMapper,
    ) -> None:
        self.translator = _Translator(mapping, now, skew)
        self.snapshot_every = snapshot_every
        self.mapper = mapper

    def __call__(self, case: _Case) -> _Verdict:
        steps: list[_Step] = []
        bad: list[_BadRow] = []
        for row in case.rows:
            activity = self.translator.activity(row)
            try:
                if row.problem is not None:
                    raise _RowProblem(Offence.BAD_ROW, row.problem)
                steps.append(self.translator.step(row, activity, case.complaint_id))
            except _RowProblem as problem:
                bad.append(_BadRow(row.line, activity, problem))
        if bad:
            # Without the row it could not read, the replay would judge a
            # different history from the one the log tells.
            first = bad[0]
            return _rejected(
                case,
                first.line,
                first.activity,
                first.problem.offence,
                first.problem.reason,
            )
        verdict = self.replay(case, steps)
        if isinstance(verdict, RejectedCase):
            return verdict
        events, state, snapshots = verdict
        return _Decided(
            key=case.key,
            complaint_id=case.complaint_id,
            line=case.rows[0].line,
            activity=steps[0].activity,
            rows=len(case.rows),
            stored=[self.mapper.to_stored_event(event) for event in events],
            stage=state.stage,
            snapshots=snapshots,
        )

    def replay(
        self, case: _Case, steps: list[_Step]
    ) -> tuple[list[ComplaintEvent], Complaint, list[Complaint]] | RejectedCase:
        """Decide the commands in time order (ties in line order)."""
        steps = sorted(steps, key=lambda step: (step.command.at, step.line))
        state: Complaint | None = None
        received_at_line = 0
        events: list[ComplaintEvent] = []
        snapshots: list[Complaint] = []
        for step in steps:
            command = step.command
            if isinstance(command, c.Receive) and state is not None:
                # decide() treats a second receive as idempotent intake; in
                # a case history it is a step back to the start.
                offence = (
                    Offence.AFTER_END if state.is_closed else Offence.WENT_BACKWARDS
                )
                return _rejected(
                    case,
                    step.line,
                    step.activity,
                    offence,
                    f"receive again: the case was received at line {received_at_line}",
                )
            if state is None and not isinstance(command, c.Receive):
                return _rejected(
                    case,
                    step.line,
                    step.activity,
                    Offence.NOT_RECEIVED_FIRST,
                    f"the case starts with {command.name}: its first activity "
                    "must map to receive",
                )
            try:
                decided = decide(command, state)
            except InvalidTransition as exc:
                assert state is not None
                why = f" ({exc.reason})" if exc.reason else ""
                allowed = ", ".join(exc.allowed) or "nothing (it is closed)"
                return _rejected(
                    case,
                    step.line,
                    step.activity,
                    _offence(state, command.name),
                    f"{exc.command} is not allowed in {exc.stage}{why}; "
                    f"allowed there: {allowed}",
                )
            except AmendsError as exc:
                return _rejected(
                    case, step.line, step.activity, Offence.BAD_FIELD, str(exc)
                )
            if isinstance(command, c.Receive):
                received_at_line = step.line
            for event in decided:
                state = evolve(state, event)
                events.append(event)
                if self.snapshot_every and state.version % self.snapshot_every == 0:
                    snapshots.append(state)
        assert state is not None, "a case has at least one row"
        return events, state, snapshots


def _offence(state: Complaint, command: str) -> Offence:
    """Name what a refused move does to the path: skip, go back, or go on."""
    if state.stage is TERMINAL:
        return Offence.AFTER_END
    sources = {
        _ORDER[t.source]
        for t in TRANSITIONS
        if t.command_name == command and t.source is not None
    }
    here = _ORDER[state.stage]
    if sources and all(source < here for source in sources):
        return Offence.WENT_BACKWARDS
    if sources and all(source > here for source in sources):
        return Offence.SKIPPED_STEP
    return Offence.NOT_ALLOWED


def _rejected(
    case: _Case, line: int, activity: str | None, offence: Offence, reason: str
) -> RejectedCase:
    return RejectedCase(
        case=case.key,
        complaint_id=case.complaint_id,
        line=line,
        activity=activity,
        offence=offence,
        reason=reason,
        rows=len(case.rows),
    )


def complaint_id_for(case: str) -> UUID:
    """The complaint id an imported case gets: the desk's id for that
    `external_ref`, so the desk and the importer always agree on it."""
    return uuid5(EXTERNAL_REF_NAMESPACE, case)


# ------------------------------------------------------------ worker processes

PARALLEL_FROM_ROWS = 5_000
"""Smaller logs are judged in this process: forking would cost more than it saves."""
MAX_WORKERS = 4
CHUNK_ROWS = 500
"""Rows per unit of work handed to a worker (whole cases): small enough that
no worker is left with a long last chunk while the others idle."""


def _judge_range(bounds: tuple[int, int]) -> list[_Verdict]:
    """The verdicts of a range of the cases a forked worker inherited."""
    judge, cases = forking.inherited()
    return [judge(case) for case in cases[bounds[0] : bounds[1]]]


def _ranges(cases: Sequence[_Case]) -> Iterator[tuple[int, int]]:
    """Consecutive ranges of whole cases, about `CHUNK_ROWS` rows each."""
    start, rows = 0, 0
    for index, case in enumerate(cases):
        rows += len(case.rows)
        if rows >= CHUNK_ROWS:
            yield start, index + 1
            start, rows = index + 1, 0
    if start < len(cases):
        yield start, len(cases)


def worker_count(workers: int | None, rows: int) -> int:
    """How many processes decide a log of `rows` rows (`workers`: as asked)."""
    if workers is not None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        return workers
    if rows < PARALLEL_FROM_ROWS:
        return 1
    return fork_workers(MAX_WORKERS)


def _verdicts(
    judge: _Judge, cases: Sequence[_Case], workers: int, died: str
) -> Generator[_Verdict, None, None]:
    """Each case's verdict, in the cases' order.

    Deciding is CPU-bound (pydantic validation, SHA-256 digests), so large logs
    are judged by forked worker processes while this one writes (see
    `forking`): a worker needs the rows, the mapper (and its cipher) and the
    imported domain, and only the verdicts come back. It touches no
    connection. A worker that dies is a `WorkerDied` saying `died`.
    """
    if workers <= 1 or not forking.can_fork():
        yield from map(judge, cases)
        return
    ranges = list(_ranges(cases))
    with forking.forked(
        _judge_range, ranges, workers, (judge, cases), died=died
    ) as futures:
        for future in futures:
            yield from future.result()


def _worker_died(dry_run: bool) -> str:
    """What `WorkerDied` says of an import: what was written, and what to do."""
    written = (
        "nothing was written (a dry run)"
        if dry_run
        else "the cases written so far stay: import the log again to write the "
        "rest (it lists those as already in the store)"
    )
    return (
        "a worker process deciding the cases ended abruptly (killed, perhaps for "
        f"want of memory); {written}"
    )


# ------------------------------------------------------------------ importing


Progress = Callable[[int, int], None]
"""Called with (cases done, cases in all) as the import goes."""


@dataclass(frozen=True)
class ReadLog:
    """A log read whole: its cases' rows, in the order the cases first appear,
    and what could not be read. Reading it is the step that can fail as a
    whole (`ImportLogError`); a caller that must not touch a store for a log
    it cannot read (the command line, which would otherwise create an empty
    SQLite file) reads it first and passes this to `import_log`."""

    path: Path
    mapping: ImportMapping
    format: Format
    rows: int
    statuses: Mapping[RowStatus, int]
    unreadable: tuple[UnreadableRow, ...]
    cases: tuple[_Case, ...]
    seconds: float
    """How long the reading took (the summary times the import from it)."""


def read_log(log_path: str | Path, mapping: ImportMapping) -> ReadLog:
    """Read a log as `mapping` describes it, touching no store.

    Raises `ImportLogError` when the log as a whole cannot be read (missing,
    not the declared encoding, not CSV, no header, a column the mapping reads
    missing). A row that cannot be read is not an error: it is listed.
    """
    started = time.perf_counter()
    path = Path(log_path)
    fmt = log_format(path, mapping)
    ignored = frozenset(mapping.log.ignore_activities)
    activity_column = mapping.columns.activity
    statuses: Counter[RowStatus] = Counter()
    unreadable: list[UnreadableRow] = []
    cases: dict[str, _Case] = {}
    rows = 0
    for row in _read_rows(path, mapping, fmt):
        rows += 1
        if isinstance(row, _Unreadable):
            statuses[RowStatus.UNREADABLE] += 1
            unreadable.append(UnreadableRow(line=row.line, reason=row.reason))
            continue
        activity = row.values.get(activity_column)
        if isinstance(activity, str) and activity.strip() in ignored:
            statuses[RowStatus.SKIPPED] += 1
            continue
        case = cases.get(row.case)
        if case is None:
            case = cases[row.case] = _Case(row.case, complaint_id_for(row.case))
        case.rows.append(row)
    return ReadLog(
        path=path,
        mapping=mapping,
        format=fmt,
        rows=rows,
        statuses=dict(statuses),
        unreadable=tuple(unreadable),
        cases=tuple(cases.values()),
        seconds=time.perf_counter() - started,
    )


def import_log(
    desk: ComplaintDesk,
    log_path: str | Path | ReadLog,
    mapping: ImportMapping,
    *,
    dry_run: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int | None = None,
    progress: Progress | None = None,
) -> ImportSummary:
    """Import the conformant cases of a log into the desk's store.

    Cases are decided by the pure domain in time order; those that follow the
    lifecycle and are not in the store yet are written, `batch_size` events
    (whole cases) per transaction, in the order the cases first appear in the
    log. With `dry_run` nothing is written and the summary says what would
    have been. `workers` processes decide the cases (default: one per core,
    up to 4, for logs of 5,000 rows or more; 1 decides in this process).
    `log_path` may be a log already read (`read_log`) with this mapping.
    Raises `ImportLogError` when the log as a whole cannot be read,
    `StoreUnavailable` when the store fails, and `WorkerDied` when a worker
    process dies (the batches written stay); a refused case is never an
    exception, it is in the summary.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    log = log_path if isinstance(log_path, ReadLog) else read_log(log_path, mapping)
    if log.mapping != mapping:
        raise ValueError(
            f"log {log.path} was read with another mapping: read it with this one"
        )
    started = time.perf_counter() - log.seconds
    path, fmt, rows = log.path, log.format, log.rows
    statuses = Counter(log.statuses)
    unreadable = list(log.unreadable)
    # The desk's own store and mapper rather than a second application's:
    # that is what makes an import reach an in-memory store, and what
    # guarantees the rows are encoded exactly as the desk encodes them. A
    # close of the desk in another thread waits for the import to end.
    with desk.bulk_writes() as context:
        app, mapper = context.app, context.mapper
        now = context.clock()
        judge = _Judge(mapping, now, context.clock_skew, context.snapshot_every, mapper)
        todo = list(log.cases)
        imported: list[_Decided] = []
        already: list[_Decided] = []
        rejected: list[RejectedCase] = []
        writer = _Writer(app, batch_size, imported, rejected, already)
        with _store_errors(desk.store_url):
            verdicts = _verdicts(
                judge, todo, worker_count(workers, rows), _worker_died(dry_run)
            )
            # Closed on leaving, even on an error: a generator kept alive by the
            # traceback would keep its workers, idle, until collected.
            with closing(verdicts):
                for done, verdict in enumerate(verdicts, start=1):
                    if isinstance(verdict, RejectedCase):
                        rejected.append(verdict)
                    elif dry_run:
                        if _not_in_store(app, verdict, already, rejected):
                            imported.append(verdict)
                    else:
                        writer.add(verdict)
                    if progress is not None:
                        progress(done, len(todo))
            writer.flush()
    for verdict in rejected:
        statuses[RowStatus.OFFENDING] += 1
        statuses[RowStatus.CASE_REJECTED] += verdict.rows - 1
    statuses[RowStatus.IMPORTED] += sum(d.rows for d in imported)
    statuses[RowStatus.ALREADY_IMPORTED] += sum(d.rows for d in already)
    events = sum(len(d.stored) for d in imported)
    elapsed = time.perf_counter() - started
    rejected.sort(key=lambda r: r.line)
    return ImportSummary(
        log=str(path),
        format=fmt,
        dry_run=dry_run,
        rows=rows,
        rows_by_status={status: statuses[status] for status in RowStatus},
        imported=tuple(map(_imported_case, imported)),
        already_imported=tuple(map(_imported_case, already)),
        rejected=tuple(rejected),
        unreadable=tuple(unreadable),
        events=events,
        batches=writer.batches,
        elapsed_seconds=elapsed,
        events_per_second=events / elapsed if elapsed > 0 else 0.0,
    )


def _imported_case(decided: _Decided) -> ImportedCase:
    return ImportedCase(
        case=decided.key,
        complaint_id=decided.complaint_id,
        events=len(decided.stored),
        stage=decided.stage,
    )


def _found_in_store(
    app: Application[UUID], decided: _Decided
) -> Literal["no", "same", "other"]:
    """Whether the store holds the case's complaint, and if so whether event
    for event as this import would write it: the same events read back (as
    the desk reads them: upcast, whatever release wrote them), but for the
    digest each carries of the one before. Rerun after an interruption, an
    import used to refuse every case the first run had written (exit 3), so
    a script could not tell a resumed import from real refusals; compared by
    stored digest, a case an earlier release wrote was "other"."""
    stored = app.recorder.select_events(decided.complaint_id)
    if not stored:
        return "no"
    if len(stored) != len(decided.stored):
        return "other"
    mapper = app.mapper
    assert isinstance(mapper, PydanticMapper)
    try:
        for theirs, mine in zip(stored, decided.stored, strict=True):
            read = _as_read(mapper, theirs)
            # Fields the stored form lacks were filled in reading it (a
            # version an earlier release wrote, upcast): what they hold is
            # the reader's default, not what that release decided, so they
            # are not compared. A satisfaction answer given while waiting,
            # imported as version 1, reads as not ending the wait, and this
            # release decides that it did: every such case was refused.
            filled = read.keys() - mapper.decode_payload(theirs).keys() - _COLUMNS
            mine_read = _as_read(mapper, mine)
            if _without(read, filled) != _without(mine_read, filled):
                return "other"
    except HistoryViolation:
        return "other"
    return "same"


_COLUMNS = {"topic", "originator_id", "originator_version"}
"""What a stored event holds beside its payload, not in it."""


def _without(event: dict[str, Any], fields: set[str]) -> dict[str, Any]:
    return {name: value for name, value in event.items() if name not in fields}


_COMPOSED = ("by", "to_owner", "from_owner", "channel", "category")
"""Fields commands now record composed (NFC, `values.Owner`): an earlier
release kept them as typed, so they are compared composed."""


def _as_read(mapper: Mapper[UUID], stored: StoredEvent) -> dict[str, Any]:
    event = mapper.to_domain_event(stored)
    assert isinstance(event, ComplaintEvent)
    read = {
        "topic": event.topic,
        **event.model_dump(mode="json", exclude={"previous_digest"}),
    }
    for name in _COMPOSED:
        if isinstance(read.get(name), str):
            read[name] = unicodedata.normalize("NFC", read[name])
    return read


def _not_in_store(
    app: Application[UUID],
    decided: _Decided,
    already: list[_Decided],
    rejected: list[RejectedCase],
) -> bool:
    """True when the store does not hold the case's complaint; otherwise the
    case joins the already imported (the same events) or the refused."""
    found = _found_in_store(app, decided)
    if found == "same":
        already.append(decided)
    elif found == "other":
        rejected.append(_already_in_store(decided))
    return found == "no"


def _already_in_store(decided: _Decided) -> RejectedCase:
    return RejectedCase(
        case=decided.key,
        complaint_id=decided.complaint_id,
        line=decided.line,
        activity=decided.activity,
        offence=Offence.ALREADY_IN_STORE,
        reason=f"the store already holds complaint {decided.complaint_id} for "
        "this case (imported before?); nothing of it was written again",
        rows=decided.rows,
    )


class _Writer:
    """Inserts whole cases, about `batch_size` events per transaction.

    No case is looked up before it is written: the store refuses a batch that
    holds a complaint it already has (version 1 exists), and rolls all of it
    back. Only then are that batch's cases looked up one by one; those found
    are reported as already imported (the same events) or as already in the
    store (others), and the rest written again. A re-imported log costs a
    lookup per case; a fresh one costs none.
    """

    def __init__(
        self,
        app: Application[UUID],
        batch_size: int,
        imported: list[_Decided],
        rejected: list[RejectedCase],
        already: list[_Decided],
    ) -> None:
        self.app = app
        self.batch_size = batch_size
        self.imported = imported
        self.rejected = rejected
        self.already = already
        self.pending: list[_Decided] = []
        self.size = 0
        self.batches = 0

    def add(self, decided: _Decided) -> None:
        self.pending.append(decided)
        self.size += len(decided.stored)
        if self.size >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        todo, self.pending, self.size = self.pending, [], 0
        while todo:
            try:
                self.app.recorder.insert_events(
                    [stored for decided in todo for stored in decided.stored]
                )
            except RecordConflictError:
                fresh = [
                    decided
                    for decided in todo
                    if _not_in_store(self.app, decided, self.already, self.rejected)
                ]
                if len(fresh) == len(todo):
                    raise  # not one of ours: someone else's write is in the way
                todo = fresh
                continue
            self.batches += 1
            self.imported.extend(todo)
            self._snapshot(todo)
            return

    def _snapshot(self, written: Sequence[_Decided]) -> None:
        """The snapshots the desk would have taken (every N events of a case)."""
        snapshots = [
            ComplaintSnapshot(
                originator_id=state.id,
                originator_version=state.version,
                timestamp=state.last_event_at,
                state=state,
            )
            for decided in written
            for state in decided.snapshots
        ]
        if snapshots and self.app.snapshots is not None:
            self.app.snapshots.put(snapshots)


@contextmanager
def _store_errors(store_url: str) -> Iterator[None]:
    """The library's database failures as the desk names them; a conflict,
    which the desk retries, is here a batch that cannot be written."""
    try:
        with store_errors(store_url):
            yield
    except RecordConflictError as exc:
        raise StoreUnavailable(
            f"event store {redacted_url(store_url)}: a batch kept colliding with "
            f"concurrent writes ({exc}); nothing of that batch was written"
        ) from exc


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "ActivityRule",
    "Columns",
    "FieldSource",
    "ImportLogError",
    "ImportMapping",
    "ImportMappingError",
    "ImportSummary",
    "ImportedCase",
    "LogOptions",
    "Offence",
    "ReadLog",
    "RejectedCase",
    "RowStatus",
    "UnreadableRow",
    "complaint_id_for",
    "import_log",
    "load_mapping",
    "parse_mapping",
    "read_log",
]
