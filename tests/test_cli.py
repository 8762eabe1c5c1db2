"""The `amends` command line, run in-process against a SQLite file.

Every refusal must be one line on stderr with the documented exit code (2 the
command line, 3 amends refused, 4 the store failed), and record nothing.
"""

from __future__ import annotations

import csv
import json
import os
import shlex
import sqlite3
import stat
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid5

import pytest

import amends.cli
from amends import ComplaintDesk, Stage
from amends.audit import verify_bundle
from amends.cli import MAX_MESSAGE, main
from amends.domain.errors import ComplaintNotFound
from amends.domain.lifecycle import command_names
from amends.domain.values import UNPRINTABLE
from amends.infra import importer
from amends.infra.desk import EXTERNAL_REF_NAMESPACE

from conftest import NOW, FixedClock
from helpers import (
    RECEIVE,
    fifo,
    judges_die,
    layout_beside,
    outcome_within,
    relabel_views,
)


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


class Cli:
    """Runs `amends --store URL ...` in-process with a clock the test moves."""

    def __init__(self, store: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.store = store
        self.capsys = capsys
        self.clock = FixedClock(NOW)

    def __call__(self, *args: str, store: str | None = None) -> Run:
        self.capsys.readouterr()
        code = main(["--store", store or self.store, *args], clock=self.clock)
        captured = self.capsys.readouterr()
        return Run(code, captured.out, captured.err)

    def ok(self, *args: str) -> str:
        result = self(*args)
        assert (result.code, result.err) == (0, ""), result
        return result.out

    def events(self) -> int:
        with ComplaintDesk(self.store) as desk:
            return desk.last_position()

    def receive(self, *extra: str) -> str:
        return self.ok(
            "receive",
            "--by",
            "ana",
            "--customer",
            "Jo Smith",
            "--summary",
            "Charged twice for March",
            "--channel",
            "phone",
            "--category",
            "billing",
            "--severity",
            "high",
            "--expectation",
            "Refund the duplicate",
            *extra,
        ).strip()


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(f"sqlite:///{tmp_path / 'amends.db'}", capsys)


def iso(hours: float) -> str:
    return (NOW - timedelta(days=2) + timedelta(hours=hours)).isoformat()


def walk(cli: Cli, complaint: str) -> None:
    """The whole lifecycle through the per-command subcommands, with a reopen."""
    steps = [
        "acknowledge --by ana --paraphrase 'You were billed twice'",
        "apologize --by ana --apology 'I am sorry'",
        f"commit-plan --by ana --step Check --step Refund --due {iso(30)}",
        "transfer-ownership --by ana --to ben --reason Payments --customer-told",
        "await-customer --by ben --reason 'Need the statement'",
        "customer-replied --by ben --note 'Statement received'",
        "post-update --by ben --note 'Payments confirmed it'",
        "offer-gesture --by ben --description 'Fee waived' --value 9.99 --currency EUR",
        "add-note --by ben --text 'Customer called'",
        "resolve --by ben --resolution Refunded --explanation 'A retried job'",
        "confirm-satisfaction --by ben --not-satisfied --reason 'Not there yet'",
        "post-update --by ben --note 'Refund visible now'",
        "resolve --by ben --resolution Refunded --explanation 'A retried job'",
        "confirm-satisfaction --by ben --satisfied",
        "log-prevention --by ben --root-cause Retries --preventive-action 'Keys'"
        " --informed payments --informed 'support leads'",
    ]
    for hour, step in enumerate(steps, start=1):
        name, *options = shlex.split(step)
        printed = cli.ok(name, complaint, *options, "--at", iso(hour))
        assert printed.startswith(f"complaint {complaint}: "), printed


def test_a_complaint_walks_the_whole_lifecycle_through_the_subcommands(
    cli: Cli,
) -> None:
    complaint = cli.receive("--at", iso(0))
    assert str(UUID(complaint)) == complaint
    walk(cli, complaint)
    shown = cli.ok("show", complaint)
    assert "stage              PREVENTION_LOGGED" in shown
    assert "owner              ben" in shown
    assert "reopen_count       1" in shown
    assert "allowed_now        none (closed)" in shown
    with ComplaintDesk(cli.store) as desk:
        complaint_state = desk.get(complaint)
        assert complaint_state.version == 16
        assert complaint_state.plan_steps == ("Check", "Refund")
        assert complaint_state.gestures_offered == 1
        assert complaint_state.waits == 1
    # Every domain command has a subcommand, and the walk used them all.
    text = cli.ok("history", complaint)
    assert all(f" {name} " in text for name in command_names())


def test_every_command_shows_help_with_examples(cli: Cli) -> None:
    names = [name.replace("_", "-") for name in command_names()]
    names += ["show", "history", "verify", "seal", "export-case", "verify-bundle"]
    names += ["diagram"]
    names += ["report", "project", "demo", "walkthrough", "docs", "keygen"]
    for name in names:
        result = cli(name, "--help")
        assert result.code == 0, (name, result)
        assert "Examples" in result.out, name
        assert f"amends {name}" in result.out, name
    assert "Examples" in cli("--help").out


def test_receive_prints_the_id_and_an_external_ref_is_received_once(
    cli: Cli,
) -> None:
    first = cli.receive("--external-ref", "CRM-1042")
    count = cli.events()
    assert cli.receive("--external-ref", "CRM-1042") == first
    assert cli.events() == count == 1


def test_show_reads_the_state_as_of_a_moment_and_at_a_version(cli: Cli) -> None:
    complaint = cli.receive("--at", iso(0))
    cli.ok("acknowledge", complaint, "--by", "ana", "--paraphrase", "P", "--at", iso(2))
    cli.ok("apologize", complaint, "--by", "ana", "--apology", "Sorry", "--at", iso(4))
    assert "stage              ACKNOWLEDGED" in cli.ok(
        "show", complaint, "--as-of", iso(3)
    )
    assert "stage              RECEIVED" in cli.ok(
        "show", complaint, "--at-version", "1"
    )
    data = json.loads(cli.ok("show", complaint, "--format", "json"))
    assert (data["stage"], data["version"]) == ("APOLOGIZED", 3)
    assert "commit_plan" in data["allowed_commands"]
    before = cli("show", complaint, "--as-of", iso(-1))
    assert before.code == 3
    assert "received later" in before.err


def test_a_time_history_prints_shows_the_event_it_names(cli: Cli) -> None:
    """An auditor pastes a time from `history` into `show --as-of`. Cut to
    the second, the time came before its event: "received later"."""
    received = NOW - timedelta(days=1, microseconds=451_234)
    complaint = cli.receive("--at", received.isoformat())
    cli.ok("acknowledge", complaint, "--by", "ana", "--paraphrase", "P")
    lines = cli.ok("history", complaint).splitlines()
    printed = [line.split()[1] for line in lines if line.startswith("  v")]
    assert printed[0] == received.isoformat()
    for version, moment in enumerate(printed, start=1):
        shown = cli.ok("show", complaint, "--as-of", moment, "--format", "json")
        assert json.loads(shown)["version"] == version


def test_history_as_json_lines(cli: Cli) -> None:
    complaint = cli.receive("--at", iso(0))
    walk(cli, complaint)
    lines = cli.ok("history", complaint, "--format", "jsonl").splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["version"] for r in records] == list(range(1, 17))
    assert records[-1]["stage_after"] == Stage.PREVENTION_LOGGED
    assert {r["complaint_id"] for r in records} == {complaint}


