"""Reports from the views equal the oracle's, however the views were built.

Random workloads (many complaints, handoffs, reopens, waits on the customer,
gestures, random times) are written through a desk; the views are caught up
at random moments in random batch sizes, rebuilt from zero, and crashed in
the middle of a batch; every report must equal what `tests/oracle.py`
computes from the raw histories.
"""

from __future__ import annotations

import csv
import gc
import io
import math
import os
import sqlite3
import tempfile
import threading
import time
import unicodedata
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, inspect, select, text
from sqlalchemy.exc import DBAPIError

from amends import ComplaintDesk, InvalidTransition, Stage, WorkerDied
from amends.domain import values
from amends.domain.errors import HistoryViolation
from amends.domain.sla import PolicySchedule, preset
from amends.domain.values import UNPRINTABLE, display_width, shown
from amends.infra.errors import StoreUnavailable
from amends.infra.reporting import MAX_COUNT
from amends.projections import runner as runner_module
from amends.projections import summary
from amends.projections import tables as t
from amends.projections.reports import DEFAULT_LIMIT, Report, ReportFilter
from amends.projections.runner import (
    Batch,
    ProjectionRunner,
    ViewsBeingReplaced,
    collector_paused,
)
from amends.testing import CATEGORIES, PEOPLE, Lifecycle, lifecycles
from oracle import Oracle

from conftest import POSTGRES_URL_VARIABLE, FixedClock
from helpers import (
    RECEIVE,
    RawStore,
    kill_if_forked,
    layout_beside,
    load_rows,
    outcome_within,
    relabel_views,
    step_forward,
    walk_to,
)

FIXTURES = Path(__file__).parent / "fixtures"
START = datetime(2024, 3, 1, tzinfo=UTC)
SCHEDULE = PolicySchedule(
    entries=(
        (datetime(2000, 1, 1, tzinfo=UTC), preset("promise_keeping")),
        (START + timedelta(days=20), preset("fca_disp_payments")),
    )
)
"""Two policies in force one after the other: business time from day 20 on."""


