"""Running totals and indexed values that answer the unfiltered reports quickly.

An unfiltered report covers every complaint in the views; counting them at
question time costs a scan of every row, which grows with the store. Instead
the runner keeps, in the same transaction as the rows (so the totals never
disagree with the rows they sum):

- `counts`: one integer per (metric, key): open complaints per owner, per
  stage, per day received and stage; those waiting on the customer per
  stage; deadlines met late per target; answers to the first resolution, ...
- `buckets`: how many values of each measured duration (time to resolution
  per owner, category, channel, severity and week; resolution to prevention
  per category) fall in each coarse logarithmic bucket. The values themselves
  stay in the complaints' rows, each measure indexed by its key and value
  (`measured_columns`). A nearest-rank percentile then reads the small bucket
  table to find the bucket holding the wanted rank, and one index seek with a
  short OFFSET inside that bucket returns the exact value.
- `percentiles`: those percentiles (and the count and maximum) of every
  measure and key, found that way by the batch that changed its values, so a
  report reads one small row per group instead of walking the values of
  hundreds of groups at question time.

What depends on the moment of asking (deadlines fallen due by now, ages of open
complaints) is not kept: the reports count those from indexed ranges of the
rows, which only cover deadlines still unmet and complaints still open.

The contributions are derived from the view rows themselves (old rows and new
rows of each touched complaint), so a change is the difference of the two.
"""

from __future__ import annotations

import functools
import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from amends.projections import tables as t

GROUPINGS = tuple(t.GROUPING_COLUMNS)
CLOCKS = tuple(t.CLOCK_COLUMNS)
LAG = "lag:category"
"""The measure of resolution-to-prevention time, per category."""
BUCKETS_PER_DOUBLING = 4

Rows = dict[str, list[tuple[Any, ...]]]
Value = tuple[str, str, int, float]
"""(measure, key, bucket, value): one value a complaint adds to a measure."""


def _index(table: Any) -> dict[str, int]:
    return {column.name: i for i, column in enumerate(table.columns)}


_C = _index(t.complaints)
_S = _index(t.spans)
_D = _index(t.deadlines)
_G = _index(t.gestures)
_GROUP_COLUMNS = tuple(_C[column] for column in t.GROUPING_COLUMNS.values())
_CLOCK_COLUMNS = tuple(_C[column] for column in t.CLOCK_COLUMNS.values())
_REACHED = [(stage.value, _C[column]) for stage, column in t.STAGE_COLUMNS.items()]


def measure(clock: str, grouping: str) -> str:
    return f"{clock}:{grouping}"


def measured_columns(name: str) -> tuple[str, str]:
    """The complaints' columns holding a measure's key and its values."""
    if name == LAG:
        return t.LAG_COLUMNS
    clock, grouping = name.split(":")
    return t.GROUPING_COLUMNS[grouping], t.CLOCK_COLUMNS[clock]


def bucket_of(value: float) -> int:
    """The logarithmic bucket of a duration in seconds (0 for under a second)."""
    if value < 1:
        return 0
    return 1 + int(math.log2(value) * BUCKETS_PER_DOUBLING)


@functools.cache
def bucket_start(bucket: int) -> float:
    """The least value `bucket_of` files under `bucket` (-inf for bucket 0).

    Found from `bucket_of` itself, not from the formula alone: a range query
    must select exactly the values the bucket counts, and rounding in `log2`
    could otherwise move an edge by a float.
    """
    if bucket <= 0:
        return -math.inf
    edge = math.pow(2.0, (bucket - 1) / BUCKETS_PER_DOUBLING)
    while bucket_of(edge) < bucket:
        edge = math.nextafter(edge, math.inf)
    while bucket_of(below := math.nextafter(edge, -math.inf)) >= bucket:
        edge = below
    return edge


def day_key(received_at: datetime, stage: str) -> str:
    """The key of open complaints per UTC day received and stage; sorts by day."""
    return f"{received_at.date().isoformat()} {stage}"


def answer(value: bool | None) -> str:
    return "unanswered" if value is None else ("yes" if value else "no")


