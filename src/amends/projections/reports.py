"""The reports a support lead opens every morning, read from the views.

Each report is a pydantic model that renders as a text table, JSON and CSV.
The numbers come from the read models only (never from replaying events); the
definitions are written out here once, and `tests/oracle.py` recomputes every
report from raw event histories to hold these queries to them.

Definitions shared by all reports:
- A complaint is *open* until prevention is logged (the terminal stage).
- Filters select complaints: received in [since, until), of a category, and
  (owner) owned by that person at any time.
- Durations are seconds. Time to resolution runs from receipt to the *first*
  resolution, on the wall clock and on the SLA clock of the policy in force
  when the complaint was received (the SLA clock stands still while waiting
  on the customer, on a policy that pauses, and, for business-time
  policies, outside business hours).
- Percentiles are nearest-rank: the smallest value with at least p% of the
  values at or below it.
- A deadline is *breached* when it was met after it fell due, or it is unmet
  and fell due before now; one that falls due while the clock stands still
  has no due time yet.
- A deadline is the *owner's* who met it in time (or while the clock stood
  still); otherwise it is the owner's when it fell due, who let it lapse. The
  SLA report's compliance per owner and the ownership report's breaches
  count it for that owner.
"""

from __future__ import annotations

import csv
import io
import json
import math
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any, ClassVar, NamedTuple

from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationInfo,
    computed_field,
    field_validator,
)
from sqlalchemy import (
    BindParameter,
    Connection,
    Engine,
    Integer,
    Select,
    and_,
    bindparam,
    case,
    func,
    or_,
    select,
)

from amends.domain.errors import AmendsError
from amends.domain.sla import PolicySchedule
from amends.domain.stages import Stage
from amends.domain.values import Grouping, Instant, Owner, display_width, shown
from amends.projections import summary
from amends.projections import tables as t
from amends.projections.facts import Folder, StageClock

AGE_BUCKETS: tuple[tuple[str, timedelta | None], ...] = (
    ("<1d", timedelta(days=1)),
    ("1-3d", timedelta(days=3)),
    ("3-7d", timedelta(days=7)),
    ("7-30d", timedelta(days=30)),
    (">30d", None),
)
GROUPINGS = summary.GROUPINGS
DEFAULT_LIMIT = 50
_STAGE_ORDER = {stage: index for index, stage in enumerate(Stage)}
_ANSWERED = (True, False, None)
"""The values a satisfaction answer is stored as, in the order the filtered
backlog report's statement counts them."""
_ANSWERS = tuple(summary.answer(value) for value in _ANSWERED)
"""Their names in the backlog report, in the same order."""


