"""`python -m bench`: run the registered sections and rewrite docs/benchmarks.md.

    python -m bench [--quick] [--sections command_path,...] [--out FILE]
                    [--complaints N] [--rounds R] [--profile | --no-profile]

`SECTIONS` below is the registry: a name and a function taking the
`RunConfig` and returning a `Section`. To add a section, write that one
function in its own module under `bench/` and add one line here (see
`bench/__init__.py`). Sections run in the order listed. With `--sections`,
the sections not chosen are kept from the report being rewritten, as that
run wrote them and saying which run it was, so one section can be measured
again without losing the others.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from bench import audit, command_path, intake, memory, projections
from bench.harness import (
    DEFAULT_ROUNDS,
    FULL_COMPLAINTS,
    QUICK_COMPLAINTS,
    QUICK_ROUNDS,
    RunConfig,
    log,
)
from bench.report import (
    CarriedSection,
    Section,
    machine_facts,
    machine_speed,
    read_previous,
    render,
    repeatability_note,
    source_state,
)
from bench.stores import postgres_server_version, redacted

SectionRunner = Callable[[RunConfig], Section]

SECTIONS: dict[str, SectionRunner] = {
    "command_path": command_path.run,
    "intake": intake.run,
    "audit": audit.run,
    "projections": projections.run,
    "memory": memory.run,
}
"""Every section by name, in report order."""

POSTGRES_VARIABLE = "AMENDS_TEST_POSTGRES_URL"
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def parse_arguments(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure amends against the bare eventsourcing library and "
        "rewrite the benchmark report. Set AMENDS_TEST_POSTGRES_URL to measure "
        "PostgreSQL as well as SQLite.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_COMPLAINTS} complaints instead of {FULL_COMPLAINTS:,}, "
        f"{QUICK_ROUNDS} rounds, no profiling: a smoke check that finishes well "
        "under a minute",
    )
    parser.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated, from: {', '.join(SECTIONS)} (default: all)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="the report to (re)write (default: docs/benchmarks.md)",
    )
    parser.add_argument(
        "--complaints", type=int, help="complaints per run (overrides --quick)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        help=f"interleaved rounds per store (default {DEFAULT_ROUNDS}, "
        f"{QUICK_ROUNDS} with --quick)",
    )
    parser.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="profile a section that misses its target (default: on, off with --quick)",
    )
    arguments = parser.parse_args(argv)
    unknown = [name for name in _names(arguments.sections) if name not in SECTIONS]
    if unknown:
        parser.error(
            f"unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}"
        )
    if arguments.complaints is not None and arguments.complaints < 1:
        parser.error("--complaints must be at least 1")
    if arguments.rounds is not None and arguments.rounds < 1:
        parser.error("--rounds must be at least 1")
    return arguments


def _names(sections: str) -> list[str]:
    return [name.strip() for name in sections.split(",") if name.strip()]


def config_from(arguments: argparse.Namespace) -> RunConfig:
    complaints = arguments.complaints or (
        QUICK_COMPLAINTS if arguments.quick else FULL_COMPLAINTS
    )
    rounds = arguments.rounds or (QUICK_ROUNDS if arguments.quick else DEFAULT_ROUNDS)
    profile = (
        arguments.profile if arguments.profile is not None else not arguments.quick
    )
    return RunConfig(
        quick=arguments.quick,
        complaints=complaints,
        rounds=rounds,
        postgres_url=os.environ.get(POSTGRES_VARIABLE) or None,
        profile=profile,
    )


def command_line(argv: Sequence[str], config: RunConfig) -> str:
    """The command as typed, with the PostgreSQL URL's password hidden."""
    prefix = (
        f"{POSTGRES_VARIABLE}={redacted(config.postgres_url)} "
        if config.postgres_url
        else ""
    )
    return prefix + " ".join(["python -m bench", *map(shlex.quote, argv)])


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    arguments = parse_arguments(argv)
    config = config_from(arguments)
    out: Path = arguments.out
    previous = read_previous(out)
    speed_before = machine_speed()
    started = time.perf_counter()
    date = datetime.now(UTC)
    facts = machine_facts()
    source = source_state()
    if config.postgres_url:
        facts.append(
            ("PostgreSQL server", postgres_server_version(config.postgres_url))
        )
    chosen = _names(arguments.sections)
    sections: list[Section | CarriedSection] = []
    for name in SECTIONS:
        if name not in chosen:
            carried = previous.carried(name) if previous else None
            if carried is not None:
                sections.append(carried)
            continue
        log(f"section {name}: {config.complaints:,} complaints, {config.rounds} rounds")
        section = SECTIONS[name](config)
        note = repeatability_note(section, previous, source)
        if note is not None:
            section.notes.append(note)
        sections.append(section)
    facts += [
        ("machine speed at the start", speed_before),
        ("machine speed at the end", machine_speed()),
    ]
    text = render(
        sections,
        facts=facts,
        command=command_line(argv, config),
        date=date,
        source=source,
        duration_seconds=time.perf_counter() - started,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    for part in sections:
        if isinstance(part, CarriedSection):
            print(f"section {part.key}: kept from the run of {part.data['date']}")
            continue
        for row in part.rows:
            ratio = f", ratio {row.ratio:.2f}" if row.ratio is not None else ""
            met = {True: ", target met", False: ", target missed", None: ""}[row.met]
            if row.context and row.met is not None:
                met += f" (context: {row.context})"
            print(f"{row.key}: {row.value:,.0f} {row.unit}{ratio}{met}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