def _edit_event(path: Path, version: int, **change: object) -> None:
    with sqlite3.connect(path) as db:
        (state,) = db.execute(
            "SELECT state FROM stored_events WHERE originator_version = ?", (version,)
        ).fetchone()
        db.execute(
            "UPDATE stored_events SET state = ? WHERE originator_version = ?",
            (json.dumps({**json.loads(state), **change}).encode(), version),
        )


def test_verify_seal_and_a_tampered_store(cli: Cli, tmp_path: Path) -> None:
    complaint = cli.receive("--at", iso(0))
    cli.ok("acknowledge", complaint, "--by", "ana", "--paraphrase", "P", "--at", iso(1))
    assert cli.ok("verify") == "verified 2 events of 1 complaints: clean\n"
    seal = json.loads(cli.ok("seal"))
    assert seal["complaints"][0]["complaint_id"] == complaint
    assert seal["complaints"][0]["version"] == 2
    printed = cli.ok("seal", "--out", str(tmp_path / "seal.json"))
    assert printed.startswith("sealed 1 complaints at ")
    assert "clean" in cli.ok("verify", "--seal", str(tmp_path / "seal.json"))

    _edit_event(tmp_path / "amends.db", 2, paraphrase="Something else")
    result = cli("verify", "--seal", str(tmp_path / "seal.json"))
    assert result.code == 3
    assert "version 2: sealed: the event the seal pinned was changed" in result.out
    assert result.err == "amends: verify found 1 breaks in the record (listed above)\n"
    _edit_event(tmp_path / "amends.db", 1, summary="Nothing happened")
    result = cli("verify")
    assert result.code == 3
    assert "version 1: altered" in result.out


@pytest.mark.parametrize(
    ("edit", "kind"),
    [
        ("replace(state, 'Jo Smith', 'Jo Smyth')", "text"),
        ("CAST(X'FF00FE' AS TEXT)", "text"),
        ("42", "integer"),
    ],
    ids=["replaced", "not-utf-8", "a-number"],
)
def test_verify_reports_a_hand_edit_of_any_type_as_a_break(
    cli: Cli, tmp_path: Path, edit: str, kind: str
) -> None:
    """The sqlite3 shell stores what an edit gives: replace() leaves TEXT,
    not a BLOB, and a cast or a number other types. Verify, of the store or
    of the complaint, reports the event as a break; it failed as a bug (exit
    1), or, for text that is not UTF-8, as the store failing (exit 4)."""
    complaint = cli.receive("--at", iso(0))
    cli.ok("acknowledge", complaint, "--by", "ana", "--paraphrase", "P", "--at", iso(1))
    with sqlite3.connect(tmp_path / "amends.db") as db:
        db.execute(
            f"UPDATE stored_events SET state = {edit} WHERE originator_version = 1"
        )
        (stored,) = db.execute(
            "SELECT typeof(state) FROM stored_events WHERE originator_version = 1"
        ).fetchone()
    assert stored == kind
    for argv in (["verify"], ["verify", "--complaint", complaint]):
        result = cli(*argv)
        assert result.code == 3, (argv, result)
        assert "version 1: " in result.out, argv


