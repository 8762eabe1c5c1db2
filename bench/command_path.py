"""Section 1, the command path: amends' per-command throughput against the library.

The question the issue asks: a service that handles one request per command
(read the complaint, decide, save) — how many events a second does it record
through `ComplaintDesk`, compared with the same walk written directly on the
eventsourcing library on the same store? Target: at least 0.85 of the library.

Runs alternate (raw, amends, write-only; raw, amends, write-only; ...) so that
drift on a shared machine (another job, the page cache, autovacuum) hits both
alike, and each run gets a fresh store. When amends misses the target the
section diagnoses it (`bench.bounds`: stage timers on both walks, cProfile on
amends) and says where amends spends its time beyond the library, so the
report carries its own explanation.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass, field
from functools import partial
from uuid import UUID

from amends import ComplaintDesk
from bench import bounds
from bench.drivers import (
    check_amends,
    check_raw,
    utc_now,
    walk_amends,
    walk_raw,
    write_only_raw,
)
from bench.harness import RunConfig, log, median, per_second, timed
from bench.raw import RawDesk
from bench.report import Note, Row, Section, Target
from bench.stores import StoreTarget, fresh_store, store_targets
from bench.workload import STAGE_COUNT, ComplaintScript, make_scripts

TARGET = Target(0.85)
WARMUP_COMPLAINTS = 20
SLICE_COMPLAINTS = 50
DIAGNOSIS_COMPLAINTS = 300
UNIT = "events/s"


@dataclass
class StoreFigures:
    """Per-round events/second on one kind of store."""

    target: StoreTarget
    raw: list[float] = field(default_factory=list)
    amends: list[float] = field(default_factory=list)
    write_only: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        """The reported ratio: median amends over median raw."""
        return median(self.amends) / median(self.raw)

    @property
    def per_round_ratios(self) -> list[float]:
        """Each round's amends over the raw run just before it, for context."""
        return [a / r for a, r in zip(self.amends, self.raw, strict=True)]


def run(config: RunConfig) -> Section:
    scripts = make_scripts(config.complaints)
    warmup = make_scripts(min(WARMUP_COMPLAINTS, config.complaints), seed=1)
    events = len(scripts) * STAGE_COUNT
    section = Section(
        key="command_path",
        title="Command path: one command per call",
        intro=(
            f"{len(scripts):,} complaints, each walked through all eight stages "
            "(receive, acknowledge, apologize, commit_plan, post_update, resolve, "
            "confirm_satisfaction(satisfied=True), log_prevention), every command "
            f"its own call: {events:,} events per run. amends: the public "
            "`ComplaintDesk` API (validate, read and replay, decide, save). "
            "Baseline, raw library: a bare `eventsourcing` `Aggregate` with eight "
            "`@event` methods and no amends logic, driven by an `Application` "
            "doing `repository.get(id)` + method + `save()` per command."
        ),
        settings={
            "complaints": config.complaints,
            "rounds": config.rounds,
            "stores": [t.kind for t in store_targets(config)],
        },
    )
    results = []
    for target in store_targets(config):
        figures = measure(target, scripts, warmup, config.rounds)
        results.append(figures)
        section.rows += [
            Row(
                key=f"{target.kind}.amends",
                figure=f"amends `ComplaintDesk`, {target.label}",
                value=median(figures.amends),
                unit=UNIT,
                baseline=median(figures.raw),
                baseline_label="raw library",
                target=TARGET,
            ),
            Row(
                key=f"{target.kind}.write_only",
                figure=(
                    f"raw library, write only (8 events, one `save()` per "
                    f"complaint, no reads), {target.label}"
                ),
                value=median(figures.write_only),
                unit=UNIT,
                baseline=median(figures.raw),
                baseline_label="raw library, command path",
            ),
        ]
    section.notes += [method_note(config), rounds_note(results)]
    missed = [f for f in results if not TARGET.met_by(0, f.ratio)]
    if missed and config.profile:
        diagnosis = scripts[:DIAGNOSIS_COMPLAINTS]
        bodies = [
            bounds.explain(
                f.target,
                f.ratio,
                median(f.amends),
                median(f.raw),
                diagnosis,
                TARGET.threshold,
            )
            for f in missed
        ]
        bodies.append(bounds.function_detail(missed[0].target, diagnosis))
        section.notes.append(Note("What bounds the figure", "\n\n".join(bodies)))
    return section