@contextmanager
def fresh_store(kind: str) -> Iterator[str]:
    if kind == "memory":
        yield "memory://"
    elif kind == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{Path(folder) / 'store.db'}"
    else:
        base = os.environ.get(POSTGRES_URL_VARIABLE)
        if not base:
            pytest.skip(f"{POSTGRES_URL_VARIABLE} is not set: PostgreSQL tests skipped")
        import psycopg

        schema = f"amends_views_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        try:
            yield f"{base}?schema={schema}"
        finally:
            with psycopg.connect(base, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def starts() -> st.SearchStrategy[datetime]:
    return st.integers(0, 40 * 24 * 3600).map(lambda s: START + timedelta(seconds=s))


@st.composite
def workloads(draw: st.DrawFn) -> list[Lifecycle]:
    lifecycle = lifecycles(max_steps=16, start=starts(), forward_bias=0.5)
    return draw(st.lists(lifecycle, min_size=1, max_size=8))


@st.composite
def report_filters(draw: st.DrawFn) -> ReportFilter:
    since = draw(st.none() | starts())
    return ReportFilter(
        since=since,
        until=draw(st.none() | starts().filter(lambda u: since is None or u > since)),
        owner=draw(st.none() | st.sampled_from(PEOPLE)),
        category=draw(st.none() | st.sampled_from(CATEGORIES)),
    )


@st.composite
def filters_of_one_shape(draw: st.DrawFn) -> tuple[ReportFilter, ReportFilter]:
    """Two filters that set the same fields, each to values of its own."""
    since_set, until_set, owner_set, category_set = (
        draw(st.booleans()) for _ in range(4)
    )

    def one() -> ReportFilter:
        since = draw(starts()) if since_set else None
        return ReportFilter(
            since=since,
            until=(
                draw(starts().filter(lambda u: since is None or u > since))
                if until_set
                else None
            ),
            owner=draw(st.sampled_from(PEOPLE)) if owner_set else None,
            category=draw(st.sampled_from(CATEGORIES)) if category_set else None,
        )

    return one(), one()


def run_workload(
    desk: ComplaintDesk,
    workload: list[Lifecycle],
    catch_up_after: set[int],
    batch_sizes: list[int],
    batch_complaints: int = 1_000,
) -> list[uuid.UUID]:
    """Send every step in time order, catching the views up now and then."""
    steps = sorted(
        (step.arguments["at"], n, i)
        for n, lifecycle in enumerate(workload)
        for i, step in enumerate(lifecycle.steps)
    )
    ids: dict[int, uuid.UUID] = {}
    runner = desk.reports.runner
    runner.batch_complaints = batch_complaints
    for count, (_, n, i) in enumerate(steps):
        step = workload[n].steps[i]
        if i == 0:
            ids[n] = step.apply(desk)
        else:
            step.apply(desk, ids[n])
        if count in catch_up_after:
            runner.batch_size = batch_sizes[count % len(batch_sizes)]
            runner.catch_up()
    return [ids[n] for n in range(len(workload))]


def assert_reports_match(
    desk: ComplaintDesk,
    ids: list[uuid.UUID],
    f: ReportFilter,
    now: datetime,
    schedule: PolicySchedule = SCHEDULE,
) -> None:
    oracle = Oracle({i: desk.events(i) for i in ids}, schedule)
    queries = desk.reports.queries
    limit, horizon = 3, timedelta(hours=30)
    pairs: list[tuple[str, Any, Any]] = [
        (
            "ownership",
            queries.ownership(now, f, limit),
            oracle.ownership(now, f, limit),
        ),
        (
            "time_to_resolution",
            queries.time_to_resolution(now, f, limit),
            oracle.time_to_resolution(now, f, limit),
        ),
        (
            "sla",
            queries.sla(now, f, horizon, limit),
            oracle.sla(now, f, horizon, limit),
        ),
        ("backlog", queries.backlog(now, f), oracle.backlog(now, f)),
        ("recurrence", queries.recurrence(now, f, 2), oracle.recurrence(now, f, 2)),
    ]
    for name, from_views, from_oracle in pairs:
        assert from_views.model_dump() == from_oracle.model_dump(), name


def make_desk(store_url: str, clock: FixedClock) -> ComplaintDesk:
    return ComplaintDesk(store_url, clock=clock, sla_policies=SCHEDULE)


def examples(n: int) -> settings:
    return settings(
        max_examples=n,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@examples(60)
@given(
    workload=workloads(),
    catch_up_after=st.sets(st.integers(0, 120), max_size=10),
    batch_sizes=st.lists(st.integers(1, 7), min_size=1, max_size=4),
    batch_complaints=st.integers(1, 4),
    f=report_filters(),
    later=st.integers(0, 20 * 24 * 3600),
)
def test_incremental_views_equal_the_oracle(
    workload: list[Lifecycle],
    catch_up_after: set[int],
    batch_sizes: list[int],
    batch_complaints: int,
    f: ReportFilter,
    later: int,
) -> None:
    clock = FixedClock(datetime(2030, 1, 1, tzinfo=UTC))
    with make_desk("memory://", clock) as desk:
        ids = run_workload(
            desk, workload, catch_up_after, batch_sizes, batch_complaints
        )
        desk.reports.runner.batch_size = batch_sizes[0]
        desk.reports.catch_up()
        now = max(e.timestamp for i in ids for e in desk.events(i)) + timedelta(
            seconds=later
        )
        assert_reports_match(desk, ids, f, now)
        assert_reports_match(desk, ids, ReportFilter(), now)
        desk.reports.rebuild()
        assert_reports_match(desk, ids, f, now)


@examples(30)
@given(
    workload=workloads(),
    filters=filters_of_one_shape(),
    later=st.integers(0, 20 * 24 * 3600),
)
def test_filters_of_one_shape_each_get_their_own_reports(
    workload: list[Lifecycle],
    filters: tuple[ReportFilter, ReportFilter],
    later: int,
) -> None:
    """Statements built once per filter shape must bind each call's values."""
    clock = FixedClock(datetime(2030, 1, 1, tzinfo=UTC))
    with make_desk("memory://", clock) as desk:
        ids = run_workload(desk, workload, set(), [1_000])
        desk.reports.catch_up()
        now = max(e.timestamp for i in ids for e in desk.events(i)) + timedelta(
            seconds=later
        )
        for f in (*filters, *filters):
            assert_reports_match(desk, ids, f, now)


class Crash(Exception):
    pass


@examples(25)
@given(
    workload=workloads(),
    crash_at=st.integers(1, 6),
    batch_size=st.integers(1, 9),
    keep=st.integers(0, 3),
)
def test_a_runner_that_fails_mid_batch_and_restarts_gives_the_same_reports(
    workload: list[Lifecycle], crash_at: int, batch_size: int, keep: int
) -> None:
    clock = FixedClock(datetime(2030, 1, 1, tzinfo=UTC))
    with make_desk("memory://", clock) as desk:
        ids = run_workload(desk, workload, set(), [batch_size])
        runner = desk.reports.runner
        runner.batch_size = batch_size
        writes = [0]
        real_write = ProjectionRunner._write

        def write_then_fail(self: ProjectionRunner, conn: Any, touched: Any) -> None:
            writes[0] += 1
            if writes[0] == crash_at:
                # Write part of the batch's rows, then die before tracking moves.
                real_write(self, conn, list(touched)[:keep])
                raise Crash
            real_write(self, conn, touched)

        runner._write = write_then_fail.__get__(runner)  # type: ignore[method-assign]
        with suppress(Crash):
            runner.catch_up()
        restarted = ProjectionRunner(runner.feed, runner.engine, SCHEDULE, batch_size=3)
        restarted.catch_up()
        assert restarted.lag() == 0
        now = clock.now
        assert_reports_match(desk, ids, ReportFilter(), now)


@given(
    workload=workloads(),
    crash_at=st.integers(1, 6),
    batch_size=st.integers(1, 9),
    keep=st.integers(0, 3),
    cache_size=st.integers(0, 4),
)
def test_the_same_runner_goes_on_after_a_failed_batch(
    workload: list[Lifecycle],
    crash_at: int,
    batch_size: int,
    keep: int,
    cache_size: int,
) -> None:
    """The runner keeps recent facts in memory between batches; a batch that
    fails after folding must not leave facts the database never saw."""
    clock = FixedClock(datetime(2030, 1, 1, tzinfo=UTC))
    with make_desk("memory://", clock) as desk:
        ids = run_workload(desk, workload, set(), [batch_size])
        desk.reports.runner.rebuild()  # drop the views the workload built
        runner = ProjectionRunner(
            desk.reports.runner.feed,
            desk.reports.runner.engine,
            SCHEDULE,
            batch_size=batch_size,
            cache_size=cache_size,
        )
        real_write = ProjectionRunner._write
        writes = [0]

        def write_then_fail(self: ProjectionRunner, conn: Any, touched: Any) -> None:
            writes[0] += 1
            if writes[0] == crash_at:
                real_write(self, conn, list(touched)[:keep])
                raise Crash
            real_write(self, conn, touched)

        runner._write = write_then_fail.__get__(runner)  # type: ignore[method-assign]
        with suppress(Crash):
            runner.catch_up()
        runner.catch_up()
        assert runner.lag() == 0
        assert_reports_match(desk, ids, ReportFilter(), clock.now)


@examples(25)
@given(
    workload=workloads(),
    batch_size=st.integers(1, 40),
    batch_complaints=st.integers(1, 6),
)
def test_a_batch_never_exceeds_its_events_or_complaints(
    workload: list[Lifecycle], batch_size: int, batch_complaints: int
) -> None:
    """A batch reads the log a few events at a time and stops at either bound,
    which is what keeps a rebuild's memory flat; and it always moves on."""
    clock = FixedClock(datetime(2030, 1, 1, tzinfo=UTC))
    with make_desk("memory://", clock) as desk:
        ids = run_workload(desk, workload, set(), [batch_size])
        runner = desk.reports.runner
        runner.batch_size, runner.batch_complaints = batch_size, batch_complaints
        seen: list[tuple[int, int]] = []
        commit = runner._commit

        def measured(batch: Batch) -> None:
            seen.append((batch.events, len(batch.changes)))
            commit(batch)

        runner._commit = measured  # type: ignore[method-assign]
        applied = runner.rebuild()
        assert applied == runner.feed.last_position() == sum(n for n, _ in seen)
        assert all(0 < n <= batch_size for n, _ in seen)
        assert all(0 < touched <= batch_complaints for _, touched in seen)
        # A batch stops early only when it is full of complaints.
        assert all(
            n == batch_size or touched == batch_complaints for n, touched in seen[:-1]
        )
        assert_reports_match(desk, ids, ReportFilter(), clock.now)


@examples(25)
@given(
    workload=workloads(),
    catch_up_after=st.sets(st.integers(0, 120), max_size=10),
    batch_sizes=st.lists(st.integers(1, 7), min_size=1, max_size=4),
)
def test_the_kept_percentiles_always_equal_those_found_from_the_values(
    workload: list[Lifecycle], catch_up_after: set[int], batch_sizes: list[int]
) -> None:
    """Each batch finds again the percentiles of the groups it changed; none
    is left stale by a later batch, and a group is kept only while it has
    values. Checked against the nearest ranks of every measure's values read
    straight from the complaints' rows, sorted here."""
    clock = FixedClock(datetime(2030, 1, 1, tzinfo=UTC))
    with make_desk("memory://", clock) as desk:
        run_workload(desk, workload, catch_up_after, batch_sizes, 2)
        desk.reports.catch_up()
        names = [
            summary.measure(clock_name, grouping)
            for clock_name in summary.CLOCKS
            for grouping in summary.GROUPINGS
        ] + [summary.LAG]
        with desk.reports.runner.engine.connect() as conn:
            values: dict[tuple[str, str], list[float]] = {}
            for name in names:
                key, value = (t.complaints.c[c] for c in summary.measured_columns(name))
                for k, v in conn.execute(select(key, value).where(value.is_not(None))):
                    values.setdefault((name, k), []).append(v)
            kept = summary.read_distributions(conn, names)
        expected = {}
        for group, found in values.items():
            ordered = sorted(found)
            ranks = summary.nearest_ranks(len(ordered), summary.PERCENTS)
            expected[group] = (
                len(ordered),
                [ordered[rank - 1] for rank in ranks] + [ordered[-1]],
            )
        assert kept == expected


def test_percentiles_count_the_values_that_start_a_bucket() -> None:
    """Durations of exactly 1, 2 and 4 seconds are the first values of their
    buckets: the lookups must find them there."""
    clock = FixedClock(START)
    with make_desk("memory://", clock) as desk:
        for seconds in (1, 2, 2, 4, 4, 4):
            clock.now = START
            complaint_id = walk_to(desk, Stage.UPDATING)
            clock.now = START + timedelta(seconds=seconds)
            step_forward(desk, complaint_id, Stage.UPDATING)
        desk.reports.catch_up()
        name = summary.measure("wall", "owner")
        with desk.reports.runner.engine.connect() as conn:
            kept = summary.read_distributions(conn, [name])
    assert kept == {(name, RECEIVE["by"]): (6, [2.0, 4.0, 4.0, 4.0])}


def test_every_bucket_starts_at_the_least_value_filed_under_it() -> None:
    """The percentile lookups select a bucket's values by range: the range
    must hold exactly the values `bucket_of` files there. Every bucket a
    duration of up to a thousand years can fall in."""
    assert summary.bucket_start(0) == -math.inf
    last = summary.bucket_of(1000 * 365.25 * 86400.0)
    for bucket in range(1, last + 2):
        start = summary.bucket_start(bucket)
        assert summary.bucket_of(start) == bucket
        assert summary.bucket_of(math.nextafter(start, -math.inf)) == bucket - 1


def test_a_batch_rolled_back_after_its_rows_were_written_is_written_again() -> None:
    clock = FixedClock(START)
    with make_desk("memory://", clock) as desk:
        runner = desk.reports.runner
        first = desk.receive(**RECEIVE, at=START)
        runner.catch_up()  # the complaint's facts are now kept in memory
        desk.acknowledge(first, by="ana", paraphrase="Billed twice.", at=START)
        desk.transfer_ownership(
            first, by="ana", to="ben", reason="Payments", customer_told=True, at=START
        )
        real_write = ProjectionRunner._write

        def write_all_then_fail(
            self: ProjectionRunner, conn: Any, touched: Any
        ) -> None:
            real_write(self, conn, touched)
            raise Crash  # the transaction rolls back what was just written

        runner._write = write_all_then_fail.__get__(runner)  # type: ignore[method-assign]
        with suppress(Crash):
            runner.catch_up()
        del runner._write
        runner.catch_up()
        owners = {
            row.owner: row for row in desk.reports.ownership(catch_up=False).owners
        }
        assert owners["ben"].handed_in == 1
        assert owners["ana"].handed_out == 1
        assert_reports_match(desk, [first], ReportFilter(), START + timedelta(days=3))


def test_a_store_holding_times_outside_the_calendar_years_still_reports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Commands refuse times outside the years business calendars cover, but
    a store written before they did may hold them. Its reports are still read,
    under business time, equal to the oracle's and to a rebuild's: no
    business time passes outside the calendars, so a deadline that would fall
    after them is never due. Before, every report failed as a bug, for good."""
    schedule = PolicySchedule.always(preset("fca_disp_payments"))
    clock = FixedClock(datetime(3500, 1, 1, tzinfo=UTC))
    with ComplaintDesk("memory://", clock=clock, sla_policies=schedule) as desk:
        monkeypatch.setattr(values, "FIRST_YEAR", 1)  # as written before
        monkeypatch.setattr(values, "LAST_YEAR", 9999)
        early, *received = [
            desk.receive(**RECEIVE, at=datetime(year, month, day, 9, tzinfo=UTC))
            for year, month, day in [(1, 1, 1), (1850, 6, 3), (1899, 12, 29)]
        ]
        late = desk.receive(**RECEIVE, at=datetime(3200, 1, 3, tzinfo=UTC))
        monkeypatch.undo()
        desk.acknowledge(
            early, by="ana", paraphrase="P", at=datetime(1900, 1, 5, tzinfo=UTC)
        )
        ids = [early, *received, late]
        now = clock()
        desk.reports.runner.catch_up()
        for f in (ReportFilter(), ReportFilter(category=RECEIVE["category"])):
            assert_reports_match(desk, ids, f, now, schedule)
        sla = desk.reports.sla(limit=None)
        # Due in the first business days the calendars hold (from 1899), or
        # never: no business time passes after them.
        assert {b.due_at.year for b in sla.breaches} == {1899, 1900}
        assert {b.complaint_id for b in sla.breaches} == {
            str(i) for i in (early, *received)
        }
        before = every_report(desk)
        desk.reports.rebuild()
        assert every_report(desk) == before


def test_a_wait_on_the_customer_does_not_stop_a_regulators_clock() -> None:
    """DISP 1.6.2R: a final response "by the end of eight weeks after its
    receipt"; a month waiting on the customer does not move it. The team's
    own promises (the default policy) do wait."""
    received = datetime(2026, 1, 5, 9, tzinfo=UTC)
    clock = FixedClock(received)
    resolves = {}
    for name in ("fca_disp", "promise_keeping"):
        clock.now = received
        with ComplaintDesk("memory://", clock=clock, sla_policies=name) as desk:
            complaint = desk.receive(**RECEIVE)
            clock.now += timedelta(hours=1)
            desk.acknowledge(complaint, by="ana", paraphrase="P")
            clock.now += timedelta(hours=1)
            desk.await_customer(complaint, by="ana", reason="Statements")
            clock.now += timedelta(days=30)
            desk.customer_replied(complaint, by="ana")
            clock.now = received + timedelta(days=70)
            sla = desk.reports.sla(limit=None)
            resolves[name] = [b.due_at for b in sla.breaches if b.target == "resolve"]
    # By the end of the eighth week: midnight in London (GMT in March).
    assert resolves["fca_disp"] == [datetime(2026, 3, 3, tzinfo=UTC)]
    assert resolves["promise_keeping"] == []  # it sets no resolve target


def test_fifteen_business_days_end_with_the_fifteenth_day_after_receipt() -> None:
    """DISP 1.6.2AR: "by the end of 15 business days after the day on which
    it received the complaint". Received Monday 2 March 2026 at 10:00, the
    fifteenth business day after is Monday 23 March: resolved that afternoon
    is on time, resolved a moment after its midnight is not."""
    received = datetime(2026, 3, 2, 10, tzinfo=UTC)  # GMT in London
    clock = FixedClock(received)
    on_time = {}
    for resolved in (datetime(2026, 3, 23, 15), datetime(2026, 3, 24, 0, 0, 1)):
        clock.now = received
        with ComplaintDesk(
            "memory://", clock=clock, sla_policies="fca_disp_payments"
        ) as desk:
            complaint = walk_to(desk, Stage.UPDATING)
            clock.now = resolved.replace(tzinfo=UTC)
            desk.resolve(complaint, by="ana", resolution="R", explanation="E")
            report = desk.reports.sla()
            (target,) = [c for c in report.by_target if c.key == "resolve"]
            on_time[resolved.day] = target.on_time == 1
            due = {b.target: b.due_at for b in report.breaches}
    assert on_time == {23: True, 24: False}
    assert due["resolve"] == datetime(2026, 3, 24, tzinfo=UTC)


@examples(60)
@given(
    revisions=st.lists(st.tuples(st.integers(1, 10), st.integers(1, 72)), max_size=4),
    resolved=st.integers(-48, 48),
)
def test_a_plan_date_restated_before_it_falls_due_is_replaced_never_kept(
    revisions: list[tuple[int, int]], resolved: int
) -> None:
    """The plan's due date is a promise, and a date postponed in time is
    replaced by the new one, never counted as kept: however often a plan is
    postponed before each date falls due, its compliance counts one date,
    the last, kept or not by the resolution. Counted as kept, a plan
    postponed just before each date lapsed kept all its promises but one."""
    received = datetime(2026, 3, 2, 9, tzinfo=UTC)
    clock = FixedClock(received)
    with ComplaintDesk("memory://", clock=clock) as desk:
        complaint = walk_to(desk, Stage.UPDATING)  # the plan due a day later
        due = received + timedelta(days=1)
        for tenths, hours in revisions:
            # Restated tenths/10 of the way to the date (10: as it falls due,
            # still in time), to a date `hours` later.
            clock.now += (due - clock.now) * tenths / 10
            due = clock.now + timedelta(hours=hours)
            desk.post_update(
                complaint, by="ana", note="N", revised_due=due, revision_reason="R"
            )
        clock.now = max(clock.now, due + timedelta(hours=resolved))
        desk.resolve(complaint, by="ana", resolution="R", explanation="E")
        report = desk.reports.sla(limit=None)
    kept = clock.now <= due
    (plan,) = [c for c in report.by_target if c.key == "plan_due"]
    assert (plan.due, plan.on_time, plan.breached) == (1, kept, not kept)
    late = [(b.due_at, b.met_at) for b in report.breaches if b.target == "plan_due"]
    assert late == ([] if kept else [(due, clock.now)])


def test_a_plan_date_restated_after_it_lapsed_stays_a_breach() -> None:
    """A date restated after it fell due was broken: a breach, which the
    restatement closes (its `met_at`); the new date is measured on its own."""
    received = datetime(2026, 3, 2, 9, tzinfo=UTC)
    clock = FixedClock(received)
    with ComplaintDesk("memory://", clock=clock) as desk:
        complaint = walk_to(desk, Stage.PLAN_COMMITTED)  # due a day later
        clock.now = received + timedelta(days=2)
        desk.post_update(
            complaint,
            by="ana",
            note="N",
            revised_due=received + timedelta(days=3),
            revision_reason="R",
        )
        clock.now = received + timedelta(days=2, hours=12)
        desk.resolve(complaint, by="ana", resolution="R", explanation="E")
        report = desk.reports.sla(limit=None)
    (plan,) = [c for c in report.by_target if c.key == "plan_due"]
    assert (plan.due, plan.on_time, plan.breached) == (2, 1, 1)
    late = [(b.due_at, b.met_at) for b in report.breaches if b.target == "plan_due"]
    assert late == [(received + timedelta(days=1), received + timedelta(days=2))]


def test_time_to_prevention_runs_from_the_resolution_that_stood() -> None:
    """After a reopen, the time from resolution to prevention runs from the
    resolution the customer accepted, not from the first, which they turned
    down: the weeks the case was open again are not the prevention's."""
    received = datetime(2026, 3, 2, 9, tzinfo=UTC)
    clock = FixedClock(received)
    with ComplaintDesk("memory://", clock=clock) as desk:
        complaint = walk_to(desk, Stage.UPDATING)
        clock.now += timedelta(hours=10)
        desk.resolve(complaint, by="ana", resolution="R", explanation="E")
        desk.confirm_satisfaction(complaint, by="ana", satisfied=False, reason="No")
        clock.now += timedelta(hours=80)
        desk.resolve(complaint, by="ana", resolution="R2", explanation="E2")
        clock.now += timedelta(hours=1)
        walk_to(desk, Stage.PREVENTION_LOGGED, complaint)
        clock.now += timedelta(hours=1)  # the report a moment later
        (row,) = desk.reports.recurrence(min_count=1).categories
    assert row.prevention_logged == 1
    assert row.resolution_to_prevention_median == timedelta(hours=1).total_seconds()


SYDNEY = ZoneInfo("Australia/Sydney")


@pytest.mark.parametrize(
    ("received", "acknowledged", "due"),
    [
        # The Thursday before Easter, acknowledged on the Tuesday after Easter
        # Monday: due at the end of that Tuesday, in AEST (the clocks went
        # back on Easter Sunday), where version 3 had it 2026-04-03T13:00Z.
        (datetime(2026, 4, 2, 16), datetime(2026, 4, 7, 9), datetime(2026, 4, 8)),
        # A Friday at 17:00, acknowledged on the Monday at 10:00.
        (datetime(2026, 3, 13, 17), datetime(2026, 3, 16, 10), datetime(2026, 3, 17)),
    ],
)
def test_rg271_acknowledgement_by_the_end_of_the_next_business_day_is_on_time(
    received: datetime, acknowledged: datetime, due: datetime
) -> None:
    """RG 271: "within 24 hours or one business day", whichever is later:
    by the end of the next NSW business day, Sydney time. One complaint is
    acknowledged in time, another a microsecond after that midnight: a
    breach due exactly there. The views equal the oracle's."""
    received, acknowledged, due = (
        moment.replace(tzinfo=SYDNEY).astimezone(UTC)
        for moment in (received, acknowledged, due)
    )
    schedule = PolicySchedule.always(preset("asic_rg271"))
    clock = FixedClock(received)
    with ComplaintDesk("memory://", clock=clock, sla_policies=schedule) as desk:
        on_time, late = desk.receive(**RECEIVE), desk.receive(**RECEIVE)
        clock.now = acknowledged
        desk.acknowledge(on_time, by="ana", paraphrase="P")
        clock.now = due + timedelta(microseconds=1)
        desk.acknowledge(late, by="ana", paraphrase="P")
        report = desk.reports.sla(limit=None)
        (acknowledge,) = [c for c in report.by_target if c.key == "acknowledge"]
        assert (acknowledge.due, acknowledge.on_time) == (2, 1)
        assert [
            (b.complaint_id, b.due_at)
            for b in report.breaches
            if b.target == "acknowledge"
        ] == [(str(late), due)]
        assert_reports_match(desk, [on_time, late], ReportFilter(), clock(), schedule)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
@examples(8)
@given(workload=workloads(), f=report_filters(), data=st.data())
def test_views_equal_the_oracle_on_durable_stores(
    kind: str, workload: list[Lifecycle], f: ReportFilter, data: st.DataObject
) -> None:
    clock = FixedClock(datetime(2030, 1, 1, tzinfo=UTC))
    with fresh_store(kind) as store_url, make_desk(store_url, clock) as desk:
        catch_up_after = data.draw(st.sets(st.integers(0, 100), max_size=5))
        ids = run_workload(desk, workload, catch_up_after, [4])
        desk.reports.catch_up()
        now = START + timedelta(days=data.draw(st.integers(0, 80)))
        assert_reports_match(desk, ids, f, now)
        assert_reports_match(desk, ids, ReportFilter(), now)
        desk.reports.rebuild()
        assert_reports_match(desk, ids, ReportFilter(), now)


def test_an_owner_and_a_category_spelled_two_ways_are_one_in_the_reports() -> None:
    """ "José" typed with a combining accent and typed precomposed: one owner,
    one category, and a filter spelled either way finds both complaints."""
    clock = FixedClock(START + timedelta(days=1))
    composed, decomposed = "Jos\u00e9", "Jose\u0301"
    with make_desk("memory://", clock) as desk:
        for spelling in (composed, decomposed):
            desk.receive(
                **{**RECEIVE, "by": spelling, "category": f"r{spelling}"}, at=START
            )
        (owner,) = desk.reports.ownership().owners
        assert (owner.owner, owner.received_first) == (composed, 2)
        for spelling in (composed, decomposed):
            filtered = desk.reports.backlog(owner=spelling, category=f"r{spelling}")
            assert filtered.reached[Stage.RECEIVED] == 2


def test_reports_catch_up_before_answering_unless_told_not_to(
    tmp_path: Path,
) -> None:
    clock = FixedClock(START + timedelta(days=2))
    with make_desk(f"sqlite:///{tmp_path / 'a.db'}", clock) as desk:
        desk.receive(**RECEIVE, at=START)
        assert desk.reports.backlog(catch_up=False).reached == dict.fromkeys(
            desk.reports.backlog(catch_up=False).reached, 0
        )
        assert desk.reports.runner.lag() == 1
        report = desk.reports.backlog()
        assert sum(s.open for s in report.open_by_stage) == 1
        assert desk.reports.runner.lag() == 0


def test_views_can_live_in_another_database(tmp_path: Path) -> None:
    clock = FixedClock(START + timedelta(days=2))
    views = tmp_path / "views.db"
    with ComplaintDesk(
        f"sqlite:///{tmp_path / 'events.db'}",
        clock=clock,
        views_url=f"sqlite:///{views}",
    ) as desk:
        desk.receive(**RECEIVE, at=START)
        assert desk.reports.ownership().owners[0].owner == "ana"

    with sqlite3.connect(views) as db:
        assert db.execute("SELECT count(*) FROM amends_view_complaints").fetchone() == (
            1,
        )
    with sqlite3.connect(tmp_path / "events.db") as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
    assert "amends_view_complaints" not in tables


def test_reports_render_as_table_json_and_csv(tmp_path: Path) -> None:
    clock = FixedClock(START + timedelta(days=3))
    with make_desk(f"sqlite:///{tmp_path / 'a.db'}", clock) as desk:
        complaint = desk.receive(**RECEIVE, at=START)
        desk.acknowledge(
            complaint, by="ana", paraphrase="p", at=START + timedelta(hours=30)
        )
        report = desk.reports.sla()
        assert "acknowledge" in report.to_table()
        assert (
            report.to_csv().splitlines()[0] == "complaint_id,target,due_at,met_at,owner"
        )
        # Acknowledged 6 hours late, and no update in the 24 hours after it.
        assert '"breaches_total": 2' in report.to_json()


def test_replaying_from_an_older_position_counts_nothing_twice(tmp_path: Path) -> None:
    """A tracking position restored from an old backup must not double-count."""
    clock = FixedClock(START + timedelta(days=5))
    with make_desk(f"sqlite:///{tmp_path / 'a.db'}", clock) as desk:
        complaint = desk.receive(**RECEIVE, at=START)
        desk.transfer_ownership(
            complaint, by="ana", to="ben", reason="r", customer_told=True, at=START
        )
        desk.offer_gesture(
            complaint, by="ben", description="d", value="5", currency="EUR", at=START
        )
        before = desk.reports.ownership().model_dump(), desk.reports.backlog()
        from sqlalchemy import update

        from amends.projections import tables

        with desk.reports.runner.engine.begin() as conn:
            conn.execute(update(tables.tracking).values(position=0))
        assert desk.reports.runner.lag() == 3
        assert desk.reports.ownership().model_dump() == before[0]
        assert desk.reports.backlog() == before[1]
        assert desk.reports.backlog().gesture_totals == {"EUR": "5.00"}


def test_a_follower_process_killed_and_restarted_ends_equal_to_a_rebuild(
    tmp_path: Path,
) -> None:
    import signal
    import subprocess
    import sys
    import time

    store = f"sqlite:///{tmp_path / 'store.db'}"
    env = {**os.environ, "AMENDS_STORE_URL": store}
    clock = FixedClock(START + timedelta(days=60))

    def follower() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "amends", "project", "--follow", "--poll", "0.05"],
            env=env,
            stdout=subprocess.DEVNULL,
        )

    def wait_caught_up(desk: ComplaintDesk) -> None:
        deadline = time.monotonic() + 60
        while desk.reports.runner.lag() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert desk.reports.runner.lag() == 0

    with ComplaintDesk(store, clock=clock) as desk:
        ids = []
        process = follower()
        try:
            for round_ in range(3):
                for n in range(15):
                    at = START + timedelta(days=round_, hours=n)
                    complaint = desk.receive(
                        by="ana",
                        customer="Jo",
                        summary="s",
                        channel="phone",
                        category=CATEGORIES[n % 3],
                        severity="normal",
                        expectation="e",
                        at=at,
                    )
                    desk.acknowledge(complaint, by="ana", paraphrase="p", at=at)
                    ids.append(complaint)
                time.sleep(0.05 * round_)
                process.send_signal(signal.SIGKILL)  # wherever it was
                process.wait()
                process = follower()
            wait_caught_up(desk)
        finally:
            process.terminate()
            process.wait(timeout=30)
        followed = desk.reports.queries
        now = clock.now
        with ComplaintDesk(
            store, clock=clock, views_url=f"sqlite:///{tmp_path / 'fresh.db'}"
        ) as fresh:
            fresh.reports.rebuild()
            for name in ("ownership", "time_to_resolution", "backlog"):
                assert getattr(followed, name)(now, ReportFilter()) == getattr(
                    fresh.reports.queries, name
                )(now, ReportFilter()), name
        assert len(ids) == 45


