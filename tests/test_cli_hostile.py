"""Hostile input to the command line (issue 7, item 4).

Hypothesis sends arbitrary argv: real and made-up subcommands, options of the
wrong command, values of the wrong type, blank, huge and control-character
strings, naive and far-future times, unicode edge cases. The command line must
never raise or print a traceback, must exit 0, 2, 3 or 4, and when it refuses
(non-zero) it must say so in one line on stderr and record nothing.
"""

from __future__ import annotations

import contextlib
import io
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amends import ComplaintDesk, Stage
from amends.cli import ReportName, app, main

from conftest import NOW, FixedClock
from helpers import ODD_TEXTS, RECEIVE, walk_to


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A SQLite store with complaints at the start, the middle and the end."""
    folder = tmp_path_factory.mktemp("hostile")
    path = folder / "amends.db"
    with ComplaintDesk(
        f"sqlite:///{path}", clock=FixedClock(NOW - timedelta(days=5))
    ) as desk:
        ids = [
            str(walk_to(desk, stage))
            for stage in (Stage.RECEIVED, Stage.UPDATING, Stage.PREVENTION_LOGGED)
        ]
    return path, ids


def _group() -> Any:
    from typer.main import get_command

    return get_command(app)


SKIPPED_COMMANDS = {"demo", "walkthrough", "docs"}
"""They run long or write outside the store; tests/test_cli.py covers them."""
SKIPPED_OPTIONS = {"--follow", "--out"}
"""--follow never returns; --out writes wherever it is told."""


def _commands() -> dict[str, Any]:
    return {
        name: command
        for name, command in _group().commands.items()
        if name not in SKIPPED_COMMANDS
    }


def _options() -> list[str]:
    """Every option any subcommand has, for sending to the wrong one."""
    found = {"--store", "--sla", "--help"}
    for command in _commands().values():
        for parameter in command.params:
            found.update(parameter.opts)
            found.update(parameter.secondary_opts)
    return sorted(found - SKIPPED_OPTIONS)


ODD_TEXT = st.sampled_from(
    [
        *ODD_TEXTS,
        "\udcff",
        "[bold]markup[/bold]",  # rich markup must print as text
        "--",
        "-",
    ]
)
TIMES = st.sampled_from(
    [
        "2026-03-01T09:00:00",  # naive
        "2026-03-01",
        "9999-12-31T23:59:59+00:00",
        "9999-12-31T23:59:59-14:00",
        "0001-01-01T00:00:00+14:00",
        "2099-01-01T00:00:00Z",
        "2026-02-28T10:00:00+01:00",
        "2026-13-45T99:99Z",
        "yesterday",
    ]
)
NUMBERS = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.sampled_from(["nan", "inf", "-0", "1e309", "9.999", "0.001"]),
)
ANY_TEXT = st.text(max_size=40)


GOOD = {
    "by": ["ana", "ben"],
    "to": ["chidi"],
    "customer": ["Jo Smith"],
    "severity": ["high"],
    "currency": ["EUR"],
    "value": ["9.99"],
    "at_version": ["1", "2"],
    "poll": ["0.5"],
    "name": [report.value for report in ReportName],
    "output": ["text", "json", "jsonl", "table", "csv", "mermaid", "markdown"],
}
"""Values that fit, so a command gets past the parser and meets the domain."""
GOOD_TIMES = ["2026-03-02T08:00:00Z", "2026-03-01T09:00:00+01:00"]
TIME_OPTIONS = {"at", "due", "revised_due", "as_of", "since", "until"}


def argv_strategy(ids: list[str], folder: Path) -> st.SearchStrategy[list[str]]:
    """Mostly well-formed commands with some values gone bad, plus pure noise."""
    special = st.sampled_from(
        [
            *ids,
            "00000000-0000-4000-8000-000000000000",
            "not-a-uuid",
            str(folder / "amends.db"),  # a file that is no seal
        ]
    )
    hostile = st.one_of(ODD_TEXT, TIMES, NUMBERS, ANY_TEXT, special)

    def value(parameter: Any) -> st.SearchStrategy[str]:
        name = parameter.name
        if name == "complaint_id":
            good: st.SearchStrategy[str] = st.sampled_from(ids)
        elif name in TIME_OPTIONS:
            good = st.sampled_from(GOOD_TIMES)
        else:
            good = st.sampled_from(GOOD.get(name, ["Something happened"]))
        return st.one_of(*[good] * 5, hostile)

    def parameter_tokens(parameter: Any) -> st.SearchStrategy[list[str]]:
        if parameter.param_type_name == "argument":
            return value(parameter).map(lambda v: [v])
        flags = list(parameter.opts + parameter.secondary_opts)
        if set(flags) & SKIPPED_OPTIONS:
            return st.just([])
        if parameter.is_flag:
            return st.sampled_from([[], *([f] for f in flags)])
        pair = value(parameter).map(lambda v: [flags[0], v])
        if parameter.multiple:
            pairs = st.lists(pair, min_size=1, max_size=3)
            one = pairs.map(lambda ps: [t for p in ps for t in p])
        else:
            one = pair
        if parameter.required:
            return st.one_of(*[one] * 8, st.just([]))
        return st.one_of(st.just([]), st.just([]), one)

    def shaped(name: str, command: Any) -> st.SearchStrategy[list[str]]:
        parts = [parameter_tokens(p) for p in command.params]
        return st.tuples(*parts).map(
            lambda groups: [name, *(t for g in groups for t in g)]
        )

    well_formed = st.one_of(
        *(shaped(name, command) for name, command in _commands().items())
    )
    options = st.one_of(
        st.sampled_from(_options()), ANY_TEXT.map(lambda text: "--" + text)
    )
    noise = st.lists(st.one_of(options, hostile), max_size=8)
    names = st.one_of(st.sampled_from(sorted(_commands())), ANY_TEXT)
    noisy = st.builds(lambda name, rest: [name, *rest], names, noise)

    def mutated(argv: list[str], extra: list[str], cut: int) -> list[str]:
        if cut and len(argv) > 1:
            argv = argv[: 1 + cut % len(argv)] + argv[2 + cut % len(argv) :]
        return [*argv, *extra]

    commands = st.one_of(
        well_formed,
        well_formed,
        st.builds(
            mutated,
            well_formed,
            st.lists(st.one_of(options, hostile), max_size=2),
            st.integers(0, 6),
        ),
        noisy,
    )
    stores = st.sampled_from(
        [
            f"sqlite:///{folder / 'amends.db'}",
            f"sqlite:///{folder}/missing/dir/amends.db",
            "nosuch://x",
            "",
        ]
    )
    global_options = st.one_of(
        *[st.just([])] * 6,
        stores.map(lambda url: ["--store", url]),
        ODD_TEXT.map(lambda preset: ["--sla", preset]),
    )
    return st.builds(lambda head, argv: [*head, *argv], global_options, commands)


def events(path: Path) -> tuple[int, int]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        count, last = db.execute(
            "SELECT count(*), coalesce(max(rowid), 0) FROM stored_events"
        ).fetchone()
    return int(count), int(last)


def run(argv: list[str], store_path: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(
            ["--store", f"sqlite:///{store_path}", *argv], clock=FixedClock(NOW)
        )
    return code, out.getvalue(), err.getvalue()


def test_arbitrary_argv_is_answered_or_refused_in_one_line(
    store: tuple[Path, list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path, ids = store
    monkeypatch.chdir(path.parent)  # anything written by accident lands here
    codes: list[int] = []

    @settings(
        max_examples=250,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(argv_strategy(ids, path.parent))
    def check(argv: list[str]) -> None:
        before = events(path)
        code, out, err = run(argv, path)
        codes.append(code)
        assert code in (0, 2, 3, 4), (argv, code, err)
        assert "Traceback" not in out + err, argv
        if code != 0:
            assert err.startswith("amends: "), (argv, err)
            assert err.count("\n") == 1, (argv, err)
            assert err.rstrip("\n").isprintable(), (argv, err)
            assert len(err) < 1_000, argv
            assert events(path) == before, (argv, err)

    check()
    # The strategy gets past the parser too: commands run and the domain refuses.
    assert {0, 2, 3} <= set(codes), sorted(set(codes))


def test_output_cut_short_by_a_closed_pipe_exits_141_in_silence(tmp_path: Path) -> None:
    """`amends report ... | head`: when the reader leaves, click wrapped the
    streams and exited 1 with nothing said, which the exit codes call a bug
    in amends. Now 141, as a process stopped by SIGPIPE."""
    import subprocess
    import sys

    from amends.infra.demo import simulate

    url = f"sqlite:///{tmp_path / 'amends.db'}"
    with ComplaintDesk(url) as desk:
        simulate(desk, complaints=80, days=20, seed=1)
    command = ["report", "ttr", "--all", "--format", "json"]
    reader = subprocess.Popen(
        [sys.executable, "-m", "amends", "--store", url, *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert reader.stdout is not None
    assert reader.stderr is not None
    assert reader.stdout.read(10)
    reader.stdout.close()  # as `head -c 10` does
    assert reader.wait(timeout=120) == 141
    assert reader.stderr.read() == b""


@pytest.mark.parametrize("poll", ["inf", "1e300", "86401"])
def test_a_poll_past_a_day_is_refused(poll: str, tmp_path: Path) -> None:
    """`--poll inf` or a huge number crashed the follower ("a bug", exit 1)
    once it first waited."""
    store = f"sqlite:///{tmp_path / 'a.db'}"
    code = main(["--store", store, "project", "--follow", "--poll", poll])
    assert code == 2
    assert not (tmp_path / "a.db").exists()


def test_a_store_or_views_path_that_is_a_directory_is_a_setting_to_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The driver's "unable to open database file" was taken for an outage
    (exit 4, run it again)."""
    assert main(["--store", f"sqlite:///{tmp_path}", "report", "backlog"]) == 2
    url = f"sqlite:///{tmp_path / 'a.db'}"
    with ComplaintDesk(url) as desk:
        desk.receive(**RECEIVE)
    monkeypatch.setenv("AMENDS_VIEWS_URL", f"sqlite:///{tmp_path}")
    assert main(["--store", url, "report", "backlog"]) == 2
