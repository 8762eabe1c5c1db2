"""Section: projections — catch-up into the report views, and report latency.

Targets from the issue: the views catch up with the store at 50,000 events a
second or more on SQLite; each report answers, from caught-up views, with a
p95 under 20 ms at 100,000 complaints, and its p95 at 100,000 complaints is at
most twice its p95 at 10,000. ADR 0013 says which filters they are judged on:
the latency target on every filter that selects up to a few hundred
complaints, the scaling target on those that select as many in both stores;
filters whose selection grows with the store are measured as context.

Catch-up is `desk.reports.rebuild()` (drop the views, replay the whole
store into them) on a fresh desk; its baseline, in the same round on the same
file, is the bare library reading the whole notification log
(`select_notifications` and `json.loads` of each state), so the ratio shows
what the projection costs beyond reading. The two take turns going first,
round by round (`catch_up_round`). Stores come from the bulk generator
(`bench.bulk`): a year of realistic traffic.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine

from amends import ComplaintDesk
from amends.infra.settings import store_settings
from amends.projections import tables as views
from bench import bulk, catchup_stages
from bench.diagnose import (
    frozen_heap,
    percentile,
    profile_text,
    stage_table,
    statement_spans,
    timed_ms,
)
from bench.harness import RunConfig, best, log, median, per_second, timed
from bench.probes import probed
from bench.profiling import Profile, share_table
from bench.raw import LogReader, read_log
from bench.report import Note, Row, Section, Target
from bench.stores import StoreTarget, fresh_store, store_targets
from bench.workload import STAFF

SQLITE = StoreTarget("sqlite", "SQLite file")
CATCH_UP_TARGET = Target(50_000, on_ratio=False)
LATENCY_TARGET = Target(20, on_ratio=False, higher_is_better=False)
SCALING_TARGET = Target(2, on_ratio=True, higher_is_better=False)
FULL_SIZES = (10_000, 100_000)
QUICK_SIZES = (1_000, 10_000)
WARMUP_COMPLAINTS = 200
FULL_CALLS = 1_000
QUICK_CALLS = 20
"""Calls per report, filter and store: at least 20; 1,000 in a full run puts
the p95 (nearest rank) at the fiftieth-slowest call, so a few stray pauses of
the machine do not move it (with 40, the scaling ratios of two runs differed
by up to 12%; with 200, by up to 14% on a noisy day; with 400, by up to 12%
between runs and 10% between three passes in one process)."""
JUDGED = "best round; catch-up ratio paired by round, turns; pooled p95"
"""How the section's figures are taken (see `CatchUp`), in its settings: a run
that took them another way is not compared with this one."""
FLOOR_REPEATS = 3
"""Timings of writing the rebuilt views' rows alone (the best is shown)."""
FULL_REBUILDS = (5, 2)
"""Rebuilds of the smaller and the larger store in a full run, each in a round
with a raw read of the whole log."""
WARMUP_CALLS = 2
POSTGRES_CALLS = 300
"""Calls per report, filter and store on PostgreSQL in a full run (its p95 is
the fifteenth-slowest): fewer than on SQLite, whose scaling rows are the ones
that repeat within a few percent from run to run."""
REPORTS = ("ownership", "time_to_resolution", "sla", "backlog", "recurrence")
FILTERS = ("none", "typical", "narrow", "wide", "owner_week", "owner_wide")
"""No filter; a calendar week of one category (it holds ten times as many
complaints in a store with ten times the traffic); the same window stretched
or shrunk in proportion to the store's traffic, so that it selects about as
many complaints in each store: narrow, as many as the typical week in the
smaller store (about twenty), and wide, as many as the typical week in the
larger (a couple of hundred); and one owner over the typical week, and over
the wide window. What the scaling target asks of a filtered report (that
reading the views costs little more in a larger store) is judged with the
answer's size held still (ADR 0013)."""
SCALING_JUDGED = ("none", "narrow", "wide", "owner_wide")
"""The filters whose scaling rows are judged: those that select about as many
complaints in both stores. A typical week selects ten times as many in the
larger store, so its ratio is the selection's growth, shown as context (ADR
0013)."""
WINDOW_START = timedelta(days=120)
"""The typical filter's week starts this long before now (midnight UTC)."""
CATEGORY = "billing"
OWNER = STAFF[0]
FULL_BROAD_CALLS = 20
"""Calls per report, broad filter and store in a full run (their p95 is the
second-slowest): at 100,000 complaints a call takes up to half a second."""
UNIT = "events/s"


