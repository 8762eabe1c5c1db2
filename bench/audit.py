"""Section: audit — `desk.verify()` throughput and point-in-time reconstruction.

Two questions from the issue. How fast does `verify()` replay a store
(target: at least 50,000 events a second on SQLite)? It reads every
complaint's rows and checks digests, versions, transitions and times; the
baseline is the bare library reading the same rows in one pass
(`select_notifications` in batches plus `json.loads` of each state), so the
ratio is what the checks cost beyond reading; reading complaint by complaint
(`select_events` per complaint) is shown too. And how long does it take
to reconstruct a complaint with a long history as it stands now, after a given
version, or at a given moment (target: under 20 ms for 1,000 events)? That
is measured with the default snapshots (every 100 events) beside the library's
own `repository.get` of a bare 1,000-event aggregate with snapshots at the same
interval (the same kind of work: a snapshot and the events after it; the judged
ratio), and beside the same desk with snapshots off, which replays every event.
"""

from __future__ import annotations

import bisect
import importlib
import random
import tempfile
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.domain import Aggregate, event
from eventsourcing.sqlite import SQLiteAggregateRecorder

from amends import ComplaintDesk
from amends.infra.desk import DEFAULT_SNAPSHOT_EVERY
from amends.infra.settings import store_settings
from bench import bulk
from bench.diagnose import frozen_heap, percentile, profile_text, stage_table, timed_ms
from bench.harness import RunConfig, log, median, per_second, timed
from bench.probes import Probe, probed
from bench.profiling import Profile, share_table
from bench.raw import RawDesk, read_by_complaint, read_log
from bench.report import Note, Row, Section, Target
from bench.stores import StoreTarget, fresh_store, store_targets
from bench.workload import STAFF

VERIFY_TARGET = Target(50_000, on_ratio=False)
LATENCY_TARGET = Target(20, on_ratio=False, higher_is_better=False)
HISTORY_EVENTS = 1_000
FULL_CALLS = 1_000
"""Calls per kind and desk: the p95 of a sub-millisecond call is the 50th
slowest of 1,000. Against a baseline of another kind of work (the same desk
replaying every event, 50 to 100 times slower) the p95 ratios of two runs
differed by up to 22% with 200 calls, 19% with 600 and 44% with 1,000 on a
noisy day: the machine slows different work unevenly. Hence the library's own
snapshot read as the judged baseline."""
QUICK_CALLS = 20
VERIFY_ROUNDS = 7
"""Rounds of verify and its baselines in a full run: the median of 3 moved
by 10% between two runs."""
PASSES = 3
"""Passes over the store per timing: one read of the log took about 0.15 s,
short enough for a moment's stall of the machine to move its rate by half."""
WARMUP_CALLS = 3
SPACING = timedelta(minutes=40)
KINDS = ("latest", "version", "as_of")
RAW_SNAPSHOTS_LABEL = (
    f"raw library, snapshots every {DEFAULT_SNAPSHOT_EVERY}, the same read"
)
KIND_TEXT = {
    "latest": "`desk.get(id)` (as it stands)",
    "version": "`desk.get(id, version=n)`, n random",
    "as_of": "`desk.get(id, as_of=t)`, t random",
}


# ---------------------------------------------------------------- verify


@dataclass
class VerifyFigures:
    store: bulk.BulkStore
    amends: list[float] = field(default_factory=list)
    raw: list[float] = field(default_factory=list)
    log: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    """Each round's verify over the same round's read of the log."""


