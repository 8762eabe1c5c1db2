"""`python -m bench.rss_child URL`: rebuild the report views, report peak memory.

Run by the memory section in a process of its own, so the figure is the
rebuild's and not the harness's (which holds generated stores and earlier
sections' garbage). Imports nothing before its first reading, then amends,
opens a desk on `URL`, reads again (the baseline), readies the views' engine
and reads again, rebuilds the views from the whole store and reads the peak
resident set (`VmHWM` in `/proc/self/status`, with `getrusage`'s `ru_maxrss`
as a cross-check).
Prints one JSON object on stdout.
"""

from __future__ import annotations

import json
import sys
import time


def status_mb(field: str) -> float:
    """A `/proc/self/status` memory field (kB there), in MB (10^6 bytes)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024 / 1e6
    raise RuntimeError(f"{field} not in /proc/self/status")


def main(argv: list[str]) -> int:
    stages = "--stages" in argv
    (url,) = [argument for argument in argv if argument != "--stages"]
    interpreter = status_mb("VmRSS")
    from amends import ComplaintDesk

    with ComplaintDesk(url) as desk:
        ready = status_mb("VmRSS")
        reports = desk.reports
        reports.runner.ensure_tables()
        views_ready = status_mb("VmRSS")
        ready_peak = status_mb("VmHWM")
        timers: dict[str, object] = {}
        if stages:
            from bench import catchup_stages
            from bench.probes import probed

            with probed(catchup_stages.probes()) as times:
                started = time.perf_counter()
                applied = reports.rebuild()
                seconds = time.perf_counter() - started
            timers = {
                "seconds": dict(times.seconds),
                "calls": dict(times.calls),
                "within": [
                    [name, parent, spent, times.calls_within[name, parent]]
                    for (name, parent), spent in times.within.items()
                ],
            }
        else:
            started = time.perf_counter()
            applied = reports.rebuild()
            seconds = time.perf_counter() - started
        peak = status_mb("VmHWM")
        after = status_mb("VmRSS")
    print(
        json.dumps(
            {
                "interpreter_mb": interpreter,
                "ready_mb": ready,
                "views_ready_mb": views_ready,
                "ready_peak_mb": ready_peak,
                "peak_mb": peak,
                "after_mb": after,
                "applied": applied,
                "seconds": seconds,
                "stages": timers,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
