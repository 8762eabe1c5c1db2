"""Section: memory — peak resident memory of a rebuild of the report views.

Target from the issue: rebuilding the views from 1,000,000 events stays under
300 MB of resident memory. The store comes from the bulk generator (cut at
exactly that many events, in time order, so complaints are caught at every
point of their lives); the rebuild runs in a fresh interpreter
(`python -m bench.rss_child`), which reads its own peak resident set
(`VmHWM`), so nothing the harness holds is counted. The baseline is the same
child right after importing amends and opening the desk: the ratio is how
far the rebuild lifts memory above what any process using amends holds.

A rebuild of a large SQLite store folds in forked worker processes (ADR
0008), whose memory the child's own peak does not show. So the harness also
samples the whole process tree every `SAMPLE_SECONDS`: the sum of each
process's proportional set size (`Pss` in `/proc/PID/smaps_rollup`, which
splits the pages a fork shares among the processes sharing them, so nothing
is counted twice). The judged figure is the larger of the child's own peak
and the tree's sampled peak.

The same is done on a store one twentieth the size, so the section also shows
how memory and the rebuild's throughput change with the store's size.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import bulk
from bench.harness import RunConfig, log
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
SAMPLE_SECONDS = 0.05


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
    def peak_mb(self) -> float:
        """The rebuild's peak, its workers included (see the module's note)."""
        return max(float(self.readings["peak_mb"]), float(self.readings["tree_mb"]))


def rebuild_in_child(url: str) -> dict[str, Any]:
    """Run `bench.rss_child` on `url`, sampling its process tree's memory,
    and return what it measured with the tree's sampled peak (`tree_mb`)."""
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.rss_child", url],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    tree_peak, samples = 0.0, 0
    while child.poll() is None:
        tree_peak = max(tree_peak, tree_pss_mb(child.pid))
        samples += 1
        time.sleep(SAMPLE_SECONDS)
    stdout, stderr = child.communicate()
    if child.returncode != 0:
        raise RuntimeError(f"bench.rss_child failed:\n{stderr}")
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    result["tree_mb"], result["samples"] = tree_peak, samples
    return result


def tree_pss_mb(pid: int) -> float:
    """The proportional set size of `pid` and all its descendants, in MB
    (10^6 bytes); processes that end while being read count nothing."""
    total_kb, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            with open(f"/proc/{current}/smaps_rollup", encoding="ascii") as rollup:
                total_kb += next(
                    int(line.split()[1]) for line in rollup if line.startswith("Pss:")
                )
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(p) for p in (task / "children").read_text().split()]
        except (OSError, StopIteration, ValueError):
            continue
    return total_kb * 1024 / 1e6


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
        f"memory: {events:,} events: peak {child.peak_mb:.0f} MB (the child "
        f"{readings['peak_mb']:.0f}, its tree {readings['tree_mb']:.0f}), after "
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
            "(`python -m bench.rss_child`), views in the same file, folded by "
            "forked workers as the desk does by default. Figure: the larger of "
            "the child's peak resident set (`VmHWM`) over its whole life and "
            "the peak of its process tree's summed proportional set size "
            f"(workers included), sampled every {SAMPLE_SECONDS * 1000:.0f} ms. "
            "Baseline: the child's resident set right after importing amends "
            f"and opening the desk. The same on a store of {small_events:,} "
            "events, for comparison. MB are 10^6 bytes."
        ),
        settings={"events": events, "small_events": small_events},
    )
    small = measure(small_events)
    large = measure(events)
    section.rows += [
        Row(
            key="sqlite.peak",
            figure=(
                f"peak memory, rebuild of {events:,} events, SQLite file, "
                "workers included"
            ),
            value=large.peak_mb,
            unit="MB",
            baseline=large.readings["ready_mb"],
            baseline_label="after importing amends and opening the desk",
            target=TARGET,
        ),
        Row(
            key="sqlite.growth",
            figure=f"of which the rebuild of {events:,} events added",
            value=large.peak_mb - large.readings["ready_mb"],
            unit="MB",
            baseline=small.peak_mb - small.readings["ready_mb"],
            baseline_label=f"added by the rebuild of {small_events:,}",
        ),
        Row(
            key="sqlite.peak_small",
            figure=f"peak memory, rebuild of {small_events:,} events",
            value=small.peak_mb,
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
        f"events/s) with {r['workers']} worker process(es); its process tree "
        f"peaked at {r['tree_mb']:.1f} MB (summed `Pss`, {r['samples']:,} "
        "samples)."
    )