@pytest.mark.parametrize(
    ("column", "edit", "said"),
    [
        ("state", "NULL", "complaint {id} version 1: unreadable: the stored state"),
        (
            "originator_version",
            "'abc'",
            "complaint {id}: unreadable: a row's originator_version 'abc'",
        ),
        ("originator_id", "'not-a-uuid'", "record: unreadable: a row's originator_id"),
    ],
    ids=["null-state", "version-text", "id-text"],
)
def test_a_row_no_event_could_have_written_is_a_break_to_every_command(
    cli: Cli, tmp_path: Path, column: str, edit: str, said: str
) -> None:
    """A NULL state, a version that is no number, an id that is no
    complaint's: verify lists the break (exit 3), and every command that
    reads the row refuses in one line as a history it cannot read (3). Each
    failed as a bug (exit 1) somewhere: verify, seal, show, the reports."""
    complaint = cli.receive("--at", iso(0))
    cli.ok("acknowledge", complaint, "--by", "ana", "--paraphrase", "P", "--at", iso(1))
    with sqlite3.connect(tmp_path / "amends.db") as db:
        db.execute(
            f"UPDATE stored_events SET {column} = {edit} WHERE originator_version = 1"
        )
    result = cli("verify")
    assert result.code == 3, result
    assert said.format(id=complaint) in result.out
    if column != "originator_id":
        assert said.format(id=complaint) in cli("verify", "--complaint", complaint).out
    for argv in (
        ["show", complaint],
        ["history", complaint],
        ["report", "backlog"],
        ["project", "--rebuild"],
    ):
        result = cli(*argv)
        assert result.code == 3, (argv, result)
        assert result.err.count("\n") == 1, (argv, result.err)
    # A seal pins each chain's head: it refuses a head it cannot read, and
    # leaves a break further down to verify.
    assert cli("seal").code in (0, 3)


@pytest.mark.parametrize(
    ("column", "edit"),
    [("state", "NULL"), ("originator_version", "'abc'"), ("originator_id", "'x'")],
    ids=["null-state", "version-text", "id-text"],
)
def test_a_hand_edit_of_the_event_the_views_stand_at_is_refused_in_one_line(
    cli: Cli, tmp_path: Path, column: str, edit: str
) -> None:
    """The views' check of the store reads that event: it must refuse the
    views (exit 2) or the history (3), never fail as a bug."""
    complaint = cli.receive("--at", iso(0))
    cli.ok("acknowledge", complaint, "--by", "ana", "--paraphrase", "P", "--at", iso(1))
    cli.ok("report", "backlog")  # the views stand at the acknowledgement
    with sqlite3.connect(tmp_path / "amends.db") as db:
        db.execute(
            f"UPDATE stored_events SET {column} = {edit} WHERE originator_version = 2"
        )
    for argv in (["report", "backlog"], ["verify"], ["seal"]):
        result = cli(*argv)
        assert result.code in (2, 3), (argv, result)
        assert result.err.count("\n") == 1, (argv, result.err)


def test_verify_refuses_a_file_that_is_no_seal(cli: Cli, tmp_path: Path) -> None:
    cli.receive()
    (tmp_path / "junk.json").write_text('{"no": "seal"}')
    for path in (tmp_path / "junk.json", tmp_path / "missing.json"):
        result = cli("verify", "--seal", str(path))
        assert result.code == 2, result
        assert "--seal" in result.err
        assert result.err.count("\n") == 1


def printable_lines(text: str) -> bool:
    """Whether no line of `text` holds a character of `UNPRINTABLE`."""
    return not any(
        unicodedata.category(ch) in UNPRINTABLE
        for line in text.split("\n")
        for ch in line
    )


@pytest.mark.parametrize("odd", ["\u202e", "\u200b", "\u2066", "\ue000"])
def test_what_people_wrote_reaches_the_terminal_escaped(cli: Cli, odd: str) -> None:
    """Names may hold format characters (only control characters are
    refused): a right-to-left override in the actor's name reversed
    "(new -> RECEIVED)" in `history`, and the owner's name in the line a
    command prints. Every line a reader sees escapes them, as `show` does."""
    complaint = cli.ok(
        "receive",
        *("--by", f"ana{odd}", "--customer", f"Jo {odd}evil", "--summary", "S"),
        *("--channel", "web", "--category", "c", "--severity", "low"),
        *("--expectation", f"e{odd}"),
    ).strip()
    escaped = odd.encode("unicode_escape").decode()
    acknowledged = cli.ok("acknowledge", complaint, "--by", "ben", "--paraphrase", "P")
    assert f"(owner ana{escaped}, version 2)" in acknowledged
    timeline = cli.ok("history", complaint)
    assert f"by ana{escaped}  (new -> RECEIVED)" in timeline
    for printed in (acknowledged, timeline, cli.ok("show", complaint)):
        assert printable_lines(printed), printed


def test_export_case_is_a_bundle_an_auditor_can_check(cli: Cli, tmp_path: Path) -> None:
    complaint = cli.receive("--at", iso(0))
    walk(cli, complaint)
    bundle = json.loads(cli.ok("export-case", complaint))
    assert bundle["complaint_id"] == complaint
    assert [e["version"] for e in bundle["events"]] == list(range(1, 17))
    assert bundle["head"]["version"] == 16
    printed = cli.ok("export-case", complaint, "--out", str(tmp_path / "case.json"))
    assert printed.startswith(f"exported 16 events of complaint {complaint}")
    assert verify_bundle(tmp_path / "case.json").ok
    assert cli.ok("verify-bundle", str(tmp_path / "case.json")) == (
        "verified 16 events of 1 complaints: clean\n"
        f"head: version 16, digest {bundle['head']['digest']}; "
        f"bundle digest {json.loads((tmp_path / 'case.json').read_text())['digest']}\n"
    )