def gesture_key(value: str | None, currency: str | None) -> str:
    return json.dumps([value, currency])


def contributions(rows: Rows) -> tuple[list[tuple[str, str]], set[Value]]:
    """What one complaint's view rows add to the counts (each key once per
    one it adds) and the measures.

    A list of keys, not a `Counter`: a `Counter` updated with it counts in
    C, where `counter[key] += 1` calls a Python `__missing__` for every new
    key (adding a complaint's rows took 38 µs that way, 24 µs so)."""
    keys: list[tuple[str, str]] = []
    count = keys.append
    values: set[Value] = set()
    for row in rows[t.complaints.name]:
        count(("complaints", ""))
        count(("category", row[_C["category"]]))
        count(("received_first", row[_C["received_by"]]))
        if row[_C["is_open"]]:
            count(("open", row[_C["owner"]]))
            stage = row[_C["stage"]]
            count(("open_stage", stage))
            if row[_C["waiting"]]:
                count(("waiting", stage))
            count(("open_day", day_key(row[_C["received_at"]], stage)))
        if row[_C["handoffs"]] > 0:
            count(("handed_off", ""))
        for stage, index in _REACHED:
            if row[index] is not None:
                count(("reached", stage))
        resolutions = row[_C["resolutions"]]
        if resolutions > 0:
            count(("satisfied_first", answer(row[_C["satisfied_first"]])))
        if resolutions > 1:
            count(("satisfied_after", answer(row[_C["satisfied_after_reopen"]])))
        resolved_at = row[_C["first_resolved_at"]]
        if resolved_at is not None:
            count(("resolved", ""))
            count(("resolved_by", row[_C["resolved_by"]]))
            if row[_C["reopens"]] > 0:
                count(("reopened", ""))
            for clock, seconds in zip(
                CLOCKS, (row[index] for index in _CLOCK_COLUMNS), strict=True
            ):
                for grouping, index in zip(GROUPINGS, _GROUP_COLUMNS, strict=True):
                    values.add(
                        (
                            measure(clock, grouping),
                            row[index],
                            bucket_of(seconds),
                            seconds,
                        )
                    )
        prevention_at = row[_C["prevention_at"]]
        if prevention_at is not None:
            count(("prevention", row[_C["category"]]))
            lag = row[_C["prevention_lag"]]
            if lag is not None:
                values.add((LAG, row[_C["category"]], bucket_of(lag), lag))
    for row in rows[t.spans.name]:
        owner = row[_S["owner"]]
        count(("span_owner", owner))
        if row[_S["via"]] == "transfer":
            count(("handed_in", owner))
        if row[_S["end_at"]] is not None:
            count(("handed_out", owner))
    for row in rows[t.deadlines.name]:
        target, owner = row[_D["target"]], row[_D["owner"]] or ""
        due, met = row[_D["due_at"]], row[_D["met_at"]]
        if met is not None:
            count(("met", target))
            count(("met_owner", owner))
            if due is not None and met > due:
                count(("late", target))
                count(("late_owner", owner))
        elif due is not None:
            count(("unmet", target))
            count(("unmet_owner", owner))
    for row in rows[t.gestures.name]:
        count(("gesture", gesture_key(row[_G["value"]], row[_G["currency"]])))
    return keys, values