@dataclass
class Store:
    bulk: bulk.BulkStore
    target: StoreTarget = SQLITE
    """The kind of store it is."""

    @property
    def url(self) -> str:
        return self.bulk.url

    @property
    def complaints(self) -> int:
        return self.bulk.complaints

    @property
    def events(self) -> int:
        return self.bulk.events


@dataclass
class CatchUp:
    """Rebuild and raw-read rates of one store, round by round.

    Each round is one rebuild and one read of the whole log by the bare
    library, taking turns going first. The rebuild no longer reads the log
    page by page in this process (it loads the views complaint by complaint,
    folded by forked workers: ADR 0008), so the raw read cannot run beside
    each page of it as it did up to views/9; a round of the two whole runs
    back to back is the closest pairing left. The judged ratio is the median
    of the rounds' own ratios, as for the command path and `verify()` (ADR
    0011). The rates shown are each side's best round, as `timeit` takes it:
    what the machine gives the work when nothing else runs on it.
    """

    store: Store
    amends: list[float] = field(default_factory=list)
    raw: list[float] = field(default_factory=list)

    @property
    def best(self) -> float:
        return best(self.amends)

    @property
    def best_raw(self) -> float:
        return best(self.raw)

    @property
    def ratios(self) -> list[float]:
        return [a / r for a, r in zip(self.amends, self.raw, strict=True)]

    @property
    def ratio(self) -> float:
        return median(self.ratios)


@dataclass
class Latency:
    size: int
    arguments: dict[str, dict[str, Any]]
    """The filters measured, by name, in the order they were given."""
    samples: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    selected: dict[str, int] = field(default_factory=dict)
    """Complaints each filter selects."""

    @property
    def filters(self) -> list[str]:
        return list(self.arguments)

    def per_complaint(
        self, report: str, filter_name: str, rank: float = 50
    ) -> float | None:
        """The report's percentile `rank` (the median unless told) ÷ the
        complaints the filter selects (ms per complaint), or None if it
        selects none."""
        selected = self.selected[filter_name]
        value = percentile(self.samples[report, filter_name], rank)
        return value / selected if selected else None


@contextmanager
def bulk_store(
    complaints: int, seed: int = 2026, target: StoreTarget = SQLITE
) -> Iterator[Store]:
    with fresh_store(target) as fresh:
        generated = bulk.build(
            fresh.amends_url,
            complaints=complaints,
            seed=seed,
            workers=None if complaints > 5_000 else 1,
        )
        bulk.check(generated)
        log(
            f"projections: {target.label} store of {generated.describe()}, built "
            f"in {generated.seconds:.1f} s"
        )
        yield Store(generated, target)


def rebuild(url: str) -> int:
    with ComplaintDesk(url) as desk:
        return desk.reports.rebuild()


def catch_up_round(store: Store, rebuild_first: bool) -> tuple[float, float]:
    """Events/s of one `rebuild()` on a fresh desk and of the bare library
    reading the whole log, one after the other, each checked to cover every
    event."""
    with (
        ComplaintDesk(store.url) as desk,
        closing(LogReader(store_settings(store.url))) as app,
    ):
        turns = [
            ("rebuild", desk.reports.rebuild),
            ("raw", lambda: read_log(app.recorder)),
        ]
        timings = {
            name: timed(run) for name, run in (turns if rebuild_first else turns[::-1])
        }
    (seconds, applied), (raw_seconds, read) = timings["rebuild"], timings["raw"]
    if applied != store.events or read != store.events:
        raise RuntimeError(
            f"rebuild applied {applied} and the raw read {read}, not {store.events}"
        )
    return per_second(applied, seconds), per_second(read, raw_seconds)


def catch_up_rounds(store: Store, rebuilds: int) -> CatchUp:
    figures = CatchUp(store)
    for number in range(rebuilds):
        rebuilt, read = catch_up_round(store, rebuild_first=number % 2 == 0)
        figures.amends.append(rebuilt)
        figures.raw.append(read)
        log(
            f"projections: catch-up at {store.complaints:,}, round "
            f"{number + 1}/{rebuilds}: rebuild {rebuilt:,.0f}, raw read in the "
            f"same round {read:,.0f} {UNIT} (ratio {rebuilt / read:.3f})"
        )
    return figures