def test_verify_bundle_checks_against_a_seal_and_says_when_it_cannot(
    cli: Cli, tmp_path: Path
) -> None:
    complaint = cli.receive("--at", iso(0))
    seal = tmp_path / "seal.json"
    cli.ok("seal", "--out", str(seal))
    case = tmp_path / "case.json"
    cli.ok("export-case", complaint, "--out", str(case))
    pinned = json.loads(seal.read_text())["complaints"][0]
    out = cli.ok("verify-bundle", str(case), "--seal", str(seal))
    assert f"pins version 1, digest {pinned['digest']}\n" in out
    # A case received after the seal: the seal cannot check it, and a clean
    # report would also pass a bundle whose complaint id was rewritten.
    other = cli.receive("--at", iso(1))
    cli.ok("export-case", other, "--out", str(case), "--force")
    result = cli("verify-bundle", str(case), "--seal", str(seal))
    assert result.code == 2
    assert f"does not name complaint {other}, so it cannot check" in result.err
    # A seal edited by hand is no seal.
    seal.write_text(
        seal.read_text().replace('"digest"', '"digest", "extra": 1, "x"', 1)
    )
    result = cli("verify-bundle", str(case), "--seal", str(seal))
    assert result.code == 2
    assert "is not a seal written by `amends seal`" in result.err


def test_verify_bundle_finds_a_bundle_cut_short_and_backdated(
    cli: Cli, tmp_path: Path
) -> None:
    """The newest event dropped, `exported_at` set before the seal and the
    digests redone: code 3, a finding that says either events were dropped
    or the seal came after the export. Before, code 2, "check the bundle
    against a seal taken before its export", as if the seal were wrong."""
    from amends.audit import CaseBundle

    complaint = cli.receive("--at", iso(0))
    cli.ok("acknowledge", complaint, "--by", "ana", "--paraphrase", "P", "--at", iso(1))
    cli.ok("apologize", complaint, "--by", "ana", "--apology", "A", "--at", iso(2))
    seal, case = tmp_path / "seal.json", tmp_path / "case.json"
    cli.ok("seal", "--out", str(seal))
    cli.ok("export-case", complaint, "--out", str(case))
    assert cli("verify-bundle", str(case), "--seal", str(seal)).code == 0
    bundle = CaseBundle.model_validate_json(case.read_text(encoding="utf-8"))
    kept = bundle.events[:-1]
    forged = bundle.model_copy(
        update={
            "events": kept,
            "head": bundle.head.model_copy(
                update={"version": kept[-1].version, "digest": kept[-1].digest}
            ),
            "exported_at": datetime.fromisoformat(iso(1.5)),
        }
    )
    forged = forged.model_copy(update={"digest": forged.content_digest()})
    case.write_text(forged.model_dump_json(), encoding="utf-8")
    assert cli("verify-bundle", str(case)).code == 0  # alone, it cannot tell
    result = cli("verify-bundle", str(case), "--seal", str(seal))
    assert result.code == 3, result
    assert f"complaint {complaint} version 2: sealed: " in result.out
    assert "either events were dropped from the bundle" in result.out


def test_verify_bundle_refuses_a_pipe_for_a_bundle_or_a_seal(
    cli: Cli, tmp_path: Path
) -> None:
    """Neither is read from anything but a regular file: code 2, at once.
    Before, a pipe waited for ever for a writer, /dev/zero was read until
    the machine ran out of memory."""
    complaint = cli.receive("--at", iso(0))
    case = tmp_path / "case.json"
    cli.ok("export-case", complaint, "--out", str(case))
    with fifo(tmp_path / "pipe") as pipe:
        result = outcome_within(10, lambda: cli("verify-bundle", str(pipe)))
        assert result.code == 2, result
        assert f"{pipe} is not a regular file" in result.err
        result = outcome_within(
            10, lambda: cli("verify-bundle", str(case), "--seal", str(pipe))
        )
        assert result.code == 2, result
        assert "not a regular file (a pipe)" in result.err


@pytest.mark.parametrize("command", ["export-case", "seal"])
def test_bundles_and_seals_are_written_private_new_and_never_through_a_link(
    cli: Cli, tmp_path: Path, command: str
) -> None:
    """Mode 0600 whatever the umask (a bundle holds customer data in the
    clear), an existing file replaced only with --force, a symbolic link
    never written through. Before: 0644, overwritten silently, and the
    link's target overwritten."""
    complaint = cli.receive("--at", iso(0))
    args = [command, complaint] if command == "export-case" else [command]
    out = tmp_path / "out.json"
    old_umask = os.umask(0o022)
    try:
        cli.ok(*args, "--out", str(out))
        assert stat.S_IMODE(out.stat().st_mode) == 0o600
        first = out.read_bytes()
        result = cli(*args, "--out", str(out))
        assert result.code == 2, result
        assert f"{out} exists: --force replaces it" in result.err
        assert out.read_bytes() == first
        out.chmod(0o644)
        cli.ok(*args, "--out", str(out), "--force")
        assert stat.S_IMODE(out.stat().st_mode) == 0o600
        target, link = tmp_path / "target.txt", tmp_path / "link.json"
        target.write_text("keep me\n", encoding="utf-8")
        link.symlink_to(target)
        for force in ([], ["--force"]):
            result = cli(*args, "--out", str(link), *force)
            assert result.code == 2, result
            assert f"{link} is a symbolic link" in result.err
            assert target.read_text(encoding="utf-8") == "keep me\n"
            assert link.is_symlink()
    finally:
        os.umask(old_umask)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "amends.db",
        "link.json",
        "out.json",
        "target.txt",
    ]


def test_verify_bundle_prints_a_forged_digest_escaped(cli: Cli, tmp_path: Path) -> None:
    """The digests verify-bundle prints are as the files have them: a forged
    bundle or seal may hold any text there, and it reaches the terminal with
    its unprintable characters escaped, as the findings do."""
    complaint = cli.receive("--at", iso(0))
    seal, case = tmp_path / "seal.json", tmp_path / "case.json"
    cli.ok("seal", "--out", str(seal))
    cli.ok("export-case", complaint, "--out", str(case))
    for path, where in ((case, "head"), (seal, "complaints")):
        document = json.loads(path.read_text())
        entry = document[where] if where == "head" else document[where][0]
        entry["digest"] = "\u202e" + entry["digest"] + "\n\x1b[2J"
        path.write_text(json.dumps(document), encoding="utf-8")
    result = cli("verify-bundle", str(case), "--seal", str(seal))
    assert result.code == 3, result
    assert "head: version 1, digest \\u202e" in result.out
    assert printable_lines(result.out), result.out
    assert len(result.out.splitlines()) == result.out.count("\n")