class Delta:
    """The change a batch makes to the counts and the bucket counts, and the
    groups whose values it changed."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        self.buckets: Counter[tuple[str, str, int]] = Counter()
        """Values added (or, negative, removed) per (measure, key, bucket)."""
        self.changed: set[Group] = set()
        """The (measure, key) groups whose values the batch changed."""

    def add(self, rows: Rows) -> None:
        """What a complaint new to the views adds (a rebuild's load, which
        finds every group's percentiles at its end, so `changed` stays as is)."""
        keys, values = contributions(rows)
        self.counts.update(keys)
        buckets = self.buckets
        for name, key, bucket, _ in values:
            buckets[name, key, bucket] += 1

    def change(self, old: Rows, new: Rows) -> None:
        old_keys, old_values = contributions(old)
        new_keys, new_values = contributions(new)
        self.counts.update(new_keys)
        self.counts.subtract(old_keys)
        if old_values == new_values:
            return
        # A complaint adds one value at most to each measure and key, so the
        # difference of its old and new values is what it moved.
        for name, key, bucket, _ in old_values - new_values:
            self.buckets[name, key, bucket] -= 1
            self.changed.add((name, key))
        for name, key, bucket, _ in new_values - old_values:
            self.buckets[name, key, bucket] += 1
            self.changed.add((name, key))


def nearest_ranks(count: int, percents: Sequence[int]) -> list[int]:
    """1-based nearest ranks of each percentile among `count` sorted values."""
    return [max(-(-p * count // 100), 1) for p in percents]


def locate(
    buckets: Iterable[tuple[int, int]], ranks: Sequence[int]
) -> list[tuple[int, int]]:
    """For each rank, (bucket, offset within it), from (bucket, count) pairs
    sorted by bucket."""
    wanted = iter(sorted(enumerate(ranks), key=lambda item: item[1]))
    pending = next(wanted, None)
    placed: dict[int, tuple[int, int]] = {}
    seen = 0
    for bucket, n in buckets:
        while pending is not None and pending[1] <= seen + n:
            placed[pending[0]] = (bucket, pending[1] - seen - 1)
            pending = next(wanted, None)
        seen += n
    return [placed[i] for i in range(len(ranks))]


# ------------------------------------------------------------------ reading


def read_counts(conn: Connection, *metrics: str) -> dict[str, Counter[str]]:
    """The running totals of `metrics`, by key (zero totals left out)."""
    c = t.counts.c
    found: dict[str, Counter[str]] = {metric: Counter() for metric in metrics}
    for metric, key, n in conn.execute(
        select(c.metric, c.key, c.n).where(c.metric.in_(metrics), c.n != 0)
    ):
        found[metric][key] = n
    return found


def read_open_days(conn: Connection, since: datetime) -> Counter[tuple[str, str]]:
    """Open complaints per (UTC day received, stage), from the day of `since` on."""
    c = t.counts.c
    found: Counter[tuple[str, str]] = Counter()
    for key, n in conn.execute(
        select(c.key, c.n).where(
            c.metric == "open_day", c.key >= since.date().isoformat(), c.n != 0
        )
    ):
        day, stage = key.split(" ", 1)
        found[day, stage] = n
    return found


PERCENTS = (50, 90, 95)


Group = tuple[str, str]
"""(measure, key): one distribution."""
Distributions = dict[Group, tuple[int, list[float]]]
"""Per group with values: the count, and the nearest-rank p50, p90, p95 and
the maximum."""


def read_distributions(conn: Connection, measures: Sequence[str]) -> Distributions:
    """Every group of `measures` that has values, as the runner last found it."""
    p = t.percentiles.c
    rows = conn.execute(
        select(p.measure, p.key, p.n, p.p50, p.p90, p.p95, p.top).where(
            p.measure.in_(measures)
        )
    )
    return {(name, key): (n, [*points]) for name, key, n, *points in rows}


def measured_groups(conn: Connection) -> set[Group]:
    """Every group with a value counted in its buckets."""
    b = t.buckets.c
    return {
        (name, key)
        for name, key in conn.execute(
            select(b.measure, b.key).where(b.n != 0).distinct()
        )
    }


def distributions_of(conn: Connection, groups: Iterable[Group]) -> Distributions:
    """The distributions of `groups`, exactly, from the bucket counts and the
    sorted values (the groups without values are left out)."""
    chosen = set(groups)
    if not chosen:
        return {}
    per: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for name, key, bucket, n in _bucket_rows(conn, chosen):
        per.setdefault((name, key), []).append((bucket, n))
    wanted: dict[tuple[str, str], tuple[int, list[tuple[int, int]]]] = {}
    sizes: dict[tuple[str, str, int], int] = {}
    for (name, key), buckets in per.items():
        count = sum(n for _, n in buckets)
        ranks = [*nearest_ranks(count, PERCENTS), count]
        spots = locate(buckets, ranks)
        wanted[name, key] = (count, spots)
        size = dict(buckets)
        for bucket, _ in spots:
            sizes[name, key, bucket] = size[bucket]
    points = sorted(
        {
            (name, key, bucket, offset)
            for (name, key), (_, spots) in wanted.items()
            for bucket, offset in spots
        }
    )
    values = _values_at(conn, points, sizes)
    return {
        group: (count, [values[(*group, bucket, offset)] for bucket, offset in spots])
        for group, (count, spots) in wanted.items()
    }


def _bucket_rows(
    conn: Connection, groups: set[Group]
) -> list[tuple[str, str, int, int]]:
    """The bucket counts of `groups`, sorted, as plain driver rows: a batch
    may change thousands of groups, and SQLAlchemy's compiling and result rows
    cost more than the query. A few groups (a follower's small batch) are
    looked up by key; many are read with all the other keys of their measures
    (an index range each) and picked out here."""
    preparer = conn.dialect.identifier_preparer
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    b = t.buckets.c
    name, key, bucket, n = (
        preparer.format_column(column) for column in (b.measure, b.key, b.bucket, b.n)
    )
    parameters: list[str]
    if len(groups) <= GROUPS_BY_KEY:
        ordered = sorted(groups)
        where = " OR ".join(f"({name} = {mark} AND {key} = {mark})" for _ in ordered)
        parameters = [part for group in ordered for part in group]
    else:
        parameters = sorted({measure for measure, _ in groups})
        where = f"{name} IN ({', '.join(mark for _ in parameters)})"
    statement = (
        f"SELECT {name}, {key}, {bucket}, {n} "
        f"FROM {preparer.format_table(t.buckets)} "
        f"WHERE ({where}) AND {n} > 0 "
        f"ORDER BY {name}, {key}, {bucket}"
    )
    cursor = conn.connection.cursor()
    try:
        cursor.execute(statement, tuple(parameters))
        rows = cursor.fetchall()
    finally:
        cursor.close()
    return [row for row in rows if (row[0], row[1]) in groups]


GROUPS_BY_KEY = 100
"""Groups up to which their buckets are looked up key by key (two parameters
each, under SQLite's oldest limit of 999)."""


def _values_at(
    conn: Connection,
    points: Sequence[tuple[str, str, int, int]],
    sizes: dict[tuple[str, str, int], int],
) -> dict[tuple[str, str, int, int], float]:
    """The value at each (measure, key, bucket, offset): one seek in the
    measure's index on the complaints (`measured_columns`) to the bucket's
    range and a short walk inside it, from whichever end is nearer (so the
    maximum costs one step), many to a statement.

    One scalar subquery per point, because SQLite refuses an OFFSET that
    refers to another table's column (a join on a list of points).
    """
    dialect = conn.dialect
    preparer = dialect.identifier_preparer
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    table = preparer.format_table(t.complaints)
    found: dict[tuple[str, str, int, int], float] = {}
    for start in range(0, len(points), POINTS_PER_STATEMENT):
        chunk = points[start : start + POINTS_PER_STATEMENT]
        lookups: list[str] = []
        parameters: list[str | int | float] = []
        for name, key, bucket, offset in chunk:
            key_column, value_column = (
                preparer.format_column(t.complaints.c[column])
                for column in measured_columns(name)
            )
            from_end = sizes[name, key, bucket] - 1 - offset
            order, steps = ("DESC", from_end) if from_end < offset else ("ASC", offset)
            lookups.append(
                f"(SELECT {value_column} FROM {table} "
                f"WHERE {key_column} = {mark} AND {value_column} >= {mark} "
                f"AND {value_column} < {mark} "
                f"ORDER BY {value_column} {order} LIMIT 1 OFFSET {mark})"
            )
            parameters += [
                key,
                bucket_start(bucket),
                bucket_start(bucket + 1),
                steps,
            ]
        statement = "SELECT " + ", ".join(lookups)
        row = conn.exec_driver_sql(statement, tuple(parameters)).one()
        found.update(zip(chunk, row, strict=True))
    return found


POINTS_PER_STATEMENT = 200
"""Four parameters a point: 800 stays under SQLite's oldest limit of 999."""
