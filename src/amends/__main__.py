"""`python -m amends`: walk one complaint through the lifecycle and print it.

Also `python -m amends docs` regenerates docs/lifecycle.md and docs/events/.
Exit codes: 2 usage or bad input, 3 refused by the domain, 4 store problem.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from amends.domain.errors import AmendsError, InvalidCommand
from amends.infra.charts import save_charts
from amends.infra.demo import simulate
from amends.infra.desk import ComplaintDesk
from amends.infra.docs import write_docs
from amends.infra.errors import ConfigurationError, StoreUnavailable
from amends.infra.settings import new_cipher_key
from amends.projections.facts import PolicyMismatch
from amends.projections.reports import chart_data

EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_STORE = 4


def walkthrough(store_url: str | None) -> int:
    """Receive one complaint, take it through all eight stages, print its history."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)

    def at(hours: float) -> datetime:
        return start + timedelta(hours=hours)

    with open_desk(store_url) as desk:
        cid = desk.receive(
            by="ana",
            customer="Jo Smith",
            summary="Charged twice for the March invoice",
            channel="phone",
            category="billing",
            severity="high",
            expectation="Refund of the duplicate charge",
            at=at(0),
        )
        desk.acknowledge(
            cid,
            by="ana",
            paraphrase="You were billed twice for March and want the extra back.",
            at=at(0.2),
        )
        desk.apologize(
            cid, by="ana", apology="I am sorry; that was our mistake.", at=at(0.3)
        )
        desk.commit_plan(
            cid,
            by="ana",
            steps=["Confirm the duplicate with payments", "Refund it", "Call back"],
            due=at(24),
            at=at(0.5),
        )
        desk.transfer_ownership(
            cid,
            by="ana",
            to="ben",
            reason="Payments specialist",
            customer_told=True,
            at=at(1),
        )
        desk.post_update(
            cid, by="ben", note="Payments confirmed the duplicate.", at=at(4)
        )
        desk.offer_gesture(
            cid,
            by="ben",
            description="One month's fee waived",
            value="9.99",
            currency="EUR",
            at=at(5),
        )
        desk.resolve(
            cid,
            by="ben",
            resolution="Duplicate charge refunded",
            explanation="A retried payment job charged the card twice.",
            at=at(20),
        )
        desk.confirm_satisfaction(cid, by="ben", satisfied=True, at=at(30))
        desk.log_prevention(
            cid,
            by="ben",
            root_cause="Payment retries were not idempotent",
            preventive_action="Retries now carry an idempotency key",
            informed=["payments team", "support leads"],
            at=at(48),
        )
        print(desk.history(cid).to_text(), end="")
        store_url = desk.store_url

    with open_desk(store_url) as reread:
        complaint = reread.get(cid)
    print(
        f"read back from {store_url}: stage {complaint.stage}, "
        f"owner {complaint.owner}, "
        f"version {complaint.version}, reopened {complaint.reopen_count} times"
    )
    return 0


def open_desk(store_url: str | None, sla: str | None = None) -> ComplaintDesk:
    """The desk for a command-line run; `sla` is the --sla preset, if given."""
    return ComplaintDesk(store_url, sla_policies=sla)


REPORTS = {
    "ownership": "ownership",
    "ttr": "time_to_resolution",
    "sla": "sla",
    "backlog": "backlog",
    "recurrence": "recurrence",
}