def test_a_broken_case_is_exported_as_stored_and_said_not_to_verify(
    cli: Cli, tmp_path: Path
) -> None:
    """The bundle is evidence as stored; its exporter and its receiver are
    both told, with code 3, where the chain breaks."""
    complaint = cli.receive("--at", iso(0))
    cli.ok("acknowledge", complaint, "--by", "ana", "--paraphrase", "P", "--at", iso(1))
    cli.ok("apologize", complaint, "--by", "ana", "--apology", "A", "--at", iso(2))
    _edit_event(tmp_path / "amends.db", 2, paraphrase="Something else")
    case = tmp_path / "case.json"

    result = cli("export-case", complaint, "--out", str(case))
    assert result.code == 3
    assert result.out.startswith(f"exported 3 events of complaint {complaint}")
    assert "version 2: altered" in result.out
    assert result.err == (
        f"amends: complaint {complaint} does not verify: the bundle holds 1 breaks "
        "(listed above)\n"
    )
    bundle = json.loads(case.read_text(encoding="utf-8"))
    assert bundle["events"][1]["payload"]["paraphrase"] == "Something else"

    result = cli("export-case", complaint)
    assert result.code == 3
    assert json.loads(result.out)["digest"] == bundle["digest"]
    assert "version 2: altered" in result.err

    result = cli("verify-bundle", str(case))
    assert result.code == 3
    assert "version 2: altered" in result.out
    assert result.err == f"amends: {case} holds 1 breaks in the record (listed above)\n"


def test_verify_bundle_refuses_a_missing_file_and_names_one_that_is_no_bundle(
    cli: Cli, tmp_path: Path
) -> None:
    result = cli("verify-bundle", str(tmp_path / "nothere.json"))
    assert result.code == 2
    assert "does not exist" in result.err
    # A file that does not read as a bundle is damaged evidence: code 3, as
    # verify_bundle() reports it (a finding), saying where and why.
    for content, why in [
        ("{}", "complaint_id: Field required (and 5 more)"),
        (
            '{"complaint_id": "x", "complaint_id": "y"}',
            "not JSON amends writes: an object names 'complaint_id' twice",
        ),
        ('{"events": [', "not JSON: Expecting value at line 1, column 13"),
    ]:
        (tmp_path / "other.json").write_text(content, encoding="utf-8")
        result = cli("verify-bundle", str(tmp_path / "other.json"))
        assert result.code == 3, result
        assert f"other.json is not a readable case bundle: {why}\n" in result.out
        assert result.err.count("\n") == 1
    assert not (tmp_path / "amends.db").exists()


def test_the_diagram_is_drawn_from_the_transition_table(cli: Cli) -> None:
    drawn = cli.ok("diagram")
    assert drawn.startswith("stateDiagram-v2")
    assert all(stage.value in drawn for stage in Stage)
    assert "RESOLVED --> UPDATING" in drawn  # the reopen
    markdown = cli.ok("diagram", "--format", "markdown")
    assert "```mermaid" in markdown
    assert "| command | from | to | records |" in markdown


def test_reports_in_every_format_and_with_filters(cli: Cli) -> None:
    complaint = cli.receive("--at", iso(0))
    walk(cli, complaint)
    other = cli.receive("--at", iso(1))
    handoff = ["--reason", "Holiday", "--customer-not-told"]
    cli.ok("transfer-ownership", other, "--by", "ana", "--to", "chidi", *handoff)
    cli.ok("transfer-ownership", other, "--by", "chidi", "--to", "dana", *handoff)
    cli.ok("add-note", other, "--by", "dana", "--text", "n")
    assert "Ownership (as of" in cli.ok("report", "ownership")
    ttr = json.loads(cli.ok("report", "ttr", "--format", "json"))
    assert ttr["filter"]["owner"] is None
    csv = cli.ok("report", "sla", "--format", "csv").splitlines()
    assert csv[0].startswith("complaint_id,target,due_at,met_at,owner")
    backlog = json.loads(
        cli.ok("report", "backlog", "--format", "json", "--owner", "dana")
    )
    assert backlog["filter"]["owner"] == "dana"
    since = json.loads(
        cli.ok("report", "backlog", "--format", "json", "--since", iso(0.5))
    )
    assert since["filter"]["since"] is not None
    assert "Recurrence" in cli.ok("report", "recurrence", "--category", "billing")


