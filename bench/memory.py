"""Section: memory — peak resident memory of a rebuild of the report views.

Target from the issue: rebuilding the views from 1,000,000 events stays under
300 MB of resident memory. The store comes from the bulk generator (cut at
exactly that many events, in time order, so complaints are caught at every
point of their lives); the rebuild runs in a fresh interpreter
(`python -m bench.rss_child`), which reads its own peak resident set
(`VmHWM`), so nothing the harness holds is counted. The baseline is the same
child right after importing amends and opening the desk: the ratio is how
far the rebuild lifts memory above what any process using amends holds.

The same is done on a store one twentieth the size, and both children time
the stages of their rebuild (`bench.catchup_stages`), so the section also
shows how memory and catch-up throughput change with the store's size, and
which stages grow.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import bulk, catchup_stages
from bench.diagnose import compare_stages, own_times
from bench.harness import RunConfig, log
from bench.probes import StageTimes
from bench.report import Note, Row, Section, Target

TARGET = Target(300, on_ratio=False, higher_is_better=False)
FULL_EVENTS = 1_000_000
QUICK_EVENTS = 50_000
SMALL_SHARE = 20
"""The smaller store holds this fraction (1/20) of the events."""
EVENTS_PER_COMPLAINT = 9.0
"""A little under the generator's mean (about 9.7), so the cut always falls
inside the generated traffic."""
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Child:
    """One child's readings, on a store of `events` events."""

    events: int
    store: bulk.BulkStore
    disk_mb: float
    readings: dict[str, Any]

    @property
    def rate(self) -> float:
        return self.events / float(self.readings["seconds"])

    @property
    def times(self) -> StageTimes:
        data = self.readings["stages"]
        times = StageTimes()
        times.seconds.update(data["seconds"])
        times.calls.update(data["calls"])
        for name, parent, spent, calls in data["within"]:
            times.within[name, parent] = spent
            times.calls_within[name, parent] = calls
        return times


