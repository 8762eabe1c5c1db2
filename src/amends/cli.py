"""The `amends` command line: the demo, one subcommand per domain command,
point-in-time reads, the audit trail and the reports, over any store URL.

Exit codes, so scripts can tell who is at fault:

- 0: done.
- 1: a bug in amends (the message says so; `AMENDS_DEBUG=1` shows the trace).
- 2: the command line or the configuration could not be used (an unknown
  option, a missing one, a time without a zone, a bad store URL or SLA preset,
  a PostgreSQL schema, database, user or password the server does not know,
  a SQLite store file that is not there for a command that records nothing,
  views built under another policy or from another store, a file that cannot
  be written).
- 3: amends refused (`InvalidCommand`, a report's filter among them,
  `InvalidTransition`, `ComplaintNotFound`, `HistoryViolation`, ...), or
  `verify`, `verify-bundle` or `export-case` found a break (listed first, on
  stdout, or on stderr where stdout carries the bundle).
- 4: the store failed (`StoreUnavailable`), or a worker process of a rebuild
  or an import died (`WorkerDied`).
- 130: interrupted (Ctrl-C); what was committed stays. `project --follow`
  stops on Ctrl-C or SIGTERM, as asked: 0.
- 141: standard output closed early (`amends history ID | head`), as a
  process stopped by SIGPIPE; nothing said.

Every failure is one line on stderr (after the breaks, when `export-case`
prints its bundle on stdout); nothing is recorded by a refused command.
"""

from __future__ import annotations

import contextlib
import errno
import inspect
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import Enum, StrEnum
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import typer
from pydantic import AwareDatetime
from pydantic.fields import FieldInfo
from rich.progress import Progress, TaskID

from amends.audit import CaseBundle, Seal, load_bundle, load_seal, verify_bundle
from amends.domain import commands as c
from amends.domain.complaint import Complaint
from amends.domain.errors import AmendsError, InvalidCommand, first_line
from amends.domain.lifecycle import command_names, mermaid
from amends.domain.values import shown
from amends.infra.desk import Clock, ComplaintDesk, utc_now
from amends.infra.docs import lifecycle_markdown, write_docs
from amends.infra.errors import ConfigurationError, StoreUnavailable
from amends.infra.reporting import MAX_COUNT, MAX_HORIZON, policy_schedule
from amends.infra.settings import (
    new_cipher_key,
    redacted_url,
    resolve_store_url,
    store_settings,
)
from amends.projections.facts import PolicyMismatch
from amends.projections.forking import WorkerDied
from amends.projections.reports import DEFAULT_LIMIT, UnknownSection
from amends.projections.runner import ViewsOfAnotherStore, ViewsOfLaterRelease

EXIT_OK = 0
EXIT_BUG = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_STORE = 4
EXIT_PIPE_CLOSED = 141
MAX_POLL_SECONDS = 86_400.0
"""A day: `project --follow --poll` longer than that, or inf, is no poll."""

MAX_MESSAGE = 400
"""Characters of an error line; a huge argument must not flood the terminal."""

LIFECYCLE = "Lifecycle commands (one per domain command)"
READING = "Reading and auditing"
REPORTS = "Reports and views"
SETUP = "Demo and setup"