def test_a_report_prints_one_section_cut_or_whole(cli: Cli) -> None:
    for hours in (0, 1, 30):
        cli.receive("--at", iso(hours))  # none acknowledged
    rows = list(csv.reader(cli.ok("report", "sla", "--format", "csv").splitlines()))
    assert rows[0] == ["complaint_id", "target", "due_at", "met_at", "owner"]
    assert len(rows) == 3  # two acknowledgements late, the third not due yet
    cut = cli.ok("report", "sla", "--section", "breaches", "--limit", "1")
    assert "Breaches, latest due first (1 of 2; raise the limit for more)" in cut
    assert "Compliance" not in cut
    whole = cli("report", "sla", "--format", "csv", "--section", "breaches", "--all")
    assert len(whole.out.splitlines()) == 3
    assert whole.err == ""
    # A CSV file holds only rows: that the limit cut them is said on stderr,
    # so an export never passes for the whole list.
    breaches = ["report", "sla", "--format", "csv", "--section", "breaches"]
    one = cli(*breaches, "--limit", "1")
    assert one.code == 0
    assert len(one.out.splitlines()) == 2
    assert one.err == (
        "amends: breaches: 1 of 2 listed (--all, or a larger --limit, for more)\n"
    )
    by_target = cli.ok("report", "sla", "--format", "csv", "--section", "by-target")
    assert by_target.splitlines()[:2] == [
        "key,due,on_time,breached,rate",
        "acknowledge,2,0,2,0.0",
    ]
    # The last acknowledgement falls due 24 hours after receipt, 6 hours from
    # now: a horizon of more than 6 hours puts it at risk.
    at_risk = ["report", "sla", "--format", "json"]
    assert json.loads(cli.ok(*at_risk, "--horizon", "5"))["at_risk_total"] == 0
    assert json.loads(cli.ok(*at_risk, "--horizon", "7"))["at_risk_total"] == 1
    recurring = ["report", "recurrence", "--format", "csv"]
    assert len(cli.ok(*recurring, "--min-count", "3").splitlines()) == 2
    assert len(cli.ok(*recurring, "--min-count", "4").splitlines()) == 1


