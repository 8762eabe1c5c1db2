"""amends' benchmark harness: measures, never passes or fails.

Run it from the repository root::

    python -m bench                      # full size; rewrites docs/benchmarks.md
    python -m bench --quick              # small sizes, well under a minute (CI smoke)
    AMENDS_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test python -m bench

Every figure is printed next to a baseline measured in the same process run
(the eventsourcing library on its own, on the same kind of store), because an
absolute figure from a shared 2-core machine means little while a ratio taken
minutes apart under the same conditions does.

Adding a section (bulk intake, projection catch-up, report latency, audit
verify, memory, ...) takes one function:

1. Write `bench/<name>.py` with ``def run(config: RunConfig) -> Section``
   (`bench.harness.RunConfig`, `bench.report.Section`). Use
   `bench.stores.store_targets(config)` and `bench.stores.fresh_store(...)` for
   an isolated SQLite file or PostgreSQL schema per measurement, and
   `bench.harness.timed` with `bench.harness.best` (rounds of a second or
   more) or `bench.harness.median` (short alternating rounds) for the
   figures, as ADR 0011 says. Give each `Row` a stable `key` and, where there is one, a
   `Target`; put what shapes the figures (sizes, rounds, stores, how they are
   taken) in `Section.settings`, since runs are compared for repeatability
   only when those match.
2. Add one line to `SECTIONS` in `bench/__main__.py`: ``"name": name.run``.

Sections so far: `command_path` (one command per call against the bare
library), `audit` (`verify()` throughput, point-in-time reconstruction),
`projections` (catch-up into the report views, report latency at two sizes)
and `memory` (peak resident memory of a rebuild, in a child process). For
stores of hundreds of thousands of events, `bench.bulk.build` generates a
year of realistic traffic with amends' pure domain and inserts it through
the library's recorder in seconds; `bench.diagnose` has the percentile,
latency and "what bounds the figure" helpers (cProfile summaries, stage
timers, time per SQL statement) that a section uses when it misses a target.

The entry point renders every section into `docs/benchmarks.md` (machine,
versions, command, how fast the machine ran a fixed piece of Python and SQLite
at the start and the end, then one table per section and its notes) and adds a
"Repeatability" note comparing each ratio with the previous run's, read back
from the data the previous report embedded.
"""