def measure_verify(config: RunConfig) -> tuple[VerifyFigures, str | None]:
    """Rounds of raw read and verify on one bulk SQLite store, order alternating."""
    with tempfile.TemporaryDirectory(prefix="amends-bench-") as directory:
        url = f"sqlite:///{Path(directory) / 'events.db'}"
        store = bulk.build(url, complaints=config.complaints, workers=1)
        bulk.check(store)
        log(f"audit: verify store: {store.describe()}")
        figures = VerifyFigures(store)
        with (
            closing(RawDesk(store_settings(url))) as app,
            ComplaintDesk(url) as desk,
        ):
            recorder = app.recorder
            read_by_complaint(recorder)  # warm-up: page cache, imports
            desk.verify()
            sides: list[tuple[str, Callable[[], Any]]] = [
                ("log", lambda: read_log(recorder)),
                ("amends", desk.verify),
                ("raw", lambda: read_by_complaint(recorder)),
            ]
            rounds = verify_rounds(config)
            for number in range(rounds):
                turn = number % len(sides)
                for side, work in sides[turn:] + sides[:turn]:
                    seconds, results = timed(
                        lambda w=work: [w() for _ in range(PASSES)]  # type: ignore[misc]
                    )
                    rate = per_second(store.events * PASSES, seconds)
                    result = results[-1]
                    if side == "amends":
                        if not result.ok or result.events != store.events:
                            raise RuntimeError(f"verify found: {result.to_text()}")
                        figures.amends.append(rate)
                    else:
                        if result != store.events:
                            raise RuntimeError(f"{side} read {result} events")
                        (figures.log if side == "log" else figures.raw).append(rate)
                figures.ratios.append(figures.amends[-1] / figures.log[-1])
                log(
                    f"audit: verify round {number + 1}/{rounds}: verify "
                    f"{figures.amends[-1]:,.0f}, log {figures.log[-1]:,.0f}, "
                    f"per complaint {figures.raw[-1]:,.0f} events/s"
                )
            bound = None
            rate = median(figures.amends)
            if config.profile and not VERIFY_TARGET.met_by(rate, None):
                bound = verify_bound(desk, store, rate)
    return figures, bound


def verify_rounds(config: RunConfig) -> int:
    return config.rounds if config.quick else max(config.rounds, VERIFY_ROUNDS)


VERIFY_STAGES = (
    ("ids", "list the complaint ids (`SELECT DISTINCT`, sort)"),
    ("fetch", "fetch each complaint's rows (recorder `select_events`)"),
    ("decode", "decode rows to JSON (`ComplaintDesk._stored_record`)"),
    ("check", "check links, versions, transitions, times (`ChainVerifier.check`)"),
    ("digest", "digest each stored form (`stored_digest`: canonical JSON, SHA-256)"),
    ("payload", "validate unvouched heads (`ChainVerifier._check_payload`)"),
)


def verify_bound(desk: ComplaintDesk, store: bulk.BulkStore, rate: float) -> str:
    """Stage timers and cProfile on two more `verify()` runs."""
    desk_module = importlib.import_module("amends.infra.desk")
    audit_module = importlib.import_module("amends.domain.audit")
    verifier = audit_module.ChainVerifier
    probes = [
        Probe(desk_module, "complaint_ids", "ids"),
        Probe(SQLiteAggregateRecorder, "select_events", "fetch"),
        Probe(ComplaintDesk, "_stored_record", "decode"),
        Probe(verifier, "check", "check"),
        Probe(audit_module, "stored_digest", "digest"),
        Probe(verifier, "_check_payload", "payload"),
    ]
    with probed(probes) as times:
        whole, _ = timed(desk.verify)
    table = stage_table(
        times,
        whole,
        VERIFY_STAGES,
        units=store.events,
        per="event",
        rest="everything else: reading the rows (the store scan's SQL and "
        "`StoredEvent`s, where verify scans), grouping them, the loop",
    )
    profile = Profile.of(desk.verify)
    return (
        f"*`desk.verify()`* ({rate:,.0f} events/s, {1e6 / rate:.1f} µs per event; "
        f"50,000 events/s allows {1e6 / VERIFY_TARGET.threshold:.0f} µs). Stage "
        f"timers on one more run ({1e6 * whole / store.events:.1f} µs per event "
        "there):\n\n"
        + table
        + "\n\n"
        + profile_text(
            profile,
            what=f"a further `desk.verify()` of the {store.events:,} events",
            per="event",
            units=store.events,
        )
    )


# ---------------------------------------------------------- reconstruction


class NotedAggregate(Aggregate):
    """The library's baseline: a bare aggregate received once, then noted."""

    @event("Received")
    def __init__(self, *, by: str, customer: str, summary: str, at: datetime) -> None:
        self.owner = by
        self.customer = customer
        self.summary = summary
        self.notes = 0
        self.last_event_at = at

    @event("NoteAdded")
    def add_note(self, *, by: str, text: str, at: datetime) -> None:
        self.notes += 1
        self.last_event_at = at


class SnapshottingRawDesk(RawDesk):
    """The bare library with snapshots every `DEFAULT_SNAPSHOT_EVERY` events of
    a `NotedAggregate`, taken by `save()` as amends takes its own. Named as
    `RawDesk` is, so both read the same tables (PostgreSQL's are named after
    the application)."""

    name = RawDesk.name
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {
        NotedAggregate: DEFAULT_SNAPSHOT_EVERY
    }


def _kinds() -> dict[str, list[float]]:
    return {kind: [] for kind in KINDS}


