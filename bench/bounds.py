"""What bounds the command path: where amends spends time beyond the library.

Run only when amends misses its target, on one more walk of each
implementation, never on a measured one. Two instruments, because each is
wrong in its own way:

- stage timers (`bench.probes`) wrap the dozen functions that mark the stages
  of a command in both walks, so the stage table compares like with like at
  near-zero overhead;
- cProfile on a further amends walk names the functions inside those stages,
  with call counts; it inflates code made of many small calls, so its figures
  rank functions and are not added to the stage table.

amends internals are named here (`ComplaintDesk._parse`, the desk module's
`decide` and `evolve`, `PydanticMapper`) only to time them; the measured walks
use the public API. amends is changing: a function that no longer exists is
listed as not found instead of breaking the run.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

from eventsourcing.application import Application, Repository
from eventsourcing.persistence import Mapper

from amends import ComplaintDesk
from bench.drivers import utc_now, walk_amends, walk_raw
from bench.harness import log, timed
from bench.probes import Probe, StageTimes, probed
from bench.profiling import Profile, share_table
from bench.raw import RawDesk
from bench.stores import StoreTarget, fresh_store
from bench.workload import STAGE_COUNT, ComplaintScript

VALIDATE = "validate"
VALIDATE_ID = "validate id"
READ = "read"
SNAPSHOT = "snapshot"
FETCH = "fetch"
DECODE = "decode"
DECIDE = "decide"
EVOLVE = "evolve"
WRITE = "write"
ENCODE = "encode"
INSERT = "insert"

HOTSPOTS = (
    ("amends.infra.mapper", "stored_digest", "digest (SHA-256 of the stored form)"),
    ("amends.domain.events", "stored_digest", "digest (SHA-256 of the stored form)"),
)
"""Functions inside the stages that cProfile ranks high, timed the same cheap
way to give their real share: (module, function, label)."""

ROWS = (
    "validate arguments (`ComplaintDesk._parse`, `_complaint_uuid`)",
    "read: look for a snapshot (amends `ComplaintDesk._snapshot`: its query "
    "and decoding)",
    "read: fetch event rows (recorder `select_events`)",
    "read: decode rows into events (mapper `to_domain_event`)",
    "read: fold events into state (rest of the read: amends "
    "`ComplaintDesk._load` → `evolve`; raw `Repository.get` → "
    "`project_aggregate`)",
    "decide (amends `decide`; raw: the `@event` method and the rest of the "
    "call, by difference)",
    "evolve the view returned to the caller (`evolve` after the save)",
    "write: encode events (mapper `to_stored_event`)",
    "write: insert and commit (recorder `insert_events`)",
    "write: rest of `Application.save`",
    "everything else (desk plumbing, error wrappers, the driver loop)",
)
(
    VALIDATE_ROW,
    SNAPSHOT_ROW,
    FETCH_ROW,
    DECODE_ROW,
    FOLD_ROW,
    DECIDE_ROW,
    EVOLVE_ROW,
    ENCODE_ROW,
    INSERT_ROW,
    SAVE_REST_ROW,
    OTHER_ROW,
) = ROWS

SHORT = dict(
    zip(
        ROWS,
        (
            "validating arguments",
            "the snapshot lookup",
            "fetching event rows",
            "decoding stored events",
            "folding events into state",
            "deciding",
            "evolving the view returned",
            "encoding events",
            "insert and commit",
            "the rest of save",
            "everything else",
        ),
        strict=True,
    )
)
"""Each stage row's name inside a sentence."""