def rebuild_in_child(url: str) -> dict[str, Any]:
    """Run `bench.rss_child --stages` on `url` and return what it measured."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.rss_child", "--stages", url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench.rss_child failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure(events: int) -> Child:
    """Build a store of exactly `events` events and rebuild it in a child."""
    with tempfile.TemporaryDirectory(prefix="amends-bench-") as directory:
        url = f"sqlite:///{Path(directory) / 'events.db'}"
        store = bulk.build(
            url,
            complaints=math.ceil(events / EVENTS_PER_COMPLAINT),
            max_events=events,
            workers=None if events > 50_000 else 1,
        )
        if store.events != events:
            raise RuntimeError(f"the bulk store holds {store.events} events")
        bulk.check(store)
        log(f"memory: store of {store.describe()}, built in {store.seconds:.1f} s")
        readings = rebuild_in_child(url)
        disk = sum(f.stat().st_size for f in Path(directory).iterdir()) / 1e6
    if readings["applied"] != events:
        raise RuntimeError(f"the child applied {readings['applied']} events")
    child = Child(events, store, disk, readings)
    log(
        f"memory: {events:,} events: peak {readings['peak_mb']:.0f} MB, after "
        f"opening the desk {readings['ready_mb']:.0f} MB, rebuild "
        f"{readings['seconds']:.0f} s ({child.rate:,.0f} events/s)"
    )
    return child


def run(config: RunConfig) -> Section:
    events = QUICK_EVENTS if config.quick else FULL_EVENTS
    small_events = events // SMALL_SHARE
    section = Section(
        key="memory",
        title="Memory: rebuilding the views",
        intro=(
            f"A SQLite store of exactly {events:,} events from the bulk "
            "generator (`bench/bulk.py`: the first events of a year of traffic "
            "in time order); `desk.reports.rebuild()` in a fresh interpreter "
            "(`python -m bench.rss_child`), views in the same file. Figure: the "
            "child's peak resident set (`VmHWM`) over its whole life. "
            "Baseline: the child's resident set right after importing amends "
            f"and opening the desk. The same on a store of {small_events:,} "
            "events, for comparison. Both children run the rebuild under stage "
            "timers (about a microsecond per timed call, a few calls per "
            "event), so their throughput is context, not a measurement of "
            "record (section Projections has that). MB are 10^6 bytes."
        ),
        settings={"events": events, "small_events": small_events},
    )
    small = measure(small_events)
    large = measure(events)
    section.rows += [
        Row(
            key="sqlite.peak",
            figure=f"peak resident memory, rebuild of {events:,} events, SQLite file",
            value=large.readings["peak_mb"],
            unit="MB",
            baseline=large.readings["ready_mb"],
            baseline_label="after importing amends and opening the desk",
            target=TARGET,
        ),
        Row(
            key="sqlite.growth",
            figure=f"of which the rebuild of {events:,} events added",
            value=large.readings["peak_mb"] - large.readings["ready_mb"],
            unit="MB",
            baseline=small.readings["peak_mb"] - small.readings["ready_mb"],
            baseline_label=f"added by the rebuild of {small_events:,}",
        ),
        Row(
            key="sqlite.peak_small",
            figure=f"peak resident memory, rebuild of {small_events:,} events",
            value=small.readings["peak_mb"],
            unit="MB",
            baseline=small.readings["ready_mb"],
            baseline_label="after importing amends and opening the desk",
        ),
        Row(
            key="sqlite.rate",
            figure=f"rebuild throughput in the child, {events:,} events",
            value=large.rate,
            unit="events/s",
            baseline=small.rate,
            baseline_label=f"{small_events:,} events",
        ),
    ]
    section.notes += [
        Note("Readings", readings_text(small) + " " + readings_text(large)),
        Note("Stages by store size", stages_text(small, large)),
    ]
    return section


def readings_text(child: Child) -> str:
    r = child.readings
    return (
        f"*{child.events:,} events*: {child.store.describe()}; generated and "
        f"inserted in {child.store.seconds:.0f} s; {child.disk_mb:,.0f} MB on "
        f"disk with the views. Child: {r['interpreter_mb']:.1f} MB before "
        f"importing anything, {r['ready_mb']:.1f} MB after importing amends and "
        f"opening the desk, {r['views_ready_mb']:.1f} MB once the views' engine "
        f"was ready, peak {r['peak_mb']:.1f} MB, {r['after_mb']:.1f} MB after "
        f"the rebuild, which took {r['seconds']:.1f} s ({child.rate:,.0f} "
        "events/s)."
    )


def stages_text(small: Child, large: Child) -> str:
    """Which stages cost more per event in the larger store, and the table."""
    labels = [label for label, _ in catchup_stages.STAGES]
    names = dict(catchup_stages.STAGES)
    per_event: dict[str, list[float]] = defaultdict(list)
    for child in (small, large):
        own = own_times(child.times, labels)
        for label in labels:
            per_event[label].append(own[label] / child.events * 1e6)
    growth = sorted(
        labels,
        key=lambda label: per_event[label][1] - per_event[label][0],
        reverse=True,
    )
    whole_small = 1e6 / small.rate
    whole_large = 1e6 / large.rate
    grown = "; ".join(
        f"{names[label].split(' (')[0]} {per_event[label][0]:,.1f} → "
        f"{per_event[label][1]:,.1f} µs"
        for label in growth[:4]
    )
    rewrites = [
        child.times.calls["rows"] / max(child.store.complaints, 1)
        for child in (small, large)
    ]
    per_event_rewrites = [
        child.times.calls["rows"] / child.events for child in (small, large)
    ]
    per_rewrite = [
        sum(per_event[label][index] for label in REWRITE_STAGES)
        / per_event_rewrites[index]
        for index in range(2)
    ]
    bigger = (
        ", more in the larger store, whose view tables and indexes are larger"
        if per_rewrite[1] > 1.1 * per_rewrite[0]
        else ""
    )
    table = compare_stages(
        [
            (
                f"{small.events:,}",
                small.times,
                float(small.readings["seconds"]),
                small.events,
            ),
            (
                f"{large.events:,}",
                large.times,
                float(large.readings["seconds"]),
                large.events,
            ),
        ],
        catchup_stages.STAGES,
        per="event",
    )
    return (
        f"A rebuild costs {whole_small:,.1f} µs per event at {small.events:,} "
        f"events and {whole_large:,.1f} µs at {large.events:,}. The stages "
        f"that grew most per event: {grown}. All of them are paid per "
        f"complaint a batch touches, not per event: each {catchup_stages.BATCH} "
        "loads, refolds and writes the changed rows of every "
        "complaint in it, and commits. Denser traffic puts fewer of a "
        "complaint's events in each batch (a batch covers "
        f"{batch_days(small):.1f} days of traffic in the smaller store and "
        f"{batch_days(large):.1f} in the larger), so each complaint was "
        f"rewritten {rewrites[0]:.1f} and {rewrites[1]:.1f} times "
        f"({per_event_rewrites[0]:.2f} and {per_event_rewrites[1]:.2f} "
        "rewrites per event); a rewrite itself (those stages and the commit, "
        f"per rewrite) costs {per_rewrite[0]:,.0f} and {per_rewrite[1]:,.0f} "
        f"µs{bigger}.\n\n" + table
    )


REWRITE_STAGES = (
    "batch",
    "load",
    "from_json",
    "write",
    "rows",
    "to_json",
    "totals",
    "insert",
    "summary",
)
"""Stages whose work is per touched complaint (and per batch), not per event."""


def batch_days(child: Child) -> float:
    """How many days of traffic one batch of events spans, on average."""
    store = child.store
    batches = child.times.calls.get("batch", 0)
    if store.received_from is None or store.received_to is None or not batches:
        return 0.0
    days = (store.received_to - store.received_from).total_seconds() / 86_400
    return days / batches