def view_rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every view table's rows as the SQLite file stores them (after a rebuild)."""
    path = url.removeprefix("sqlite:///")
    with closing(sqlite3.connect(path)) as conn:
        return {
            table.name: conn.execute(f"SELECT * FROM {table.name}").fetchall()
            for table in views.VIEW_TABLES
        }


def write_rows_rate(rows: dict[str, list[tuple[Any, ...]]], events: int) -> float:
    """Events/s (of the store the rows came from) writing those rows alone into
    a fresh file's empty views, values already as stored, one transaction per
    table, in the library's WAL mode: what SQLite itself costs the rebuild."""
    with tempfile.TemporaryDirectory(prefix="amends-bench-") as directory:
        path = Path(directory) / "views.db"
        engine = create_engine(f"sqlite:///{path}")
        views.metadata.create_all(engine)
        engine.dispose()
        with closing(sqlite3.connect(path)) as conn:
            conn.execute("PRAGMA journal_mode=WAL")

            def write() -> None:
                for name, table_rows in rows.items():
                    if table_rows:
                        marks = ", ".join("?" for _ in table_rows[0])
                        with conn:
                            conn.executemany(
                                f"INSERT INTO {name} VALUES ({marks})", table_rows
                            )

            seconds, _ = timed(write)
    return per_second(events, seconds)


@dataclass
class Floor:
    """What reading the log and writing the views' rows cost with no projection
    code in between: the rate no rebuild of these views can pass here."""

    writes: list[float]
    row_count: int
    catch_up: CatchUp

    @property
    def rate(self) -> float:
        """Events/s reading the log and then writing its rows, one after the
        other: 1 / (1 / read + 1 / write), from the best of each."""
        read, write = self.catch_up.best_raw, best(self.writes)
        return 1 / (1 / read + 1 / write)

    def rows(self) -> list[Row]:
        store, rebuild = self.catch_up.store, self.catch_up.best
        return [
            Row(
                key=f"catch_up.{store.complaints}.write_rows",
                figure=(
                    f"writing the rebuilt views' {self.row_count:,} rows alone (values "
                    f"as stored, `executemany`), {store.complaints:,} complaints"
                ),
                value=best(self.writes),
                unit=UNIT,
                baseline=rebuild,
                baseline_label="`desk.reports.rebuild()`",
            ),
            Row(
                key=f"catch_up.{store.complaints}.floor",
                figure=(
                    "reading the log (raw library) and writing those rows, no "
                    f"projection code in between, {store.complaints:,} complaints"
                ),
                value=self.rate,
                unit=UNIT,
                baseline=rebuild,
                baseline_label="`desk.reports.rebuild()`",
            ),
        ]

    def text(self) -> str:
        verdict = (
            f"below the {CATCH_UP_TARGET.threshold:,.0f} events/s target: no "
            "rebuild into these views, "
            "however little Python it ran, could reach the target on this machine"
            if self.rate < CATCH_UP_TARGET.threshold
            else f"above the {CATCH_UP_TARGET.threshold:,.0f} events/s target"
        )
        return (
            f"*The floor.* The rebuild writes {self.row_count:,} view rows for "
            f"{self.catch_up.store.events:,} events "
            f"({self.row_count / self.catch_up.store.events:.1f} per event). Writing "
            f"them alone, values already as stored, runs at "
            f"{best(self.writes):,.0f} events/s "
            f"({1e6 / best(self.writes):.1f} µs an event), and the raw read of "
            f"the log at {self.catch_up.best_raw:,.0f} "
            f"({1e6 / self.catch_up.best_raw:.1f} µs): one after the other, "
            f"{self.rate:,.0f} events/s ({1e6 / self.rate:.1f} µs an event), "
            f"{verdict}. The rest of a rebuild's time is amends' own Python: "
            "folding, deriving rows and totals, converting values."
        )


def floor_rates(store: Store, repeats: int) -> tuple[list[float], int]:
    """`repeats` timings of writing the rebuilt views' rows alone, and how many
    rows they are (the store's views must have been rebuilt)."""
    rows = view_rows(store.url)
    rates = []
    for _ in range(repeats):
        rates.append(write_rows_rate(rows, store.events))
    return rates, sum(len(table_rows) for table_rows in rows.values())


def typical_filter(now: datetime) -> dict[str, Any]:
    since = (now - WINDOW_START).replace(hour=0, minute=0, second=0, microsecond=0)
    return {"since": since, "until": since + timedelta(days=7), "category": CATEGORY}