app = typer.Typer(
    name="amends",
    help="An event-sourced complaint lifecycle engine: every complaint walks one "
    "provable path.",
    epilog="Examples:\n\n"
    "  amends  (runs the demo on ./amends.db)\n\n"
    "  amends --store sqlite:///work.db demo --complaints 500 --charts charts\n\n"
    "  ID=$(amends receive --by ana --customer 'Jo Smith' --summary 'Charged twice' "
    "--channel phone --category billing --severity high --expectation 'A refund')\n\n"
    '  amends acknowledge "$ID" --by ana --paraphrase "You were billed twice"\n\n'
    '  amends show "$ID" --as-of 2026-03-01T12:00:00Z\n\n'
    "  AMENDS_STORE_URL=postgresql://amends@db:5432/amends amends report sla",
    invoke_without_command=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@dataclass
class Session:
    """What the global options chose, and the clock (injected by tests)."""

    clock: Clock = utc_now
    store: str | None = None
    sla: str | None = None

    def desk(
        self, *, creating: bool = False, empty_if_missing: bool = False
    ) -> ComplaintDesk:
        """The desk on the chosen store. Only a command that records
        (`creating`) may make a SQLite file that is not there: to anything
        else a missing file is a mistyped path, and a new empty store would
        answer as if it held no complaints. A command that only checks what
        it would record (`empty_if_missing`: an import's dry run) checks a
        missing file's store as the empty store it would be, in memory,
        leaving no file behind."""
        if not creating and (path := self.missing_file()) is not None:
            if not empty_if_missing:
                raise ConfigurationError(
                    f"no store at {path}: the file does not exist (receive, "
                    "import, demo, walkthrough or project --follow makes it)"
                )
            return self.scratch_desk()
        return ComplaintDesk(self.store, clock=self.clock, sla_policies=self.sla)

    def missing_file(self) -> str | None:
        """The chosen store's SQLite file, if that is what it is and it is
        not there yet."""
        path = store_settings(resolve_store_url(self.store)).get("SQLITE_DBNAME")
        return path if path is not None and not Path(path).exists() else None

    def scratch_desk(self) -> ComplaintDesk:
        """An empty store in memory with this session's clock and policies:
        where a command that would make a new store file is tried first, so
        that one refused leaves no empty file behind."""
        return ComplaintDesk("memory://", clock=self.clock, sla_policies=self.sla)


def _session(context: typer.Context) -> Session:
    root = context.find_root()
    if not isinstance(root.obj, Session):
        root.obj = Session()  # the app was called without `main`
    return root.obj


def _examples(*lines: str) -> str:
    """An epilog that rich prints line by line (it joins single newlines)."""
    return "Examples:\n\n" + "\n\n".join(f"  {line}" for line in lines)


# ------------------------------------------------------------------ values


def parse_instant(value: str) -> datetime:
    """An ISO 8601 moment that carries its zone; naive times are refused.

    A time without a zone means different instants on different servers, so
    the command line refuses it rather than guess.
    """
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise typer.BadParameter(
            f"{_quoted(value)} is not an ISO 8601 time "
            "such as 2026-03-01T09:30:00+00:00"
        ) from None
    if moment.utcoffset() is None:
        raise typer.BadParameter(
            f"{_quoted(value)} has no timezone; add one, such as Z or +01:00"
        )
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise typer.BadParameter(
            f"{_quoted(value)} is out of the representable range in UTC"
        ) from None


def _quoted(value: object, limit: int = 60) -> str:
    text = str(value)
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """`text` fit for one line of a terminal: no line breaks, and control,
    format (such as a right-to-left override) and lone surrogate characters
    escaped, so an argument echoed in an error cannot rewrite the screen."""
    safe = shown(" ".join(text.split()))
    return safe if len(safe) <= limit else safe[: limit - 1] + "…"


class Format(StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"


class HistoryFormat(StrEnum):
    TEXT = "text"
    JSONL = "jsonl"


class TextOrJson(StrEnum):
    TEXT = "text"
    JSON = "json"


class DiagramFormat(StrEnum):
    MERMAID = "mermaid"
    MARKDOWN = "markdown"


class ReportName(StrEnum):
    OWNERSHIP = "ownership"
    TTR = "ttr"
    SLA = "sla"
    BACKLOG = "backlog"
    RECURRENCE = "recurrence"


REPORT_METHODS = {
    ReportName.OWNERSHIP: "ownership",
    ReportName.TTR: "time_to_resolution",
    ReportName.SLA: "sla",
    ReportName.BACKLOG: "backlog",
    ReportName.RECURRENCE: "recurrence",
}

ComplaintId = Annotated[
    str, typer.Argument(metavar="ID", help="the complaint's id (receive prints it)")
]


# --------------------------------------------------------- global options


@app.callback()
def _global(
    context: typer.Context,
    store: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="store URL: memory://, sqlite:///file.db, "
            "postgresql://user@host:port/db (default: $AMENDS_STORE_URL, "
            "else sqlite:///amends.db)",
            show_default=False,
        ),
    ] = None,
    sla: Annotated[
        str | None,
        typer.Option(
            metavar="PRESET",
            help="SLA policy the reports measure by: promise_keeping (default), "
            "fca_disp, fca_disp_payments, asic_rg271, cfpb",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run without a command to simulate a month of work (the demo)."""
    session = _session(context)
    session.store = store
    session.sla = sla
    if sla is not None:
        policy_schedule(sla)  # refuse an unknown preset before opening the store
    if context.invoked_subcommand is None:
        run_demo(session, 300, 30, 7, Path("charts"))


# ------------------------------------------------ domain commands (generated)

FIELD_HELP = {
    "by": "who acts (a person or team)",
    "customer": "the customer's name",
    "summary": "what went wrong, in the customer's words",
    "channel": "how it came in: phone, email, chat, ...",
    "category": "what it is about, for the reports: billing, delivery, ...",
    "severity": "how much it hurts; SLA targets depend on it",
    "expectation": "what the customer expects to happen",
    "external_ref": "its id in another system; receiving it again records nothing",
    "preferred_contact": "how the customer wants to hear back (default: the channel)",
    "paraphrase": "the complaint restated in your own words",
    "apology": "the apology given to the customer",
    "steps": "one step of the plan; repeat it, in order",
    "due": "when the plan will be done",
    "note": "what happened",
    "revised_due": "a new due date (give --revision-reason)",
    "revision_reason": "why the due date moved",
    "resolution": "what was done",
    "explanation": "what went wrong",
    "satisfied": "the customer's answer (--not-satisfied reopens the case)",
    "reason": "why",
    "root_cause": "why it happened",
    "preventive_action": "what keeps it from happening again",
    "informed": "who was told; repeat it for each",
    "to": "the new owner",
    "customer_told": "whether the customer was told of the handoff",
    "text": "the note",
    "description": "what is offered",
    "value": "its value (0 to 1,000,000,000, two decimals at most)",
    "currency": "ISO 4217 code of the value, such as EUR",
}

LIST_FLAGS = {"steps": "--step"}
"""A repeated option reads best in the singular: `--step A --step B`."""

NEGATIVE_FLAGS = {
    "satisfied": "--not-satisfied",
    "customer_told": "--customer-not-told",
}

COMMAND_DOCS: dict[str, tuple[str, tuple[str, ...]]] = {
    "receive": (
        "Record a new complaint owned by --by and print its id.",
        (
            "amends receive --by ana --customer 'Jo Smith' --summary 'Charged twice'"
            " --channel phone --category billing --severity high"
            " --expectation 'Refund the duplicate'",
            "amends receive ... --external-ref CRM-1042 --at 2026-03-01T09:30:00Z",
        ),
    ),
    "acknowledge": (
        "Answer the customer, restating the complaint in your own words.",
        ('amends acknowledge ID --by ana --paraphrase "You were billed twice"',),
    ),
    "apologize": (
        "Apologize to the customer.",
        ('amends apologize ID --by ana --apology "I am sorry; that was our mistake"',),
    ),
    "commit_plan": (
        "Tell the customer how it will be fixed (ordered steps) and by when.",
        (
            "amends commit-plan ID --by ana --step 'Confirm with payments'"
            " --step 'Refund it' --due 2026-03-03T17:00:00+01:00",
        ),
    ),
    "post_update": (
        "Report progress; optionally move the due date, saying why.",
        (
            'amends post-update ID --by ben --note "Payments confirmed it"',
            'amends post-update ID --by ben --note "Bank holiday" '
            '--revised-due 2026-03-05T12:00Z --revision-reason "Bank closed"',
        ),
    ),
    "resolve": (
        "The problem is fixed: what was done, and what went wrong.",
        (
            'amends resolve ID --by ben --resolution "Refunded" '
            '--explanation "A retried job charged twice"',
        ),
    ),
    "confirm_satisfaction": (
        "Record the customer's answer; --not-satisfied (with --reason) reopens.",
        (
            "amends confirm-satisfaction ID --by ben --satisfied",
            "amends confirm-satisfaction ID --by ben --not-satisfied"
            ' --reason "No refund yet"',
        ),
    ),
    "log_prevention": (
        "Close the case with what was done so it does not happen again.",
        (
            'amends log-prevention ID --by ben --root-cause "Retries not idempotent" '
            '--preventive-action "Idempotency keys" --informed payments',
        ),
    ),
    "transfer_ownership": (
        "Hand the complaint to another owner.",
        (
            'amends transfer-ownership ID --by ana --to ben --reason "Payments" '
            "--customer-told",
        ),
    ),
    "await_customer": (
        "Wait on the customer (the SLA clock pauses, under a policy that pauses; "
        "the wall clock does not).",
        ('amends await-customer ID --by ben --reason "Asked for the bank statement"',),
    ),
    "customer_replied": (
        "The customer answered: a paused SLA clock runs again.",
        ('amends customer-replied ID --by ben --note "Statement received"',),
    ),
    "add_note": (
        "Add an internal note; the stage stays.",
        ('amends add-note ID --by ana --text "Customer called again"',),
    ),
    "offer_gesture": (
        "Offer something extra: a concession, a discount, a refund of fees.",
        (
            'amends offer-gesture ID --by ben --description "Fee waived" '
            "--value 9.99 --currency EUR",
        ),
    ),
}


def _unwrapped(annotation: Any) -> tuple[Any, int | None]:
    """The plain type under Optional/Annotated, and its max length if it has one."""
    max_length = None
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation, *metadata = get_args(annotation)
            for item in metadata:
                max_length = getattr(item, "max_length", None) or max_length
        elif origin in (Union, type(int | None)):
            annotation = next(a for a in get_args(annotation) if a is not type(None))
        else:
            return annotation, max_length


def _field_parameter(name: str, field: FieldInfo) -> inspect.Parameter:
    """A Typer option for one command field, from its pydantic type."""
    required = field.is_required()
    base, max_length = _unwrapped(field.annotation)
    flag = "--" + name.replace("_", "-")
    help_text = FIELD_HELP.get(name, name.replace("_", " "))
    annotation: Any
    if base is bool:
        option = typer.Option(f"{flag}/{NEGATIVE_FLAGS[name]}", help=help_text)
        annotation = bool if required else bool | None
    elif get_origin(base) is tuple:
        _item, item_length = _unwrapped(get_args(base)[0])
        if item_length:
            help_text += f" (each at most {item_length} characters)"
        option = typer.Option(
            LIST_FLAGS.get(name, flag), help=help_text, metavar="TEXT"
        )
        annotation = list[str] | None
    elif base is AwareDatetime or (
        isinstance(base, type) and issubclass(base, datetime)
    ):
        option = typer.Option(
            flag,
            parser=parse_instant,
            metavar="ISO",
            help=help_text + " (ISO 8601 with a zone)",
        )
        annotation = datetime | None
    elif isinstance(base, type) and issubclass(base, Enum):
        option = typer.Option(flag, help=help_text, case_sensitive=False)
        annotation = base if required else base | None
    else:
        if max_length:
            help_text += f" (at most {max_length} characters)"
        option = typer.Option(
            flag, help=help_text, metavar="AMOUNT" if base is Decimal else "TEXT"
        )
        annotation = str if required else str | None
    return inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        annotation=Annotated[annotation, option],
        default=inspect.Parameter.empty if required else None,
    )


def _domain_command(command_type: type[c.Command]) -> Callable[..., None]:
    """A subcommand that validates its options into `command_type` and runs it."""
    name = command_type.name

    def run(context: typer.Context, **values: Any) -> None:
        complaint_id = values.pop("complaint_id", None)
        arguments = {key: value for key, value in values.items() if value is not None}
        creating = command_type is c.Receive
        session = _session(context)
        if creating and session.missing_file() is not None:
            # Opening the store makes its file: a receive the desk would
            # refuse is refused on an empty store in memory first, so that
            # it leaves no empty store behind at a mistyped path.
            with session.scratch_desk() as scratch:
                scratch.execute(name, complaint_id, **arguments)
        with session.desk(creating=creating) as desk:
            complaint = desk.execute(name, complaint_id, **arguments)
        if command_type is c.Receive:
            print(complaint.id)
        else:
            print(_one_line_state(complaint))

    parameters = [
        inspect.Parameter(
            "context", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context
        )
    ]
    if command_type is not c.Receive:
        parameters.append(
            inspect.Parameter(
                "complaint_id", inspect.Parameter.KEYWORD_ONLY, annotation=ComplaintId
            )
        )
    for field_name, field in command_type.model_fields.items():
        if field_name not in ("complaint_id", "at"):
            parameters.append(_field_parameter(field_name, field))
    parameters.append(
        inspect.Parameter(
            "at",
            inspect.Parameter.KEYWORD_ONLY,
            annotation=Annotated[
                datetime | None,
                typer.Option(
                    parser=parse_instant,
                    metavar="ISO",
                    help="when it happened (ISO 8601 with a zone; default: now)",
                ),
            ],
            default=None,
        )
    )
    run.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    run.__name__ = name
    run.__doc__ = COMMAND_DOCS[name][0]
    return run


def _one_line_state(complaint: Complaint) -> str:
    waiting = ", waiting on the customer" if complaint.waiting else ""
    return (
        f"complaint {complaint.id}: {complaint.stage} (owner {shown(complaint.owner)}, "
        f"version {complaint.version}{waiting})"
    )


for _name in command_names():
    _summary, _lines = COMMAND_DOCS[_name]
    app.command(
        _name.replace("_", "-"),
        help=_summary,
        epilog=_examples(*_lines),
        rich_help_panel=LIFECYCLE,
    )(_domain_command(c.COMMAND_TYPES[_name]))


# ------------------------------------------------------- reading the record


@app.command(
    rich_help_panel=READING,
    epilog=_examples(
        "amends show ID",
        "amends show ID --as-of 2026-03-02T09:00:00+01:00",
        "amends show ID --at-version 3 --format json",
    ),
)
def show(
    context: typer.Context,
    complaint_id: ComplaintId,
    as_of: Annotated[
        datetime | None,
        typer.Option(
            parser=parse_instant,
            metavar="ISO",
            help="the state as it stood at that moment (ISO 8601 with a zone)",
        ),
    ] = None,
    at_version: Annotated[
        int | None,
        typer.Option(min=1, help="the state after that many events"),
    ] = None,
    output: Annotated[
        TextOrJson, typer.Option("--format", help="text or json")
    ] = TextOrJson.TEXT,
) -> None:
    """The complaint as it stands, or as it stood at a moment or version."""
    if as_of is not None and at_version is not None:
        raise typer.BadParameter(
            "give one, not both", param_hint="'--as-of' / '--at-version'"
        )
    with _session(context).desk() as desk:
        complaint = desk.get(complaint_id, version=at_version, as_of=as_of)
    if output is TextOrJson.JSON:
        data = complaint.model_dump(mode="json")
        data["allowed_commands"] = list(complaint.allowed_commands)
        print(json.dumps(data, indent=2, ensure_ascii=False))
        return
    heading = f"complaint {complaint.id}"
    if as_of is not None:
        heading += f" as of {as_of.isoformat()}"
    print(heading)
    rows = complaint.model_dump(mode="json", exclude={"id", "first_reached"})
    rows["reached"] = [f"{r.stage} {r.at.isoformat()}" for r in complaint.first_reached]
    rows["allowed_now"] = list(complaint.allowed_commands) or ["none (closed)"]
    for key, value in rows.items():
        if value is None or value == []:
            continue
        shown = "; ".join(map(str, value)) if isinstance(value, list) else value
        print(f"  {key:<18} {one_line(str(shown), 2000)}")


@app.command(
    rich_help_panel=READING,
    epilog=_examples("amends history ID", "amends history ID --format jsonl | jq ."),
)
def history(
    context: typer.Context,
    complaint_id: ComplaintId,
    output: Annotated[
        HistoryFormat,
        typer.Option("--format", help="text (a timeline) or jsonl (one event a line)"),
    ] = HistoryFormat.TEXT,
) -> None:
    """Every event of a complaint: who did what, when, moving it between stages."""
    with _session(context).desk() as desk:
        case = desk.history(complaint_id)
    print(case.to_jsonl() if output is HistoryFormat.JSONL else case.to_text(), end="")


def _seal_option(help: str) -> Any:
    return typer.Option(metavar="FILE", exists=True, dir_okay=False, help=help)


def _out_option(what: str, why: str = "") -> Any:
    return typer.Option(
        metavar="FILE",
        dir_okay=False,
        help=f"write the {what} there (a new file, mode 0600{why})",
    )


Force = Annotated[
    bool, typer.Option("--force", help="replace the --out file if it exists")
]


@app.command(
    rich_help_panel=READING,
    epilog=_examples(
        "amends verify",
        "amends seal --out seal.json  ...later...  amends verify --seal seal.json",
        "amends verify --complaint ID",
    ),
)
def verify(
    context: typer.Context,
    seal: Annotated[
        Path | None,
        _seal_option(
            "a seal from `amends seal`: also find chains cut or rewritten since"
        ),
    ] = None,
    complaint: Annotated[
        str | None, typer.Option(metavar="ID", help="check this complaint only")
    ] = None,
) -> None:
    """Replay the stored events and report every break; exits 3 if there is one."""
    sealed = _read_seal(seal)
    with _session(context).desk() as desk:
        report = desk.verify(complaint, seal=sealed)
    print(report.to_text(), end="")
    if not report.ok:
        _note(
            f"verify found {len(report.findings)} breaks in the record (listed above)"
        )
        raise typer.Exit(EXIT_REFUSED)


@app.command(
    rich_help_panel=READING,
    epilog=_examples("amends seal > seal.json", "amends seal --out seal.json"),
)
def seal(
    context: typer.Context,
    out: Annotated[Path | None, _out_option("seal")] = None,
    force: Force = False,
) -> None:
    """Seal the head of every complaint's chain (JSON), to keep outside the store."""
    with _session(context).desk() as desk, _writing(out, force):
        sealed = desk.seal(out, overwrite=force)
    if out is None:
        print(sealed.model_dump_json(indent=2))
        return
    print(
        f"sealed {len(sealed.complaints)} complaints at "
        f"{sealed.sealed_at.isoformat()} into {out} (digest {sealed.digest})"
    )


@app.command(
    "export-case",
    rich_help_panel=READING,
    epilog=_examples(
        "amends export-case ID > case.json",
        "amends export-case ID --out case.json",
        "amends verify-bundle case.json",
    ),
)
def export_case(
    context: typer.Context,
    complaint_id: ComplaintId,
    out: Annotated[
        Path | None, _out_option("bundle", ": it holds customer data in the clear")
    ] = None,
    force: Force = False,
) -> None:
    """One complaint's evidence as JSON: its events, digests, schemas and head;
    exits 3 if the case does not verify (the bundle is written all the same)."""
    with _session(context).desk() as desk, _writing(out, force):
        bundle = desk.export_case(complaint_id, out, overwrite=force)
    if out is None:
        print(bundle.model_dump_json(indent=2))
    else:
        print(
            f"exported {len(bundle.events)} events of complaint {bundle.complaint_id} "
            f"into {out} (digest {bundle.digest})"
        )
    # The bundle is evidence as stored, breaks included; whoever exports a
    # broken case learns it now, not from the auditor who receives it.
    checked = bundle.verify()
    if not checked.ok:
        print(checked.to_text(), end="", file=sys.stdout if out else sys.stderr)
        _note(
            f"complaint {bundle.complaint_id} does not verify: the bundle holds "
            f"{len(checked.findings)} breaks (listed above)"
        )
        raise typer.Exit(EXIT_REFUSED)


@app.command(
    "verify-bundle",
    rich_help_panel=READING,
    epilog=_examples(
        "amends verify-bundle case.json",
        "amends verify-bundle case.json --seal seal.json",
    ),
)
def verify_bundle_command(
    bundle: Annotated[
        Path,
        typer.Argument(
            metavar="FILE",
            exists=True,
            dir_okay=False,
            show_default=False,
            help="a bundle written by `amends export-case`",
        ),
    ],
    seal: Annotated[
        Path | None,
        _seal_option(
            "a seal from `amends seal`, taken before the export: also find "
            "the case's events dropped or rewritten since"
        ),
    ] = None,
) -> None:
    """Check a case bundle with no store: its digests, chain, lifecycle and
    times; exits 3 if there is a break, or if the file does not read as a
    bundle (the evidence is damaged)."""
    if not bundle.is_file():
        # A device or a pipe is no bundle at all, as a directory is not:
        # refused as the argument, as typer refuses those (/dev/zero was
        # read for ever). A regular file too large is read as no bundle.
        raise typer.BadParameter(
            f"{bundle} is not a regular file: a bundle is read from one",
            param_hint="'FILE'",
        )
    sealed = _read_seal(seal)
    try:
        read: CaseBundle | None = load_bundle(bundle)
    except (OSError, ValueError):
        read = None
    if read is None:
        report = verify_bundle(bundle)
    else:
        try:
            report = read.verify(sealed)
        except ValueError as exc:
            # Only a seal that does not name the case: it cannot check it.
            # One that pins more events than the bundle holds is a finding.
            raise typer.BadParameter(str(exc), param_hint="'--seal'") from None
    print(report.to_text(), end="")
    if read is not None:
        # The digests are as the file has them: any text, if it was forged.
        print(
            shown(
                f"head: version {read.head.version}, digest {read.head.digest}; "
                f"bundle digest {read.digest}"
            )
        )
        pinned = read.pinned_by(sealed)
        if sealed is not None and pinned is not None:
            print(
                shown(
                    f"seal of {sealed.sealed_at.isoformat()}: pins version "
                    f"{pinned.version}, digest {pinned.digest}"
                )
            )
    if not report.ok:
        _note(
            f"{bundle} holds {len(report.findings)} breaks in the record (listed above)"
        )
        raise typer.Exit(EXIT_REFUSED)


@contextlib.contextmanager
def _writing(out: Path | None, force: bool) -> Iterator[None]:
    """An --out file refused (it exists, or is a symbolic link) as a usage
    error naming the option, and --force where it would help."""
    try:
        yield
    except FileExistsError as exc:
        message = str(exc)
        if out is not None and not force and not out.is_symlink():
            message = f"{out} exists: --force replaces it"
        raise typer.BadParameter(message, param_hint="'--out'") from None


def _read_seal(path: Path | None) -> Seal | None:
    if path is None:
        return None
    try:
        return load_seal(path)
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(
            f"{path} is not a seal written by `amends seal`: {first_line(exc)}",
            param_hint="'--seal'",
        ) from None


@app.command(
    rich_help_panel=READING,
    epilog=_examples(
        "amends diagram > lifecycle.mmd", "amends diagram --format markdown"
    ),
)
def diagram(
    output: Annotated[
        DiagramFormat,
        typer.Option(
            "--format",
            help="mermaid (the state diagram) or markdown (with the tables)",
        ),
    ] = DiagramFormat.MERMAID,
) -> None:
    """The lifecycle, drawn from the transition table."""
    print(
        mermaid() if output is DiagramFormat.MERMAID else lifecycle_markdown(), end=""
    )


# -------------------------------------------------------- reports and views


@app.command(
    rich_help_panel=REPORTS,
    epilog=_examples(
        "amends report ownership",
        "amends report sla --format csv --since 2026-03-01T00:00Z --owner ana",
        "amends report sla --format csv --section breaches --all > breaches.csv",
        "amends report sla --horizon 48 --section at-risk",
        "amends report recurrence --min-count 5 --since 2026-03-01T00:00Z",
        "amends --sla fca_disp report ttr --format json --category billing",
    ),
)
def report(
    context: typer.Context,
    name: Annotated[
        ReportName, typer.Argument(help="which report", show_default=False)
    ],
    output: Annotated[
        Format, typer.Option("--format", help="table, json or csv")
    ] = Format.TABLE,
    since: Annotated[
        datetime | None,
        typer.Option(
            parser=parse_instant, metavar="ISO", help="complaints received from then"
        ),
    ] = None,
    until: Annotated[
        datetime | None,
        typer.Option(
            parser=parse_instant, metavar="ISO", help="complaints received before then"
        ),
    ] = None,
    owner: Annotated[str | None, typer.Option(help="one owner's complaints")] = None,
    category: Annotated[str | None, typer.Option(help="one category")] = None,
    section: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="only this table of the report (csv: the first unless named); "
            "an unknown name lists the report's tables",
        ),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=MAX_COUNT,
            help=f"at most this many items per list, {DEFAULT_LIMIT} unless given "
            "(ownership, ttr, sla); the totals count them all",
            show_default=False,
        ),
    ] = None,
    every: Annotated[
        bool,
        typer.Option("--all", help="every item of each list (ownership, ttr, sla)"),
    ] = False,
    horizon: Annotated[
        float | None,
        typer.Option(
            min=0,
            metavar="HOURS",
            help="sla: deadlines due within this many hours are at risk "
            "(24 unless given)",
            show_default=False,
        ),
    ] = None,
    min_count: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=MAX_COUNT,
            help="recurrence: categories with at least this many complaints "
            "(3 unless given)",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Print a report, catching the views up with the store first."""
    arguments = _report_arguments(name, limit, every, horizon, min_count)
    if section is not None and output is Format.JSON:
        raise typer.BadParameter(
            "json prints the whole report; --section is for table and csv",
            param_hint="'--section'",
        )
    with _session(context).desk() as desk:
        method = getattr(desk.reports, REPORT_METHODS[name])
        try:
            result = method(
                since=since, until=until, owner=owner, category=category, **arguments
            )
        except InvalidCommand as exc:
            # The report's own options (a window that ends before it starts,
            # a blank owner): a command line to fix (2), not a refusal (3).
            raise typer.BadParameter(
                str(exc),
                param_hint=" / ".join(
                    f"'--{field.replace('_', '-')}'" for field in exc.fields
                ),
            ) from None
    try:
        if output is Format.JSON:
            print(result.to_json())
        elif output is Format.CSV:
            print(result.to_csv(section), end="")
            # A CSV file holds rows and nothing else: a list the limit cut
            # is said beside it, so an export never passes for the whole.
            chosen = result.section(section)
            if chosen.items is not None and chosen.items[0] < chosen.items[1]:
                listed, total = chosen.items
                print(
                    f"amends: {chosen.key}: {listed} of {total} listed "
                    "(--all, or a larger --limit, for more)",
                    file=sys.stderr,
                )
        else:
            print(result.to_table(section), end="")
    except UnknownSection as exc:
        raise typer.BadParameter(str(exc), param_hint="'--section'") from None


DEMO_LISTED = 3
"""Items the demo lists per list of its two reports: enough to show each."""
LISTING_REPORTS = (ReportName.OWNERSHIP, ReportName.TTR, ReportName.SLA)
"""The reports whose lists a limit cuts."""


def _report_arguments(
    name: ReportName,
    limit: int | None,
    every: bool,
    horizon: float | None,
    min_count: int | None,
) -> dict[str, Any]:
    """The report method's own arguments from the options given, each
    refused by name for a report it does not apply to."""
    arguments: dict[str, Any] = {}
    if limit is not None or every:
        if name not in LISTING_REPORTS:
            raise typer.BadParameter(
                f"the {name} report has no lists to cut; it applies to "
                + ", ".join(LISTING_REPORTS),
                param_hint="'--limit' / '--all'",
            )
        if limit is not None and every:
            raise typer.BadParameter(
                "give one, not both", param_hint="'--limit' / '--all'"
            )
        arguments["limit"] = None if every else limit
    for option, value, applies_to, keyword, convert in (
        ("--horizon", horizon, ReportName.SLA, "horizon", _hours_ahead),
        ("--min-count", min_count, ReportName.RECURRENCE, "min_count", int),
    ):
        if value is None:
            continue
        if name is not applies_to:
            raise typer.BadParameter(
                f"applies to the {applies_to} report only", param_hint=f"'{option}'"
            )
        arguments[keyword] = convert(value)
    return arguments


def _hours_ahead(hours: float) -> timedelta:
    most = MAX_HORIZON / timedelta(hours=1)
    if not math.isfinite(hours) or not 0 <= hours <= most:
        raise typer.BadParameter(
            f"{hours:g} is not a number of hours from 0 to {most:g}",
            param_hint="'--horizon'",
        )
    return timedelta(hours=hours)


@app.command(
    rich_help_panel=REPORTS,
    epilog=_examples(
        "amends project",
        "amends project --follow --poll 0.5",
        "amends --sla fca_disp project --rebuild",
    ),
)
def project(
    context: typer.Context,
    follow: Annotated[
        bool, typer.Option("--follow", help="keep following the store (Ctrl-C stops)")
    ] = False,
    rebuild: Annotated[
        bool, typer.Option("--rebuild", help="drop the views and replay every event")
    ] = False,
    poll: Annotated[
        float,
        typer.Option(
            min=0.01,
            max=MAX_POLL_SECONDS,
            help="seconds between looks when idle (PostgreSQL: also at each write)",
        ),
    ] = 0.5,
) -> None:
    """Catch the report views up with the store once, rebuild them, or follow."""
    if follow and rebuild:
        raise typer.BadParameter(
            "give one, not both", param_hint="'--follow' / '--rebuild'"
        )
    with _session(context).desk(creating=follow) as desk:
        reports = desk.reports
        if rebuild:
            # Followers running meanwhile help load the views: the count is
            # this process's share, the position below the whole.
            applied = reports.rebuild()
            print(f"rebuilt the views ({applied} events applied by this process)")
        elif not follow:
            print(f"applied {reports.catch_up()} events")
        else:
            with contextlib.suppress(StoreUnavailable):
                # Views that can never be reached (a database that does not
                # exist, not a SQLite file) are refused now; an outage is
                # waited out, as the follower waits out one later.
                reports.position()
            stop = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            print(
                f"following {redacted_url(desk.store_url)} (Ctrl-C to stop)",
                flush=True,
            )
            with contextlib.suppress(KeyboardInterrupt):
                reports.follow(
                    stop,
                    poll=timedelta(seconds=poll),
                    on_batch=lambda n: print(f"applied {n} events", flush=True),
                )
        print(f"views at position {reports.position()}")


# ------------------------------------------------------------------ import


@app.command(
    "import",
    rich_help_panel=SETUP,
    epilog=_examples(
        "amends import helpdesk.csv --map mapping.toml --dry-run",
        "amends --store sqlite:///amends.db import helpdesk.csv --map mapping.toml",
        "amends import export.jsonl --map mapping.toml --format json > summary.json",
        "(the mapping format: docs/import.md)",
    ),
)
def import_(
    context: typer.Context,
    log: Annotated[
        Path,
        typer.Argument(
            metavar="LOG",
            help="the case history: CSV or JSON Lines, a row per activity",
        ),
    ],
    mapping: Annotated[
        Path,
        typer.Option(
            "--map",
            metavar="MAPPING.toml",
            help="columns, activity -> command, extra columns -> fields",
        ),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="check every case, write nothing")
    ] = False,
    output: Annotated[
        TextOrJson, typer.Option("--format", help="text or json")
    ] = TextOrJson.TEXT,
) -> None:
    """Replay another system's case history through the lifecycle: cases that
    follow it are imported whole, the others are listed with their first
    offending row; exits 3 if any case or row was refused."""
    from amends.infra.importer import (
        ImportLogError,
        ImportMappingError,
        import_log,
        load_mapping,
        read_log,
    )

    try:
        rules = load_mapping(mapping)
    except ImportMappingError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--map'") from None
    # Read before the store is opened: opening a SQLite file that is not
    # there makes it, and a log that cannot be read must leave nothing.
    try:
        rows = read_log(log, rules)
    except ImportLogError as exc:
        raise typer.BadParameter(str(exc), param_hint="'LOG'") from None
    session = _session(context)
    with (
        session.desk(creating=not dry_run, empty_if_missing=dry_run) as desk,
        _progress_bar() as (bar, task),
    ):

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        bar.update(task, description="cases")
        summary = import_log(desk, rows, rules, dry_run=dry_run, progress=progress)
    print(summary.to_json() if output is TextOrJson.JSON else summary.to_text())
    if not summary.clean:
        raise typer.Exit(EXIT_REFUSED)


@contextlib.contextmanager
def _progress_bar() -> Iterator[tuple[Progress, TaskID]]:
    """A progress bar on stderr, shown only on a terminal (pipes and logs stay
    clean), removed when done."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TimeElapsedColumn

    console = Console(stderr=True)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as bar:
        yield bar, bar.add_task("", total=None)


# ---------------------------------------------------------- demo and setup


@app.command(
    rich_help_panel=SETUP,
    epilog=_examples(
        "amends demo",
        "amends --store sqlite:///demo.db demo --complaints 500 --days 60 --seed 1",
        "amends demo --charts /tmp/charts",
    ),
)
def demo(
    context: typer.Context,
    complaints: Annotated[
        int, typer.Option(min=1, max=1_000_000, help="how many complaints")
    ] = 300,
    days: Annotated[
        float,
        typer.Option(
            min=0.01,
            max=3650,
            help="over how many days",
        ),
    ] = 30,
    seed: Annotated[int, typer.Option(help="the same seed tells the same story")] = 7,
    charts: Annotated[
        Path, typer.Option(metavar="DIR", file_okay=False, help="where the PNGs go")
    ] = Path("charts"),
) -> None:
    """Simulate a team's stretch of work, print two reports, draw three charts."""
    run_demo(_session(context), complaints, days, seed, charts)


def run_demo(
    session: Session, complaints: int, days: float, seed: int, charts: Path
) -> None:
    """The main job: a realistic stretch of work, its reports and its charts."""
    from amends.infra.charts import save_charts
    from amends.infra.demo import simulate
    from amends.projections.reports import chart_data

    charts.mkdir(parents=True, exist_ok=True)  # fail before anything is recorded
    with session.desk(creating=True) as desk, _progress_bar() as (bar, task):
        bar.update(task, description="commands")

        def progress(done: int, total: int) -> None:
            if done == total or done % 100 == 0:
                bar.update(task, completed=done, total=total)

        started = time.perf_counter()
        summary = simulate(
            desk, complaints=complaints, days=days, seed=seed, progress=progress
        )
        bar.update(task, description="views", completed=0, total=None)
        applied = desk.reports.catch_up()
        elapsed = time.perf_counter() - started
        bar.stop()
        print(
            f"simulated {summary.complaints} complaints, {summary.commands} commands "
            f"({summary.first:%Y-%m-%d} to {summary.last:%Y-%m-%d}) into "
            f"{redacted_url(desk.store_url)}; views caught up {applied} events; "
            f"{elapsed:.1f} s\n"
        )
        print(desk.reports.ownership(limit=DEMO_LISTED).to_table())
        print(desk.reports.time_to_resolution(limit=DEMO_LISTED).to_table())
        data = chart_data(desk.reports.queries, desk.reports.clock(), int(days))
        for path in save_charts(data, charts):
            print(f"chart: {path}")


@app.command(
    rich_help_panel=SETUP,
    epilog=_examples("amends walkthrough", "amends --store memory:// walkthrough"),
)
def walkthrough(context: typer.Context) -> None:
    """Walk one complaint through all eight stages and print its history."""
    session = _session(context)
    start = session.clock().astimezone(UTC).replace(microsecond=0) - timedelta(days=3)

    def at(hours: float) -> datetime:
        return start + timedelta(hours=hours)

    with session.desk(creating=True) as desk:
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

    with ComplaintDesk(store_url, clock=session.clock) as reread:
        complaint = reread.get(cid)
    print(
        f"read back from {redacted_url(store_url)}: stage {complaint.stage}, "
        f"owner {complaint.owner}, "
        f"version {complaint.version}, reopened {complaint.reopen_count} times"
    )


@app.command(
    rich_help_panel=SETUP,
    epilog=_examples("amends docs", "amends docs --out /tmp/docs"),
)
def docs(
    out: Annotated[
        Path, typer.Option(metavar="DIR", file_okay=False, help="the docs folder")
    ] = Path("docs"),
) -> None:
    """Write docs/lifecycle.md and docs/events/*.json from the code."""
    for path in write_docs(out):
        print(path)


@app.command(
    rich_help_panel=SETUP,
    epilog=_examples("export AMENDS_CIPHER_KEY=$(amends keygen)"),
)
def keygen() -> None:
    """Print a new AMENDS_CIPHER_KEY (AES-256, base64) to encrypt stored payloads."""
    print(new_cipher_key())


# -------------------------------------------------------------------- main


def _note(message: str) -> None:
    print(f"amends: {one_line(message)}", file=sys.stderr)


def _usage_message(error: typer.TyperException) -> str:
    context = getattr(error, "ctx", None)
    where = context.command_path if context is not None else "amends"
    hint = f" (see {where} --help)" if error.exit_code == EXIT_USAGE else ""
    command = where.removeprefix("amends").strip() or "usage"
    return f"{command}: {error.format_message()}{hint}"


def main(argv: Sequence[str] | None = None, *, clock: Clock = utc_now) -> int:
    """Run the command line; returns the exit code (see the module docstring).

    `clock` is the desk's clock (tests inject a fixed one). Set AMENDS_DEBUG=1
    to see the traceback of an unexpected error instead of its one line.
    """
    command = typer.main.get_command(app)
    try:
        result = command.main(
            args=list(argv) if argv is not None else None,
            prog_name="amends",
            standalone_mode=False,
            obj=Session(clock=clock),
        )
    except SystemExit as exc:
        closed = exc.__context__
        if isinstance(closed, OSError) and closed.errno == errno.EPIPE:
            # click's answer to a closed pipe (`amends history ID | head`):
            # it wraps the streams so that nothing more is written, and
            # exits 1 with nothing said, which reads as a bug here.
            return EXIT_PIPE_CLOSED
        raise
    except typer.TyperException as exc:  # usage errors, unreadable files
        _note(_usage_message(exc))
        return EXIT_USAGE
    except typer.Abort:
        _note("aborted")
        return EXIT_USAGE
    except (
        ConfigurationError,
        PolicyMismatch,
        ViewsOfAnotherStore,
        ViewsOfLaterRelease,
        OSError,
    ) as exc:
        _note(str(exc) or type(exc).__name__)
        return EXIT_USAGE
    except (StoreUnavailable, WorkerDied) as exc:  # not refusals: run it again
        _note(str(exc))
        return EXIT_STORE
    except AmendsError as exc:
        _note(str(exc))
        return EXIT_REFUSED
    except Exception as exc:
        if os.environ.get("AMENDS_DEBUG"):
            raise
        _note(
            f"unexpected error (a bug; AMENDS_DEBUG=1 shows where): "
            f"{type(exc).__name__}: {exc}"
        )
        return EXIT_BUG
    return result if isinstance(result, int) else EXIT_OK