def explain(
    target: StoreTarget,
    ratio: float,
    amends_rate: float,
    raw_rate: float,
    scripts: Sequence[ComplaintScript],
    target_ratio: float,
) -> str:
    """One store's paragraph and stage table for the "What bounds" note."""
    log(f"command path, {target.label}: diagnosing with {len(scripts)} complaints")
    commands = len(scripts) * STAGE_COUNT
    per = 1e6 / commands
    amends_times, amends_whole = _probed_amends(target, scripts)
    raw_times, raw_whole = _probed_raw(target, scripts)
    amends_rows = _stage_rows(amends_times, amends_whole, amends=True)
    raw_rows = _stage_rows(raw_times, raw_whole, amends=False)
    amends_us = {row: (amends_rows[row] or 0.0) * per for row in ROWS}
    raw_us = {row: (raw_rows[row] or 0.0) * per for row in ROWS}
    whole_us = amends_whole * per
    only = [row for row in ROWS if raw_rows[row] is None and row != OTHER_ROW]
    amends_only = ", ".join(
        f"{SHORT[row]} {amends_us[row]:,.0f} µs ({amends_us[row] / whole_us:.0%})"
        for row in sorted(only, key=amends_us.__getitem__, reverse=True)
    )
    shared = [
        row
        for row in ROWS
        if raw_rows[row] is not None and amends_us[row] - raw_us[row] >= 10
    ]
    dearer = ", ".join(
        f"{SHORT[row]} {amends_us[row]:,.0f} against {raw_us[row]:,.0f} µs"
        for row in sorted(shared, key=lambda r: amends_us[r] - raw_us[r], reverse=True)
    )
    gap = 1e6 / amends_rate - 1e6 / raw_rate
    allowed = 1e6 / raw_rate * (1 / target_ratio - 1)
    missing = sorted(set(amends_times.missing) | set(raw_times.missing))
    not_found = (
        f" Not found in this amends, so not timed: {', '.join(missing)}."
        if missing
        else ""
    )
    return (
        f"*{target.label}* (ratio {ratio:.2f}): amends takes {gap:,.0f} µs more "
        f"per command than the raw library ({1e6 / amends_rate:,.0f} against "
        f"{1e6 / raw_rate:,.0f} µs at the median); reaching {target_ratio:g} "
        f"would take that extra down to {allowed:,.0f} µs. Stage timers on one "
        "more walk "
        f"of each ({len(scripts)} complaints; {whole_us:,.0f} against "
        f"{raw_whole * per:,.0f} µs there) show the work only amends does: "
        f"{amends_only}; and the shared stages that cost amends more: "
        f"{dearer or 'none by 10 µs or more'}. The two walks run one after the "
        "other, so stages that wait on the database (fetch, insert and commit) "
        "differ between them by noise; the rows only amends has and the "
        "CPU-bound ones are the reliable part. "
        f"{_hotspot_text(amends_times, commands)}{not_found}\n\n"
        + _stage_table(amends_times, raw_times, amends_rows, raw_rows, commands)
    )


def function_detail(target: StoreTarget, scripts: Sequence[ComplaintScript]) -> str:
    """Which functions inside the stages, by cProfile on a further amends walk."""
    commands = len(scripts) * STAGE_COUNT
    per = 1e6 / commands
    profile = _profiled_amends(target, scripts)
    whole = profile.total
    own = "; ".join(
        f"`{name}` ({calls / commands:.2g} calls/command, {self_time * per:,.0f} µs "
        f"self, {inclusive * per:,.0f} inclusive)"
        for name, calls, self_time, inclusive in profile.top("amends", 6)
    )
    pydantic = "; ".join(
        f"`{name}` ({calls / commands:.2g} calls/command, "
        f"{self_time * per:,.0f} µs self)"
        for name, calls, self_time, _ in profile.top("pydantic", 3)
    )
    components = ", ".join(
        f"{name} {seconds / whole:.0%}"
        for name, seconds in profile.by_component().items()
    )
    return (
        f"*Functions* (cProfile on a further amends walk, {target.label}; it "
        "slows every Python call, so amends ran at "
        f"{whole * per:,.0f} µs per command under it: these rank functions and "
        "do not add up to the gap). Most self time in amends' code, per "
        f"command: {own}. In pydantic: {pydantic}. Self time by component: "
        f"{components}."
    )