def percentile(ordered: Sequence[float], p: int) -> float | None:
    """Nearest-rank percentile of values sorted ascending (None for none)."""
    if not ordered:
        return None
    rank = -(-p * len(ordered) // 100)  # ceil without floats
    return ordered[max(rank, 1) - 1]


class ReportFilter(BaseModel):
    """Which complaints a report covers: received in [since, until), of a
    category, owned by someone at any time. Names are read as commands
    write them (surrounding spaces dropped), and a filter that could select
    nothing whatever the store holds (a blank name, a window that ends
    before it starts) is refused rather than answered with an empty report.
    """

    model_config = ConfigDict(frozen=True)

    since: Instant | None = None
    until: Instant | None = None
    owner: Owner | None = None
    category: Grouping | None = None

    @field_validator("until")
    @classmethod
    def _after_since(
        cls, until: datetime | None, info: ValidationInfo
    ) -> datetime | None:
        since = info.data.get("since")
        if until is not None and since is not None and until <= since:
            raise ValueError(
                f"must be after since ({since.isoformat()}): the window "
                "[since, until) would hold nothing"
            )
        return until


@dataclass(frozen=True)
class Section:
    """One table of a report, as every rendering shows it."""

    key: str
    """Its name on the command line (`--section`) and in `Report.to_csv`."""
    title: str
    columns: tuple[str, ...]
    """Named here, not taken from the rows, so an empty section still has a
    CSV header."""
    rows: list[dict[str, Any]]
    items: tuple[int, int] | None = None
    """For a list the report's limit cuts: (items listed, items in all), so
    a cut list says it is one instead of passing for the whole. An item may
    take several rows (a chain of owners, a complaint's stages)."""


class UnknownSection(AmendsError, LookupError):
    """A section the report does not have; the message lists those it has."""


class Report(BaseModel):
    """Common rendering: a text table per section, JSON, and CSV of one."""

    model_config = ConfigDict(frozen=True)

    title: ClassVar[str]
    generated_at: datetime
    filter: ReportFilter

    def sections(self) -> list[Section]:
        raise NotImplementedError

    def section(self, key: str | None = None) -> Section:
        """The section named `key`, or the report's first (its main table)."""
        sections = self.sections()
        if key is None:
            return sections[0]
        for found in sections:
            if found.key == key:
                return found
        raise UnknownSection(
            f"the {self.title.lower()} report has no section {key!r}: "
            f"choose one of {', '.join(s.key for s in sections)}"
        )

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    def to_csv(self, section: str | None = None) -> str:
        """One section as CSV, the first unless named (one header row, one
        row per item): a CSV file holds one table."""
        chosen = self.section(section)
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=chosen.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(
            {k: _csv_cell(v) for k, v in row.items()} for row in chosen.rows
        )
        return out.getvalue()

    def to_table(self, section: str | None = None) -> str:
        """Every section as a text table, or only the one named."""
        parts = [
            f"{self.title} (as of {self.generated_at.isoformat(timespec='seconds')})"
        ]
        chosen = self.sections() if section is None else [self.section(section)]
        for found in chosen:
            heading = found.title
            if found.items is not None and found.items[0] < found.items[1]:
                listed, total = found.items
                heading += f" ({listed} of {total}; raise the limit for more)"
            parts.append(f"\n{heading}")
            parts.append(_table(found.rows) if found.rows else "  (none)")
        return "\n".join(parts) + "\n"


def _money_text(total: Decimal) -> str:
    """A total of money as the reports write it: always two decimals, as the
    values offered may have (`Money`), so 5 and 5.00 read alike."""
    return str(total.quantize(Decimal("0.01")))


def _cell(value: Any) -> str:
    """A value as a table shows it, rounded for reading."""
    if value is None:
        return ""
    if isinstance(value, float):
        # Hours read best to a tenth; rates and small figures keep 3
        # significant digits, written out (a few seconds are 0.000833 h,
        # never 8.33e-04).
        if abs(value) >= 10:
            return f"{value:.1f}"
        text = f"{value:.3g}"
        if "e" in text:
            text = f"{value:.{2 - math.floor(math.log10(abs(value)))}f}"
        digits = 3
        while text == "1" and value < 1:
            # A rate all but met (1,999 deadlines met of 2,000) is not met:
            # never shown as 1.
            digits += 1
            text = f"{value:.{digits}g}"
        return text
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return str(value)


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""What a spreadsheet takes a cell starting with for a formula to run."""


def _csv_cell(value: Any) -> str:
    """A value as a CSV export holds it: exact (floats in their shortest
    round-trip form, times to the microsecond), for a spreadsheet or a
    script to compute with; the table's rounding is for reading only.

    Text that a spreadsheet would run as a formula (an owner named
    `=HYPERLINK(...)`, a category `+SUM(1,2)`: names and labels accept
    them) starts with an apostrophe, which spreadsheets take to mean text,
    as OWASP advises for CSV exports. Numbers are never text, so none is
    changed."""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return _cell(value)


def _table(rows: list[dict[str, Any]]) -> str:
    """Rows as a text table, columns padded by the width each cell takes on
    a terminal (wide characters two columns, combining marks none), text
    with its unprintable characters escaped (`values.shown`)."""
    headers = list(rows[0])
    cells = [[shown(_cell(row[h])) for h in headers] for row in rows]
    widths = [
        max(display_width(h), *(display_width(c[i]) for c in cells))
        for i, h in enumerate(headers)
    ]

    def padded(texts: list[str]) -> str:
        return "  ".join(
            text + " " * (width - display_width(text))
            for text, width in zip(texts, widths, strict=True)
        ).rstrip()

    line = padded(headers)
    body = [padded(row) for row in cells]
    rule = "-" * display_width(line)
    return "\n".join(["  " + line, "  " + rule, *("  " + b for b in body)])


def _hours(seconds: float | None) -> float | None:
    return None if seconds is None else seconds / 3600


# ------------------------------------------------------------------ models


class Distribution(BaseModel):
    model_config = ConfigDict(frozen=True)

    count: int
    p50: float | None
    p90: float | None
    p95: float | None
    max: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> Distribution:
        ordered = sorted(values)
        return cls(
            count=len(ordered),
            p50=percentile(ordered, 50),
            p90=percentile(ordered, 90),
            p95=percentile(ordered, 95),
            max=ordered[-1] if ordered else None,
        )


class OwnerRow(BaseModel):
    model_config = ConfigDict(frozen=True)

    owner: str
    open_now: int
    received_first: int
    handed_in: int
    handed_out: int
    resolved_while_owner: int
    ttr_median: float | None
    ttr_p90: float | None
    sla_breaches: int


class ChainLink(BaseModel):
    model_config = ConfigDict(frozen=True)

    owner: str
    start: datetime
    end: datetime | None


class OwnerChain(BaseModel):
    model_config = ConfigDict(frozen=True)

    complaint_id: str
    handoffs: int
    links: tuple[ChainLink, ...]


class OwnershipReport(Report):
    title: ClassVar[str] = "Ownership"
    owners: tuple[OwnerRow, ...]
    chains: tuple[OwnerChain, ...]
    """Complaints handed off at least once, newest first, up to the limit."""
    chains_total: int
    handed_off_three_times: tuple[OwnerChain, ...]
    """Complaints handed off three or more times, most first, up to the limit."""
    handed_off_three_times_total: int

    def sections(self) -> list[Section]:
        owners = [
            {
                **row.model_dump(exclude={"ttr_median", "ttr_p90"}),
                "ttr_median_h": _hours(row.ttr_median),
                "ttr_p90_h": _hours(row.ttr_p90),
            }
            for row in self.owners
        ]
        frequent = [
            {
                "complaint_id": c.complaint_id,
                "handoffs": c.handoffs,
                "chain": " -> ".join(link.owner for link in c.links),
            }
            for c in self.handed_off_three_times
        ]
        return [
            Section("owners", "Per owner", _OWNER_COLUMNS, owners),
            Section(
                "chains",
                "Chains of owners, newest complaint first",
                _LINK_COLUMNS,
                _links(self.chains),
                (len(self.chains), self.chains_total),
            ),
            Section(
                "handed-off-three-times",
                "Handed off three or more times",
                ("complaint_id", "handoffs", "chain"),
                frequent,
                (len(frequent), self.handed_off_three_times_total),
            ),
        ]


_OWNER_COLUMNS = (
    "owner",
    "open_now",
    "received_first",
    "handed_in",
    "handed_out",
    "resolved_while_owner",
    "sla_breaches",
    "ttr_median_h",
    "ttr_p90_h",
)
_LINK_COLUMNS = ("complaint_id", "handoffs", "link", "owner", "start", "end")


def _links(chains: Iterable[OwnerChain]) -> list[dict[str, Any]]:
    """One row per link of each chain (a complaint's owners in turn, from 1)."""
    return [
        {
            "complaint_id": chain.complaint_id,
            "handoffs": chain.handoffs,
            "link": number,
            "owner": link.owner,
            "start": link.start,
            "end": link.end,
        }
        for chain in chains
        for number, link in enumerate(chain.links, 1)
    ]


class StageElapsed(BaseModel):
    model_config = ConfigDict(frozen=True)

    stage: Stage
    wall: float
    sla: float


class ComplaintTimes(BaseModel):
    model_config = ConfigDict(frozen=True)

    complaint_id: str
    received_at: datetime
    owner: str
    category: str
    stages: tuple[StageElapsed, ...]


class GroupDistribution(BaseModel):
    model_config = ConfigDict(frozen=True)

    group_by: str
    key: str
    wall: Distribution
    sla: Distribution


class TimeToResolutionReport(Report):
    title: ClassVar[str] = "Time to resolution"
    resolved: int
    reopened: int
    reopen_rate: float | None
    distributions: tuple[GroupDistribution, ...]
    complaints: tuple[ComplaintTimes, ...]
    """Per complaint, newest first, up to the limit."""
    complaints_total: int

    def sections(self) -> list[Section]:
        rows = [
            {
                "group_by": d.group_by,
                "key": d.key,
                "count": d.wall.count,
                "wall_p50_h": _hours(d.wall.p50),
                "wall_p90_h": _hours(d.wall.p90),
                "wall_p95_h": _hours(d.wall.p95),
                "wall_max_h": _hours(d.wall.max),
                "sla_p50_h": _hours(d.sla.p50),
                "sla_p90_h": _hours(d.sla.p90),
                "sla_p95_h": _hours(d.sla.p95),
                "sla_max_h": _hours(d.sla.max),
            }
            for d in self.distributions
        ]
        summary = [
            {
                "resolved": self.resolved,
                "reopened": self.reopened,
                "reopen_rate": self.reopen_rate,
            }
        ]
        stages = [
            {
                "complaint_id": c.complaint_id,
                "received_at": c.received_at,
                "owner": c.owner,
                "category": c.category,
                "stage": elapsed.stage,
                "wall_h": _hours(elapsed.wall),
                "sla_h": _hours(elapsed.sla),
            }
            for c in self.complaints
            for elapsed in c.stages
        ]
        return [
            Section(
                "distributions", "Distributions (hours)", _DISTRIBUTION_COLUMNS, rows
            ),
            Section(
                "reopens", "Reopens", ("resolved", "reopened", "reopen_rate"), summary
            ),
            Section(
                "complaints",
                "Per complaint: hours from receipt to each stage, newest first",
                (
                    "complaint_id",
                    "received_at",
                    "owner",
                    "category",
                    "stage",
                    "wall_h",
                    "sla_h",
                ),
                stages,
                (len(self.complaints), self.complaints_total),
            ),
        ]


_DISTRIBUTION_COLUMNS = (
    "group_by",
    "key",
    "count",
    "wall_p50_h",
    "wall_p90_h",
    "wall_p95_h",
    "wall_max_h",
    "sla_p50_h",
    "sla_p90_h",
    "sla_p95_h",
    "sla_max_h",
)


class Breach(BaseModel):
    model_config = ConfigDict(frozen=True)

    complaint_id: str
    target: str
    due_at: datetime
    met_at: datetime | None
    owner: str | None


class Compliance(BaseModel):
    model_config = ConfigDict(frozen=True)

    key: str
    due: int
    on_time: int
    breached: int
    rate: float | None


class AtRisk(BaseModel):
    model_config = ConfigDict(frozen=True)

    complaint_id: str
    target: str
    due_at: datetime
    owner: str | None


class SlaReport(Report):
    title: ClassVar[str] = "SLA"
    horizon: timedelta
    breaches: tuple[Breach, ...]
    """Every breach, latest due first, up to the limit."""
    breaches_total: int
    by_target: tuple[Compliance, ...]
    by_owner: tuple[Compliance, ...]
    at_risk: tuple[AtRisk, ...]
    """Unmet deadlines due within the horizon, soonest first, up to the limit."""
    at_risk_total: int

    def sections(self) -> list[Section]:
        compliance = tuple(Compliance.model_fields)
        return [
            Section(
                "breaches",
                "Breaches, latest due first",
                tuple(Breach.model_fields),
                [b.model_dump() for b in self.breaches],
                (len(self.breaches), self.breaches_total),
            ),
            Section(
                "by-target",
                "Compliance per target",
                compliance,
                [c.model_dump() for c in self.by_target],
            ),
            Section(
                "by-owner",
                "Compliance per owner",
                compliance,
                [c.model_dump() for c in self.by_owner],
            ),
            Section(
                "at-risk",
                f"At risk (due within {self.horizon / timedelta(hours=1):g} h), "
                "soonest first",
                tuple(AtRisk.model_fields),
                [a.model_dump() for a in self.at_risk],
                (len(self.at_risk), self.at_risk_total),
            ),
        ]


class StageBacklog(BaseModel):
    model_config = ConfigDict(frozen=True)

    stage: Stage
    open: int
    waiting: int
    """Of the open, those waiting on the customer now: their SLA clocks stand
    still, so a pause that never ends shows here rather than hiding."""
    by_age: dict[str, int]


class BacklogReport(Report):
    title: ClassVar[str] = "Backlog and funnel"
    open_by_stage: tuple[StageBacklog, ...]
    reached: dict[Stage, int]
    satisfied_first: dict[str, int]
    """Answers to the first resolution: yes, no, unanswered."""
    satisfied_after_reopen: dict[str, int]
    gestures_by_currency: dict[str, int]
    """Gestures offered per currency; under "" those that named none."""
    gesture_totals: dict[str, str]
    """Total value offered per currency (decimal strings)."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def gestures(self) -> int:
        """Gestures offered, in all currencies and none."""
        return sum(self.gestures_by_currency.values())

    def sections(self) -> list[Section]:
        backlog = [
            {"stage": s.stage, "open": s.open, "waiting": s.waiting, **s.by_age}
            for s in self.open_by_stage
        ]
        funnel = [{"stage": stage, "reached": n} for stage, n in self.reached.items()]
        satisfaction = [
            {"after": "first resolution", **self.satisfied_first},
            {"after": "a reopen", **self.satisfied_after_reopen},
        ]
        gestures = [
            {
                "currency": currency,
                "gestures": n,
                "total": self.gesture_totals.get(currency),
            }
            for currency, n in sorted(self.gestures_by_currency.items())
        ]
        return [
            Section(
                "open",
                "Open by stage and age (waiting: on the customer now)",
                ("stage", "open", "waiting", *(name for name, _ in AGE_BUCKETS)),
                backlog,
            ),
            Section(
                "funnel",
                "Funnel: complaints that reached each stage",
                ("stage", "reached"),
                funnel,
            ),
            Section("satisfaction", "Satisfaction", ("after", *_ANSWERS), satisfaction),
            Section(
                "gestures",
                f"Gestures offered: {self.gestures}, per currency (none named: blank)",
                ("currency", "gestures", "total"),
                gestures,
            ),
        ]


class CategoryRecurrence(BaseModel):
    model_config = ConfigDict(frozen=True)

    category: str
    complaints: int
    prevention_logged: int
    resolution_to_prevention_median: float | None


class RecurrenceReport(Report):
    title: ClassVar[str] = "Recurrence and prevention"
    min_count: int
    categories: tuple[CategoryRecurrence, ...]

    def sections(self) -> list[Section]:
        rows = [
            {
                **c.model_dump(exclude={"resolution_to_prevention_median"}),
                "resolution_to_prevention_median_h": _hours(
                    c.resolution_to_prevention_median
                ),
            }
            for c in self.categories
        ]
        return [
            Section(
                "categories",
                f"Categories with at least {self.min_count} "
                + ("complaint" if self.min_count == 1 else "complaints"),
                (
                    "category",
                    "complaints",
                    "prevention_logged",
                    "resolution_to_prevention_median_h",
                ),
                rows,
            )
        ]


# ----------------------------------------------------------------- queries


@dataclass
class UnmetAhead:
    """Unmet deadlines not breached yet (due at or after now), and of those,
    the ones not due yet (after now): what the running totals of unmet
    deadlines hold beyond the breached and the counted."""

    not_breached: Counter[str] = field(default_factory=Counter)
    not_breached_by_owner: Counter[str] = field(default_factory=Counter)
    not_due: Counter[str] = field(default_factory=Counter)
    not_due_by_owner: Counter[str] = field(default_factory=Counter)


_FILTER_FIELDS = tuple(ReportFilter.model_fields)
"""Every field of a filter: a statement prepared for one shape must never
serve a filter that differs in a field the shape left out."""


def _filter_shape(f: ReportFilter) -> tuple[bool, ...]:
    """Which of the filter's fields are set."""
    return tuple(getattr(f, name) is not None for name in _FILTER_FIELDS)


def _filter_values(f: ReportFilter) -> dict[str, Any]:
    """The set fields' values, named as `_selected` names them."""
    return {
        name: value
        for name in _FILTER_FIELDS
        if (value := getattr(f, name)) is not None
    }


def _window(f: ReportFilter, received: Any) -> list[Any]:
    """`f`'s window as conditions on a column of receipt times."""
    window = []
    if f.since is not None:
        window.append(received >= bindparam("since", type_=received.type))
    if f.until is not None:
        window.append(received < bindparam("until", type_=received.type))
    return window


def _not_from_index(column: Any) -> Any:
    """A true-or-false `column`, in a form no index answers, so the database
    checks it on the rows the other conditions select: SQLite, told nothing
    of how many complaints are open, walked every open one (a fifth of the
    store) asking each whether the owner had it, 50 ms for one owner's week
    at 100,000 complaints instead of 5 to 7 (measured on the bench's store).
    The column is never null: the value is the column's own."""
    return func.coalesce(column, False)


def _everything(f: ReportFilter) -> bool:
    """No filter: the report covers every complaint, from the running totals."""
    return not any(_filter_shape(f))


_SNAPSHOT: ContextVar[tuple[Engine, int, Connection] | None] = ContextVar(
    "amends_report_snapshot", default=None
)
"""The views' engine, the thread and the connection of the
`ReportQueries.snapshot` open in this thread or task, if any."""


class ReportQueries:
    """Reads the views into reports; every method takes `now` (the desk's clock)."""

    def __init__(self, engine: Engine, policies: PolicySchedule) -> None:
        self.engine = engine
        self.folder = Folder(policies)
        self._statements: dict[tuple[str, tuple[bool, ...]], tuple[Any, ...]] = {}

    @contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """Within the block, every read of the views by these queries (in
        this thread or task) comes from one snapshot (`tables.snapshot`):
        the caller checks the views' state on it, and the report then reads
        the views in that state."""
        with t.snapshot(self.engine) as conn:
            token = _SNAPSHOT.set((self.engine, threading.get_ident(), conn))
            try:
                yield conn
            finally:
                _SNAPSHOT.reset(token)

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """The connection of the caller's `snapshot` (in this thread: a
        context copied into another thread does not take it along), or a
        snapshot of its own, which reads the tracking table first, as every
        reader of the views does: on PostgreSQL a reader that took another
        view table first could deadlock with a rebuild's swap (the chart's
        reads, before)."""
        bound = _SNAPSHOT.get()
        if bound is not None and bound[:2] == (self.engine, threading.get_ident()):
            yield bound[2]
            return
        with t.snapshot(self.engine) as conn:
            conn.execute(select(t.tracking.c.position).limit(1))
            yield conn

    def _prepared(
        self, name: str, f: ReportFilter, build: Callable[[], tuple[Any, ...]]
    ) -> tuple[Any, ...]:
        """A filtered report's statements, built once for filters of `f`'s
        shape (which of its fields are set), their values bound at each call
        (`_filter_values`, with the report's own: `now`, `limit`, ...).

        Building a statement, and finding its compiled form by its cache key,
        cost SQLAlchemy several times what the database then took to run it.
        """
        key = (name, _filter_shape(f))
        found = self._statements.get(key)
        if found is None:
            found = self._statements[key] = build()
        return found

    def _selected(self, f: ReportFilter) -> Any:
        """The complaints filters of `f`'s shape select, as a WHERE clause on
        the complaints table, the filter's values left as parameters named
        after its fields (see `_filter_values`): the statements built with it
        serve every filter of that shape (see `_prepared`)."""
        c = t.complaints.c
        clauses = []
        if f.category is not None:
            clauses.append(c.category == bindparam("category", type_=c.category.type))
        if f.owner is None:
            clauses += _window(f, c.received_at)
        else:
            clauses.append(c.id.in_(self._owned(f)))
        return and_(True, *clauses)

    @staticmethod
    def _owned(f: ReportFilter) -> Select[Any]:
        """The ids of the complaints `f`'s owner had, received in its window:
        one range of the spans' owner index, by receipt (each span carries
        its complaint's). Asking each complaint in the window whether the
        owner had it cost the window's every complaint, and without a window
        the whole store's (ADR 0012)."""
        s = t.spans.c
        owned = s.owner == bindparam("owner", type_=s.owner.type)
        return select(s.complaint_id).where(owned, *_window(f, s.received_at))

    def _ids(self, f: ReportFilter) -> Select[Any]:
        """The selected complaints' ids, for `IN (...)` only: an owner's may
        repeat (one per span the owner had), which `IN` does not count."""
        if f.owner is not None and f.category is None:
            return self._owned(f)  # no need to look each one up
        return select(t.complaints.c.id).where(self._selected(f))

    def ownership(
        self, now: datetime, f: ReportFilter, limit: int = DEFAULT_LIMIT
    ) -> OwnershipReport:
        if _everything(f):
            return self._ownership_of_all(now, f, limit)
        statements = self._prepared(
            "ownership", f, lambda: self._ownership_statements(f)
        )
        values = {**_filter_values(f), "now": now}
        with self.reading() as conn:
            complaint_rows, span_rows, breaches = (
                conn.execute(statement, values).all() for statement in statements
            )
        # Plain tuples: SQLAlchemy's rows answer an attribute in about half a
        # microsecond, which at a few per row was most of this report's time.
        complaints = [_OwnedComplaint._make(row) for row in complaint_rows]
        owners: dict[str, dict[str, Any]] = defaultdict(
            lambda: {
                "open_now": 0,
                "received_first": 0,
                "handed_in": 0,
                "handed_out": 0,
                "resolved_while_owner": 0,
                "ttr": [],
                "sla_breaches": 0,
            }
        )
        for row in complaints:
            if row.is_open:
                owners[row.owner]["open_now"] += 1
            owners[row.received_by]["received_first"] += 1
            if row.resolved_by is not None:
                owners[row.resolved_by]["resolved_while_owner"] += 1
                owners[row.resolved_by]["ttr"].append(row.ttr_wall)
        # Every owner of a span gets a row; only handoffs start or end one.
        spans_of: dict[str, list[_Span]] = defaultdict(list)
        for span in map(_Span._make, span_rows):
            tally = owners[span.owner]
            tally["handed_in"] += span.via == "transfer"
            tally["handed_out"] += span.end_at is not None
            spans_of[span.complaint_id].append(span)
        for owner, n in breaches:
            if owner is not None:
                owners[owner]["sla_breaches"] = n
        rows = []
        for owner in sorted(owners):
            if f.owner is not None and owner != f.owner:
                continue
            data = owners[owner]
            ordered = sorted(data.pop("ttr"))
            rows.append(
                OwnerRow(
                    owner=owner,
                    ttr_median=percentile(ordered, 50),
                    ttr_p90=percentile(ordered, 90),
                    **data,
                )
            )
        # Newest first, then by id; most handoffs first, then by id (sorts are
        # stable).
        handed = sorted((r for r in complaints if r.handoffs > 0), key=lambda r: r.id)
        newest = sorted(handed, key=lambda r: r.received_at, reverse=True)[:limit]
        frequent = [r for r in handed if r.handoffs >= 3]
        frequent_total = len(frequent)
        frequent = sorted(frequent, key=lambda r: r.handoffs, reverse=True)[:limit]

        def chain(row: _OwnedComplaint) -> OwnerChain:
            return OwnerChain(
                complaint_id=row.id,
                handoffs=row.handoffs,
                links=_chain_links(spans_of[row.id]),
            )

        return OwnershipReport(
            generated_at=now,
            filter=f,
            owners=tuple(rows),
            chains=tuple(chain(row) for row in newest),
            chains_total=len(handed),
            handed_off_three_times=tuple(chain(row) for row in frequent),
            handed_off_three_times_total=frequent_total,
        )

    def _ownership_statements(self, f: ReportFilter) -> tuple[Any, ...]:
        """One read of the selected complaints, one of their spans and one of
        their breaches: every count, distribution and list of the filtered
        report comes from these rows, which the selection bounds, instead of
        selecting the complaints again for each (ten statements, each finding
        the same rows). Times as stored (see `tables.seconds_of`): the
        complaints are sorted by receipt, and only the listed chains' times
        parsed."""
        c, s, d = t.complaints.c, t.spans.c, t.deadlines.c
        as_stored = t.seconds_of(self.engine.dialect)
        ids = self._ids(f)
        times = {"received_at", "start_at", "end_at"}

        def columns(table: Any, row: type[tuple[Any, ...]]) -> list[Any]:
            """The row type's fields, in its order (its tuples are made from
            these rows by position), times as stored."""
            return [
                as_stored(table[name]).label(name) if name in times else table[name]
                for name in row._fields  # type: ignore[attr-defined]
            ]

        complaints = select(*columns(c, _OwnedComplaint)).where(self._selected(f))
        spans = (
            select(*columns(s, _Span))
            .where(s.complaint_id.in_(ids))
            .order_by(s.complaint_id, s.seq)
        )
        breaches = (
            select(d.owner, func.count())
            .where(
                d.complaint_id.in_(ids),
                _breached(bindparam("now", type_=d.due_at.type)),
            )
            .group_by(d.owner)
        )
        return complaints, spans, breaches

    def _ownership_report(
        self,
        conn: Connection,
        now: datetime,
        f: ReportFilter,
        limit: int,
        rows: list[OwnerRow],
        chains_total: int,
    ) -> OwnershipReport:
        """The unfiltered report from its owner rows: the chains are read here,
        each list in order from its own index."""
        c = t.complaints.c
        newest = conn.execute(
            select(c.id, c.handoffs)
            .where(c.handoffs > 0)
            .order_by(c.received_at.desc(), c.id)
            .limit(limit)
        ).all()
        frequent = conn.execute(
            select(c.id, c.handoffs)
            .where(c.handoffs >= 3)
            .order_by(c.handoffs.desc(), c.id)
            .limit(limit)
        ).all()
        frequent_total = conn.execute(
            select(func.count()).where(c.handoffs >= 3)
        ).scalar_one()
        chains = self._chains(conn, [cid for cid, _ in [*newest, *frequent]])
        return OwnershipReport(
            generated_at=now,
            filter=f,
            owners=tuple(rows),
            chains=tuple(
                OwnerChain(complaint_id=i, handoffs=n, links=chains[i])
                for i, n in newest
            ),
            chains_total=chains_total,
            handed_off_three_times=tuple(
                OwnerChain(complaint_id=i, handoffs=n, links=chains[i])
                for i, n in frequent
            ),
            handed_off_three_times_total=frequent_total,
        )

    def _ownership_of_all(
        self, now: datetime, f: ReportFilter, limit: int
    ) -> OwnershipReport:
        """The unfiltered report from the running totals (see `summary`)."""
        with self.reading() as conn:
            counts = summary.read_counts(
                conn,
                "span_owner",
                "open",
                "received_first",
                "handed_in",
                "handed_out",
                "resolved_by",
                "handed_off",
            )
            _, compliance = self._compliance_of_all(conn, now)
            ttr = summary.read_distributions(conn, [summary.measure("wall", "owner")])
            rows = []
            for owner in sorted(counts["span_owner"]):
                stats = ttr.get((summary.measure("wall", "owner"), owner))
                rows.append(
                    OwnerRow(
                        owner=owner,
                        open_now=counts["open"][owner],
                        received_first=counts["received_first"][owner],
                        handed_in=counts["handed_in"][owner],
                        handed_out=counts["handed_out"][owner],
                        resolved_while_owner=counts["resolved_by"][owner],
                        ttr_median=stats[1][0] if stats else None,
                        ttr_p90=stats[1][1] if stats else None,
                        sla_breaches=compliance.get(owner, [0, 0])[1],
                    )
                )
            return self._ownership_report(
                conn, now, f, limit, rows, counts["handed_off"][""]
            )

    def _unmet_ahead(self, conn: Connection, now: datetime) -> UnmetAhead:
        """Unmet deadlines due at `now` or later, read from the index of unmet
        deadlines by due time: few, since most deadlines are met."""
        d = t.deadlines.c
        ahead = UnmetAhead()
        not_due = func.sum(case((d.due_at > now, 1), else_=0))
        for target, owner, n, later in conn.execute(
            select(d.target, d.owner, func.count(), not_due)
            .where(d.met_at.is_(None), d.due_at >= now)
            .group_by(d.target, d.owner)
        ):
            key = owner or ""
            ahead.not_breached[target] += n
            ahead.not_breached_by_owner[key] += n
            ahead.not_due[target] += later
            ahead.not_due_by_owner[key] += later
        return ahead

    def _chains(
        self, conn: Connection, ids: list[str]
    ) -> dict[str, tuple[ChainLink, ...]]:
        """The chains of owners of the complaints `ids`, from their spans read
        with their times as stored (see `tables.seconds_of`)."""
        as_stored = t.seconds_of(self.engine.dialect)
        s = t.spans.c
        spans_of: dict[str, list[Any]] = defaultdict(list)
        for start in range(0, len(ids), 500):
            for span in conn.execute(
                select(
                    s.complaint_id,
                    s.owner,
                    as_stored(s.start_at).label("start_at"),
                    as_stored(s.end_at).label("end_at"),
                )
                .where(s.complaint_id.in_(ids[start : start + 500]))
                .order_by(s.complaint_id, s.seq)
            ).all():
                spans_of[span.complaint_id].append(span)
        return {cid: _chain_links(spans) for cid, spans in spans_of.items()}

    def time_to_resolution(
        self, now: datetime, f: ReportFilter, limit: int = DEFAULT_LIMIT
    ) -> TimeToResolutionReport:
        if _everything(f):
            return self._time_to_resolution_of_all(now, f, limit)
        resolved, counted, listed = self._prepared(
            "time_to_resolution", f, lambda: self._time_to_resolution_statements(f)
        )
        values = {**_filter_values(f), "limit": limit}
        with self.reading() as conn:
            resolved_rows = conn.execute(resolved, values).all()
            total = conn.execute(counted, values).scalar_one()
            newest = conn.execute(listed, values).all()
        groups: dict[tuple[str, str], tuple[list[float], list[float]]] = defaultdict(
            lambda: ([], [])
        )
        reopened = 0
        for row in resolved_rows:
            owner, category, channel, severity, week, wall, sla, reopens = row
            reopened += reopens > 0
            keys = zip(
                GROUPINGS, (owner, category, channel, severity, week), strict=True
            )
            for group_by, key in keys:
                walls, slas = groups[(group_by, key)]
                walls.append(wall)
                slas.append(sla)
        distributions = tuple(
            GroupDistribution(
                group_by=group_by,
                key=key,
                wall=Distribution.of(walls),
                sla=Distribution.of(slas),
            )
            for (group_by, key), (walls, slas) in sorted(
                groups.items(),
                key=lambda item: (GROUPINGS.index(item[0][0]), item[0][1]),
            )
        )
        resolved = len(resolved_rows)
        return TimeToResolutionReport(
            generated_at=now,
            filter=f,
            resolved=resolved,
            reopened=reopened,
            reopen_rate=reopened / resolved if resolved else None,
            distributions=distributions,
            complaints=tuple(
                self._times(StageClock.from_json(text)) for (text,) in newest
            ),
            complaints_total=total,
        )

    def _time_to_resolution_statements(self, f: ReportFilter) -> tuple[Any, ...]:
        """The selected complaints' resolutions, their count, and the newest
        of their facts (up to the bound `limit`)."""
        c = t.complaints.c
        selected = self._selected(f)
        resolved = select(
            c.resolved_by,
            c.category,
            c.channel,
            c.severity,
            c.week,
            c.ttr_wall,
            c.ttr_sla,
            c.reopens,
        ).where(selected, c.first_resolved_at.is_not(None))
        counted = select(func.count()).select_from(t.complaints).where(selected)
        listed = (
            select(c.facts)
            .where(selected)
            .order_by(c.received_at.desc(), c.id)
            .limit(bindparam("limit", type_=Integer))
        )
        return resolved, counted, listed

    def _time_to_resolution_of_all(
        self, now: datetime, f: ReportFilter, limit: int
    ) -> TimeToResolutionReport:
        """The unfiltered report from the running totals (see `summary`)."""
        c = t.complaints.c
        measures = [
            summary.measure(clock, grouping)
            for clock in summary.CLOCKS
            for grouping in GROUPINGS
        ]
        with self.reading() as conn:
            counts = summary.read_counts(conn, "complaints", "resolved", "reopened")
            found = summary.read_distributions(conn, measures)
            newest = conn.execute(
                select(c.facts).order_by(c.received_at.desc(), c.id).limit(limit)
            ).all()
        distributions = []
        for grouping in GROUPINGS:
            wall, sla = (summary.measure(clock, grouping) for clock in summary.CLOCKS)
            keys = sorted(key for name, key in found if name == wall)
            distributions += [
                GroupDistribution(
                    group_by=grouping,
                    key=key,
                    wall=_distribution(*found[wall, key]),
                    sla=_distribution(*found[sla, key]),
                )
                for key in keys
            ]
        resolved = counts["resolved"][""]
        reopened = counts["reopened"][""]
        return TimeToResolutionReport(
            generated_at=now,
            filter=f,
            resolved=resolved,
            reopened=reopened,
            reopen_rate=reopened / resolved if resolved else None,
            distributions=tuple(distributions),
            complaints=tuple(
                self._times(StageClock.from_json(text)) for (text,) in newest
            ),
            complaints_total=counts["complaints"][""],
        )

    def _times(self, facts: StageClock) -> ComplaintTimes:
        policy = self.folder.policy_of(facts)
        return ComplaintTimes(
            complaint_id=str(facts.id),
            received_at=facts.received_at,
            owner=facts.owner,
            category=facts.category,
            stages=tuple(
                StageElapsed(
                    stage=stage,
                    wall=(at - facts.received_at).total_seconds(),
                    sla=facts.sla_elapsed(policy, at).total_seconds(),
                )
                for stage, at in sorted(
                    facts.reached.items(), key=lambda item: _STAGE_ORDER[item[0]]
                )
            ),
        )

    def sla(
        self,
        now: datetime,
        f: ReportFilter,
        horizon: timedelta = timedelta(hours=24),
        limit: int = DEFAULT_LIMIT,
    ) -> SlaReport:
        if _everything(f):
            found = self._sla_of_all(now, horizon, limit)
        else:
            found = self._sla_of_some(now, f, horizon, limit)
        return SlaReport(
            generated_at=now,
            filter=f,
            horizon=horizon,
            breaches=tuple(
                Breach(complaint_id=i, target=g, due_at=due, met_at=met, owner=o)
                for i, g, due, met, o in found.breaches
            ),
            breaches_total=found.breaches_total,
            by_target=_compliance(found.by_target),
            by_owner=_compliance(found.by_owner),
            at_risk=tuple(
                AtRisk(complaint_id=i, target=g, due_at=due, owner=o)
                for i, g, due, o in found.at_risk
            ),
            at_risk_total=found.at_risk_total,
        )

    def _sla_of_all(self, now: datetime, horizon: timedelta, limit: int) -> SlaParts:
        """The SLA report's parts for every complaint, from the running totals
        and the deadline indexes."""
        d = t.deadlines.c
        with self.reading() as conn:
            by_target, by_owner = self._compliance_of_all(conn, now)
            breach_rows = self._latest_breaches(conn, now, limit)
            at_risk = (
                d.met_at.is_(None),
                d.due_at >= now,
                d.due_at <= now + horizon,
            )
            risk_rows = conn.execute(
                select(d.complaint_id, d.target, d.due_at, d.owner)
                .where(*at_risk)
                .order_by(d.due_at, d.complaint_id, d.seq)
                .limit(limit)
            ).all()
            at_risk_total = conn.execute(
                select(func.count()).where(*at_risk)
            ).scalar_one()
        return SlaParts(
            by_target=by_target,
            by_owner=by_owner,
            breaches=[tuple(r) for r in breach_rows],
            breaches_total=sum(late for _, late in by_target.values()),
            at_risk=[tuple(r) for r in risk_rows],
            at_risk_total=at_risk_total,
        )

    def _sla_of_some(
        self, now: datetime, f: ReportFilter, horizon: timedelta, limit: int
    ) -> SlaParts:
        """The SLA report's parts for the complaints a filter selects, from one
        read of their deadlines: compliance, breaches and the complaints at
        risk are all counted from the same rows, which the selection bounds (a
        handful per complaint), instead of selecting the complaints again for
        each."""
        d = t.deadlines.c
        # Times as stored (see `tables.seconds_of`): thousands of them are
        # compared here, and only those of the listed rows are returned.
        as_stored = t.seconds_of(self.engine.dialect)
        (statement,) = self._prepared(
            "sla",
            f,
            lambda: (
                select(
                    d.complaint_id,
                    d.target,
                    as_stored(d.due_at),
                    as_stored(d.met_at),
                    d.owner,
                    d.seq,
                ).where(d.complaint_id.in_(self._ids(f))),
            ),
        )
        with self.reading() as conn:
            rows = conn.execute(statement, _filter_values(f)).all()
        by_target: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        by_owner: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        breaches = []
        at_risk = []
        moment, until = t.utc_seconds(now), t.utc_seconds(now + horizon)
        for row in rows:
            _, target, due, met, owner, _ = row
            late = due is not None and (met > due if met is not None else due < moment)
            if met is not None or (due is not None and due <= moment):
                for pair in (by_target[target], by_owner[owner or ""]):
                    pair[0] += 1
                    pair[1] += late
            if late:
                breaches.append(row)
            elif met is None and due is not None and moment <= due <= until:
                at_risk.append(row)
        # Latest due first, then by complaint and deadline (sorts are stable).
        breaches.sort(key=lambda r: (r[0], r[5]))
        breaches.sort(key=lambda r: r[2], reverse=True)
        at_risk.sort(key=lambda r: (r[2], r[0], r[5]))
        return SlaParts(
            by_target=by_target,
            by_owner=by_owner,
            breaches=[
                (i, g, t.from_seconds(due), t.from_seconds(met), o)
                for i, g, due, met, o, _ in breaches[:limit]
            ],
            breaches_total=len(breaches),
            at_risk=[
                (i, g, t.from_seconds(due), o) for i, g, due, _, o, _ in at_risk[:limit]
            ],
            at_risk_total=len(at_risk),
        )

    def _latest_breaches(
        self, conn: Connection, now: datetime, limit: int
    ) -> list[Any]:
        """Every complaint's breaches, latest due first: the latest of the
        deadlines met late and of those unmet past due, each read in order
        from its own index, merged (one scan of every deadline otherwise).

        A filtered report selects its complaints first instead: walking these
        indexes would pass over the other complaints' deadlines.
        """
        d = t.deadlines.c
        found: list[Any] = []
        for breached in (
            d.met_at > d.due_at,
            and_(d.met_at.is_(None), d.due_at < now),
        ):
            found += conn.execute(
                select(*_BREACH_COLUMNS, d.seq)
                .where(breached)
                .order_by(d.due_at.desc(), d.complaint_id, d.seq)
                .limit(limit)
            ).all()
        found.sort(key=lambda row: (-row.due_at.timestamp(), row.complaint_id, row.seq))
        return [row[:5] for row in found[:limit]]

    def _compliance_of_all(
        self, conn: Connection, now: datetime
    ) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
        """Deadlines counted and breached, per target and per owner of the
        deadline, for every complaint, from the running totals.

        The totals count deadlines met, met late, and unmet with a due time;
        the unmet ones due at or after `now` are read from their index (see
        `UnmetAhead`): counted = met + unmet - not due yet, breached = late +
        unmet - not breached yet.
        """
        counts = summary.read_counts(
            conn, "met", "late", "unmet", "met_owner", "late_owner", "unmet_owner"
        )
        ahead = self._unmet_ahead(conn, now)
        found = []
        for suffix, not_due, not_breached in (
            ("", ahead.not_due, ahead.not_breached),
            ("_owner", ahead.not_due_by_owner, ahead.not_breached_by_owner),
        ):
            met, late, unmet = (
                counts[name + suffix] for name in ("met", "late", "unmet")
            )
            totals = {
                key: [
                    met[key] + unmet[key] - not_due[key],
                    late[key] + unmet[key] - not_breached[key],
                ]
                for key in met.keys() | unmet.keys()
            }
            found.append({key: pair for key, pair in totals.items() if pair[0]})
        return found[0], found[1]

    def backlog(self, now: datetime, f: ReportFilter) -> BacklogReport:
        if _everything(f):
            return self._backlog_of_all(now, f)
        ages, counted, offered = self._prepared(
            "backlog", f, lambda: self._backlog_statements(f)
        )
        values = {**_filter_values(f), **_age_edges(now)}
        waiting: Counter[str] = Counter()
        with self.reading() as conn:
            open_ages = []
            for stage, name, n, paused in conn.execute(ages, values):
                open_ages.append((stage, name, n))
                waiting[stage] += paused
            counts = list(conn.execute(counted, values).one())
            gesture_rows = conn.execute(offered, values).all()
        stages = len(t.STAGE_COLUMNS)
        answers = len(_ANSWERS)
        first, after = (
            Counter(dict(zip(_ANSWERS, counts[start : start + answers], strict=True)))
            for start in (stages, stages + answers)
        )
        return _backlog_report(
            now,
            f,
            open_ages,
            waiting,
            dict(zip(t.STAGE_COLUMNS, counts[:stages], strict=True)),
            first,
            after,
            Counter({(value, currency): n for value, currency, n in gesture_rows}),
        )

    def _backlog_statements(self, f: ReportFilter) -> tuple[Any, ...]:
        """Open complaints per stage and age bucket (the buckets' edges bound
        per call, see `_age_edges`), and how many of them wait on the
        customer; in one pass over the selection, how many
        reached each stage and each answer to a first resolution and to one
        after a reopen (`_ANSWERS`); and the gestures offered per value and
        currency. All counted in SQL, not a row each into Python: the typical
        week's report at 100,000 complaints took 1.0 ms a call, not 1.28."""
        c, g = t.complaints.c, t.gestures.c
        selected = self._selected(f)
        bucket = case(
            *(
                (c.received_at > bindparam(edge, type_=c.received_at.type), name)
                for edge, name, _ in _AGE_EDGES
            ),
            else_=AGE_BUCKETS[-1][0],
        )
        # With an owner, open is checked on the owner's complaints rather than
        # looked up in the index of open complaints (see `_not_from_index`).
        # A window alone still reads that index, which holds each open
        # complaint's receipt: 9 ms for a week of every category at 100,000
        # complaints, 13 without it (measured on the bench's store).
        still_open = c.is_open if f.owner is None else _not_from_index(c.is_open)
        ages = (
            select(c.stage, bucket, func.count(), func.count(case((c.waiting, 1))))
            .where(selected, still_open)
            .group_by(c.stage, bucket)
        )
        answered = [
            func.count(case((and_(c.resolutions > resolved, is_answer), 1)))
            for resolved, column in (
                (0, c.satisfied_first),
                (1, c.satisfied_after_reopen),
            )
            for is_answer in (column.is_(value) for value in _ANSWERED)
        ]
        counted = select(
            *(func.count(c[column]) for column in t.STAGE_COLUMNS.values()),
            *answered,
        ).where(selected)
        offered = (
            select(g.value, g.currency, func.count())
            .where(g.complaint_id.in_(self._ids(f)))
            .group_by(g.value, g.currency)
        )
        return ages, counted, offered

    def _backlog_of_all(self, now: datetime, f: ReportFilter) -> BacklogReport:
        """The unfiltered report from the running totals (see `summary`); the
        ages of open complaints are read from the index of open complaints."""
        with self.reading() as conn:
            open_ages = _open_ages_of_all(conn, now)
            counts = summary.read_counts(
                conn,
                "reached",
                "satisfied_first",
                "satisfied_after",
                "gesture",
                "waiting",
            )
        reached = {stage: counts["reached"][stage.value] for stage in t.STAGE_COLUMNS}
        gestures: Counter[tuple[str | None, str | None]] = Counter()
        for key, n in counts["gesture"].items():
            value, currency = json.loads(key)
            gestures[value, currency] += n
        return _backlog_report(
            now,
            f,
            open_ages,
            counts["waiting"],
            reached,
            counts["satisfied_first"],
            counts["satisfied_after"],
            gestures,
        )

    def recurrence(
        self, now: datetime, f: ReportFilter, min_count: int = 3
    ) -> RecurrenceReport:
        if _everything(f):
            return self._recurrence_of_all(now, f, min_count)
        (statement,) = self._prepared("recurrence", f, lambda: self._recurrence_of(f))
        with self.reading() as conn:
            groups = conn.execute(
                statement, {**_filter_values(f), "min_count": min_count}
            ).all()
        categories = [
            CategoryRecurrence(
                category=category,
                complaints=complaints,
                prevention_logged=logged,
                resolution_to_prevention_median=median,
            )
            # Sorted here, as the unfiltered report is: a PostgreSQL database's
            # collation may order text otherwise.
            for category, complaints, logged, median in sorted(groups)
        ]
        return RecurrenceReport(
            generated_at=now,
            filter=f,
            min_count=min_count,
            categories=tuple(categories),
        )

    def _recurrence_of(self, f: ReportFilter) -> tuple[Any, ...]:
        """The filtered recurrence report in one statement (`min_count` bound
        at execution).

        Counted and ranked in SQL: the selected rows never reach Python, and
        the category index holds every column read, so ten times the
        complaints cost little more. Each category's row is the one at the
        nearest rank of its median lag (see `percentile`), or its first row
        when it has no lag.
        """
        c = t.complaints.c
        ranked = (
            select(
                c.category,
                c.prevention_lag,
                func.count().over(partition_by=c.category).label("complaints"),
                func.count(c.prevention_at)
                .over(partition_by=c.category)
                .label("logged"),
                func.count(c.prevention_lag)
                .over(partition_by=c.category)
                .label("lags"),
                func.row_number()
                .over(
                    partition_by=c.category,
                    order_by=(c.prevention_lag.is_(None), c.prevention_lag),
                )
                .label("rank"),
            )
            .where(self._selected(f))
            .subquery()
        )
        r = ranked.c
        median_rank = case((r.lags == 0, 1), else_=(r.lags * 50 + 99) // 100)
        return (
            select(r.category, r.complaints, r.logged, r.prevention_lag).where(
                r.complaints >= bindparam("min_count"), r.rank == median_rank
            ),
        )

    def _recurrence_of_all(
        self, now: datetime, f: ReportFilter, min_count: int
    ) -> RecurrenceReport:
        """The unfiltered report from the running totals (see `summary`)."""
        with self.reading() as conn:
            counts = summary.read_counts(conn, "category", "prevention")
            frequent = sorted(
                category for category, n in counts["category"].items() if n >= min_count
            )
            lags = summary.read_distributions(conn, [summary.LAG]) if frequent else {}
        categories = []
        for category in frequent:
            lag = lags.get((summary.LAG, category))
            categories.append(
                CategoryRecurrence(
                    category=category,
                    complaints=counts["category"][category],
                    prevention_logged=counts["prevention"][category],
                    resolution_to_prevention_median=lag[1][0] if lag else None,
                )
            )
        return RecurrenceReport(
            generated_at=now,
            filter=f,
            min_count=min_count,
            categories=tuple(categories),
        )


def _backlog_report(
    now: datetime,
    f: ReportFilter,
    open_ages: Sequence[tuple[str, str, int]],
    waiting: Counter[str],
    reached: dict[Stage, int],
    first: Counter[str],
    after: Counter[str],
    gestures: Counter[tuple[str | None, str | None]],
) -> BacklogReport:
    """The report from the open complaints per (stage, age bucket), the
    answers to resolutions, and how many gestures of each (value, currency)."""
    backlog: dict[Stage, dict[str, int]] = {}
    for stage_name, bucket, n in open_ages:
        ages = backlog.setdefault(Stage(stage_name), dict.fromkeys(_bucket_names(), 0))
        ages[bucket] += n
    totals: dict[str, Decimal] = defaultdict(Decimal)
    by_currency: Counter[str] = Counter()
    for (value, currency), n in gestures.items():
        by_currency[currency or ""] += n
        if value is not None and currency is not None:
            totals[currency] += Decimal(value) * n
    return BacklogReport(
        generated_at=now,
        filter=f,
        open_by_stage=tuple(
            StageBacklog(
                stage=stage,
                open=sum(ages.values()),
                waiting=waiting[stage.value],
                by_age=ages,
            )
            for stage, ages in sorted(
                backlog.items(), key=lambda item: list(Stage).index(item[0])
            )
        ),
        reached=reached,
        satisfied_first={answer: first[answer] for answer in _ANSWERS},
        satisfied_after_reopen={answer: after[answer] for answer in _ANSWERS},
        gestures_by_currency=dict(sorted(by_currency.items())),
        gesture_totals={k: _money_text(v) for k, v in sorted(totals.items())},
    )


_AGE_EDGES = tuple(
    (f"edge_{index}", name, below)
    for index, (name, below) in enumerate(AGE_BUCKETS)
    if below is not None
)
"""Each age bucket with a lower edge: the parameter its edge at the moment of
asking is bound to, its name, and how long before that moment the edge is."""


def _age_edges(now: datetime) -> dict[str, datetime]:
    """The age buckets' lower edges at `now`, named as `_AGE_EDGES` names them."""
    return {edge: now - below for edge, _, below in _AGE_EDGES}


_OPEN_IN_DAY = (
    select(t.complaints.c.stage, func.count())
    .where(
        t.complaints.c.is_open,
        t.complaints.c.stage.in_([stage.value for stage in Stage]),
        t.complaints.c.received_at
        > bindparam("edge", type_=t.complaints.c.received_at.type),
        t.complaints.c.received_at
        < bindparam("next_day", type_=t.complaints.c.received_at.type),
    )
    .group_by(t.complaints.c.stage)
)
"""The open complaints per stage received between an edge and the end of its
day. Every stage named, so that the database counts them in the index of open
complaints by stage and time received alone: found by time received, each
complaint of the day was fetched from its (wide) row, and a day holds ten
times as many in a store ten times as busy (the unfiltered backlog report
took 2.2 times as long at 100,000 complaints as at 10,000)."""


def _open_ages_of_all(conn: Connection, now: datetime) -> list[tuple[str, str, int]]:
    """The open complaints per stage and age bucket (see `_backlog_statements`)
    of every open complaint, from the running totals.

    Complaints received after a bucket's lower edge are those of the whole
    days after the edge's day (totals per day and stage) plus those of the
    edge's own day after the edge (counted in the index of open complaints
    by stage: see `_OPEN_IN_DAY`). Whatever is older than the last edge is
    the rest of each stage's total.
    """
    edges = [(name, now - below) for _, name, below in _AGE_EDGES]
    oldest = edges[-1][1]
    days = summary.read_open_days(conn, oldest)
    open_per_stage = summary.read_counts(conn, "open_stage")["open_stage"]
    newer: dict[str, Counter[str]] = {}
    for name, edge in edges:
        day = edge.date().isoformat()
        after = Counter[str]()
        for (d, stage), n in days.items():
            if d > day:
                after[stage] += n
        next_day = datetime.combine(edge.date() + timedelta(days=1), time(), UTC)
        after.update(
            dict(conn.execute(_OPEN_IN_DAY, {"edge": edge, "next_day": next_day}).all())
        )
        newer[name] = after
    found = []
    previous: Counter[str] = Counter()
    for name, _ in edges:
        for stage, n in (newer[name] - previous).items():
            found.append((stage, name, n))
        previous = newer[name]
    for stage, n in (open_per_stage - previous).items():
        found.append((stage, AGE_BUCKETS[-1][0], n))
    return found


def _distribution(count: int, points: Sequence[float]) -> Distribution:
    """A distribution from `summary.read_distributions`' count and points."""
    p50, p90, p95, largest = points
    return Distribution(count=count, p50=p50, p90=p90, p95=p95, max=largest)


_BREACH_COLUMNS = (
    t.deadlines.c.complaint_id,
    t.deadlines.c.target,
    t.deadlines.c.due_at,
    t.deadlines.c.met_at,
    t.deadlines.c.owner,
)


class _OwnedComplaint(NamedTuple):
    """A selected complaint as the filtered ownership report reads it (times
    in seconds, as stored)."""

    id: str
    received_at: float
    owner: str
    is_open: bool
    received_by: str
    resolved_by: str | None
    ttr_wall: float | None
    handoffs: int


class _Span(NamedTuple):
    """One owner's span of a complaint (times in seconds, as stored)."""

    complaint_id: str
    owner: str
    via: str
    start_at: float
    end_at: float | None


class SlaParts(NamedTuple):
    """What either path of the SLA report finds, before the report is built."""

    by_target: dict[str, list[int]]
    by_owner: dict[str, list[int]]
    breaches: list[tuple[Any, ...]]
    """(complaint id, target, due, met, owner) of each breach listed."""
    breaches_total: int
    at_risk: list[tuple[Any, ...]]
    """(complaint id, target, due, owner) of each complaint at risk listed."""
    at_risk_total: int


def _chain_links(spans: Iterable[Any]) -> tuple[ChainLink, ...]:
    """A complaint's spans, in chain order and with their times in seconds
    (`tables.seconds_of`), as the links of its chain of owners."""
    return tuple(
        ChainLink(
            owner=span.owner,
            start=t.from_seconds(span.start_at),
            end=t.from_seconds(span.end_at),
        )
        for span in spans
    )


def _breached(now: datetime | BindParameter[datetime]) -> Any:
    d = t.deadlines.c
    return and_(
        d.due_at.is_not(None),
        or_(
            and_(d.met_at.is_not(None), d.met_at > d.due_at),
            and_(d.met_at.is_(None), d.due_at < now),
        ),
    )


def _compliance(buckets: dict[str, list[int]]) -> tuple[Compliance, ...]:
    return tuple(
        Compliance(
            key=key,
            due=due,
            on_time=due - late,
            breached=late,
            rate=(due - late) / due if due else None,
        )
        for key, (due, late) in sorted(buckets.items())
    )


def _bucket_names() -> list[str]:
    return [name for name, _ in AGE_BUCKETS]


class ChartData(BaseModel):
    """What the demo's charts draw, read from the views like the reports."""

    model_config = ConfigDict(frozen=True)

    ttr_hours_by_owner: dict[str, list[float]]
    open_by_day: list[tuple[str, int]]
    compliance_by_week: list[tuple[str, float]]


def chart_data(queries: ReportQueries, now: datetime, days: int) -> ChartData:
    """Time to resolution per owner, open backlog per day, SLA compliance per week."""
    c, d = t.complaints.c, t.deadlines.c
    with queries.reading() as conn:
        ttr: dict[str, list[float]] = defaultdict(list)
        for owner, seconds in conn.execute(
            select(c.resolved_by, c.ttr_wall).where(c.ttr_wall.is_not(None))
        ):
            ttr[owner].append(seconds / 3600)
        lifetimes = conn.execute(select(c.received_at, c.prevention_at)).all()
        deadline_rows = conn.execute(
            select(d.due_at, d.met_at).where(
                d.due_at.is_not(None), or_(d.met_at.is_not(None), d.due_at <= now)
            )
        ).all()
    open_by_day = []
    for back in range(days, -1, -1):
        moment = now - timedelta(days=back)
        count = sum(
            1
            for received, closed in lifetimes
            if received <= moment and (closed is None or closed > moment)
        )
        open_by_day.append((moment.date().isoformat(), count))
    weeks: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for due, met in deadline_rows:
        day = due.date()
        week = (day - timedelta(days=day.weekday())).isoformat()
        weeks[week][0] += 1
        weeks[week][1] += (met is not None and met <= due) or (
            met is None and due >= now
        )
    return ChartData(
        ttr_hours_by_owner={k: sorted(v) for k, v in sorted(ttr.items())},
        open_by_day=open_by_day,
        compliance_by_week=[
            (week, on_time / due) for week, (due, on_time) in sorted(weeks.items())
        ],
    )