def store_filters(
    now: datetime, complaints: int, smallest: int, largest: int
) -> dict[str, Any]:
    """Each filter's arguments for a store of `complaints` complaints: the
    narrow window scaled to the smallest store's week, the wide one to the
    largest store's."""
    typical = typical_filter(now)

    def window_for(store_complaints: int) -> dict[str, Any]:
        return {
            **typical,
            "until": typical["since"]
            + timedelta(days=7) * store_complaints / complaints,
        }

    wide = window_for(largest)
    return {
        "none": {},
        "typical": typical,
        "narrow": window_for(smallest),
        "wide": wide,
        "owner_week": {**_without_category(typical), "owner": OWNER},
        "owner_wide": {**_without_category(wide), "owner": OWNER},
    }


def _without_category(arguments: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in arguments.items() if k != "category"}


def broad_filters() -> dict[str, Any]:
    """One category over the whole year (an eighth of a store's complaints),
    and one owner over the whole year (the complaints they ever owned, about
    a sixth): filters a support lead sets without a window. A filtered report
    costs what its filter selects (ADR 0012); these show how much a selected
    complaint costs."""
    return {"category": {"category": CATEGORY}, "owner": {"owner": OWNER}}


def measure_both(
    stores: list[Store], now: datetime, calls: int, broad_calls: int
) -> tuple[list[Latency], list[Latency]]:
    """The standard filters' latencies (`calls` rounds), then the broad
    filters' (`broad_calls` rounds), on the same stores."""
    smallest = min(store.complaints for store in stores)
    largest = max(store.complaints for store in stores)
    standard = [store_filters(now, s.complaints, smallest, largest) for s in stores]
    return (
        measure_latency(stores, standard, calls),
        measure_latency(stores, [broad_filters()] * len(stores), broad_calls),
    )


def measure_latency(
    stores: list[Store], filters: list[dict[str, Any]], calls: int
) -> list[Latency]:
    """Every report with each of a store's `filters` (name: arguments), from
    caught-up views (`catch_up=False`), on every store: `calls` rounds after
    `WARMUP_CALLS`, each round calling each report once per filter on each
    store, the stores taking turns going first, so drift on a shared machine
    hits every store alike (the scaling rows compare them)."""
    latencies = [
        Latency(
            store.complaints,
            store_filter,
            {(r, f): [] for r in REPORTS for f in store_filter},
        )
        for store, store_filter in zip(stores, filters, strict=True)
    ]
    with ExitStack() as stack:
        desks = [stack.enter_context(ComplaintDesk(store.url)) for store in stores]
        for desk, latency, arguments in zip(desks, latencies, filters, strict=True):
            if desk.reports.runner.lag():
                raise RuntimeError("the views are not caught up")
            latency.selected = {
                name: desk.reports.time_to_resolution(
                    catch_up=False, **arguments[name]
                ).complaints_total
                for name in arguments
            }
        turns = list(zip(desks, latencies, filters, strict=True))
        with frozen_heap():
            for index in range(WARMUP_CALLS + calls):
                for desk, latency, store_filter in turns[
                    :: 1 if index % 2 == 0 else -1
                ]:
                    for name in REPORTS:
                        report: Callable[..., Any] = getattr(desk.reports, name)
                        for filter_name, arguments in store_filter.items():
                            elapsed = timed_ms(
                                lambda r=report, a=arguments: r(catch_up=False, **a)  # type: ignore[misc]
                            )
                            if index >= WARMUP_CALLS:
                                latency.samples[name, filter_name].append(elapsed)
                if (index + 1) % 5 == 0:
                    log(
                        "projections: report latency, round "
                        f"{index + 1}/{WARMUP_CALLS + calls}"
                    )
    return latencies


# --------------------------------------------------------------- diagnosis