def run_projection(
    store_url: str | None, sla: str | None, follow: bool, rebuild: bool, poll: float
) -> int:
    """Catch up once, rebuild, or follow the store as a process of its own."""
    with open_desk(store_url, sla) as desk:
        reports = desk.reports
        if rebuild:
            print(f"rebuilt the views from {reports.rebuild()} events")
        elif not follow:
            print(f"applied {reports.catch_up()} events")
        else:
            stop = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            print(f"following {desk.store_url} (Ctrl-C to stop)", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                reports.runner.follow(
                    stop,
                    poll=timedelta(seconds=poll),
                    on_batch=lambda n: print(f"applied {n} events", flush=True),
                )
        print(f"views at position {reports.runner.position()}")
    return 0


def run_demo(
    store_url: str | None,
    sla: str | None,
    complaints: int,
    days: float,
    seed: int,
    charts: Path,
) -> int:
    """The main job: a realistic stretch of work, its reports and its charts."""
    if complaints < 1 or days <= 0:
        raise InvalidCommand.single(
            "demo", "complaints", "needs complaints >= 1, days > 0"
        )
    charts.mkdir(parents=True, exist_ok=True)  # fail before anything is recorded
    with open_desk(store_url, sla) as desk:

        def progress(done: int, total: int) -> None:
            if sys.stderr.isatty() and (done == total or done % 250 == 0):
                bar = "#" * (30 * done // total)
                print(
                    f"\r  [{bar:<30}] {done}/{total} commands", end="", file=sys.stderr
                )
                if done == total:
                    print(file=sys.stderr)

        started = time.perf_counter()
        summary = simulate(
            desk, complaints=complaints, days=days, seed=seed, progress=progress
        )
        applied = desk.reports.catch_up()
        elapsed = time.perf_counter() - started
        print(
            f"simulated {summary.complaints} complaints, {summary.commands} commands "
            f"({summary.first:%Y-%m-%d} to {summary.last:%Y-%m-%d}) into "
            f"{desk.store_url}; views caught up {applied} events; {elapsed:.1f} s\n"
        )
        print(desk.reports.ownership().to_table())
        print(desk.reports.time_to_resolution().to_table())
        data = chart_data(desk.reports.queries, desk.reports.clock(), int(days))
        for path in save_charts(data, charts):
            print(f"chart: {path}")
    return 0


def print_report(store_url: str | None, sla: str | None, name: str, output: str) -> int:
    with open_desk(store_url, sla) as desk:
        report = getattr(desk.reports, REPORTS[name])()
        if output == "json":
            print(report.to_json())
        elif output == "csv":
            print(report.to_csv(), end="")
        else:
            print(report.to_table(), end="")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="amends",
        description="An event-sourced complaint lifecycle engine.",
        epilog="Example: python -m amends --store sqlite:///amends.db",
    )
    parser.add_argument(
        "--store",
        default=None,
        help="store URL (default: $AMENDS_STORE_URL, else sqlite:///amends.db)",
    )
    parser.add_argument(
        "--sla",
        default=None,
        help="SLA policy preset the reports measure by (default: promise_keeping; "
        "also fca_disp, fca_disp_payments, asic_rg271, cfpb)",
    )
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser(
        "demo",
        help="simulate a team's month of complaints, print reports, draw charts "
        "(the default)",
        epilog="Example: python -m amends demo --complaints 500 --days 60 --seed 1",
    )
    demo.add_argument("--complaints", type=int, default=300)
    demo.add_argument("--days", type=float, default=30)
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--charts", type=Path, default=Path("charts"))
    sub.add_parser("walkthrough", help="walk one complaint through every stage")
    sub.add_parser("keygen", help="print a new AMENDS_CIPHER_KEY (AES-256, base64)")
    docs = sub.add_parser("docs", help="write docs/lifecycle.md and docs/events/*.json")
    docs.add_argument("--out", type=Path, default=Path("docs"))
    project = sub.add_parser(
        "project",
        help="catch the report views up with the store",
        epilog="Example: python -m amends project --follow --poll 0.5",
    )
    mode = project.add_mutually_exclusive_group()
    mode.add_argument("--follow", action="store_true", help="keep following (Ctrl-C)")
    mode.add_argument("--rebuild", action="store_true", help="drop and replay all")
    project.add_argument("--poll", type=float, default=0.5, help="seconds when idle")
    report = sub.add_parser(
        "report",
        help="print a report",
        epilog="Example: python -m amends report sla --format csv",
    )
    report.add_argument("name", choices=sorted(REPORTS))
    report.add_argument("--format", choices=("table", "json", "csv"), default="table")
    args = parser.parse_args(argv)
    try:
        if args.command == "keygen":
            print(new_cipher_key())
            return 0
        if args.command == "docs":
            for path in write_docs(args.out):
                print(path)
            return 0
        if args.command == "project":
            return run_projection(
                args.store, args.sla, args.follow, args.rebuild, args.poll
            )
        if args.command == "report":
            return print_report(args.store, args.sla, args.name, args.format)
        if args.command == "walkthrough":
            return walkthrough(args.store)
        if args.command == "demo":
            return run_demo(
                args.store, args.sla, args.complaints, args.days, args.seed, args.charts
            )
        return run_demo(args.store, args.sla, 300, 30, 7, Path("charts"))
    except (InvalidCommand, ConfigurationError, PolicyMismatch, OSError) as exc:
        print(f"amends: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StoreUnavailable as exc:
        print(f"amends: {exc}", file=sys.stderr)
        return EXIT_STORE
    except AmendsError as exc:
        print(f"amends: {exc}", file=sys.stderr)
        return EXIT_REFUSED


if __name__ == "__main__":
    sys.exit(main())