@dataclass
class Latencies:
    """Milliseconds per call, by kind of read: amends with and without
    snapshots, and the bare library with snapshots; and the bare library
    replaying every event."""

    target: StoreTarget
    snapshots: dict[str, list[float]] = field(default_factory=_kinds)
    replay: dict[str, list[float]] = field(default_factory=_kinds)
    raw_snapshots: dict[str, list[float]] = field(default_factory=_kinds)
    raw: list[float] = field(default_factory=list)
    build_seconds: float = 0.0


NOTES = (
    "Customer called again; told them the case is with the team.",
    "Checked the account history: the problem started after the last release.",
    "Left a voicemail with the case reference.",
    "Team lead reviewed the case and agreed with the plan.",
)


def history_times(now: datetime) -> list[datetime]:
    start = (now - timedelta(days=30)).replace(microsecond=0)
    return [start + SPACING * index for index in range(HISTORY_EVENTS)]


def build_long(url: str, times: list[datetime]) -> UUID:
    """One complaint, received then noted 999 times, through the desk (so the
    default snapshots are taken as a service would take them)."""
    with ComplaintDesk(url) as desk:
        complaint_id = desk.receive(
            by=STAFF[0],
            customer="Jo Smith",
            summary="The same fault keeps coming back after every repair.",
            channel="phone",
            category="product",
            severity="high",
            expectation="A replacement that works.",
            at=times[0],
        )
        for index, at in enumerate(times[1:], start=1):
            desk.add_note(
                complaint_id, by=STAFF[index % 3], text=NOTES[index % len(NOTES)], at=at
            )
        if desk.get(complaint_id).version != HISTORY_EVENTS:
            raise RuntimeError("the long complaint was not recorded in full")
    return complaint_id


def build_raw(app: RawDesk, times: list[datetime]) -> UUID:
    aggregate = NotedAggregate(
        by=STAFF[0],
        customer="Jo Smith",
        summary="The same fault keeps coming back after every repair.",
        at=times[0],
    )
    for index, at in enumerate(times[1:], start=1):
        aggregate.add_note(by=STAFF[index % 3], text=NOTES[index % len(NOTES)], at=at)
    app.save(aggregate)
    return aggregate.id


def measure_reconstruction(
    target: StoreTarget, calls: int, profile: bool
) -> tuple[Latencies, str | None]:
    figures = Latencies(target)
    times = history_times(datetime.now(UTC))
    rng = random.Random(1_000)
    versions = [rng.randint(1, HISTORY_EVENTS) for _ in range(calls + WARMUP_CALLS)]
    moments = [
        times[0] + (times[-1] - times[0]) * rng.random()
        for _ in range(calls + WARMUP_CALLS)
    ]
    bound = None
    # The library has no reading at a moment: it is told the version that
    # held then (the events are `times` apart, version 1 at the first).
    moment_versions = [bisect.bisect_right(times, moment) for moment in moments]
    with fresh_store(target) as store, fresh_store(target) as raw_store:
        seconds, complaint_id = timed(lambda: build_long(store.amends_url, times))
        figures.build_seconds = seconds
        log(
            f"audit, {target.label}: {HISTORY_EVENTS:,}-event complaint recorded "
            f"through the desk in {seconds:.1f} s"
        )
        with (
            ComplaintDesk(store.amends_url, cache_size=0) as snapshots,
            ComplaintDesk(store.amends_url, cache_size=0, snapshot_every=0) as replay,
            closing(SnapshottingRawDesk(raw_store.raw_env)) as raw_snapshots,
            closing(RawDesk(raw_store.raw_env)) as app,
        ):
            raw_id = build_raw(raw_snapshots, times)

            def call(desk: ComplaintDesk, kind: str, index: int) -> Any:
                if kind == "latest":
                    return desk.get(complaint_id)
                if kind == "version":
                    return desk.get(complaint_id, version=versions[index])
                return desk.get(complaint_id, as_of=moments[index])

            def call_raw(kind: str, index: int) -> Any:
                repository = raw_snapshots.repository
                if kind == "latest":
                    return repository.get(raw_id)
                if kind == "version":
                    return repository.get(raw_id, version=versions[index])
                return repository.get(raw_id, version=moment_versions[index])

            check_same(snapshots, replay, call)
            check_raw(snapshots, call, raw_snapshots, raw_id, call_raw)
            # Per kind, each reader with its samples, in the order of a turn.
            readers: dict[str, list[tuple[list[float], Callable[[int], Any]]]] = {
                kind: [
                    (figures.snapshots[kind], partial(call, snapshots, kind)),
                    (figures.raw_snapshots[kind], partial(call_raw, kind)),
                    (figures.replay[kind], partial(call, replay, kind)),
                ]
                for kind in KINDS
            }
            with frozen_heap():
                for index in range(calls + WARMUP_CALLS):
                    for turns in readers.values():
                        first = index % len(turns)
                        for samples, read in turns[first:] + turns[:first]:
                            elapsed = timed_ms(partial(read, index))
                            if index >= WARMUP_CALLS:
                                samples.append(elapsed)
                    elapsed = timed_ms(lambda: app.repository.get(raw_id))
                    if index >= WARMUP_CALLS:
                        figures.raw.append(elapsed)
            missed = [
                kind
                for kind in KINDS
                if not LATENCY_TARGET.met_by(
                    percentile(figures.snapshots[kind], 95), None
                )
            ]
            if profile and missed:
                kind = missed[0]
                prof = Profile.of(
                    lambda: [call(snapshots, kind, i) for i in range(calls)]
                )
                bound = f"*{target.label}*, {KIND_TEXT[kind]}: " + profile_text(
                    prof,
                    what=f"{calls} more such calls, snapshots on",
                    per="call",
                    units=calls,
                )
    return figures, bound