def catch_up_bound(store: Store, rate: float) -> str:
    """Stage timers on one more rebuild; cProfile on another. Both fold in
    this process (`workers = 1`): neither sees into forked workers."""
    with ComplaintDesk(store.url) as desk:
        reports = desk.reports
        reports.runner.workers = 1
        with probed(catchup_stages.probes()) as times:
            whole, _ = timed(reports.rebuild)
    table = stage_table(
        times, whole, catchup_stages.STAGES, units=store.events, per="event"
    )
    with ComplaintDesk(store.url) as desk:
        reports = desk.reports
        reports.runner.workers = 1
        profile = Profile.of(reports.rebuild)
    allowed = 1e6 / CATCH_UP_TARGET.threshold
    return (
        f"*Catch-up* ({rate:,.0f} events/s, {1e6 / rate:.1f} µs per event; "
        f"{CATCH_UP_TARGET.threshold:,.0f} events/s allows {allowed:.0f} µs). "
        "A rebuild loads the views complaint by complaint: each part of "
        "complaints is folded whole and written in a transaction of its own "
        "(by forked workers, one per core, taking turns to write, in the timed "
        "rounds), without secondary indexes until the end, when this process "
        "makes them and finds the percentiles. Stage timers on one more "
        f"rebuild of the {store.events:,} events, folded in this process alone "
        f"({1e6 * whole / store.events:.1f} µs per event there); each row is "
        "its own time, without the rows below it that it calls:\n\n"
        + table
        + "\n\n"
        + profile_text(
            profile,
            what=f"a further rebuild of the {store.events:,} events",
            per="event",
            units=store.events,
        )
    )


def latency_bound(
    store: Store,
    now: datetime,
    missed: list[tuple[str, str]],
    smallest: int,
    largest: int,
) -> str:
    """For each report that missed (its unfiltered call if that missed): one
    more call split by SQL statement, and one under cProfile."""
    filters = store_filters(now, store.complaints, smallest, largest)
    parts = []
    seen: set[str] = set()
    with ComplaintDesk(store.url) as desk:
        reports = desk.reports
        engine = reports.runner.engine
        for name, filter_name in sorted(missed, key=lambda m: FILTERS.index(m[1])):
            if name in seen:
                continue
            seen.add(name)
            report: Callable[..., Any] = getattr(reports, name)
            arguments = filters[filter_name]

            def call(r: Callable[..., Any] = report, a: Any = arguments) -> Any:
                return r(catch_up=False, **a)

            whole, spans = statement_spans(engine, call)
            ranked = sorted(spans, key=lambda span: span[1], reverse=True)
            statements = "; ".join(
                f"`{sql}` {seconds * 1e3:,.0f} ms ({seconds / whole:.0%})"
                for sql, seconds in ranked[:3]
            )
            profile = Profile.of(call)
            parts.append(
                f"*`{name}()`*, {_filter_text(filter_name)}, "
                f"{store.complaints:,} complaints: {whole * 1e3:,.0f} ms in one "
                f"more call, {len(spans) - 1} SQL statements. By statement (each "
                "span runs from a statement to the next, so it counts fetching "
                "and handling that statement's rows): "
                + statements
                + ". "
                + profile_text(profile, what="a further call", per="call", units=1)
            )
    return "\n\n".join(parts)


# ----------------------------------------------------------------- section