def measure(
    target: StoreTarget,
    scripts: Sequence[ComplaintScript],
    warmup: Sequence[ComplaintScript],
    rounds: int,
) -> StoreFigures:
    """Interleaved rounds on fresh stores, after one untimed warm-up of each.

    The warm-up pays for first-use costs (imports, pydantic's and the
    library's lazily built machinery, the first connection) that would
    otherwise land on whichever implementation ran first.
    """
    run_pair(target, warmup)
    run_write_only(target, warmup)
    figures = StoreFigures(target)
    for number in range(1, rounds + 1):
        raw, amends = run_pair(target, scripts)
        figures.raw.append(raw)
        figures.amends.append(amends)
        figures.write_only.append(run_write_only(target, scripts))
        log(
            f"command path, {target.label}, round {number}/{rounds}: raw "
            f"{figures.raw[-1]:,.0f}, amends {figures.amends[-1]:,.0f}, write only "
            f"{figures.write_only[-1]:,.0f} {UNIT}"
        )
    return figures


def run_pair(
    target: StoreTarget, scripts: Sequence[ComplaintScript]
) -> tuple[float, float]:
    """One round of raw and amends (events/s), alternating slice by slice.

    Each gets its own fresh store; they take turns every `SLICE_COMPLAINTS`
    complaints, raw first in one slice and amends first in the next. On a
    shared machine whose disk and CPU slow down for seconds at a time, this
    puts both through the same slow patches, where whole runs a minute apart
    would not.
    """
    events = len(scripts) * STAGE_COUNT
    seconds = {"raw": 0.0, "amends": 0.0}
    last: dict[str, UUID] = {}
    with (
        fresh_store(target) as raw_store,
        fresh_store(target) as amends_store,
        closing(RawDesk(raw_store.raw_env)) as app,
        ComplaintDesk(amends_store.amends_url, clock=utc_now) as desk,
    ):
        for index, first in enumerate(range(0, len(scripts), SLICE_COMPLAINTS)):
            chunk = scripts[first : first + SLICE_COMPLAINTS]
            turns = {
                "raw": partial(walk_raw, app, chunk),
                "amends": partial(walk_amends, desk, chunk),
            }
            for side in ("raw", "amends")[:: 1 if index % 2 == 0 else -1]:
                elapsed, last[side] = timed(turns[side])
                seconds[side] += elapsed
        check_raw(app, last["raw"], len(scripts))
        check_amends(desk, last["amends"], len(scripts))
    return per_second(events, seconds["raw"]), per_second(events, seconds["amends"])


def run_write_only(target: StoreTarget, scripts: Sequence[ComplaintScript]) -> float:
    with fresh_store(target) as store:
        app = RawDesk(store.raw_env)
        try:
            seconds, last = timed(lambda: write_only_raw(app, scripts))
            check_raw(app, last, len(scripts))
        finally:
            app.close()
    return per_second(len(scripts) * STAGE_COUNT, seconds)


# ------------------------------------------------------------------- notes


def method_note(config: RunConfig) -> Note:
    postgres = (
        " PostgreSQL: a fresh schema per run (created with psycopg, dropped "
        "after), `?schema=` for amends and `POSTGRES_SCHEMA` for the library."
        if config.postgres_url
        else " PostgreSQL was not measured: set `AMENDS_TEST_POSTGRES_URL` to add it."
    )
    return Note(
        "Method",
        f"{config.rounds} rounds per store. In each, raw and amends run side by "
        f"side on two fresh stores, taking turns every {SLICE_COMPLAINTS} "
        f"complaints ({SLICE_COMPLAINTS * STAGE_COUNT} commands; raw first, then "
        "amends first, and so on) and summing each one's time, so both meet the "
        "same slow spells of a shared machine; then write only runs on a third "
        "fresh store. The table shows the median round. "
        f"Before the rounds, {WARMUP_COMPLAINTS} untimed complaints warm each "
        "implementation up. Time is wall clock around the walk only (store "
        "creation and the check that every event was stored are outside it). "
        "SQLite: a new file in a new temporary directory per run, in the "
        "library's WAL mode, the same settings amends derives from its URL."
        + postgres
        + " amends gets explicit `at` times (30 days ago onwards, increasing) "
        "and a clock returning `datetime.now(UTC)`; the library gets the same "
        "texts and datetimes as method arguments.",
    )


def rounds_note(results: Sequence[StoreFigures]) -> Note:
    parts = []
    for figures in results:
        parts.append(
            f"{figures.target.label}: raw {_listed(figures.raw)}; amends "
            f"{_listed(figures.amends)}; write only {_listed(figures.write_only)} "
            f"{UNIT}; amends/raw per round "
            f"{_listed(figures.per_round_ratios, '.2f')}. "
            "Per command at the median: amends "
            f"{1e6 / median(figures.amends):,.0f} µs, raw "
            f"{1e6 / median(figures.raw):,.0f} µs."
        )
    return Note("Rounds", " ".join(parts))


def _listed(values: Sequence[float], spec: str = ",.0f") -> str:
    return ", ".join(format(value, spec) for value in values)