def check_same(
    snapshots: ComplaintDesk,
    replay: ComplaintDesk,
    call: Callable[[ComplaintDesk, str, int], Any],
) -> None:
    """Both desks reconstruct the same states: the snapshots are not measured
    answering something else."""
    for index in range(WARMUP_CALLS):
        for kind in KINDS:
            if call(snapshots, kind, index) != call(replay, kind, index):
                raise RuntimeError(f"snapshot and replay differ for {kind}")


def check_raw(
    snapshots: ComplaintDesk,
    call: Callable[[ComplaintDesk, str, int], Any],
    raw: SnapshottingRawDesk,
    raw_id: UUID,
    call_raw: Callable[[str, int], Any],
) -> None:
    """The library's reads stop at the same versions as the desk's, from
    snapshots it took: the baseline does the same work."""
    taken = list(raw.snapshots.get(raw_id)) if raw.snapshots else []
    if len(taken) != HISTORY_EVENTS // DEFAULT_SNAPSHOT_EVERY:
        raise RuntimeError(f"the library took {len(taken)} snapshots")
    for index in range(WARMUP_CALLS):
        for kind in KINDS:
            if call(snapshots, kind, index).version != call_raw(kind, index).version:
                raise RuntimeError(f"the library's {kind} read stops elsewhere")


# ---------------------------------------------------------------- section