def run(config: RunConfig) -> Section:
    small, large = QUICK_SIZES if config.quick else FULL_SIZES
    calls = QUICK_CALLS if config.quick else FULL_CALLS
    broad_calls = QUICK_CALLS if config.quick else FULL_BROAD_CALLS
    small_rebuilds, large_rebuilds = (
        (config.rounds, 1)
        if config.quick
        else (max(config.rounds, FULL_REBUILDS[0]), FULL_REBUILDS[1])
    )
    now = datetime.now(UTC)
    section = Section(
        key="projections",
        title="Projections: catch-up and report latency",
        intro=(
            f"Two SQLite stores from the bulk generator (`bench/bulk.py`): "
            f"{small:,} and {large:,} complaints received over a year, events "
            "interleaved in time order as real traffic would be. Catch-up: "
            "`desk.reports.rebuild()` on a fresh desk (drop the views in the "
            "same file, replay the whole store into them; on a SQLite file it "
            "loads them complaint by complaint, folded by forked workers, one "
            "per core: ADR 0008), against the bare library reading the whole "
            "log in the same rounds (`select_notifications` plus `json.loads` "
            "of each state), the two taking turns going first: "
            f"{small_rebuilds} rebuilds at {small:,} and {large_rebuilds} at "
            f"{large:,}; each rate is the best of its rounds (another tenant of "
            "the machine only ever slows a round), and the ratio the median of "
            "the rounds' own ratios. Report latency: each "
            "of the five reports with `catch_up=False` from caught-up views, "
            "unfiltered, with a "
            f"typical filter (received in one week {WINDOW_START.days} days "
            f"ago, `category='{CATEGORY}'`), and with a narrow and a wide filter "
            f"(the same category, and a window from the same start lasting 7 "
            f"days times {small:,} / the store's complaints, and 7 days times "
            f"{large:,} / the store's complaints, so that each selects about as "
            f"many complaints in both stores), and with one owner "
            f"(`owner='{OWNER}'`, no category) over the typical week and over "
            f"the wide window: {calls} rounds after "
            f"{WARMUP_CALLS} untimed, each calling every report once per filter "
            "on both stores, the stores taking turns going first. Then the same "
            f"with two broad filters, one category and one owner over the "
            f"whole year, in {broad_calls} rounds (see *Broad filters*)."
            + (
                " With `AMENDS_TEST_POSTGRES_URL` set, the same two stores are "
                "built again in PostgreSQL schemas and measured the same way, "
                "once: one rebuild of each beside one raw read (context: the "
                "catch-up target is for SQLite views), and "
                f"{POSTGRES_CALLS if not config.quick else calls} rounds of "
                "report calls."
                if config.postgres_url
                else ""
            )
        ),
        settings={
            "sizes": [small, large],
            "rebuilds": [small_rebuilds, large_rebuilds],
            "calls": calls,
            "judged": JUDGED,
        },
    )
    with bulk_store(WARMUP_COMPLAINTS, seed=1) as warmup:
        rebuild(warmup.url)  # first-use costs: imports, SQLAlchemy's caches
        with ComplaintDesk(warmup.url) as desk:
            for name in REPORTS:
                getattr(desk.reports, name)(catch_up=False)
    bounds: list[str] = []
    catch_ups: list[CatchUp] = []
    with bulk_store(small) as low_store, bulk_store(large, seed=2027) as high_store:
        catch_ups.append(catch_up_rounds(low_store, small_rebuilds))
        floor = Floor(*floor_rates(low_store, FLOOR_REPEATS), catch_ups[0])
        rate = catch_ups[0].best
        if config.profile and not CATCH_UP_TARGET.met_by(rate, None):
            bounds.append(catch_up_bound(low_store, rate))
        catch_ups.append(catch_up_rounds(high_store, large_rebuilds))
        latencies, broad = measure_both(
            [low_store, high_store], now, calls, broad_calls
        )
        # Only the standard filters are profiled when they miss: a broad
        # filter's time is its selection's (ADR 0012), which its note gives.
        missed = [
            key
            for key, values in latencies[1].samples.items()
            if not LATENCY_TARGET.met_by(percentile(values, 95), None)
        ]
        if config.profile and missed:
            bounds.append(latency_bound(high_store, now, missed, small, large))
        small_store, large_store = low_store.bulk, high_store.bulk
    postgres = [t for t in store_targets(config) if t.kind == "postgresql"]
    pg_catch_ups: list[CatchUp] = []
    pg_latencies: list[Latency] = []
    pg_broad: list[Latency] = []
    if postgres:
        pg_calls = calls if config.quick else POSTGRES_CALLS
        with (
            bulk_store(small, target=postgres[0]) as pg_low,
            bulk_store(large, seed=2027, target=postgres[0]) as pg_high,
        ):
            pg_catch_ups = [catch_up_rounds(store, 1) for store in (pg_low, pg_high)]
            pg_latencies, pg_broad = measure_both(
                [pg_low, pg_high], now, pg_calls, broad_calls
            )
    for figures in catch_ups + pg_catch_ups:
        store = figures.store
        prefix, _ = _store_words(store.target)
        section.rows.append(
            Row(
                key=f"{prefix}catch_up.{store.complaints}",
                figure=(
                    f"`desk.reports.rebuild()`, {store.complaints:,} complaints "
                    f"({store.events:,} events), {store.target.label}"
                    + (
                        f", best of {len(figures.amends)}"
                        if len(figures.amends) > 1
                        else ", one run"
                    )
                ),
                value=figures.best,
                unit=UNIT,
                baseline=figures.best_raw,
                baseline_label=(
                    f"raw library reading the log in the same rounds, best of "
                    f"{len(figures.raw)}"
                ),
                target=CATCH_UP_TARGET if store.target == SQLITE else None,
                paired_ratio=figures.ratio,
            )
        )
    section.rows += floor.rows()
    low, high = latencies
    section.rows += latency_rows(latencies)
    section.rows += latency_rows(broad, judged=False)
    if pg_latencies:
        section.rows += latency_rows(pg_latencies[1:], postgres[0])
        section.rows += latency_rows(pg_broad[1:], postgres[0], judged=False)
    section.rows += scaling_rows(low, high)
    if pg_latencies:
        section.rows += scaling_rows(pg_latencies[0], pg_latencies[1], postgres[0])
    section.notes += [
        Note(
            "Stores",
            f"{small:,}: {small_store.describe()}, built in "
            f"{small_store.seconds:.1f} s. {large:,}: {large_store.describe()}, "
            f"built in {large_store.seconds:.1f} s. "
            + selections_text(latencies)
            + ".",
        ),
        rounds_note(catch_ups, latencies),
        broad_note(broad, broad_calls),
    ]
    if pg_latencies:
        section.notes.append(
            rounds_note(
                pg_catch_ups,
                pg_latencies,
                "PostgreSQL",
                selections_text(pg_latencies) + " there. ",
            )
        )
        section.notes.append(broad_note(pg_broad, broad_calls, "PostgreSQL"))
    bounds.insert(0, floor.text())
    section.notes.append(Note("What bounds the figures", "\n\n".join(bounds)))
    section.notes.append(scaling_note(catch_ups, low, high))
    return section