def _stage_table(
    amends_times: StageTimes,
    raw_times: StageTimes,
    amends_rows: dict[str, float | None],
    raw_rows: dict[str, float | None],
    commands: int,
) -> str:
    per = 1e6 / commands
    amends_whole = sum(v or 0.0 for v in amends_rows.values())
    raw_whole = sum(v or 0.0 for v in raw_rows.values())
    amends_calls = _stage_calls(amends_times, amends=True)
    raw_calls = _stage_calls(raw_times, amends=False)

    def cells(row: str) -> list[str]:
        amends = amends_rows[row]
        raw = raw_rows[row]
        return [
            _micro(amends, per),
            f"{(amends or 0.0) / amends_whole:.0%}",
            _count(amends_calls[row], commands),
            _micro(raw, per),
            _count(raw_calls[row], commands),
            f"{((amends or 0.0) - (raw or 0.0)) * per:+,.0f}",
        ]

    return share_table(
        "per command (stage timers)",
        ["amends µs", "share", "calls", "raw µs", "calls", "amends - raw µs"],
        [(row, cells(row)) for row in ROWS]
        + [
            (
                "**whole command**",
                [
                    f"**{amends_whole * per:,.0f}**",
                    "100%",
                    "",
                    f"**{raw_whole * per:,.0f}**",
                    "",
                    f"**{(amends_whole - raw_whole) * per:+,.0f}**",
                ],
            )
        ],
    )


def _probed_amends(
    target: StoreTarget, scripts: Sequence[ComplaintScript]
) -> tuple[StageTimes, float]:
    with fresh_store(target) as store:
        recorders = _recorder_classes(store.raw_env)
        desk = ComplaintDesk(store.amends_url, clock=utc_now)
        try:
            with probed(_amends_probes(recorders)) as times:
                seconds, _ = timed(lambda: walk_amends(desk, scripts))
        finally:
            desk.close()
    return times, seconds


def _probed_raw(
    target: StoreTarget, scripts: Sequence[ComplaintScript]
) -> tuple[StageTimes, float]:
    with fresh_store(target) as store:
        recorders = _recorder_classes(store.raw_env)
        app = RawDesk(store.raw_env)
        try:
            with probed(_raw_probes(recorders)) as times:
                seconds, _ = timed(lambda: walk_raw(app, scripts))
        finally:
            app.close()
    return times, seconds


def _profiled_amends(
    target: StoreTarget, scripts: Sequence[ComplaintScript]
) -> Profile:
    with fresh_store(target) as store:
        desk = ComplaintDesk(store.amends_url, clock=utc_now)
        try:
            return Profile.of(lambda: walk_amends(desk, scripts))
        finally:
            desk.close()


def _recorder_classes(raw_env: dict[str, str]) -> list[type[Any]]:
    """The library's recorder classes for this store: the application's, and
    the plain aggregate recorder that snapshot stores use (amends uses both)."""
    app = RawDesk(raw_env)
    try:
        classes: list[type[Any]] = [type(app.recorder)]
        aggregate = getattr(app.factory, "aggregate_recorder_class", None)
        if isinstance(aggregate, type):
            classes.append(aggregate)
        return classes
    finally:
        app.close()


def _recorder_probes(
    classes: Sequence[type[Any]], attribute: str, label: str
) -> list[Probe]:
    """One probe per class that defines `attribute`, so every recorder is seen."""
    owners = dict.fromkeys(
        next((k for k in cls.__mro__ if attribute in vars(k)), cls) for cls in classes
    )
    return [Probe(owner, attribute, label) for owner in owners]


def _amends_probes(recorders: Sequence[type[Any]]) -> list[Probe]:
    desk_module = importlib.import_module("amends.infra.desk")
    mapper_module = importlib.import_module("amends.infra.mapper")
    mapper = getattr(mapper_module, "PydanticMapper", None)
    hotspots = [
        Probe(importlib.import_module(module), function, label)
        for module, function, label in HOTSPOTS
    ]
    return [
        *hotspots,
        Probe(ComplaintDesk, "_parse", VALIDATE),
        Probe(desk_module, "_complaint_uuid", VALIDATE_ID),
        Probe(ComplaintDesk, "_load", READ),
        Probe(ComplaintDesk, "_snapshot", SNAPSHOT),
        *_recorder_probes(recorders, "select_events", FETCH),
        Probe(mapper, "to_domain_event", DECODE),
        Probe(desk_module, "decide", DECIDE),
        Probe(desk_module, "evolve", EVOLVE),
        Probe(Application, "save", WRITE),
        Probe(mapper, "to_stored_event", ENCODE),
        *_recorder_probes(recorders, "insert_events", INSERT),
    ]