def every_report(desk: ComplaintDesk, **listing: Any) -> list[Report]:
    reports = desk.reports
    return [
        reports.ownership(**listing),
        reports.time_to_resolution(**listing),
        reports.sla(**listing),
        reports.backlog(),
        reports.recurrence(min_count=1),
    ]


def test_every_section_of_every_report_renders_as_csv_with_its_header() -> None:
    """Each table of a report, not only its first, exports as CSV: a header
    of the section's columns, and one line per row with a cell in each."""
    from amends.infra.demo import simulate

    with ComplaintDesk("memory://") as desk:
        simulate(desk, complaints=40, days=20, seed=3)
        passed = desk.receive(**RECEIVE)
        for giver, taker in [("ana", "ben"), ("ben", "chidi"), ("chidi", "dana")]:
            desk.transfer_ownership(
                passed, by=giver, to=taker, reason="r", customer_told=True
            )
        for report in every_report(desk):
            sections = report.sections()
            assert report.to_csv() == report.to_csv(sections[0].key)
            for section in sections:
                header, *rows = csv.reader(io.StringIO(report.to_csv(section.key)))
                assert header == list(section.columns), section.key
                assert rows, (type(report).__name__, section.key)
                assert all(len(row) == len(header) for row in rows)
                assert all(set(row) == set(header) for row in section.rows)
                table = report.to_table(section.key)
                assert section.title in table
                assert all(s.title not in table for s in sections if s is not section)
        empty = desk.reports.sla(category="nothing")
        assert empty.to_csv() == "complaint_id,target,due_at,met_at,owner\n"
        assert empty.to_csv("by-owner") == "key,due,on_time,breached,rate\n"


@settings(max_examples=40, deadline=None)
@given(
    seconds=st.floats(min_value=1e-3, max_value=1e7, allow_subnormal=False),
    microsecond=st.integers(0, 999_999),
)
def test_a_csv_export_is_exact_and_a_table_never_writes_an_exponent(
    seconds: float, microsecond: int
) -> None:
    """A CSV cell reads back as the report's value (hours, to the last bit;
    times to the microsecond); the table rounds for reading, and writes even
    a second's fraction of an hour out in digits."""
    received = START.replace(microsecond=microsecond)
    with ComplaintDesk(
        "memory://", clock=FixedClock(START + timedelta(days=200))
    ) as desk:
        complaint = desk.receive(**RECEIVE, at=received)
        acknowledged = received + timedelta(seconds=seconds)
        desk.acknowledge(complaint, by="ana", paraphrase="P", at=acknowledged)
        report = desk.reports.time_to_resolution()
        (wall,) = [
            s.wall
            for c in report.complaints
            for s in c.stages
            if s.stage == "ACKNOWLEDGED"
        ]
        rows = list(csv.DictReader(io.StringIO(report.to_csv("complaints"))))
        (row,) = [r for r in rows if r["stage"] == "ACKNOWLEDGED"]
        assert float(row["wall_h"]) == wall / 3600
        assert datetime.fromisoformat(row["received_at"]) == received
        table = report.to_table("complaints")
        (line,) = [line for line in table.splitlines() if "ACKNOWLEDGED" in line]
        for hours in line.split()[-2:]:  # wall_h and sla_h
            assert "e" not in hours.lower(), line
            assert math.isclose(float(hours), wall / 3600, rel_tol=0.01, abs_tol=0.05)


FORMULA = ("=", "+", "-", "@")
RENDERED_TEXT = st.text(
    alphabet=st.sampled_from([*'aB7 ,"山田é', "\u0301", "\u202e", "\u200b", *FORMULA]),
    min_size=1,
    max_size=8,
).filter(lambda text: text.strip() and not unicodedata.combining(text.strip()[0]))
"""Names and labels a report shows: wide characters, a combining mark, a
right-to-left override, a zero-width space, and what starts a formula."""


def composed(name: str) -> str:
    """A name as a command records it: trimmed and composed (NFC)."""
    return unicodedata.normalize("NFC", name.strip())


@settings(max_examples=40, deadline=None)
@given(owners=st.lists(RENDERED_TEXT, min_size=1, max_size=4), category=RENDERED_TEXT)
def test_rendered_reports_never_run_formulas_nor_break_their_columns(
    owners: list[str], category: str
) -> None:
    """Names and labels are the customer's and the staff's words. A CSV cell
    never starts a formula a spreadsheet would run (it starts with an
    apostrophe instead, the value whole after it); a table's
    columns always line up on a terminal (wide characters take two columns,
    combining marks none), and it never prints a format character such as a
    right-to-left override (escaped, as the command line's messages are)."""
    clock = FixedClock(START + timedelta(days=3))
    with ComplaintDesk("memory://", clock=clock) as desk:
        for owner in owners:
            desk.receive(**{**RECEIVE, "by": owner, "category": category}, at=START)
        report = desk.reports.ownership()
        stored = [row.owner for row in report.owners]
        # Names are recorded composed (NFC, ADR 0004): "a" and a combining
        # accent is the one owner "á".
        assert len(stored) == len({composed(owner) for owner in owners})
        rows = list(csv.DictReader(io.StringIO(report.to_csv("owners"))))
        for row, owner in zip(rows, stored, strict=True):
            assert row["owner"] == ("'" + owner if owner.startswith(FORMULA) else owner)
        header, _, *lines = report.to_table("owners").splitlines()[3:]
        assert header.startswith("  owner")
        first_column = max(map(display_width, ["owner", *map(shown, stored)]))
        for line, owner in zip(lines, stored, strict=True):
            assert not any(unicodedata.category(ch) in UNPRINTABLE for ch in line)
            cell = "  " + shown(owner)
            assert line.startswith(cell)
            rest = line[len(cell) :]
            padding = len(rest) - len(rest.lstrip(" "))
            # The second column starts at the same terminal column on each.
            assert display_width(cell) + padding == 2 + first_column + 2, line
        recurrence = desk.reports.recurrence(min_count=1)
        (row,) = csv.DictReader(io.StringIO(recurrence.to_csv()))
        written = composed(category)
        assert row["category"] == (
            "'" + written if written.startswith(FORMULA) else written
        )