def scaling_note(catch_ups: list[CatchUp], low: Latency, high: Latency) -> Note:
    small, large = catch_ups
    return Note(
        "Scaling",
        f"Catch-up runs at {large.best / small.best:.2f} of "
        f"its {small.store.complaints:,}-complaint rate at "
        f"{large.store.complaints:,}: a rebuild writes each complaint once, "
        "but the secondary indexes it makes at the end, in one process, grow "
        "with the store. Both "
        "stores span one year, so the typical filter's week holds ten times "
        f"as many complaints in the larger ({low.selected['typical']:,} and "
        f"{high.selected['typical']:,} selected): its scaling rows grow with "
        "the rows selected (every report reads, groups and lists the "
        "complaints its filter selects), and are context (ADR 0013), as are "
        "the owner's over the typical week. The "
        + ", ".join(
            f"`{_filter_text(name)}` ({low.selected[name]:,} and "
            f"{high.selected[name]:,})"
            for name in SCALING_JUDGED
            if name != "none"
        )
        + " select about as many in each store, so their rows show what a "
        "larger store itself adds to a filtered report: deeper indexes. The "
        "unfiltered "
        "reports read the running totals "
        "the runner keeps (ADR 0008), which grow with the number of owners, "
        "categories and weeks, not of complaints.",
    )


def selections_text(latencies: list[Latency]) -> str:
    """How many complaints each standard filter selects in each store."""
    return "; ".join(
        f"`{_filter_text(filter_name)}` selects "
        + " and ".join(f"{latency.selected[filter_name]:,}" for latency in latencies)
        for filter_name in FILTERS
        if filter_name != "none"
    )


_FILTER_WORDS = {
    "none": "no filter",
    "category": "one category all year",
    "owner": "one owner all year",
    "owner_week": "one owner, the typical week",
    "owner_wide": "one owner, the wide window",
}


def _filter_text(filter_name: str) -> str:
    return _FILTER_WORDS.get(filter_name, f"{filter_name} filter")


def broad_note(latencies: list[Latency], calls: int, where: str = "") -> Note:
    """What a selected complaint costs a filtered report: each broad filter's
    p50 and p95 per store, and its p50 ÷ the complaints it selects."""
    first = latencies[0]
    selected = "; ".join(
        f"`{_filter_text(filter_name)}` ("
        + ", ".join(
            f"{key}={value!r}" for key, value in first.arguments[filter_name].items()
        )
        + ") selects "
        + " and ".join(f"{latency.selected[filter_name]:,}" for latency in latencies)
        for filter_name in latencies[0].filters
    )
    # The most complaints a filter may select for the report's p95 to stay
    # within the target at its dearest p95 per complaint here.
    within = {
        name: LATENCY_TARGET.threshold / max(costs)
        for name in REPORTS
        if (
            costs := [
                cost
                for latency in latencies
                for filter_name in latency.filters
                if (cost := latency.per_complaint(name, filter_name, 95)) is not None
            ]
        )
    }
    return Note(
        "Broad filters" + _where(where),
        f"{selected} complaints. {calls} rounds after {WARMUP_CALLS} untimed, "
        "as above. A filtered report reads, groups and lists every complaint "
        "its filter selects (ADR 0012), so its time grows with the selection, "
        "not with the store, and these rows are shown beside the target but "
        "not judged by it (ADR 0013): the cost per selected complaint (p50 ÷ "
        "complaints selected) is about the same in both stores (a call's fixed "
        "cost makes it higher where fewer are selected). At the dearest p95 "
        "per selected complaint of both stores, a report's p95 stays within "
        f"{LATENCY_TARGET.threshold:g} ms while its filter selects fewer than "
        + ", ".join(f"{n:,.0f} (`{name}()`)" for name, n in within.items())
        + " complaints.\n\n"
        + latency_table(latencies, per_complaint=True),
    )