def _raw_probes(recorders: Sequence[type[Any]]) -> list[Probe]:
    return [
        Probe(Repository, "get", READ),
        *_recorder_probes(recorders, "select_events", FETCH),
        Probe(Mapper, "to_domain_event", DECODE),
        Probe(Application, "save", WRITE),
        Probe(Mapper, "to_stored_event", ENCODE),
        *_recorder_probes(recorders, "insert_events", INSERT),
    ]


def _stage_rows(
    times: StageTimes, whole: float, *, amends: bool
) -> dict[str, float | None]:
    """Seconds per stage row; None where the stage does not exist (raw)."""
    s = times.seconds
    rows: dict[str, float | None] = {
        VALIDATE_ROW: s[VALIDATE] + s[VALIDATE_ID] if amends else None,
        SNAPSHOT_ROW: s[SNAPSHOT] if amends else None,
        FETCH_ROW: s[FETCH] - times.within[FETCH, SNAPSHOT],
        DECODE_ROW: s[DECODE] - times.within[DECODE, SNAPSHOT],
        DECIDE_ROW: s[DECIDE] if amends else None,
        EVOLVE_ROW: times.within[EVOLVE, None] if amends else None,
        ENCODE_ROW: s[ENCODE],
        INSERT_ROW: s[INSERT],
        SAVE_REST_ROW: s[WRITE] - s[ENCODE] - s[INSERT],
        OTHER_ROW: None,
    }
    rows[FOLD_ROW] = s[READ] - sum(
        rows[row] or 0.0 for row in (SNAPSHOT_ROW, FETCH_ROW, DECODE_ROW)
    )
    rest = whole - sum(value for value in rows.values() if value is not None)
    rows[OTHER_ROW if amends else DECIDE_ROW] = rest
    return rows


def _hotspot_text(times: StageTimes, commands: int) -> str:
    """Each hot spot's time per command, split by the stage that called it."""
    per = 1e6 / commands
    parts = []
    for label in dict.fromkeys(label for _, _, label in HOTSPOTS):
        if times.calls[label] == 0:
            continue
        by_stage = sorted(
            (
                (parent or "outside any stage", seconds)
                for (name, parent), seconds in times.within.items()
                if name == label
            ),
            key=lambda item: item[1],
            reverse=True,
        )
        split = ", ".join(f"{stage} {sec * per:,.0f}" for stage, sec in by_stage)
        parts.append(
            f"{label}: {times.seconds[label] * per:,.0f} µs per command "
            f"({times.calls[label] / commands:.3g} calls; by stage: {split})"
        )
    if not parts:
        return ""
    return "Inside the stages: " + "; ".join(parts) + "."


def _stage_calls(times: StageTimes, *, amends: bool) -> dict[str, int | None]:
    """How often each stage's timed function ran (None: not a single function)."""
    c = times.calls
    return {
        VALIDATE_ROW: c[VALIDATE] if amends else None,
        SNAPSHOT_ROW: c[SNAPSHOT] if amends else None,
        FETCH_ROW: c[FETCH] - times.calls_within[FETCH, SNAPSHOT],
        DECODE_ROW: c[DECODE] - times.calls_within[DECODE, SNAPSHOT],
        FOLD_ROW: c[READ],
        DECIDE_ROW: c[DECIDE] if amends else None,
        EVOLVE_ROW: times.calls_within[EVOLVE, None] if amends else None,
        ENCODE_ROW: c[ENCODE],
        INSERT_ROW: c[INSERT],
        SAVE_REST_ROW: c[WRITE],
        OTHER_ROW: None,
    }


def _count(calls: int | None, commands: int) -> str:
    return "" if calls is None else f"{calls / commands:.2g}"


def _micro(seconds: float | None, per: float) -> str:
    return "—" if seconds is None else f"{seconds * per:,.0f}"