def test_the_store_url_from_the_environment_is_the_one_checked_for_a_file(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No --store: AMENDS_STORE_URL names the store, and only a missing file
    there is refused (not the default ./amends.db)."""
    cli.receive()
    monkeypatch.chdir(tmp_path)  # no amends.db here
    monkeypatch.setenv("AMENDS_STORE_URL", cli.store)
    assert main(["report", "backlog", "--format", "json"], clock=cli.clock) == 0
    monkeypatch.setenv("AMENDS_STORE_URL", f"sqlite:///{tmp_path / 'typo.db'}")
    assert main(["report", "backlog"], clock=cli.clock) == 2
    assert "no store at" in cli.capsys.readouterr().err
    assert not (tmp_path / "typo.db").exists()


def test_report_help_gives_each_option_its_default(cli: Cli) -> None:
    """Rich reads "[...]" in a help text as markup and drops it."""
    printed = " ".join(cli.ok("report", "--help").replace("│", " ").split())
    for words in ("50 unless given", "(24 unless given)", "(3 unless given)"):
        assert words in printed


def test_views_of_another_store_are_refused_in_one_line_until_rebuilt(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AMENDS_VIEWS_URL", f"sqlite:///{tmp_path / 'views.db'}")
    cli.receive()
    cli.receive()
    cli.ok("project")
    other = f"sqlite:///{tmp_path / 'other.db'}"
    with ComplaintDesk(other) as desk:
        desk.receive(**RECEIVE)
    for argv in (["report", "sla"], ["project"]):
        refused = cli(*argv, store=other)
        assert refused.code == 2, refused
        assert refused.err.startswith(
            "amends: the report views have read the event log to position 2, "
            "past its end at 1"
        )
        assert refused.err.count("\n") == 1
    assert cli("project", "--rebuild", store=other).code == 0
    assert cli("report", "sla", store=other).code == 0
    assert cli("report", "sla").code == 2


def test_project_catches_up_and_rebuilds(cli: Cli) -> None:
    cli.receive()
    assert cli.ok("project").startswith("applied 1 events")
    assert cli.ok("project").startswith("applied 0 events")
    assert cli.ok("project", "--rebuild") == (
        "rebuilt the views (1 events applied by this process)\nviews at position 1\n"
    )


def test_keygen_and_walkthrough(cli: Cli) -> None:
    assert len(cli.ok("keygen").strip()) == 44  # base64 of 32 bytes
    printed = cli.ok("walkthrough")
    assert "stage PREVENTION_LOGGED, owner ben, version 10" in printed


def test_without_a_command_the_demo_runs_with_its_defaults(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[object, ...]] = []
    monkeypatch.setattr(amends.cli, "run_demo", lambda *args: calls.append(args))
    assert cli.ok() == ""
    ((session, *arguments),) = calls
    assert session.store == cli.store
    assert arguments == [300, 30, 7, Path("charts")]


def test_an_unexpected_error_is_one_line_too(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> str:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(amends.cli, "mermaid", broken)
    result = cli("diagram")
    assert result.code == 1
    assert result.err == (
        "amends: unexpected error (a bug; AMENDS_DEBUG=1 shows where): "
        "RuntimeError: boom second line\n"
    )
    monkeypatch.setenv("AMENDS_DEBUG", "1")
    with pytest.raises(RuntimeError):
        cli("diagram")


MISSING = "00000000-0000-4000-8000-000000000000"


def malformed(complaint: str, tmp_path: Path) -> list[tuple[str, list[str], int]]:
    """(what, argv, exit code): one of each kind of bad command.

    The complaint is ACKNOWLEDGED; the fixed clock stands at NOW.
    """
    note = ["add-note", complaint, "--by", "ana", "--text"]
    receive = ["receive", *(f"--{name}={value}" for name, value in RECEIVE.items())]
    missing = ["--store", f"sqlite:///{tmp_path}/missing.db"]
    mapping = str(FIXTURES / "mapping.toml")
    # Readable up to its last row: the reading fails after many rows are in.
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes(
        (FIXTURES / "helpdesk.csv").read_bytes() + "x,caf\xe9\n".encode("latin-1")
    )
    return [
        ("missing field", ["acknowledge", complaint, "--by", "ana"], 2),
        ("missing id", ["acknowledge", "--by", "ana", "--paraphrase", "P"], 2),
        ("unknown option", [*note, "n", "--txt", "n"], 2),
        ("unknown command", ["acknowledged", complaint], 2),
        ("naive time", [*note, "n", "--at", "2026-03-01T09:00:00"], 2),
        ("not a time", ["show", complaint, "--as-of", "yesterday"], 2),
        ("bad severity", ["receive", "--by", "a", "--severity", "extreme"], 2),
        ("both modes", ["project", "--follow", "--rebuild"], 2),
        ("no complaints", ["demo", "--complaints", "0"], 2),
        ("naive report", ["report", "sla", "--since", "2026-03-01T00:00"], 2),
        (
            "report window ending before it starts",
            ["report", "sla", "--since", iso(5), "--until", iso(1)],
            2,
        ),
        ("report of a blank owner", ["report", "backlog", "--owner", " "], 2),
        ("unknown report", ["report", "velocity"], 2),
        ("unknown section", ["report", "sla", "--section", "nope"], 2),
        ("section of json", ["report", "sla", "--format", "json", "--section", "x"], 2),
        ("limit of a report with no list", ["report", "backlog", "--limit", "3"], 2),
        ("limit and all", ["report", "sla", "--limit", "3", "--all"], 2),
        ("negative limit", ["report", "sla", "--limit", "-1"], 2),
        ("limit past 32 bits", ["report", "sla", "--limit", "2147483648"], 2),
        (
            "min count past 32 bits",
            ["report", "recurrence", "--category", "b", "--min-count", "2147483648"],
            2,
        ),
        ("horizon of another report", ["report", "ttr", "--horizon", "4"], 2),
        ("negative horizon", ["report", "sla", "--horizon", "-4"], 2),
        ("endless horizon", ["report", "sla", "--horizon", "1e300"], 2),
        ("horizon of a million hours", ["report", "sla", "--horizon", "1e6"], 2),
        ("horizon not a number", ["report", "sla", "--horizon", "nan"], 2),
        ("min count of zero", ["report", "recurrence", "--min-count", "0"], 2),
        ("unknown SLA", ["--sla", "nope", "report", "sla"], 2),
        ("bad store URL", ["--store", "nosuch://x", "show", complaint], 2),
        ("unknown id", ["acknowledge", MISSING, "--by", "a", "--paraphrase", "P"], 3),
        ("not an id", ["acknowledge", "12", "--by", "a", "--paraphrase", "P"], 3),
        (
            "wrong stage",
            shlex.split(f"resolve {complaint} --by ana --resolution R --explanation E"),
            3,
        ),
        ("blank name", ["apologize", complaint, "--by", " ", "--apology", "S"], 3),
        ("control character", [*note, "\x1b[2J"], 3),
        ("huge text", [*note, "x" * 100_000], 3),
        ("future time", [*note, "n", "--at", "2099-01-01T00:00:00Z"], 3),
        ("before the last event", [*note, "n", "--at", iso(-5)], 3),
        ("unknown show", ["show", MISSING], 3),
        ("unknown export", ["export-case", MISSING], 3),
        (
            "store unavailable",
            ["--store", f"sqlite:///{tmp_path}/no/such/dir.db", *receive],
            4,
        ),
        # Commands that make a missing store file make none when refused.
        ("receive into a missing store file, blank", [*missing, *receive, "--by="], 3),
        (
            "receive into a missing store file, future",
            [*missing, *receive, "--at", "2099-01-01T00:00:00Z"],
            3,
        ),
        (
            "import of a log that is not there into a missing store file",
            [*missing, "import", f"{tmp_path}/no-log.csv", "--map", mapping],
            2,
        ),
        (
            "import of a log that is not UTF-8 into a missing store file",
            [*missing, "import", str(latin1), "--map", mapping],
            2,
        ),
        *(
            (f"{argv[0]} of a missing store file", [*missing, *argv], 2)
            for argv in (
                ["show", complaint],
                ["report", "sla"],
                ["project"],
                ["verify"],
                ["add-note", complaint, "--by", "ana", "--text", "n"],
            )
        ),
    ]


def test_each_malformed_command_is_one_line_with_its_code_and_records_nothing(
    cli: Cli, tmp_path: Path
) -> None:
    complaint = cli.receive("--at", iso(0))
    cli.ok("acknowledge", complaint, "--by", "ana", "--paraphrase", "P", "--at", iso(1))
    before = cli.events()
    for what, argv, code in malformed(complaint, tmp_path):
        store = None
        if argv[0] == "--store":
            store, argv = argv[1], argv[2:]
        result = cli(*argv, store=store)
        assert result.code == code, (what, result)
        assert result.err.startswith("amends: "), (what, result.err)
        assert result.err.count("\n") == 1, (what, result.err)
        assert "Traceback" not in result.err + result.out, what
        assert cli.events() == before, what
        assert not (tmp_path / "missing.db").exists(), what


def test_arguments_echoed_in_an_error_cannot_break_the_line_or_the_screen(
    cli: Cli,
) -> None:
    for hostile in ("bell\x07", "\x1b[2J", "a\nb", "\u202eevil", "\ud800", "z" * 5000):
        result = cli(hostile)
        assert result.code == 2
        assert result.err.startswith("amends: usage: No such command")
        assert result.err.count("\n") == 1
        printed = result.err.rstrip("\n")
        assert printed.isprintable(), printed
        assert len(printed) <= len("amends: ") + MAX_MESSAGE
    assert "bell\\x07" in cli("bell\x07").err


def test_refusals_name_what_is_wrong(cli: Cli) -> None:
    complaint = cli.receive()
    note = ("add-note", complaint, "--by", "ana", "--text")
    checks = [
        (("acknowledge", complaint, "--by", "ana"), "Missing option '--paraphrase'"),
        ((*note, "n", "--at", "2026-03-01T09:00"), "'--at': '2026-03-01T09:00' has no"),
        (
            (*note, "bell\x07"),
            "text: must not contain control characters (found U+0007)",
        ),
        ((*note, "n", "--by", ""), "by: must not be blank"),
        (
            (
                "resolve",
                complaint,
                "--by",
                "a",
                "--resolution",
                "R",
                "--explanation",
                "E",
            ),
            "is RECEIVED: resolve is not allowed there",
        ),
        (
            ("acknowledge", MISSING, "--by", "a", "--paraphrase", "P"),
            f"complaint {MISSING} not found",
        ),
    ]
    for argv, expected in checks:
        assert expected in cli(*argv).err, argv


FIXTURES = Path(__file__).parent / "fixtures" / "import"
IMPORT_FIXTURE = (
    "import",
    str(FIXTURES / "helpdesk.csv"),
    "--map",
    str(FIXTURES / "mapping.toml"),
)


def test_import_takes_the_conformant_cases_whole_and_accounts_for_every_row(
    cli: Cli,
) -> None:
    log, mapping = FIXTURES / "helpdesk.csv", FIXTURES / "mapping.toml"
    with log.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))[1:]
    cli.clock.now = NOW + timedelta(days=400)  # the log's times are in the past
    args = ["import", str(log), "--map", str(mapping), "--format", "json"]

    dry = cli(*args, "--dry-run")
    assert dry.code == 3  # some cases break the lifecycle
    assert cli.events() == 0
    planned = json.loads(dry.out)

    done = cli(*args)
    assert done.code == 3, done
    summary = json.loads(done.out)
    assert summary["rows"] == len(rows) == sum(summary["rows_by_status"].values())
    imported = {case["case"] for case in summary["imported"]}
    rejected = {case["case"] for case in summary["rejected"]}
    assert imported
    assert rejected
    assert not imported & rejected
    assert imported == {case["case"] for case in planned["imported"]}
    assert cli.events() == summary["events"]
    with ComplaintDesk(cli.store) as desk:
        for case in imported | rejected:
            try:
                desk.get(uuid5(EXTERNAL_REF_NAMESPACE, case))
                stored = True
            except ComplaintNotFound:
                stored = False
            assert stored == (case in imported), case
        assert desk.verify().ok

    again = json.loads(cli(*args).out)
    assert again["imported"] == []
    assert again["events"] == 0
    assert cli.events() == summary["events"]


def test_a_dry_run_import_into_a_missing_store_file_plans_as_if_empty_and_makes_none(
    cli: Cli, tmp_path: Path
) -> None:
    """A dry run writes nothing, so it must not leave an empty store file
    behind either; it plans what an import into the new store would do."""
    cli.clock.now = NOW + timedelta(days=400)  # the log's times are in the past
    args = (*IMPORT_FIXTURE, "--format", "json")
    missing = tmp_path / "new.db"
    planned = cli(*args, "--dry-run", store=f"sqlite:///{missing}")
    assert not missing.exists()
    ComplaintDesk(cli.store).close()  # an existing, empty store file
    empty = cli(*args, "--dry-run")
    assert cli.events() == 0
    assert planned.code == empty.code == 3  # some cases break the lifecycle

    def plan(run: Run) -> dict[str, Any]:
        timings = {"elapsed_seconds", "events_per_second"}
        return {k: v for k, v in json.loads(run.out).items() if k not in timings}

    assert plan(planned) == plan(empty)
    assert plan(planned)["imported"]


def test_an_import_whose_worker_dies_fails_in_one_line_with_code_4(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a refusal (3): nothing was wrong with the log, and running the
    import again finishes it."""
    monkeypatch.setattr(importer, "PARALLEL_FROM_ROWS", 0)
    monkeypatch.setattr(importer, "fork_workers", lambda limit: 2)
    judges_die(monkeypatch)
    cli.clock.now = NOW + timedelta(days=400)  # the log's times are in the past
    args = IMPORT_FIXTURE
    result = outcome_within(60, lambda: cli(*args))
    assert result.code == 4, result
    assert len(result.err.strip().splitlines()) == 1
    assert "ended abruptly" in result.err
    assert cli.events() == 0


def test_import_with_a_broken_mapping_is_a_usage_error(
    cli: Cli, tmp_path: Path
) -> None:
    mapping = tmp_path / "mapping.toml"
    mapping.write_text('[columns]\ncase = "id"\n', encoding="utf-8")
    result = cli("import", str(FIXTURES / "helpdesk.csv"), "--map", str(mapping))
    assert result.code == 2
    assert len(result.err.strip().splitlines()) == 1
    assert "columns" in result.err
    assert cli.events() == 0


def test_views_of_a_later_release_are_refused_in_one_line(
    cli: Cli, tmp_path: Path
) -> None:
    """A process of an earlier release meets views a later one wrote (a
    rolling deploy): it says which layouts, and exits 2 without rebuilding
    them."""
    cli.receive()
    cli.ok("report", "backlog")
    later = layout_beside(+1)
    relabel_views(tmp_path / "amends.db", later)
    for command in (["report", "backlog"], ["project"]):
        result = cli(*command)
        assert result.code == 2, result
        assert result.err.count("\n") == 1, result
        assert f"later release of amends (layout {later}; this one" in result.err
    with sqlite3.connect(tmp_path / "amends.db") as db:
        (label,) = db.execute("SELECT policies FROM amends_view_tracking").fetchone()
    assert label.startswith(f"{later} ")
    # After a rollback, an explicit rebuild makes them this release's.
    cli.ok("project", "--rebuild")
    assert "open" in cli.ok("report", "backlog")