def latency_rows(
    latencies: list[Latency], target: StoreTarget = SQLITE, judged: bool = True
) -> list[Row]:
    """Each report's p95 per filter, at each size in `latencies`, beside the
    20 ms target; judged by it if `judged` (the broad filters' rows are
    context: their time is their selection's, ADR 0013)."""
    prefix, suffix = _store_words(target)
    return [
        Row(
            key=f"{prefix}report.{latency.size}.{name}.{filter_name}",
            figure=(
                f"`{name}()`, {_filter_text(filter_name)}, "
                f"{latency.size:,} complaints{suffix}: p95"
            ),
            value=percentile(latency.samples[name, filter_name], 95),
            unit="ms",
            target=LATENCY_TARGET,
            context="" if judged else "ADR 0013",
        )
        for latency in latencies
        for name in REPORTS
        for filter_name in latency.filters
    ]


def scaling_rows(
    low: Latency, high: Latency, target: StoreTarget = SQLITE
) -> list[Row]:
    """Each report's p95 per filter in the larger store over the smaller's."""
    prefix, suffix = _store_words(target)
    return [
        Row(
            key=f"{prefix}scaling.{name}.{filter_name}",
            figure=(
                f"`{name}()`, {_filter_text(filter_name)}{suffix}: p95 at "
                f"{high.size:,} complaints"
            ),
            value=percentile(high.samples[name, filter_name], 95),
            unit="ms",
            baseline=percentile(low.samples[name, filter_name], 95),
            baseline_label=f"p95 at {low.size:,}",
            target=SCALING_TARGET,
            context="" if filter_name in SCALING_JUDGED else "ADR 0013",
        )
        for name in REPORTS
        for filter_name in low.filters
    ]


def _store_words(target: StoreTarget) -> tuple[str, str]:
    """A row key's prefix and a figure's suffix for a store other than SQLite
    (the SQLite rows keep the keys earlier runs gave them)."""
    if target.kind == "sqlite":
        return "", ""
    return f"{target.kind}.", f", {target.label}"


def rounds_note(
    catch_ups: list[CatchUp],
    latencies: list[Latency],
    where: str = "",
    preface: str = "",
) -> Note:
    parts = [
        f"Catch-up at {f.store.complaints:,} complaints: rebuild "
        + ", ".join(f"{v:,.0f}" for v in f.amends)
        + f" {UNIT}; raw read in the same rounds "
        + ", ".join(f"{v:,.0f}" for v in f.raw)
        + f" {UNIT} (median {median(f.amends):,.0f} and {median(f.raw):,.0f}); "
        + "ratio per round "
        + ", ".join(f"{v:.3f}" for v in f.ratios)
        + "."
        for f in catch_ups
    ]
    return Note(
        "Rounds and latencies" + _where(where),
        preface + " ".join(parts) + "\n\n" + latency_table(latencies),
    )


def _where(where: str) -> str:
    """A note title's suffix naming the database, if not SQLite."""
    return f", {where}" if where else ""


def latency_table(latencies: list[Latency], per_complaint: bool = False) -> str:
    """Each report's p50 and p95 per filter and store; with `per_complaint`,
    also its p50 ÷ the complaints the filter selects, in µs."""
    labels = ["p50, ms", "p95, ms", *(["µs per complaint"] if per_complaint else [])]
    rows = []
    for name in REPORTS:
        for filter_name in latencies[0].filters:
            cells = []
            for latency in latencies:
                values = latency.samples[name, filter_name]
                p50 = percentile(values, 50)
                cells += [f"{p50:.1f}", f"{percentile(values, 95):.1f}"]
                if per_complaint:
                    cost = latency.per_complaint(name, filter_name)
                    cells.append("—" if cost is None else f"{1e3 * cost:.1f}")
            rows.append((f"`{name}()`, {_filter_text(filter_name)}", cells))
    columns = [
        f"{label} at {latency.size:,}" for latency in latencies for label in labels
    ]
    return share_table("report", columns, rows)