@settings(max_examples=200, deadline=None)
@given(
    due=st.integers(min_value=1, max_value=10**7),
    missed=st.integers(min_value=0, max_value=10**7),
)
def test_a_rate_shows_as_1_in_a_table_only_when_every_deadline_was_met(
    due: int, missed: int
) -> None:
    """Tables round rates to three significant digits, so 1,999 deadlines
    met of 2,000 read as 1: a compliance all but met looked met. A rate
    below 1 now keeps the digits that tell it from 1; every rate stays
    within rounding of its value."""
    from amends.projections.reports import Compliance, SlaReport

    on_time = max(0, due - missed)
    rate = on_time / due
    report = SlaReport(
        generated_at=START,
        filter=ReportFilter(),
        horizon=timedelta(hours=24),
        breaches=(),
        breaches_total=0,
        by_target=(
            Compliance(
                key="resolve",
                due=due,
                on_time=on_time,
                breached=due - on_time,
                rate=rate,
            ),
        ),
        by_owner=(),
        at_risk=(),
        at_risk_total=0,
    )
    *_, line = report.to_table("by-target").splitlines()
    shown_rate = line.split()[-1]
    assert (shown_rate == "1") == (on_time == due), line
    assert math.isclose(float(shown_rate), rate, rel_tol=5e-3, abs_tol=1e-9), line


def test_stored_waits_through_the_customers_answer_still_replay(
    tmp_path: Path,
) -> None:
    """Version 1 satisfaction answers left a wait open until the customer's
    reply, and stores hold such histories (written by the release before:
    tests/fixtures/waits-through-answers-v1.jsonl). A change that made every
    answer end the wait made those replies "not allowed while not waiting":
    the complaints, their reports and verify failed. They replay as written,
    and new events chain onto them."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    ids = load_rows(url, FIXTURES / "waits-through-answers-v1.jsonl")
    clock = FixedClock(datetime(2026, 4, 1, tzinfo=UTC))
    with ComplaintDesk(url, clock=clock) as desk:
        assert desk.verify().ok
        stages = {desk.get(i).stage for i in ids}
        assert stages == {Stage.UPDATING, Stage.SATISFACTION_CONFIRMED}
        assert not any(desk.get(i).waiting for i in ids)
        backlog = desk.reports.backlog()
        assert sum(row.waiting for row in backlog.open_by_stage) == 0
        assert backlog.satisfied_first == {"yes": 1, "no": 1, "unanswered": 0}
        for complaint_id in ids:
            desk.add_note(complaint_id, by="ana", text="Carried on")
        assert desk.verify().ok


@pytest.mark.parametrize("satisfied", [True, False])
def test_the_customers_answer_while_waiting_ends_the_wait(satisfied: bool) -> None:
    """Resolved, then waiting on the customer ("are you happy?"), then their
    answer: it is their reply, and the wait ends (recorded in the answer,
    `ended_wait`, from its version 2). Before, it went on, so a complaint
    reopened by a "no" had its SLA clock stopped for good: 35 days later
    with no update posted, no breach and nothing at risk."""
    clock = FixedClock(datetime(2024, 6, 3, 9, tzinfo=UTC))
    with ComplaintDesk("memory://", clock=clock) as desk:
        complaint = walk_to(desk, Stage.RESOLVED)
        clock.advance(hours=1)
        desk.await_customer(complaint, by="ana", reason="happy?")
        clock.advance(days=1)
        answered_at = clock.now
        after = desk.confirm_satisfaction(
            complaint, by="ana", satisfied=satisfied, reason="why"
        )
        assert not after.waiting
        (answer,) = desk.events(complaint)[-1:]
        assert answer.ends_wait
        timeline = desk.history(complaint).to_text()
        assert timeline.count("ended_wait: True") == 1  # shown only when set
        with pytest.raises(InvalidTransition, match="nobody awaits the customer"):
            desk.customer_replied(complaint, by="ana")
        clock.advance(days=35)
        assert sum(row.waiting for row in desk.reports.backlog().open_by_stage) == 0
        assert desk.verify().ok
        if not satisfied:
            # Reopened: its next update fell due a day after the answer.
            late = [b for b in desk.reports.sla().breaches if b.target == "update"]
            assert [b.due_at for b in late] == [answered_at + timedelta(hours=24)]
            assert late[0].met_at is None


def test_an_unknown_section_is_refused_naming_the_sections_there_are() -> None:
    from amends import AmendsError, UnknownSection

    with ComplaintDesk("memory://") as desk:
        report = desk.reports.sla()
        with pytest.raises(AmendsError) as refused:
            report.to_csv("Breaches")
        assert isinstance(refused.value, UnknownSection)
        assert str(refused.value) == (
            "the sla report has no section 'Breaches': "
            "choose one of breaches, by-target, by-owner, at-risk"
        )
        with pytest.raises(UnknownSection):
            report.to_table("nope")


def test_a_cut_list_says_how_many_there_are_and_no_limit_lists_them_all() -> None:
    from amends.infra.demo import simulate

    with ComplaintDesk("memory://") as desk:
        simulate(desk, complaints=40, days=20, seed=3)
        whole = desk.reports.sla(limit=None)
        assert len(whole.breaches) == whole.breaches_total > 2
        assert "Breaches, latest due first\n" in whole.to_table()
        cut = desk.reports.sla(limit=2)
        assert cut.breaches == whole.breaches[:2]
        assert (
            f"Breaches, latest due first (2 of {whole.breaches_total}; "
            "raise the limit for more)"
        ) in cut.to_table()
        # A chain of owners takes a row per owner: the count is of complaints.
        chains = desk.reports.ownership(limit=1)
        assert chains.chains_total > 1
        assert (
            f"Chains of owners, newest complaint first (1 of {chains.chains_total};"
            in chains.to_table()
        )
        everyone = desk.reports.ownership(limit=None)
        assert len(everyone.chains) == everyone.chains_total
        times = desk.reports.time_to_resolution(limit=None)
        assert len(times.complaints) == times.complaints_total == 40
        nothing = desk.reports.time_to_resolution(limit=0)
        assert (nothing.complaints, nothing.complaints_total) == ((), 40)


def test_no_limit_lists_every_item_on_every_store(store_url: str) -> None:
    """None reaches the database as the largest LIMIT it takes (PostgreSQL
    reads a LIMIT as a 32-bit integer), unfiltered and filtered alike."""
    from amends.infra.demo import simulate

    with ComplaintDesk(store_url) as desk:
        simulate(desk, complaints=30, days=10, seed=5)
        for chosen in ({}, {"category": "billing"}):
            sla = desk.reports.sla(limit=None, **chosen)
            assert len(sla.breaches) == sla.breaches_total > 0
            times = desk.reports.time_to_resolution(limit=None, **chosen)
            assert len(times.complaints) == times.complaints_total > 0
            owners = desk.reports.ownership(limit=None, **chosen)
            assert len(owners.chains) == owners.chains_total


@pytest.mark.parametrize(
    ("report", "arguments", "field"),
    [
        ("ownership", {"limit": -1}, "limit"),
        ("time_to_resolution", {"limit": -5}, "limit"),
        ("sla", {"limit": -1}, "limit"),
        ("sla", {"horizon": timedelta(hours=-1)}, "horizon"),
        ("sla", {"horizon": 24}, "horizon"),
        ("sla", {"horizon": timedelta.max}, "horizon"),
        ("sla", {"limit": "3"}, "limit"),
        ("sla", {"limit": 2**31}, "limit"),
        ("ownership", {"limit": True}, "limit"),
        ("recurrence", {"min_count": 0}, "min_count"),
        ("recurrence", {"min_count": "x"}, "min_count"),
        ("recurrence", {"min_count": 2**31}, "min_count"),
    ],
)
def test_a_report_argument_out_of_range_is_refused_by_name_before_a_catch_up(
    tmp_path: Path, report: str, arguments: dict[str, Any], field: str
) -> None:
    from amends import InvalidCommand

    with make_desk(f"sqlite:///{tmp_path / 'a.db'}", FixedClock(START)) as desk:
        desk.receive(**RECEIVE, at=START)
        with pytest.raises(InvalidCommand) as refused:
            getattr(desk.reports, report)(**arguments)
        assert refused.value.fields == (field,)
        assert desk.reports.runner.lag() == 1
        with pytest.raises(InvalidCommand) as refused:
            getattr(desk.reports, report)(
                since=datetime(2026, 1, 1), catch_up=False, **arguments
            )
        assert refused.value.fields == ("since", field)


def test_a_filter_that_could_select_nothing_is_refused_and_names_match_stripped() -> (
    None
):
    from amends import InvalidCommand

    day = timedelta(days=1)
    with ComplaintDesk("memory://", clock=FixedClock(START + day)) as desk:
        desk.receive(**RECEIVE, at=START)
        for window in ((START, START), (START + day, START)):
            with pytest.raises(InvalidCommand) as refused:
                desk.reports.backlog(since=window[0], until=window[1])
            assert refused.value.fields == ("until",)
            assert "must be after since" in str(refused.value)
        for blank in ("", "  "):
            with pytest.raises(InvalidCommand) as refused:
                desk.reports.ownership(owner=blank, category=blank)
            assert refused.value.fields == ("owner", "category")
        padded = desk.reports.sla(owner=" ana ", category="billing ")
        assert padded.filter == ReportFilter(owner="ana", category="billing")
        assert padded.by_target == desk.reports.sla(owner="ana").by_target != ()
        one_second = desk.reports.backlog(since=START, until=START + timedelta(0, 1))
        assert one_second.reached[Stage.RECEIVED] == 1


def test_the_backlog_shows_which_open_complaints_wait_on_the_customer() -> None:
    """A wait that never ends stops the SLA clock for good; the backlog
    shows it, filtered or not, until the customer replies."""
    hour = timedelta(hours=1)
    clock = FixedClock(START + 5 * hour)
    with ComplaintDesk("memory://", clock=clock) as desk:
        parked, other = (desk.receive(**RECEIVE, at=START) for _ in range(2))
        desk.await_customer(parked, by="ana", reason="statement", at=START + hour)

        def waiting() -> list[dict[Stage, tuple[int, int]]]:
            return [
                {s.stage: (s.open, s.waiting) for s in report.open_by_stage}
                for report in (
                    desk.reports.backlog(),
                    desk.reports.backlog(category="billing"),
                )
            ]

        assert waiting() == [{Stage.RECEIVED: (2, 1)}] * 2
        assert desk.reports.backlog().to_csv().splitlines() == [
            "stage,open,waiting,<1d,1-3d,3-7d,7-30d,>30d",
            "RECEIVED,2,1,2,0,0,0,0",
        ]
        desk.customer_replied(parked, by="ana", at=START + 2 * hour)
        assert waiting() == [{Stage.RECEIVED: (2, 0)}] * 2
        desk.await_customer(other, by="ana", reason="id", at=START + 3 * hour)
        desk.acknowledge(other, by="ana", paraphrase="p", at=START + 4 * hour)
        assert waiting() == [{Stage.RECEIVED: (1, 0), Stage.ACKNOWLEDGED: (1, 1)}] * 2


def test_gestures_are_counted_per_currency() -> None:
    with ComplaintDesk("memory://", clock=FixedClock(START)) as desk:
        complaint = desk.receive(**RECEIVE, at=START)
        for value, currency in [
            ("9.99", "EUR"),
            ("10.01", "EUR"),
            ("5", "GBP"),
            (None, None),
        ]:
            desk.offer_gesture(
                complaint,
                by="ana",
                description="d",
                value=value,
                currency=currency,
                at=START,
            )
        backlog = desk.reports.backlog()
        assert backlog.gestures == 4
        assert backlog.gestures_by_currency == {"": 1, "EUR": 2, "GBP": 1}
        assert backlog.gesture_totals == {"EUR": "20.00", "GBP": "5.00"}
        assert backlog.to_csv("gestures").splitlines() == [
            "currency,gestures,total",
            ",1,",
            "EUR,2,20.00",
            "GBP,1,5.00",
        ]
        filtered = desk.reports.backlog(category=RECEIVE["category"])
        assert filtered.gestures_by_currency == backlog.gestures_by_currency


def test_a_naive_report_window_is_refused_by_name() -> None:
    from amends import InvalidCommand

    with ComplaintDesk("memory://") as desk:
        try:
            desk.reports.sla(since=datetime(2026, 1, 1))
        except InvalidCommand as refusal:
            assert refusal.fields == ("since",)
        else:
            raise AssertionError("a naive since was accepted")


LATER = START + timedelta(days=1)


def receive_many(desk: ComplaintDesk, n: int) -> None:
    for hour in range(n):
        desk.receive(**RECEIVE, at=START + timedelta(hours=hour))


def test_views_built_from_another_store_are_refused_until_rebuilt(
    store_url: str, tmp_path: Path
) -> None:
    """One views database given to two stores: each store's desk must see
    that the views are not its own, whether the other store's log ends before
    the views' position or goes past it, and read nothing from them
    and write nothing to them until they are rebuilt from its own events."""
    from amends import ViewsOfAnotherStore

    views = f"sqlite:///{tmp_path / 'views.db'}"
    clock = FixedClock(START + timedelta(days=1))

    def desk_of(store: str) -> ComplaintDesk:
        return ComplaintDesk(store, clock=clock, views_url=views)

    def position() -> int:
        with sqlite3.connect(tmp_path / "views.db") as db:
            return int(
                db.execute("SELECT position FROM amends_view_tracking").fetchone()[0]
            )

    with desk_of(store_url) as ours:
        receive_many(ours, 3)
        assert ours.reports.backlog().reached[Stage.RECEIVED] == 3
        assert position() == 3
        for n, fewer in ((1, True), (5, False)):
            with desk_of(f"sqlite:///{tmp_path / f'other{n}.db'}") as other:
                receive_many(other, n)
                for catch_up in (True, False):
                    with pytest.raises(ViewsOfAnotherStore) as refused:
                        other.reports.backlog(catch_up=catch_up)
                    said = str(refused.value)
                    if fewer:
                        assert "to position 3, past its end at 1" in said
                    else:
                        assert "the store's event there is not one" in said
                    assert "rebuild them" in said
                assert position() == 3
        with desk_of(f"sqlite:///{tmp_path / 'other5.db'}") as other:
            assert other.reports.rebuild() == 5
            assert other.reports.backlog().reached[Stage.RECEIVED] == 5
    with desk_of(store_url) as ours, pytest.raises(ViewsOfAnotherStore):
        ours.reports.ownership()


def test_views_of_a_store_restored_from_an_older_backup_and_written_since_are_refused(
    tmp_path: Path,
) -> None:
    """Restored, the store ends before the views' position; written to since,
    it passes that position again, but the event there is not the views'."""
    import shutil

    from amends import ViewsOfAnotherStore

    store, backup = tmp_path / "a.db", tmp_path / "backup.db"
    clock = FixedClock(START + timedelta(days=1))
    with make_desk(f"sqlite:///{store}", clock) as desk:
        receive_many(desk, 2)
    shutil.copy(store, backup)
    with make_desk(f"sqlite:///{store}", clock) as desk:
        desk.receive(**RECEIVE, at=START + timedelta(hours=5))
        desk.reports.catch_up()
        assert desk.reports.runner.position() == 3
    views = tmp_path / "views.db"
    with sqlite3.connect(store) as source, sqlite3.connect(views) as target:
        source.backup(target)  # the views, kept apart from the store
    shutil.copy(backup, store)
    for name in ("a.db-wal", "a.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    restored = ComplaintDesk(
        f"sqlite:///{store}",
        clock=clock,
        sla_policies=SCHEDULE,
        views_url=f"sqlite:///{views}",
    )
    with restored:
        with pytest.raises(ViewsOfAnotherStore, match="past its end at 2"):
            restored.reports.backlog()
        receive_many(restored, 2)
        with pytest.raises(ViewsOfAnotherStore, match="the store's event there"):
            restored.reports.backlog()
        assert restored.reports.rebuild() == 4


