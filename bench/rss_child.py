"""`python -m bench.rss_child URL`: rebuild the report views, report peak memory.

Run by the memory section in a process of its own, so the figure is the
rebuild's and not the harness's (which holds generated stores and earlier
sections' garbage). Imports nothing before its first reading, then amends,
opens a desk on `URL`, reads again (the baseline), readies the views' engine
and reads again, rebuilds the views from the whole store and reads the peak
resident set (`VmHWM` in `/proc/self/status`). Its forked workers' memory is
sampled from outside, by the memory section.
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
    (url,) = argv
    interpreter = status_mb("VmRSS")
    from amends import ComplaintDesk

    with ComplaintDesk(url) as desk:
        ready = status_mb("VmRSS")
        reports = desk.reports
        reports.runner.ensure_tables()
        views_ready = status_mb("VmRSS")
        ready_peak = status_mb("VmHWM")
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
                "workers": reports.runner.workers,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