def run(config: RunConfig) -> Section:
    calls = QUICK_CALLS if config.quick else FULL_CALLS
    targets = store_targets(config)
    section = Section(
        key="audit",
        title="Audit: verify and point-in-time reconstruction",
        intro=(
            "`desk.verify()` over a SQLite store of "
            f"{config.complaints:,} complaints written by the bulk generator "
            "(`bench/bulk.py`: histories decided by amends' pure domain, a "
            "realistic mix of handoffs, waits, gestures, reopens and open "
            "complaints, inserted with the library's recorder). Baselines: the "
            "bare library reading the same rows and decoding each state with "
            "`json.loads`, in one pass along the notification log "
            "(`select_notifications`, batches of 2,000: like verify's own "
            "ordered scan, the judged ratio) and complaint by complaint "
            "(`select_events` per complaint, ids from `SELECT DISTINCT`); the "
            "three take turns going first, round by round, each timing "
            f"{PASSES} passes over the store; the ratio is the median of each "
            "round's verify over the same round's read of the log. Then one "
            "complaint "
            "with "
            f"{HISTORY_EVENTS:,} events (receive and {HISTORY_EVENTS - 1:,} "
            "`add_note`, recorded through the desk, so the default snapshots, "
            "every 100 events, exist) is read back by desks with no state cache "
            "(`cache_size=0`): as it stands, after a random version, and at a "
            f"random moment, {calls} calls each. Baseline: the bare library's "
            "`repository.get` of a bare aggregate with the same 1,000 events "
            "and snapshots at the same interval (its `snapshotting_intervals`), "
            "as it stands and after the same versions; it has no reading at a "
            "moment, so it is told the version that held then. Beside both, "
            "the same desk with `snapshot_every=0`, which replays every event. "
            "The three take turns going first, call by call."
        ),
        settings={
            "complaints": config.complaints,
            "rounds": verify_rounds(config),
            "passes": PASSES,
            "calls": calls,
            "history": HISTORY_EVENTS,
            "stores": [t.kind for t in targets],
            "judged": "reconstruction beside the library with snapshots",
        },
    )
    verify, verify_bound = measure_verify(config)
    store = verify.store
    section.rows += [
        Row(
            key="sqlite.verify",
            figure=f"`desk.verify()`, {store.events:,} events, SQLite file",
            value=median(verify.amends),
            unit="events/s",
            baseline=median(verify.log),
            baseline_label="raw library, notification log in batches + `json.loads`",
            target=VERIFY_TARGET,
            paired_ratio=median(verify.ratios),
        ),
        Row(
            key="sqlite.verify_vs_per_complaint",
            figure=f"`desk.verify()`, {store.events:,} events, SQLite file",
            value=median(verify.amends),
            unit="events/s",
            baseline=median(verify.raw),
            baseline_label="raw library, `select_events` + `json.loads` per complaint",
        ),
    ]
    results = []
    bounds = [verify_bound] if verify_bound else []
    for target in targets:
        figures, bound = measure_reconstruction(target, calls, config.profile)
        results.append(figures)
        if bound:
            bounds.append(bound)
        for kind in KINDS:
            section.rows.append(
                Row(
                    key=f"{target.kind}.{kind}.p95",
                    figure=f"{KIND_TEXT[kind]}, {target.label}: p95",
                    value=percentile(figures.snapshots[kind], 95),
                    unit="ms",
                    baseline=percentile(figures.raw_snapshots[kind], 95),
                    baseline_label=RAW_SNAPSHOTS_LABEL,
                    target=LATENCY_TARGET,
                )
            )
        for kind in KINDS:
            section.rows.append(
                Row(
                    key=f"{target.kind}.{kind}.p50",
                    figure=f"{KIND_TEXT[kind]}, {target.label}: p50",
                    value=percentile(figures.snapshots[kind], 50),
                    unit="ms",
                    baseline=percentile(figures.raw_snapshots[kind], 50),
                    baseline_label=RAW_SNAPSHOTS_LABEL,
                )
            )
        section.rows.append(
            Row(
                key=f"{target.kind}.replay.p50",
                figure=(
                    f"`desk.get(id)` replaying all {HISTORY_EVENTS:,} events "
                    f"(no snapshots), {target.label}: p50"
                ),
                value=percentile(figures.replay["latest"], 50),
                unit="ms",
                baseline=percentile(figures.raw, 50),
                baseline_label="raw library `repository.get`, bare aggregate",
            )
        )
    section.notes += [
        Note(
            "Stores",
            f"verify: {store.describe()}; generated and inserted in "
            f"{store.seconds:.1f} s.",
        ),
        rounds_note(verify, results),
    ]
    if bounds:
        section.notes.append(Note("What bounds the figure", "\n\n".join(bounds)))
    return section


def rounds_note(verify: VerifyFigures, results: list[Latencies]) -> Note:
    def listed(values: list[float]) -> str:
        return ", ".join(f"{v:,.0f}" for v in values)

    parts = [
        f"verify per round: {listed(verify.amends)} events/s; notification "
        f"log {listed(verify.log)}; complaint by complaint {listed(verify.raw)}."
    ]
    rows = []
    for figures in results:
        for kind in KINDS:
            for label, samples in (
                ("snapshots", figures.snapshots[kind]),
                ("no snapshots", figures.replay[kind]),
                ("raw library with snapshots", figures.raw_snapshots[kind]),
            ):
                rows.append(
                    (
                        f"{KIND_TEXT[kind]}, {label}, {figures.target.label}",
                        [
                            f"{percentile(samples, 50):.2f}",
                            f"{percentile(samples, 95):.2f}",
                            f"{max(samples):.2f}",
                        ],
                    )
                )
        rows.append(
            (
                f"raw library `repository.get`, {HISTORY_EVENTS:,}-event bare "
                f"aggregate, {figures.target.label}",
                [
                    f"{percentile(figures.raw, 50):.2f}",
                    f"{percentile(figures.raw, 95):.2f}",
                    f"{max(figures.raw):.2f}",
                ],
            )
        )
        parts.append(
            f"Recording the {HISTORY_EVENTS:,}-event complaint through the desk "
            f"took {figures.build_seconds:.1f} s on {figures.target.label}."
        )
    table = share_table("reconstruction, ms", ["p50", "p95", "max"], rows)
    return Note(
        "Rounds and latencies",
        " ".join(parts)
        + " Calls alternate between the two desks, the library and the three "
        "kinds of read, "
        f"after {WARMUP_CALLS} untimed calls of each.\n\n" + table,
    )