@pytest.mark.parametrize(
    "message", ["table amends_view_tracking already exists", "database is locked"]
)
def test_views_created_by_another_desk_meanwhile_are_used_not_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, message: str
) -> None:
    """Several desks (a web service's workers) asking their first reports at
    once on fresh SQLite views: one creates the tables while the others
    checked they were missing. SQLite says so as an OperationalError; before,
    most of those first reports failed with it."""
    import sqlite3 as driver

    from sqlalchemy.exc import OperationalError

    from amends.projections import tables

    create_all = tables.metadata.create_all
    raised: list[str] = []

    def created_meanwhile(*args: Any, **kwargs: Any) -> None:
        create_all(*args, **kwargs)  # the other desk's tables
        if not raised:
            raised.append(message)
            raise OperationalError("CREATE TABLE", {}, driver.OperationalError(message))

    monkeypatch.setattr(tables.metadata, "create_all", created_meanwhile)
    with make_desk(f"sqlite:///{tmp_path / 'a.db'}", FixedClock(LATER)) as desk:
        receive_many(desk, 2)
        assert desk.reports.backlog().reached[Stage.RECEIVED] == 2
    assert raised == [message]


def test_any_other_operational_error_creating_the_views_is_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3 as driver

    from sqlalchemy.exc import OperationalError

    from amends import StoreUnavailable
    from amends.projections import tables

    def full(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("CREATE TABLE", {}, driver.OperationalError("disk full"))

    monkeypatch.setattr(tables.metadata, "create_all", full)
    with (
        make_desk(f"sqlite:///{tmp_path / 'a.db'}", FixedClock(LATER)) as desk,
        pytest.raises(StoreUnavailable, match="disk full"),
    ):
        desk.reports.backlog()


def test_views_waiting_out_another_writers_lock_are_not_made_again_and_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first report while another connection holds SQLite's write lock waits
    out the busy timeout once and gives up, naming the lock: counted as views
    made meanwhile, the wait was tried five times (150 s, not 30). A "database
    is locked" said at once is still tried again (see `_created_meanwhile`)."""
    from amends import StoreUnavailable
    from amends.infra import reporting

    monkeypatch.setattr(
        reporting,
        "SQLITE_VIEWS_PRAGMAS",
        (*reporting.SQLITE_VIEWS_PRAGMAS, "busy_timeout=300"),
    )
    monkeypatch.setattr(runner_module, "LOCK_WAITED", 0.2)
    store = tmp_path / "a.db"
    with make_desk(f"sqlite:///{store}", FixedClock(LATER)) as desk:
        desk.receive(**RECEIVE, at=START)
        runner = desk.reports.runner
        attempts: list[int] = []
        make = runner._create_missing_tables

        def counted() -> None:
            attempts.append(1)
            make()

        monkeypatch.setattr(runner, "_create_missing_tables", counted)
        holder = sqlite3.connect(store, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StoreUnavailable, match="locked"):
                desk.reports.backlog()
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert len(attempts) == 1
        assert desk.reports.backlog().reached[Stage.RECEIVED] == 1


def test_two_stores_starting_at_once_on_fresh_views_are_told_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two stores given the same fresh views by mistake both pass the first
    check (empty views suit any store). The one whose first batch loses the
    race to the other's must not read on from the other's position in its
    own log, writing its complaints beside the other's."""
    from amends import ViewsOfAnotherStore
    from amends.projections.runner import ProjectionRunner

    views = f"sqlite:///{tmp_path / 'views.db'}"
    clock = FixedClock(START + timedelta(days=1))
    ours, theirs = (
        ComplaintDesk(
            f"sqlite:///{tmp_path / name}",
            clock=clock,
            sla_policies=SCHEDULE,
            views_url=views,
        )
        for name in ("ours.db", "theirs.db")
    )
    with ours, theirs:
        receive_many(ours, 3)
        receive_many(theirs, 5)
        original = ProjectionRunner._commit

        def commit_after_theirs(runner: ProjectionRunner, batch: Any) -> None:
            if runner is ours.reports.runner:
                monkeypatch.setattr(ProjectionRunner, "_commit", original)
                theirs.reports.catch_up()  # their batch lands first
            original(runner, batch)

        monkeypatch.setattr(ProjectionRunner, "_commit", commit_after_theirs)
        with pytest.raises(ViewsOfAnotherStore):
            ours.reports.backlog()
        assert theirs.reports.backlog().reached[Stage.RECEIVED] == 5
        assert theirs.reports.runner.position() == 5


@pytest.mark.parametrize("built_by", ["catch_up", "rebuild"])
def test_views_of_a_restored_store_whose_new_events_take_the_old_ones_places(
    tmp_path: Path, built_by: str
) -> None:
    """Restored, then written to again on the same complaint: the store's
    event at the views' position is of the complaint and version the views
    hold, but it is not the event they applied. Before, the views answered
    for the restored store as if they were its own."""
    import shutil

    from amends import ViewsOfAnotherStore

    store, backup = tmp_path / "a.db", tmp_path / "backup.db"
    views = f"sqlite:///{tmp_path / 'views.db'}"
    clock = FixedClock(START + timedelta(days=1))

    def desk() -> ComplaintDesk:
        return ComplaintDesk(f"sqlite:///{store}", clock=clock, views_url=views)

    def work(complaint: uuid.UUID, hours: int, words: str) -> None:
        at = START + timedelta(hours=hours)
        with desk() as writer:
            writer.acknowledge(complaint, by="ana", paraphrase=words, at=at)
            writer.add_note(complaint, by="ana", text=words, at=at)

    with desk() as first:
        complaint = first.receive(**RECEIVE, at=START)
    shutil.copy(store, backup)
    work(complaint, 2, "Billed twice")
    with desk() as reader:
        getattr(reader.reports, built_by)()
        assert reader.reports.runner.position() == 3
    shutil.copy(backup, store)
    for name in ("a.db-wal", "a.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    work(complaint, 4, "Charged for a cancelled plan")
    with desk() as restored:
        with pytest.raises(ViewsOfAnotherStore, match="the store's event there"):
            restored.reports.backlog()
        assert restored.reports.rebuild() == 3
        restored.reports.backlog()


def test_views_in_the_middle_of_another_stores_load_are_refused(
    tmp_path: Path,
) -> None:
    """A rebuild's load holds position 0 until it ends: the log position it
    loads to, and the complaints it has loaded, must still be this store's."""
    from amends import ViewsOfAnotherStore

    clock = FixedClock(START + timedelta(days=1))
    views = f"sqlite:///{tmp_path / 'views.db'}"
    with ComplaintDesk(
        f"sqlite:///{tmp_path / 'a.db'}", clock=clock, views_url=views
    ) as desk:
        receive_many(desk, 2)
        desk.reports.catch_up()
    other = f"sqlite:///{tmp_path / 'b.db'}"
    with ComplaintDesk(other, clock=clock) as desk:
        receive_many(desk, 5)
    for load_to, words in (
        (50, "to position 50, past its end at 5"),
        (2, "which the store does not"),
    ):
        with sqlite3.connect(tmp_path / "views.db") as db:
            db.execute(
                "UPDATE amends_view_tracking SET position = 0, load_to = ?", (load_to,)
            )
        with (
            ComplaintDesk(other, clock=clock, views_url=views) as desk,
            pytest.raises(ViewsOfAnotherStore, match=words),
        ):
            desk.reports.backlog()


def test_views_of_an_earlier_layout_are_rebuilt_when_a_runner_starts(
    tmp_path: Path,
) -> None:
    """Views written by an earlier release lack the running totals the
    unfiltered reports read: a new desk must rebuild them, not answer from
    empty totals or refuse them as built under other policies. Until they are
    loaded again, a report that does not catch up is refused as during any
    rebuild: it answered from the emptied views, as if the store held
    nothing."""

    from amends.projections.runner import VIEWS_FORMAT

    store = tmp_path / "a.db"
    clock = FixedClock(START + timedelta(days=3))
    with make_desk(f"sqlite:///{store}", clock) as desk:
        complaint = desk.receive(**RECEIVE, at=START)
        desk.acknowledge(complaint, by="ana", paraphrase="p", at=START)
        before = desk.reports.ownership().model_dump()
    with sqlite3.connect(store) as db:
        # What an earlier release left: no layout in the label, no totals.
        db.execute(
            "UPDATE amends_view_tracking SET policies = substr(policies, ?)",
            (len(VIEWS_FORMAT) + 2,),
        )
        db.execute("DELETE FROM amends_view_counts")
        # And a table only an earlier layout had.
        db.execute("CREATE TABLE amends_view_measures (value REAL)")
    with make_desk(f"sqlite:///{store}", clock) as desk:
        with pytest.raises(StoreUnavailable, match="being rebuilt"):
            desk.reports.ownership(catch_up=False)
        assert desk.reports.ownership().model_dump() == before
        assert desk.reports.ownership(catch_up=False).model_dump() == before
    with sqlite3.connect(store) as db:
        (label,) = db.execute("SELECT policies FROM amends_view_tracking").fetchone()
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
    assert label.startswith(f"{VIEWS_FORMAT} ")
    assert "amends_view_measures" not in tables
    assert "amends_view_complaints" in tables


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_views_of_the_first_layouts_without_policies_are_rebuilt(kind: str) -> None:
    """The first layouts' tracking table kept no policies column: reading it
    failed ("no such column"), every report and `project` stopped with the
    store named as unavailable, and a follower waited on it for ever."""
    clock = FixedClock(START + timedelta(days=3))
    with fresh_store(kind) as store_url:
        with make_desk(store_url, clock) as desk:
            complaint = desk.receive(**RECEIVE, at=START)
            desk.acknowledge(complaint, by="ana", paraphrase="p", at=START)
            before = desk.reports.backlog().model_dump()
            with desk.reports.queries.engine.begin() as conn:
                # What those layouts left: a tracking row of name and place.
                conn.execute(t.tracking.delete())
                conn.execute(text(f"DROP TABLE {t.tracking.name}"))
                conn.execute(
                    text(
                        f"CREATE TABLE {t.tracking.name} "
                        "(projection VARCHAR(100) PRIMARY KEY, position INTEGER)"
                    )
                )
                conn.execute(
                    text(f"INSERT INTO {t.tracking.name} VALUES ('amends.reports', 2)")
                )
        with make_desk(store_url, clock) as desk:
            assert desk.reports.backlog().model_dump() == before
            assert desk.reports.runner.position() == 2


def test_the_garbage_collector_is_paused_per_batch_and_restored_as_it_was() -> None:
    clock = FixedClock(START)
    with make_desk("memory://", clock) as desk:
        desk.receive(**RECEIVE, at=START)
        runner = desk.reports.runner
        during: list[bool] = []
        commit = runner._commit

        def observed(batch: Batch) -> None:
            during.append(gc.isenabled())
            commit(batch)

        runner._commit = observed  # type: ignore[method-assign]
        assert gc.isenabled()
        with collector_paused():  # an outer pause: the batch's is nested in it
            runner.catch_up()
            assert not gc.isenabled()
        assert during == [False]
        assert gc.isenabled()
        desk.receive(**RECEIVE, at=START)
        gc.disable()  # the embedding application's choice is kept
        try:
            runner.catch_up()
            assert during == [False, False]
            assert not gc.isenabled()
        finally:
            gc.enable()


@pytest.mark.parametrize(
    "f", [ReportFilter(), ReportFilter(category=RECEIVE["category"])], ids=str
)
def test_a_deadline_due_this_very_moment_is_due_not_breached_and_at_risk(
    f: ReportFilter, shared_store_url: str
) -> None:
    """The edges of the SLA report, where the filtered and the unfiltered
    report count differently (rows, running totals), against the oracle, to
    the microsecond: the filtered report compares times as seconds since the
    epoch, as SQLite stores them and as PostgreSQL is asked for them."""
    clock = FixedClock(START)
    with make_desk(shared_store_url, clock) as desk:
        complaint = desk.receive(**RECEIVE, at=START)
        desk.reports.catch_up()
        due = START + timedelta(hours=24)  # promise_keeping: acknowledge in 24 h
        queries = desk.reports.queries
        oracle = Oracle({complaint: desk.events(complaint)}, SCHEDULE)
        for now, counted, breached, at_risk in (
            (due - timedelta(microseconds=1), 0, 0, 1),
            (due, 1, 0, 1),
            (due + timedelta(microseconds=1), 1, 1, 0),
        ):
            report = queries.sla(now, f, timedelta(hours=1), 5)
            assert report == oracle.sla(now, f, timedelta(hours=1), 5)
            acknowledge = [c for c in report.by_target if c.key == "acknowledge"]
            assert [(c.due, c.breached) for c in acknowledge] == (
                [(counted, breached)] if counted else []
            )
            assert report.at_risk_total == at_risk
            assert report.breaches_total == breached


@pytest.mark.parametrize(
    "f", [ReportFilter(), ReportFilter(category=RECEIVE["category"])], ids=str
)
def test_a_deadline_met_in_time_is_its_keepers_and_a_lapsed_one_the_owner_then(
    f: ReportFilter, shared_store_url: str
) -> None:
    """ana acknowledges in time (due at 24 h), then hands over to ben at 2 h:
    the kept acknowledgement is ana's, not ben's, who owned the complaint
    when it would have fallen due. ben lets the plan's due date (10 h) and an
    update (due 28 h, posted 30 h) lapse: those are his, and stay his after
    he hands back to ana at 31 h; the next update, due at 54 h and never
    posted, is ana's."""
    clock = FixedClock(START + timedelta(days=5))
    with make_desk(shared_store_url, clock) as desk:
        complaint = desk.receive(**RECEIVE, at=START)

        def at(hours: int) -> dict[str, Any]:
            return {"at": START + timedelta(hours=hours)}

        handoff = {"reason": "R", "customer_told": True}
        desk.acknowledge(complaint, by="ana", paraphrase="P", **at(1))
        desk.transfer_ownership(complaint, by="ana", to="ben", **handoff, **at(2))
        desk.apologize(complaint, by="ben", apology="A", **at(3))
        due = START + timedelta(hours=10)
        desk.commit_plan(complaint, by="ben", steps=["S"], due=due, **at(4))
        desk.post_update(complaint, by="ben", note="N", **at(30))
        desk.transfer_ownership(complaint, by="ben", to="ana", **handoff, **at(31))
        report = desk.reports.sla(**f.model_dump(), limit=None)
        oracle = Oracle({complaint: desk.events(complaint)}, SCHEDULE)
        assert report == oracle.sla(clock(), f, timedelta(hours=24), MAX_COUNT)
        assert {(c.key, c.due, c.on_time, c.breached) for c in report.by_owner} == {
            ("ana", 2, 1, 1),  # the acknowledgement; the update due at 54 h
            ("ben", 4, 2, 2),  # two updates kept; the plan's date, one update
        }
        assert sorted((b.target, b.owner) for b in report.breaches) == [
            ("plan_due", "ben"),
            ("update", "ana"),
            ("update", "ben"),
        ]
        ownership = desk.reports.ownership(**f.model_dump())
        assert {(row.owner, row.sla_breaches) for row in ownership.owners} == {
            ("ana", 1),
            ("ben", 2),
        }


@pytest.mark.parametrize(
    "f", [ReportFilter(), ReportFilter(category=RECEIVE["category"])], ids=str
)
def test_a_deadline_met_in_the_instant_of_a_handoff_is_the_giver_s(
    f: ReportFilter, shared_store_url: str
) -> None:
    """Events of one instant keep their order: ana acknowledges, then hands
    over, both at 1 h (an imported log with minute precision has many such).
    The acknowledgement is ana's; ben owned the complaint from 1 h on."""
    clock = FixedClock(START + timedelta(days=5))
    with make_desk(shared_store_url, clock) as desk:
        complaint = desk.receive(**RECEIVE, at=START)
        one_hour = START + timedelta(hours=1)
        desk.acknowledge(complaint, by="ana", paraphrase="P", at=one_hour)
        desk.transfer_ownership(
            complaint, by="ana", to="ben", reason="R", customer_told=True, at=one_hour
        )
        report = desk.reports.sla(**f.model_dump())
        oracle = Oracle({complaint: desk.events(complaint)}, SCHEDULE)
        assert report == oracle.sla(clock(), f, timedelta(hours=24), DEFAULT_LIMIT)
        kept = {c.key: (c.due, c.on_time) for c in report.by_owner}
        assert kept["ana"] == (1, 1)


def query_plan(conn: Any, statement: str, parameters: Any) -> list[str]:
    """SQLite's plan for a statement as it was run: one line per step."""
    return [
        str(row[-1])
        for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
    ]


def assert_read_through(engine: Any, seen: list[tuple[str, Any]], access: str) -> None:
    """Every statement seen reads its table through `access` (an index named
    with how SQLite uses it), never a scan or a fetch of each row."""
    with engine.connect() as conn:
        for statement, parameters in seen:
            plan = " ".join(query_plan(conn, statement, parameters))
            assert access in plan, (statement, plan)


def test_the_unfiltered_sla_report_reads_unmet_deadlines_from_their_own_index(
    tmp_path: Path,
) -> None:
    """Every deadline is a row, and most are met; the unfiltered SLA report's
    questions about unmet ones (at risk, past due, not due yet) must be
    answered from the index of unmet deadlines alone: not a scan of them all,
    or the report slows with the store's whole history, and not a fetch of
    each table row the index points to, which made it twice as slow at
    100,000 complaints when the index lacked a column the queries name."""
    from sqlalchemy import event

    clock = FixedClock(START + timedelta(days=2))
    with make_desk(f"sqlite:///{tmp_path / 'a.db'}", clock) as desk:
        for n in range(3):
            complaint = desk.receive(**RECEIVE, at=START + timedelta(hours=n))
            if n:  # one left unacknowledged, its deadline unmet
                desk.acknowledge(
                    complaint, by="ana", paraphrase="p", at=START + timedelta(hours=4)
                )
        desk.reports.catch_up()
        engine = desk.reports.queries.engine
        seen: list[tuple[str, Any]] = []

        def record(*args: Any) -> None:
            statement, parameters = args[2], args[3]
            if "amends_view_deadlines" in statement and "met_at IS NULL" in statement:
                seen.append((statement, parameters))

        event.listen(engine, "before_cursor_execute", record)
        report = desk.reports.sla(catch_up=False)
        event.remove(engine, "before_cursor_execute", record)
        assert any(b.met_at is None for b in report.breaches)  # unmet, past due
        assert len(seen) >= 3  # not due yet, at risk (rows and total), past due
        assert_read_through(
            engine, seen, "COVERING INDEX ix_amends_view_deadlines_unmet"
        )


def test_the_unfiltered_backlog_counts_open_complaints_in_an_index_alone(
    tmp_path: Path,
) -> None:
    """The unfiltered backlog's age buckets add to the running totals the
    open complaints received on each bucket edge's own day, after the edge.
    They must be counted in the index of open complaints by stage alone:
    found by time received, each complaint of that day was fetched from its
    wide row, and the report took 2.2 times as long at 100,000 complaints as
    at 10,000, where a day holds a tenth as many."""
    from sqlalchemy import event

    clock = FixedClock(START + timedelta(days=3, hours=12))
    with make_desk(f"sqlite:///{tmp_path / 'a.db'}", clock) as desk:
        for hours in (1, 20, 30, 50, 70, 80):  # edges' days, on both sides
            desk.receive(**RECEIVE, at=START + timedelta(hours=hours))
        desk.reports.catch_up()
        engine = desk.reports.queries.engine
        seen: list[tuple[str, Any]] = []

        def record(*args: Any) -> None:
            statement, parameters = args[2], args[3]
            if "FROM amends_view_complaints" in statement:
                seen.append((statement, parameters))

        event.listen(engine, "before_cursor_execute", record)
        try:
            report = desk.reports.backlog(catch_up=False)
        finally:
            event.remove(engine, "before_cursor_execute", record)
        (received,) = report.open_by_stage
        assert received.by_age == {
            "<1d": 2,
            "1-3d": 3,
            "3-7d": 1,
            "7-30d": 0,
            ">30d": 0,
        }
        assert seen
        assert_read_through(
            engine, seen, "COVERING INDEX ix_amends_view_complaints_stage"
        )


@pytest.mark.parametrize(
    "window", [False, True], ids=["owner alone", "owner in a window"]
)
def test_an_owner_filter_never_scans_a_view_table(tmp_path: Path, window: bool) -> None:
    """A filter on the owner reads that owner's complaints from their range
    of the spans' owner index, by receipt within a window. Asking every
    complaint of the store (or of the window) whether the owner had it made
    an owner's reports cost what the store (the window) holds (ADR 0012)."""
    from sqlalchemy import event

    clock = FixedClock(START + timedelta(days=2))
    names = ("ownership", "time_to_resolution", "sla", "backlog", "recurrence")
    with make_desk(f"sqlite:///{tmp_path / 'a.db'}", clock) as desk:
        for n in range(3):  # ben had these once, ana has them now
            complaint = desk.receive(**RECEIVE, at=START + timedelta(hours=n))
            for by, to, hours in (("ana", "ben", 5), ("ben", "ana", 6)):
                desk.transfer_ownership(
                    complaint,
                    by=by,
                    to=to,
                    reason="r",
                    customer_told=True,
                    at=START + timedelta(hours=hours),
                )
        desk.receive(**RECEIVE, at=START + timedelta(hours=7))  # never ben's
        later = {**RECEIVE, "by": "ben"}  # ben's, after the window
        desk.receive(**later, at=START + timedelta(days=1, hours=1))
        desk.reports.catch_up()
        engine = desk.reports.queries.engine
        seen: dict[str, list[tuple[str, Any]]] = {name: [] for name in names}
        asking = ""

        def record(*args: Any) -> None:
            statement, parameters = args[2], args[3]
            if "amends_view_owner_spans.owner = ?" in statement:
                seen[asking].append((statement, parameters))

        f: dict[str, Any] = {"owner": "ben"}
        if window:
            f.update(since=START, until=START + timedelta(days=1))
        event.listen(engine, "before_cursor_execute", record)
        try:
            reports: dict[str, Any] = {}
            for asking in names:
                reports[asking] = getattr(desk.reports, asking)(catch_up=False, **f)
        finally:
            event.remove(engine, "before_cursor_execute", record)
        assert reports["time_to_resolution"].complaints_total == (3 if window else 4)
        (ben,) = reports["ownership"].owners
        assert (ben.owner, ben.handed_in, ben.handed_out) == ("ben", 3, 3)
        assert all(seen.values()), seen  # every report filtered by the owner
        with engine.connect() as conn:
            for statement, parameters in (s for found in seen.values() for s in found):
                plan = query_plan(conn, statement, parameters)
                scans = [s for s in plan if s.startswith("SCAN amends_view_")]
                assert not scans, (statement, plan)
                # The owner's complaints come from their range of the owner
                # index, narrowed by the window when there is one: not every
                # complaint in the window, asked whether the owner had it.
                read = [s for s in plan if "ix_amends_view_owner_spans_owner" in s]
                window_read = "owner=? AND received_at>? AND received_at<?"
                assert read, (statement, plan)
                assert all((window_read in s) == window for s in read), plan
                # and each of them is then read by its key, not found by
                # walking another index (all open complaints, say) and asking
                # whether the owner had it.
                complaints = "SEARCH amends_view_complaints "
                found = [s for s in plan if s.startswith(complaints)]
                assert all(s.endswith("(id=?)") for s in found), (statement, plan)


# ------------------------------------------------------------ a rebuild's load


def view_rows(runner: ProjectionRunner) -> dict[str, list[tuple[Any, ...]]]:
    """Every view table's rows, sorted; totals that came to zero left out
    (a load never writes them, a catch-up may keep them)."""
    with runner.engine.connect() as conn:
        found = {
            table.name: sorted(map(tuple, conn.execute(select(table))), key=repr)
            for table in t.VIEW_TABLES
        }
    for table in (t.counts, t.buckets):
        found[table.name] = [row for row in found[table.name] if row[-1] != 0]
    return found


def log_order_rows(store_url: str, clock: FixedClock) -> dict[str, Any]:
    """The views a rebuild gives when it reads the log in order (the way any
    store other than a SQLite file is rebuilt), in a database of their own."""
    with tempfile.TemporaryDirectory() as folder:
        views = f"sqlite:///{Path(folder) / 'views.db'}"
        with ComplaintDesk(
            store_url, clock=clock, sla_policies=SCHEDULE, views_url=views
        ) as desk:
            runner = desk.reports.runner
            runner.feed = LogOnly(runner.feed)
            runner.rebuild()
            return view_rows(runner)


def assert_loaded_whole(
    desk: ComplaintDesk,
    runner: ProjectionRunner,
    ids: list[uuid.UUID],
    store_url: str,
    clock: FixedClock,
) -> None:
    """The load ended, and the views it left report as the oracle does and
    hold the rows of a rebuild that read the log in order."""
    assert not runner.loading()
    assert_reports_match(desk, ids, ReportFilter(), clock.now)
    assert view_rows(runner) == log_order_rows(store_url, clock)


class LogOnly:
    """A feed that reads the log in order only."""

    def __init__(self, inner: Any) -> None:
        self.read = inner.read
        self.last_position = inner.last_position
        self.event_at = inner.event_at
        self.holds = inner.holds


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
@examples(20)
@given(
    workload=workloads(),
    part=st.integers(1, 4),
    f=report_filters(),
    later=st.integers(0, 20 * 24 * 3600),
)
def test_a_rebuild_loaded_complaint_by_complaint_equals_the_oracle_and_the_log(
    kind: str, workload: list[Lifecycle], part: int, f: ReportFilter, later: int
) -> None:
    """On a SQLite file or PostgreSQL a rebuild folds each complaint whole and
    makes the indexes last; its views are the ones the log read in order
    gives."""
    clock = FixedClock(datetime(2030, 1, 1, tzinfo=UTC))
    with fresh_store(kind) as store_url, make_desk(store_url, clock) as desk:
        ids = run_workload(desk, workload, set(), [5])
        runner = desk.reports.runner
        runner.load_complaints = part
        parts = []
        fold = runner.fold_complaints

        def counted(first: str, last: str, upto: int) -> Any:
            parts.append((first, last))
            return fold(first, last, upto)

        runner.fold_complaints = counted  # type: ignore[method-assign]
        applied = runner.rebuild()
        assert applied == runner.feed.last_position() == runner.position()
        assert len(parts) == math.ceil(len(ids) / part)
        assert not runner.loading()
        indexes = {
            index["name"]
            for table in t.ROW_TABLES
            for index in inspect(runner.engine).get_indexes(table.name)
        }
        assert indexes == {index.name for index in t.DEFERRED_INDEXES}
        now = max(e.timestamp for i in ids for e in desk.events(i)) + timedelta(
            seconds=later
        )
        assert_reports_match(desk, ids, f, now)
        assert_reports_match(desk, ids, ReportFilter(), now)
        assert view_rows(runner) == log_order_rows(store_url, clock)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
@examples(15)
@given(
    workload=workloads().filter(lambda w: len(w) >= 3),
    fail_at=st.integers(1, 3),
    written=st.booleans(),
)
def test_a_load_that_fails_goes_on_where_it_stopped(
    kind: str, workload: list[Lifecycle], fail_at: int, written: bool
) -> None:
    """A load that fails in a part (before or after its rows are written)
    keeps the parts committed before it; the views say they are not ready
    until a catch-up finishes the load, which folds only the rest."""
    clock = FixedClock(datetime(2030, 1, 1, tzinfo=UTC))
    with fresh_store(kind) as store_url, make_desk(store_url, clock) as desk:
        ids = run_workload(desk, workload, set(), [5])
        runner = desk.reports.runner
        runner.load_complaints = 1
        loads: list[int] = []
        fold = runner.fold_complaints

        def failing(first: str, last: str, upto: int) -> Any:
            load = fold(first, last, upto)
            loads.append(load.events)
            if len(loads) == fail_at:
                if not written:
                    raise Crash  # before the part's transaction
                # A total that cannot be written, after the part's rows were.
                load.delta.counts["no such", "total", "at all"] = 1
            return load

        runner.fold_complaints = failing  # type: ignore[method-assign]
        with pytest.raises(Crash if not written else DBAPIError):
            runner.rebuild()
        assert runner.loading()
        with pytest.raises(StoreUnavailable, match="being rebuilt"):
            desk.reports.backlog(catch_up=False)
        committed = sum(loads[: fail_at - 1])
        with make_desk(store_url, clock) as restarted:
            total = runner.feed.last_position()
            assert restarted.reports.catch_up() == total - committed
            assert_reports_match(restarted, ids, ReportFilter(), clock.now)
            assert not restarted.reports.runner.loading()


def test_a_load_another_runner_finished_first_is_not_written_twice(
    shared_store_url: str,
) -> None:
    clock = FixedClock(datetime(2030, 1, 1, tzinfo=UTC))
    store = shared_store_url
    with make_desk(store, clock) as desk, make_desk(store, clock) as other:
        ids = [walk_to(desk, stage) for stage in Stage for _ in range(2)]
        runner = desk.reports.runner
        runner.load_complaints = 3
        fold = runner.fold_complaints
        loads: list[int] = []

        def interleaved(first: str, last: str, upto: int) -> Any:
            if len(loads) == 1:
                # The other desk's reports finish the load meanwhile.
                total = runner.feed.last_position()
                assert other.reports.catch_up() == total - loads[0]
            load = fold(first, last, upto)
            loads.append(load.events)
            return load

        runner.fold_complaints = interleaved  # type: ignore[method-assign]
        # Its second part finds the load finished: it writes nothing more.
        assert runner.rebuild() == loads[0]
        assert_loaded_whole(desk, runner, ids, store, clock)


def test_a_part_another_runner_loaded_meanwhile_is_not_written_twice(
    shared_store_url: str,
) -> None:
    """Two runners loading the same part: the second to write it is refused
    whole (a plain insert meets the first one's rows; on PostgreSQL a COPY),
    and the load then goes on with what is left, which is nothing."""
    clock = FixedClock(datetime(2030, 1, 1, tzinfo=UTC))
    store = shared_store_url
    with make_desk(store, clock) as desk, make_desk(store, clock) as other:
        ids = [walk_to(desk, stage) for stage in Stage for _ in range(2)]
        runner = desk.reports.runner
        runner.load_complaints = len(ids)  # one part
        fold = runner.fold_complaints
        raced: list[int] = []

        def racing(first: str, last: str, upto: int) -> Any:
            load = fold(first, last, upto)
            if not raced:
                load_id = other.reports.runner._tracking().load_id
                assert load_id is not None
                raced.append(other.reports.runner.load_part(first, last, upto, load_id))
            return load

        runner.fold_complaints = racing  # type: ignore[method-assign]
        assert runner.rebuild() == 0, "this runner wrote its part too"
        assert raced == [runner.feed.last_position()]
        assert_loaded_whole(desk, runner, ids, store, clock)


def test_a_runner_that_joined_a_replaced_load_writes_nothing_into_the_new_one(
    shared_store_url: str,
) -> None:
    """A runner goes on with a load it found under way, having listed the
    complaints not loaded yet; meanwhile a rebuild in another process
    replaces the views, to load them up to the same position. The runner's
    writes are refused (the load is another by its id), and it goes on with
    the new load, all of it. Before, it wrote its list into the new views
    and ended their load without the complaints it had found loaded: they
    were missing from every report, and the store check then called the
    views another store's."""
    clock = FixedClock(datetime(2030, 1, 1, tzinfo=UTC))
    store = shared_store_url
    with make_desk(store, clock) as desk, make_desk(store, clock) as other:
        ids = [walk_to(desk, stage) for stage in Stage]
        runner = desk.reports.runner
        runner.load_complaints = 2
        fold = runner.fold_complaints
        calls: list[int] = []

        def crashing_second(first: str, last: str, upto: int) -> Any:
            calls.append(upto)
            if len(calls) == 2:
                raise Crash
            return fold(first, last, upto)

        runner.fold_complaints = crashing_second  # type: ignore[method-assign]
        with pytest.raises(Crash):
            runner.rebuild()  # one part loaded, the load left under way
        runner.fold_complaints = fold  # type: ignore[method-assign]
        first_load = runner._tracking().load_id
        listed = runner._remaining_parts

        replaced: list[bool] = []

        def replaced_after_listing() -> list[tuple[str, str]]:
            parts = listed()
            if not replaced:
                upto = other.reports.runner.feed.last_position()
                other.reports.runner._swap_in_empty_views(load_to=upto)
                replaced.append(True)
            return parts

        runner._remaining_parts = replaced_after_listing  # type: ignore[method-assign]
        runner.catch_up()
        assert replaced == [True]
        assert runner._tracking().load_id is None
        assert first_load is not None
        assert_loaded_whole(desk, runner, ids, store, clock)
        desk.reports.backlog()  # the store check finds them this store's


def test_a_rebuild_whose_views_another_rebuild_replaced_joins_its_load(
    shared_store_url: str,
) -> None:
    """Right after a rebuild's swap, another process's rebuild replaces the
    views, and the first one's store check, begun before that swap
    committed, finds no tracking row (`ViewsBeingReplaced`). Both asked for
    the views rebuilt from zero, which the new load gives: the first rebuild
    looks again, goes on with that load and returns. Before, it failed
    (`StoreUnavailable` from the desk): only a catch-up looked again."""
    clock = FixedClock(datetime(2030, 1, 1, tzinfo=UTC))
    store = shared_store_url
    with make_desk(store, clock) as desk, make_desk(store, clock) as other:
        ids = [walk_to(desk, stage) for stage in Stage]
        runner = desk.reports.runner
        check = runner.check_store
        replaced: list[str | None] = []

        def replaced_at_first_check(*, once: bool = False) -> None:
            if not replaced:
                other.reports.runner._swap_in_empty_views(
                    load_to=other.reports.runner.feed.last_position()
                )
                replaced.append(runner._tracking().load_id)
                raise ViewsBeingReplaced(runner.name)
            check(once=once)

        runner.check_store = replaced_at_first_check  # type: ignore[method-assign]
        desk.reports.rebuild()
        assert len(replaced) == 1
        assert replaced[0] is not None
        assert_loaded_whole(desk, runner, ids, store, clock)


def test_rebuilds_started_at_once_on_brand_new_views_all_end_well(
    shared_store_url: str,
) -> None:
    """Three desks rebuild views that do not exist yet, at once. Before, on
    PostgreSQL two of the three failed in most rounds: their tables collided
    in the catalog ("duplicate key value violates unique constraint
    pg_type_typname_nsp_index"), as there was no tracking table yet to lock,
    or a rebuild whose load another replaced gave up."""
    clock = FixedClock(datetime(2030, 1, 1, tzinfo=UTC))
    store = shared_store_url
    with make_desk(store, clock) as writer:
        ids = [walk_to(writer, stage) for stage in Stage]
    desks = [make_desk(store, clock) for _ in range(3)]
    try:
        start = threading.Barrier(len(desks))
        outcomes: list[object] = []

        def rebuild(desk: ComplaintDesk) -> None:
            start.wait()
            try:
                outcomes.append(desk.reports.rebuild())
            except Exception as exc:
                outcomes.append(exc)

        threads = [threading.Thread(target=rebuild, args=(d,)) for d in desks]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [o for o in outcomes if isinstance(o, Exception)] == []
        assert_reports_match(desks[0], ids, ReportFilter(), clock.now)
        assert view_rows(desks[0].reports.runner) == log_order_rows(store, clock)
    finally:
        for desk in desks:
            desk.close()


@pytest.mark.parametrize("catch_up", [True, False])
def test_a_report_never_reads_views_replaced_after_its_check(
    shared_store_url: str, catch_up: bool
) -> None:
    """Between a report's catch-up (or store check) and its reads, a rebuild
    in another process replaces the views with empty ones to load. The
    report sees the load: with `catch_up=True` it finishes it and answers in
    full; without, it says the views are being rebuilt. Before, it read the
    empty views and answered as if the store held nothing (or failed with
    "no such table")."""
    clock = FixedClock(datetime(2030, 1, 1, tzinfo=UTC))
    store = shared_store_url
    with make_desk(store, clock) as desk, make_desk(store, clock) as other:
        ids = [walk_to(desk, stage) for stage in Stage]
        desk.reports.catch_up()
        expected = desk.reports.ownership()
        runner = desk.reports.runner
        name = "catch_up" if catch_up else "check_store"
        check = getattr(runner, name)
        replaced: list[bool] = []

        def then_replaced(**kwargs: Any) -> Any:
            done = check(**kwargs)
            if not replaced:
                upto = other.reports.runner.feed.last_position()
                other.reports.runner._swap_in_empty_views(load_to=upto)
                replaced.append(True)
            return done

        setattr(runner, name, then_replaced)
        if catch_up:
            assert desk.reports.ownership() == expected.model_copy(
                update={"generated_at": clock.now}
            )
            assert not runner.loading()
            assert_reports_match(desk, ids, ReportFilter(), clock.now)
        else:
            with pytest.raises(StoreUnavailable, match="being rebuilt"):
                desk.reports.ownership(catch_up=False)
        assert replaced == [True]


def test_a_report_reads_the_views_as_they_stood_when_it_began(
    shared_store_url: str,
) -> None:
    """A rebuild in another process replaces the views while a report is
    reading them, between its statements. The report answers from the views
    as they stood when it began: on SQLite its read transaction still sees
    them, on PostgreSQL the rebuild waits for the report to end. Read
    statement by statement, it mixed the old views with the new, empty
    ones."""
    clock = FixedClock(datetime(2030, 1, 1, tzinfo=UTC))
    store = shared_store_url
    with make_desk(store, clock) as desk, make_desk(store, clock) as other:
        for stage in Stage:
            walk_to(desk, stage)
        desk.reports.catch_up()
        expected = desk.reports.ownership(catch_up=False)
        queries = desk.reports.queries
        ownership = queries.ownership
        swapped = threading.Event()

        def swap() -> None:
            upto = other.reports.runner.feed.last_position()
            other.reports.runner._swap_in_empty_views(load_to=upto)
            swapped.set()

        swapper = threading.Thread(target=swap)

        def replaced_meanwhile(*args: Any) -> Any:
            with queries.reading() as conn:  # the report's snapshot
                conn.execute(select(t.complaints.c.id).limit(1)).all()
            swapper.start()
            # SQLite: the swap commits meanwhile; PostgreSQL: it waits.
            swapped.wait(2 if "postgres" in store else 30)
            return ownership(*args)

        queries.ownership = replaced_meanwhile  # type: ignore[method-assign]
        assert desk.reports.ownership(catch_up=False) == expected
        swapper.join(30)
        assert swapped.is_set()
        queries.ownership = ownership  # type: ignore[method-assign]
        with pytest.raises(StoreUnavailable, match="being rebuilt"):
            desk.reports.ownership(catch_up=False)
        assert desk.reports.ownership() == expected


def test_every_reader_of_the_views_reads_the_tracking_table_first(
    tmp_path: Path,
) -> None:
    """On PostgreSQL a rebuild's swap locks the tracking table first, then
    drops the others; a reader that took another view table first and the
    tracking table later could deadlock with it (the chart's reads did,
    with the complaints table first). So every snapshot's first statement
    reads the tracking table: the reports', and the chart's."""
    from sqlalchemy import event

    from amends.projections.reports import chart_data

    with make_desk(f"sqlite:///{tmp_path / 'store.db'}", FixedClock()) as desk:
        walk_to(desk, Stage.RESOLVED)
        desk.reports.catch_up()
        engine = desk.reports.queries.engine
        statements: list[str] = []

        def seen(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
            statements.append(statement)

        event.listen(engine, "before_cursor_execute", seen)
        reads: list[tuple[str, Any]] = [
            ("chart", lambda: chart_data(desk.reports.queries, FixedClock().now, 7)),
            ("ownership", lambda: desk.reports.ownership(catch_up=False)),
            ("filtered sla", lambda: desk.reports.sla(category="x", catch_up=False)),
        ]
        for name, read in reads:
            statements.clear()
            read()
            first = next(s for s in statements if s.strip().upper() != "BEGIN")
            assert "amends_view_tracking" in first, (name, first)


def test_views_replaced_under_each_look_of_a_catch_up_are_looked_at_again(
    shared_store_url: str,
) -> None:
    """A catch-up that finds the views replaced under its read (no tracking
    row in its snapshot) looks again; after five such looks it says so as
    `StoreUnavailable`, never as a bug (exit 1) with an internal error."""
    clock = FixedClock(datetime(2030, 1, 1, tzinfo=UTC))
    with make_desk(shared_store_url, clock) as desk:
        walk_to(desk, Stage.ACKNOWLEDGED)
        runner = desk.reports.runner
        read = runner.tracking_in
        misses = [None, None]

        def replaced(conn: Any) -> Any:
            return misses.pop() if misses else read(conn)

        runner.tracking_in = replaced  # type: ignore[method-assign]
        assert desk.reports.catch_up() == 2
        assert misses == []
        runner.tracking_in = lambda conn: None  # type: ignore[method-assign]
        with pytest.raises(StoreUnavailable, match="replaced by a rebuild"):
            desk.reports.catch_up()


def test_a_tracking_row_made_by_another_process_meanwhile_is_read_not_refused(
    shared_store_url: str,
) -> None:
    """Two processes find the fresh views without a tracking row and both
    make it: the second's insert fails on the key, and it reads the row the
    first made. Before, it failed (`StoreUnavailable` naming the key)."""
    clock = FixedClock(datetime(2030, 1, 1, tzinfo=UTC))
    with make_desk(shared_store_url, clock) as desk:
        walk_to(desk, Stage.ACKNOWLEDGED)
        desk.reports.catch_up()
        runner = desk.reports.runner
        read = runner.tracking_in
        unseen: list[bool] = []

        def first_unseen(conn: Any) -> Any:
            if not unseen:
                unseen.append(True)
                return None  # as if read before the other process's insert
            return read(conn)

        runner.tracking_in = first_unseen  # type: ignore[method-assign]
        assert runner.position() == runner.feed.last_position() == 2
        assert unseen == [True]


def test_a_load_on_postgresql_leaves_the_views_vacuumed_and_analyzed(
    postgres_url: str,
) -> None:
    """PostgreSQL plans the filtered reports from the views' statistics, and
    reads an index alone only where the pages are marked all-visible: tables
    filled in one go lack both until autovacuum looks (where it is on)."""
    clock = FixedClock(datetime(2030, 1, 1, tzinfo=UTC))
    with make_desk(postgres_url, clock) as desk:
        for stage in Stage:
            walk_to(desk, stage)
        runner = desk.reports.runner

        def analyzed_and_vacuumed() -> tuple[set[str], set[str]]:
            with runner.engine.connect() as conn:
                analyzed = conn.exec_driver_sql(
                    "SELECT DISTINCT tablename FROM pg_stats "
                    "WHERE schemaname = current_schema()"
                ).scalars()
                vacuumed = conn.exec_driver_sql(
                    "SELECT relname FROM pg_class JOIN pg_namespace "
                    "ON pg_namespace.oid = relnamespace "
                    "WHERE nspname = current_schema() AND relallvisible > 0"
                ).scalars()
                return set(analyzed), set(vacuumed)

        views = {table.name for table in t.VIEW_TABLES}
        desk.reports.catch_up()  # batches, not a load: neither is done
        analyzed, vacuumed = analyzed_and_vacuumed()
        assert not (analyzed | vacuumed) & views
        runner.rebuild()
        with runner.engine.connect() as conn:
            filled = {
                table.name
                for table in t.VIEW_TABLES
                if conn.execute(select(func.count()).select_from(table)).scalar()
            }
        assert len(filled) > 5
        analyzed, vacuumed = analyzed_and_vacuumed()
        assert analyzed >= filled
        assert vacuumed >= filled


@pytest.fixture
def forking(
    shared_store_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[ComplaintDesk, str]]:
    """A desk on a SQLite file or PostgreSQL whose rebuilds fork two workers,
    however small its store, and the store's URL."""
    monkeypatch.setattr(runner_module, "PARALLEL_FROM_EVENTS", 0)
    with make_desk(shared_store_url, FixedClock(START)) as desk:
        desk.reports.runner.workers = 2
        yield desk, shared_store_url


def test_forked_workers_load_the_same_views(
    forking: tuple[ComplaintDesk, str],
) -> None:
    desk, store_url = forking
    ids = [walk_to(desk, stage) for stage in Stage for _ in range(3)]
    runner = desk.reports.runner
    runner.load_complaints = 4
    here = [0]
    fold = runner.fold_complaints

    def counted(first: str, last: str, upto: int) -> Any:
        here[0] += 1  # counted in whichever process folds
        return fold(first, last, upto)

    runner.fold_complaints = counted  # type: ignore[method-assign]
    assert runner.rebuild() == runner.feed.last_position()
    assert here[0] == 0, "the parts were folded in this process"
    assert_reports_match(desk, ids, ReportFilter(), START)
    assert view_rows(runner) == log_order_rows(store_url, FixedClock(START))


def test_a_history_a_worker_cannot_fold_is_named_in_this_process(
    forking: tuple[ComplaintDesk, str],
) -> None:
    desk, store_url = forking
    ids = [walk_to(desk, Stage.ACKNOWLEDGED) for _ in range(4)]
    broken = sorted(ids, key=str)[-1]
    raw = RawStore(store_url)
    raw.set_state(broken, 2, raw.state(broken, 2), topic="no such topic")
    runner = desk.reports.runner
    runner.load_complaints = 1
    with pytest.raises(HistoryViolation) as refused:
        runner.rebuild()
    assert (refused.value.complaint_id, refused.value.version) == (broken, 2)
    assert runner.loading()


def test_a_worker_that_cannot_fold_lets_the_others_finish_their_parts(
    forking: tuple[ComplaintDesk, str],
) -> None:
    """When one worker refuses a history, the load stops: the parts not
    started are left for the next load, and a part another worker is loading
    is finished, not killed. Killing the workers could catch one sending its
    result, holding the result queue's lock, and the pool's shutdown then
    waited for ever."""
    desk, store_url = forking
    first, broken = sorted(
        (walk_to(desk, Stage.ACKNOWLEDGED) for _ in range(2)), key=str
    )
    raw = RawStore(store_url)
    raw.set_state(broken, 2, raw.state(broken, 2), topic="no such topic")
    runner = desk.reports.runner
    runner.load_complaints = 1  # two parts: one a worker folds slowly
    fold = runner.fold_complaints

    def slow(start: str, last: str, upto: int) -> Any:
        if uuid.UUID(start) == first:
            time.sleep(1)  # still loading when the other part is refused
        return fold(start, last, upto)

    runner.fold_complaints = slow  # type: ignore[method-assign]
    with pytest.raises(HistoryViolation):
        runner.rebuild()
    with runner.engine.connect() as conn:
        loaded = set(conn.execute(select(t.complaints.c.id)).scalars())
    assert loaded == {str(first)}


@pytest.mark.parametrize("ending", ["killed", "interrupted"])
def test_a_worker_that_dies_stops_the_load_and_a_catch_up_finishes_it(
    forking: tuple[ComplaintDesk, str], ending: str
) -> None:
    """A worker killed mid-load (for want of memory, say) ends the rebuild at
    once with `WorkerDied`; a `KeyboardInterrupt` in a worker (Ctrl-C raises
    one in every process of the terminal's group) ends it with the
    interrupt. The parts written stay, and a catch-up loads the rest. With a
    `multiprocessing.Pool` the rebuild waited for ever on the dead worker's
    part, replacing it a hundred times a second."""
    desk, store_url = forking
    ids = [walk_to(desk, stage) for stage in Stage for _ in range(2)]
    victim = sorted(ids, key=str)[len(ids) // 2]
    runner = desk.reports.runner
    runner.load_complaints = 3
    parent = os.getpid()
    fold = runner.fold_complaints

    def dying(first: str, last: str, upto: int) -> Any:
        if uuid.UUID(first) <= victim <= uuid.UUID(last):
            if ending == "killed":
                kill_if_forked(parent)
            elif os.getpid() != parent:
                raise KeyboardInterrupt
        return fold(first, last, upto)

    runner.fold_complaints = dying  # type: ignore[method-assign]
    ended = outcome_within(60, desk.reports.rebuild)
    if ending == "killed":
        assert isinstance(ended, WorkerDied), ended
        assert "catch the views up" in str(ended)
    else:
        assert isinstance(ended, KeyboardInterrupt), ended
    assert runner.loading()
    with runner.engine.connect() as conn:
        loaded = set(conn.execute(select(t.complaints.c.id)).scalars())
    assert str(victim) not in loaded
    # The victim's part is not the first a worker takes: one part was loaded.
    assert loaded
    assert loaded <= {str(i) for i in ids}
    runner.fold_complaints = fold  # type: ignore[method-assign]
    runner.catch_up()
    assert not runner.loading()
    assert_reports_match(desk, ids, ReportFilter(), START)
    assert view_rows(runner) == log_order_rows(store_url, FixedClock(START))


@given(
    ids=st.lists(st.uuids(), unique=True, max_size=40).map(sorted),
    data=st.data(),
    size=st.integers(1, 6),
)
def test_the_parts_left_to_load_are_every_complaint_not_loaded_and_no_other(
    ids: list[uuid.UUID], data: st.DataObject, size: int
) -> None:
    """Whatever complaints a stopped load (or several workers) left loaded,
    the parts still to load cover every other complaint once, each part no
    more than `size` and never reaching over a loaded one."""
    loaded = set(data.draw(st.sets(st.sampled_from(ids)) if ids else st.just(set())))
    stored = [i.hex for i in ids]
    parts = runner_module.remaining_parts(stored, loaded, size)
    covered = [i for first, last in parts for i in ids if first <= i.hex <= last]
    assert covered == [i for i in ids if i not in loaded]
    assert all(
        0 < sum(first <= i.hex <= last for i in ids) <= size for first, last in parts
    )


def test_views_of_a_later_layout_are_refused_not_rebuilt(tmp_path: Path) -> None:
    """Views a later release wrote are left to it: rebuilding them in this
    release's layout made each release rebuild them in turn for as long as
    both ran (a rolling deploy), and stopped the other's follower."""
    from amends import ViewsOfLaterRelease

    store = tmp_path / "a.db"
    clock = FixedClock(START + timedelta(days=3))
    with make_desk(f"sqlite:///{store}", clock) as desk:
        desk.receive(**RECEIVE, at=START)
        desk.reports.backlog()
    later = layout_beside(+1)
    relabel_views(store, later)
    for caught_up in (True, False):
        with (
            make_desk(f"sqlite:///{store}", clock) as desk,
            pytest.raises(ViewsOfLaterRelease, match=f"layout {later}; this one"),
        ):
            desk.reports.backlog(catch_up=caught_up)
    with sqlite3.connect(store) as db:
        (label,) = db.execute("SELECT policies FROM amends_view_tracking").fetchone()
    assert label.startswith(f"{later} ")


def test_a_running_desk_rebuilds_views_an_earlier_release_rebuilt_meanwhile(
    tmp_path: Path,
) -> None:
    """A desk that made sure of the views, then finds an earlier release
    rebuilt them in its layout, rebuilds them again and answers (a follower
    waits the look out); it said they were built under other SLA policies,
    and refused them until it was restarted."""
    store = tmp_path / "a.db"
    clock = FixedClock(START + timedelta(days=3))
    with make_desk(f"sqlite:///{store}", clock) as desk:
        complaint = desk.receive(**RECEIVE, at=START)
        before = desk.reports.ownership().model_dump()
        relabel_views(store, layout_beside(-1))
        assert desk.reports.ownership().model_dump() == before
        desk.transfer_ownership(
            complaint,
            by="ana",
            to="ben",
            reason="r",
            customer_told=True,
            at=START + timedelta(hours=1),
        )
        after = desk.reports.ownership().model_dump()
    assert after != before
    with sqlite3.connect(store) as db:
        (label,) = db.execute("SELECT policies FROM amends_view_tracking").fetchone()
    assert label.startswith(f"{runner_module.VIEWS_FORMAT} ")
    with make_desk(f"sqlite:///{store}", clock) as desk:
        desk.reports.rebuild()
        assert desk.reports.ownership().model_dump() == after
