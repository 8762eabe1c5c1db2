"""ComplaintDesk on every store: memory, SQLite file, PostgreSQL."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import amends.infra.desk as desk_module
from amends import (
    AmendsError,
    ComplaintDesk,
    ComplaintNotFound,
    ConcurrencyConflict,
    ConfigurationError,
    InvalidCommand,
    InvalidTransition,
    Stage,
)
from amends.domain.complaint import Complaint
from amends.infra.importer import ImportSummary
from amends.projections.reports import Report

from conftest import NOW, FixedClock
from helpers import RECEIVE, valid_arguments, walk_to
from spec import ALL_COMMANDS, ORDER, allowed

IMPORTS = Path(__file__).parent / "fixtures" / "import"

MakeDesk = Callable[..., ComplaintDesk]


def stored(desk: ComplaintDesk, complaint_id: Any) -> list[Any]:
    return desk.events(complaint_id)


def test_a_complaint_walks_all_eight_stages(desk: ComplaintDesk) -> None:
    complaint_id = walk_to(desk, Stage.PREVENTION_LOGGED)
    complaint = desk.get(complaint_id)
    assert complaint.stage is Stage.PREVENTION_LOGGED
    assert [r.stage for r in complaint.first_reached] == list(ORDER)
    assert complaint.version == 8
    assert desk.history(complaint_id).stages == ORDER


def test_a_new_desk_on_the_same_store_reads_the_same_complaint(
    make_shared_desk: MakeDesk,
) -> None:
    first = make_shared_desk()
    complaint_id = walk_to(first, Stage.PREVENTION_LOGGED)
    before = first.get(complaint_id)
    first.close()
    again = make_shared_desk().get(complaint_id)
    assert (again.stage, again.owner, again.version) == (
        before.stage,
        before.owner,
        before.version,
    )
    assert again == before


@pytest.mark.parametrize("stage", ORDER)
def test_every_refused_command_raises_and_records_nothing(
    desk: ComplaintDesk, stage: Stage
) -> None:
    complaint_id = walk_to(desk, stage)
    owner = desk.get(complaint_id).owner
    refused = sorted(ALL_COMMANDS - allowed(stage))
    assert refused, "every stage refuses something"
    for command in refused:
        before = stored(desk, complaint_id)
        with pytest.raises(InvalidTransition) as caught:
            getattr(desk, command)(complaint_id, **valid_arguments(command, owner))
        assert caught.value.stage == stage
        assert caught.value.command == command
        assert stored(desk, complaint_id) == before


def test_refusals_record_nothing_anywhere(desk: ComplaintDesk) -> None:
    complaint_id = desk.receive(**RECEIVE)
    position = desk.last_position()
    for attempt in (
        lambda: desk.acknowledge(complaint_id, by="ana", paraphrase=" "),
        lambda: desk.resolve(complaint_id, by="ana", resolution="r", explanation="e"),
        lambda: desk.acknowledge(
            complaint_id, by="ana", paraphrase="p", at=datetime(2026, 1, 1)
        ),
        lambda: desk.receive(**{**RECEIVE, "severity": "apocalyptic"}),
        lambda: desk.acknowledge("not-an-id", by="ana", paraphrase="p"),
    ):
        with pytest.raises(AmendsError):
            attempt()
    assert desk.last_position() == position


def test_unknown_ids_are_not_found(desk: ComplaintDesk) -> None:
    unknown = "5f0c5ab1-7c35-4a5e-9d57-1d8b7c0a3c11"
    with pytest.raises(ComplaintNotFound):
        desk.get(unknown)
    with pytest.raises(ComplaintNotFound):
        desk.acknowledge(unknown, by="ana", paraphrase="p")
    with pytest.raises(ComplaintNotFound):
        desk.history(unknown)
    with pytest.raises(InvalidCommand) as caught:
        desk.get("nope")
    assert caught.value.fields == ("complaint_id",)


def test_get_as_of_a_version(desk: ComplaintDesk) -> None:
    complaint_id = walk_to(desk, Stage.RESOLVED)
    for version, stage in enumerate(ORDER[:6], start=1):
        assert desk.get(complaint_id, version=version).stage is stage
    for beyond in (7, 2**63 - 1, 2**63, 10**20):
        with pytest.raises(ComplaintNotFound, match="latest is 6"):
            desk.get(complaint_id, version=beyond)
    with pytest.raises(InvalidCommand):
        desk.get(complaint_id, version=0)


def test_intake_by_external_reference_is_idempotent(desk: ComplaintDesk) -> None:
    first = desk.receive(**RECEIVE, external_ref="CRM-123")
    position = desk.last_position()
    second = desk.receive(**RECEIVE, external_ref=" CRM-123 ")
    assert first == second
    assert desk.last_position() == position
    assert desk.get(first).external_ref == "CRM-123"
    other = desk.receive(**RECEIVE, external_ref="CRM-124")
    assert other != first


def test_at_defaults_to_the_injected_clock(
    desk: ComplaintDesk, clock: FixedClock
) -> None:
    complaint_id = desk.receive(**RECEIVE)
    assert desk.get(complaint_id).received_at == clock.now
    later = clock.advance(hours=2)
    assert (
        desk.acknowledge(complaint_id, by="ana", paraphrase="p").last_event_at == later
    )


def test_history_can_be_backfilled_but_not_written_ahead(
    desk: ComplaintDesk, clock: FixedClock
) -> None:
    backfilled = desk.receive(**RECEIVE, at=clock.now - timedelta(days=30))
    assert desk.get(backfilled).received_at == clock.now - timedelta(days=30)
    with pytest.raises(InvalidCommand) as caught:
        desk.receive(**RECEIVE, at=clock.now + timedelta(days=1))
    assert caught.value.fields == ("at",)
    assert "future" in str(caught.value)


def test_at_before_the_last_event_is_refused(
    desk: ComplaintDesk, clock: FixedClock
) -> None:
    complaint_id = desk.receive(**RECEIVE)
    with pytest.raises(InvalidCommand) as caught:
        desk.acknowledge(
            complaint_id, by="ana", paraphrase="p", at=clock.now - timedelta(seconds=1)
        )
    assert caught.value.fields == ("at",)
    assert len(stored(desk, complaint_id)) == 1


def test_commands_return_the_new_view(desk: ComplaintDesk) -> None:
    complaint_id = desk.receive(**RECEIVE)
    view = desk.transfer_ownership(
        complaint_id, by="ana", to="ben", reason="Specialist", customer_told=True
    )
    assert (view.owner, view.version) == ("ben", 2)
    assert view == desk.get(complaint_id)
    with pytest.raises(Exception, match="frozen"):
        view.owner = "eve"  # type: ignore[misc]


def test_history_records_actor_command_and_stages(desk: ComplaintDesk) -> None:
    complaint_id = walk_to(desk, Stage.APOLOGIZED)
    records = desk.history(complaint_id).records
    assert [(r.version, r.command, r.stage_before, r.stage_after) for r in records] == [
        (1, "receive", None, Stage.RECEIVED),
        (2, "acknowledge", Stage.RECEIVED, Stage.ACKNOWLEDGED),
        (3, "apologize", Stage.ACKNOWLEDGED, Stage.APOLOGIZED),
    ]
    assert records[1].payload == {"paraphrase": "You were billed twice."}
    lines = desk.history(complaint_id).to_jsonl().splitlines()
    assert len(lines) == 3
    assert '"command": "acknowledge"' in lines[1]


# ---------------------------------------------------------------- races


def race(
    monkeypatch: pytest.MonkeyPatch, rival: Callable[[], None], times: int = 1
) -> list[int]:
    """Let `rival` write after the desk decided but before it saves."""
    calls = [0]
    rival_running = [False]
    real_decide = desk_module.decide

    def decide_then_lose(command: Any, state: Any) -> Any:
        events = real_decide(command, state)
        if calls[0] < times and not rival_running[0]:
            calls[0] += 1
            rival_running[0] = True
            try:
                rival()
            finally:
                rival_running[0] = False
        return events

    monkeypatch.setattr(desk_module, "decide", decide_then_lose)
    return calls


def test_a_lost_race_is_decided_again_and_still_recorded(
    make_shared_desk: MakeDesk, monkeypatch: pytest.MonkeyPatch
) -> None:
    desk, rival = make_shared_desk(), make_shared_desk()
    complaint_id = desk.receive(**RECEIVE)
    race(monkeypatch, lambda: rival.add_note(complaint_id, by="ben", text="rival"))
    view = desk.add_note(complaint_id, by="ana", text="mine")
    assert view.version == 3
    assert [ev.text for ev in desk.events(complaint_id)[1:]] == ["rival", "mine"]  # type: ignore[attr-defined]


def test_a_lost_race_that_makes_the_command_invalid_is_refused(
    make_shared_desk: MakeDesk, monkeypatch: pytest.MonkeyPatch
) -> None:
    desk, rival = make_shared_desk(), make_shared_desk()
    complaint_id = desk.receive(**RECEIVE)
    race(
        monkeypatch,
        lambda: rival.acknowledge(complaint_id, by="ben", paraphrase="theirs"),
    )
    with pytest.raises(InvalidTransition):
        desk.acknowledge(complaint_id, by="ana", paraphrase="mine")
    assert len(desk.events(complaint_id)) == 2


@pytest.mark.parametrize("attempts", [1, 3, 6])
def test_endless_races_end_in_concurrency_conflict(
    make_shared_desk: MakeDesk, monkeypatch: pytest.MonkeyPatch, attempts: int
) -> None:
    """Each lost race but the last is followed by a random wait, up to twice
    as long as the one before may be: retried at once, writers contending for
    one complaint met again (`RACE_BACKOFF`)."""
    desk, rival = make_shared_desk(max_attempts=attempts), make_shared_desk()
    complaint_id = desk.receive(**RECEIVE)
    calls = race(
        monkeypatch,
        lambda: rival.add_note(complaint_id, by="ben", text="again"),
        times=99,
    )
    pauses: list[float] = []
    monkeypatch.setattr(desk_module, "_pause", pauses.append)
    with pytest.raises(ConcurrencyConflict) as caught:
        desk.add_note(complaint_id, by="ana", text="mine")
    assert calls[0] == attempts == caught.value.attempts
    assert [ev.text for ev in desk.events(complaint_id)[1:]] == ["again"] * attempts  # type: ignore[attr-defined]
    assert len(pauses) == attempts - 1
    for n, pause in enumerate(pauses):
        assert 0 <= pause <= desk_module.RACE_BACKOFF * 2**n


def test_a_racing_duplicate_intake_returns_the_same_id(
    make_shared_desk: MakeDesk, monkeypatch: pytest.MonkeyPatch
) -> None:
    desk, rival = make_shared_desk(), make_shared_desk()
    race(monkeypatch, lambda: rival.receive(**RECEIVE, external_ref="CRM-9"))
    complaint_id = desk.receive(**RECEIVE, external_ref="CRM-9")
    assert complaint_id == rival.receive(**RECEIVE, external_ref="CRM-9")
    assert len(desk.events(complaint_id)) == 1


def test_times_from_any_zone_are_stored_in_utc(
    desk: ComplaintDesk, clock: FixedClock
) -> None:
    from datetime import timezone

    tokyo = timezone(timedelta(hours=9))
    local = (clock.now - timedelta(hours=1)).astimezone(tokyo)
    complaint_id = desk.receive(**RECEIVE, at=local)
    received_at = desk.get(complaint_id).received_at
    assert received_at == local
    assert received_at.utcoffset() == timedelta(0)
    assert received_at.tzinfo == UTC


def test_a_cached_complaint_still_sees_what_another_desk_wrote(
    make_shared_desk: MakeDesk,
) -> None:
    desk, other = make_shared_desk(), make_shared_desk()
    complaint_id = desk.receive(**RECEIVE)
    assert desk.get(complaint_id).version == 1  # now cached
    other.add_note(complaint_id, by="ben", text="from elsewhere")
    assert desk.get(complaint_id).version == 2
    assert desk.get(complaint_id, version=1).version == 1


class Backup:
    """A backup of a shared store, restored in place under running desks.

    On SQLite, the online backup API both ways, as an operator does; on
    PostgreSQL, the complaint's rows written since the backup deleted, which
    is what restoring the database does to an append-only store."""

    def __init__(self, store_url: str, complaint_id: UUID, version: int) -> None:
        self.url, self.complaint_id, self.version = store_url, complaint_id, version
        self.sqlite = store_url.startswith("sqlite")
        if self.sqlite:
            self.copy = sqlite3.connect(":memory:")
            with closing(sqlite3.connect(self._file)) as live:
                live.backup(self.copy)

    @property
    def _file(self) -> str:
        return self.url.removeprefix("sqlite:///")

    def restore(self) -> None:
        if self.sqlite:
            with closing(sqlite3.connect(self._file)) as live:
                self.copy.backup(live)
            self.copy.close()
            return
        import psycopg

        base, _, schema = self.url.partition("?schema=")
        with psycopg.connect(base, autocommit=True) as conn:
            for table in ("amends_events", "amends_snapshots"):
                conn.execute(
                    f'DELETE FROM "{schema}".{table} WHERE originator_id = %s '
                    "AND originator_version > %s",
                    (self.complaint_id, self.version),
                )


FORWARD = dict(
    zip(
        ORDER,
        (
            "acknowledge",
            "apologize",
            "commit_plan",
            "post_update",
            "resolve",
            "confirm_satisfaction",
            "log_prevention",
        ),
        strict=False,
    )
)
"""The command that moves a complaint on from each open stage."""

Steps = st.lists(st.sampled_from(["note", "step"]), max_size=3)


def act(desk: ComplaintDesk, complaint_id: UUID, steps: list[str], who: str) -> None:
    for i, step in enumerate(steps):
        if step == "note":
            desk.add_note(complaint_id, by="ana", text=f"{who} {i}")
        else:
            stage = desk.get(complaint_id).stage
            desk.execute(
                FORWARD[stage], complaint_id, **valid_arguments(FORWARD[stage], "ana")
            )


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    before=Steps,
    after=Steps.filter(bool),
    since=Steps,
    last=st.sampled_from(["note", "step"]),
    snapshot_every=st.sampled_from([0, 2]),
)
# The embedding engineer's case: the store lost the versions after the
# cached head (4 -> 2), and apologize was decided on a stage it no longer held.
@example(
    before=["note"], after=["step", "note"], since=[], last="step", snapshot_every=0
)
# The store holds the cached head's version again, but another event: the
# desks that used it after the restore wrote their own version 3 and 4.
@example(
    before=["note"],
    after=["step", "note"],
    since=["step", "note"],
    last="note",
    snapshot_every=0,
)
def test_a_cached_desk_never_records_on_a_history_the_store_no_longer_holds(
    shared_store_url: str,
    clock: FixedClock,
    before: list[str],
    after: list[str],
    since: list[str],
    last: str,
    snapshot_every: int,
) -> None:
    """A desk keeps a complaint's state in its cache between commands; a
    backup restored in place under it takes away the events after the backup,
    and other desks may write other events at those versions since. Whatever
    happened, its next command is decided on the history the store holds, as
    a desk without a cache decides it: recorded right after the stored head
    (the chain unbroken, every later desk reads it), or refused because the
    stored stage does not allow it."""
    with (
        ComplaintDesk(
            shared_store_url, clock=clock, snapshot_every=snapshot_every
        ) as desk,
        ComplaintDesk(shared_store_url, clock=clock, cache_size=0) as uncached,
    ):
        complaint_id = desk.receive(**RECEIVE)
        act(desk, complaint_id, before, "before the backup")
        backup = Backup(shared_store_url, complaint_id, desk.get(complaint_id).version)
        act(desk, complaint_id, after, "after the backup")
        believed = desk.get(complaint_id).stage  # cached: as the desk last saw it
        backup.restore()
        act(uncached, complaint_id, since, "since the restore")
        command = "add_note" if last == "note" else FORWARD[believed]
        try:
            recorded: Complaint | None = desk.execute(
                command, complaint_id, **valid_arguments(command, "ana")
            )
        except InvalidTransition:
            recorded = None
        held = uncached.get(complaint_id)  # raises HistoryViolation on a gap
        assert uncached.verify(complaint_id).ok
    if recorded is not None:
        assert recorded == held
    else:
        assert command not in held.allowed_commands


def test_the_cache_keeps_only_the_most_recently_used() -> None:
    from amends.infra.desk import ComplaintCache

    with ComplaintDesk("memory://") as desk:
        states = [desk.get(desk.receive(**RECEIVE)) for _ in range(3)]
    cache = ComplaintCache(2)
    for state in states:
        cache.put(state)
    assert cache.get(states[0].id) is None
    assert cache.get(states[2].id) is states[2]
    cache.put(states[1].model_copy(update={"version": 0}))
    assert cache.get(states[1].id) is states[1]  # an older state never wins
    with pytest.raises(ValueError, match="cache_size"):
        ComplaintCache(-1)


def test_the_cache_discards_a_state_only_while_it_is_the_one_cached() -> None:
    """A desk that found a cached state stale discards it, so that the older,
    true state it reads next can come in (`put` keeps the newest version);
    a state another thread put meanwhile stays."""
    from amends.infra.desk import ComplaintCache

    with ComplaintDesk("memory://") as desk:
        complaint_id = desk.receive(**RECEIVE)
        first = desk.get(complaint_id)
        second = desk.add_note(complaint_id, by="ana", text="later")
    cache = ComplaintCache(2)
    cache.put(second)
    cache.discard(first)
    assert cache.get(complaint_id) is second
    cache.discard(second)
    assert cache.get(complaint_id) is None
    cache.put(first)
    assert cache.get(complaint_id) is first


def test_a_clock_behind_the_last_event_still_records_now(
    make_shared_desk: MakeDesk, clock: FixedClock
) -> None:
    """Another process's clock may run ahead; a command on the clock waits for none."""
    ahead = make_shared_desk()
    complaint_id = ahead.receive(**RECEIVE, at=clock.now + timedelta(minutes=1))
    view = make_shared_desk().add_note(complaint_id, by="ben", text="from behind")
    assert view.last_event_at == clock.now + timedelta(minutes=1)
    with pytest.raises(InvalidCommand):  # an explicit time is taken at its word
        make_shared_desk().add_note(complaint_id, by="ben", text="x", at=clock.now)


def test_a_closed_desk_says_so_for_every_use_and_closes_twice_harmlessly(
    store_url: str,
) -> None:
    """Not the library's `ConnectionPoolClosedError` with an empty message."""
    from amends import DeskClosed

    desk = ComplaintDesk(store_url, clock=FixedClock())
    complaint = desk.receive(**RECEIVE)
    reports = desk.reports
    reports.backlog()
    desk.close()
    desk.close()
    uses: list[Callable[[], object]] = [
        lambda: desk.receive(**RECEIVE),
        lambda: desk.get(complaint),
        lambda: desk.history(complaint),
        lambda: desk.verify(),
        lambda: desk.last_position(),
        lambda: reports.backlog(),
        lambda: reports.catch_up(),
        lambda: reports.follow(threading.Event()),
    ]
    for use in uses:
        with pytest.raises(DeskClosed, match="is closed: open a new ComplaintDesk"):
            use()


def test_closing_a_desk_stops_its_follower_with_desk_closed(
    shared_store_url: str,
) -> None:
    """A follower in another thread ends, and says why, instead of waiting
    on closed connections for ever."""
    from amends import DeskClosed

    desk = ComplaintDesk(shared_store_url, clock=FixedClock())
    desk.receive(**RECEIVE)
    stop = threading.Event()
    ended: list[BaseException | None] = []
    caught_up = threading.Event()

    def follow() -> None:
        try:
            desk.reports.follow(
                stop, poll=timedelta(seconds=0.05), on_batch=lambda _: caught_up.set()
            )
            ended.append(None)
        except BaseException as exc:  # what ended it is the point
            ended.append(exc)

    follower = threading.Thread(target=follow)
    follower.start()
    assert caught_up.wait(10)
    desk.close()
    follower.join(5)
    assert not follower.is_alive()
    assert stop.is_set()
    (what,) = ended
    assert isinstance(what, DeskClosed), what


@pytest.mark.parametrize("use", ["get", "command", "report", "import"])
def test_closing_waits_for_the_calls_under_way_and_refuses_new_ones(
    store_url: str, use: str
) -> None:
    """A service closes its desk at shutdown while another thread is in a
    call. The close waits for that call, which ends as if no close had
    begun; a call begun meanwhile is refused (`DeskClosed`), and only then
    are the connections closed. Before, they were closed under the call: on
    SQLite the interpreter crashed (a segmentation fault) in most runs, and
    otherwise the call failed with the library's bare
    `ConnectionPoolClosedError`. An import is held after deciding its first
    case, before it writes: before, the close did not wait for it."""
    from amends import DeskClosed
    from amends.infra.importer import import_log, load_mapping

    desk = ComplaintDesk(store_url, clock=FixedClock(), cache_size=0)
    complaint = desk.receive(**RECEIVE)
    desk.reports.catch_up()
    inside, release = threading.Event(), threading.Event()

    def held(method: Callable[..., Any]) -> Callable[..., Any]:
        def holding(*args: Any, **kwargs: Any) -> Any:
            inside.set()
            assert release.wait(10)
            return method(*args, **kwargs)

        return holding

    def first_case_decided(done: int, total: int) -> None:
        if done == 1:
            held(lambda: None)()

    calls: dict[str, Callable[[], object]] = {
        "get": lambda: desk.get(complaint),
        "command": lambda: desk.add_note(complaint, by="ana", text="late"),
        "report": lambda: desk.reports.backlog(catch_up=False),
        "import": lambda: import_log(
            desk,
            IMPORTS / "helpdesk.csv",
            load_mapping(IMPORTS / "mapping.toml"),
            workers=1,
            progress=first_case_decided,
        ),
    }
    if use == "report":
        queries = desk.reports.queries
        queries.backlog = held(queries.backlog)  # type: ignore[method-assign]
    else:
        desk._load = held(desk._load)  # type: ignore[method-assign]
    answered: list[object] = []
    caller = threading.Thread(target=lambda: answered.append(calls[use]()))
    caller.start()
    assert inside.wait(10)
    closer = threading.Thread(target=desk.close)
    closer.start()
    closer.join(0.3)
    assert closer.is_alive(), "the close did not wait for the call under way"
    with pytest.raises(DeskClosed):
        calls[use]()
    release.set()
    caller.join(10)
    closer.join(10)
    assert not closer.is_alive()
    (answer,) = answered
    if use == "report":
        assert isinstance(answer, Report)
    elif use == "import":
        assert isinstance(answer, ImportSummary)
        assert len(answer.imported) == 4
        if store_url != "memory://":
            with ComplaintDesk(store_url, clock=FixedClock()) as reopened:
                for case in answer.imported:
                    assert reopened.get(case.complaint_id).version == case.events
    else:
        assert isinstance(answer, Complaint)
        assert answer.version == (2 if use == "command" else 1)
    if use == "command" and store_url != "memory://":
        with ComplaintDesk(store_url, clock=FixedClock()) as reopened:
            assert reopened.get(complaint).version == 2


def test_threads_sharing_in_memory_views_count_each_complaint_once(
    clock: FixedClock,
) -> None:
    """One `memory://` desk used by several threads, each recording and
    asking for reports: the in-memory views are one connection, and a report
    read between a catch-up's statements broke its transaction, so that a
    batch was applied twice (more complaints received than stored, breaches
    that never happened). The views must equal a rebuild of them."""
    with ComplaintDesk("memory://", clock=clock) as desk:
        failed: list[BaseException] = []

        def work() -> None:
            try:
                for _ in range(25):
                    desk.receive(**RECEIVE)
                    desk.reports.backlog()
            except BaseException as exc:  # the thread's failure is the finding
                failed.append(exc)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not failed, failed
        followed = desk.reports.ownership()
        assert sum(row.received_first for row in followed.owners) == 100
        desk.reports.rebuild()
        assert desk.reports.ownership() == followed


@pytest.fixture(scope="module")
def hourly_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Complaints received every five hours over 35 days before `NOW`, some
    walked on, in a SQLite file whose views are caught up."""
    url = f"sqlite:///{tmp_path_factory.mktemp('zones') / 'amends.db'}"
    with ComplaintDesk(url, clock=FixedClock()) as desk:
        for n in range(35 * 24 // 5):
            at = NOW - timedelta(hours=5 * n + 1)
            complaint = desk.receive(**RECEIVE, at=at)
            if n % 3:
                desk.acknowledge(complaint, by="ana", paraphrase="P", at=at)
        desk.reports.catch_up()
    return url


@settings(max_examples=25, deadline=None)
@given(zone=st.timezones(), hours=st.integers(0, 23))
def test_reports_never_depend_on_the_zone_of_the_desk_clock(
    hourly_store: str, zone: tzinfo, hours: int
) -> None:
    """The same instant read in any zone gives the same reports: ages, days
    and weeks are cut at UTC midnight. A clock in Los Angeles in the
    evening (another date than UTC's) put complaints in the wrong age
    buckets of the unfiltered backlog."""
    instant = NOW + timedelta(hours=hours)
    local = instant.astimezone(zone)
    answers = []
    for reading in (instant, local):
        with ComplaintDesk(hourly_store, clock=FixedClock(reading)) as desk:
            reports = desk.reports
            answers.append(
                [
                    report.model_dump()
                    for window in ({}, {"since": NOW - timedelta(days=400)})
                    for report in (
                        reports.backlog(catch_up=False, **window),
                        reports.sla(catch_up=False, **window),
                        reports.ownership(catch_up=False, **window),
                    )
                ]
            )
    assert answers[0] == answers[1]
    assert answers[1][0]["generated_at"] == instant
    assert answers[1][0]["generated_at"].tzinfo is UTC


@pytest.mark.parametrize(
    "given",
    [
        [(NOW, "promise_keeping")],  # a schedule's entries, not a schedule
        {NOW: "promise_keeping"},
        ("cfpb",),
        42,
    ],
)
def test_sla_policies_of_the_wrong_type_are_named_as_such(given: object) -> None:
    with pytest.raises(ConfigurationError, match="sla_policies must be") as refused:
        ComplaintDesk("memory://", sla_policies=given)  # type: ignore[arg-type]
    assert type(given).__name__ in str(refused.value)


def test_a_naive_clock_is_named_as_the_clock_and_records_nothing() -> None:
    with ComplaintDesk("memory://", clock=lambda: datetime(2026, 3, 1, 9)) as desk:
        with pytest.raises(ConfigurationError, match="clock returned a naive"):
            desk.receive(**RECEIVE)
        with pytest.raises(ConfigurationError, match="clock returned a naive"):
            desk.receive(**RECEIVE, at=NOW)
        assert desk.last_position() == 0


@pytest.mark.parametrize("reading", [None, "2026-03-01T09:00Z", 1_772_355_600])
def test_a_clock_that_returns_no_datetime_is_named_and_records_nothing(
    reading: object,
) -> None:
    with ComplaintDesk("memory://", clock=lambda: reading) as desk:  # type: ignore[arg-type,return-value]
        with pytest.raises(
            ConfigurationError, match=r"clock returned .*not a datetime"
        ):
            desk.receive(**RECEIVE)
        assert desk.last_position() == 0


@pytest.mark.parametrize(
    "skew", [timedelta(hours=-1), timedelta(days=1, seconds=1), timedelta.max, 300]
)
def test_a_clock_skew_from_zero_to_a_day_is_all_a_desk_takes(skew: object) -> None:
    with pytest.raises(ValueError, match="clock_skew must be a timedelta from zero"):
        ComplaintDesk("memory://", clock_skew=skew)  # type: ignore[arg-type]
    with ComplaintDesk(
        "memory://", clock=FixedClock(NOW), clock_skew=timedelta(days=1)
    ) as desk:
        desk.receive(**RECEIVE, at=NOW + timedelta(days=1))


def test_get_as_of_names_what_it_was_given_instead_of_a_datetime() -> None:
    with ComplaintDesk("memory://", clock=FixedClock(NOW)) as desk:
        complaint_id = desk.receive(**RECEIVE)
        with pytest.raises(InvalidCommand) as refused:
            desk.get(complaint_id, as_of=NOW.isoformat())  # type: ignore[arg-type]
        assert refused.value.problems[0].problem == (
            "must be a timezone-aware datetime, not str"
        )
        with pytest.raises(InvalidCommand, match="a naive one has no zone"):
            desk.get(complaint_id, as_of=NOW.replace(tzinfo=None))
        # Aware, but with no UTC time: refused by name, as `at` is, not a
        # bare OverflowError.
        for edge in (
            datetime.min.replace(tzinfo=timezone(timedelta(hours=5))),
            datetime.max.replace(tzinfo=timezone(timedelta(hours=-5))),
        ):
            with pytest.raises(InvalidCommand, match="out of the representable"):
                desk.get(complaint_id, as_of=edge)


def test_reports_kept_without_their_desk_go_on_working(tmp_path: Path) -> None:
    """`reports = ComplaintDesk(url).reports`: the desk, unreferenced, must
    not be collected and close the store's connections under its reports."""
    import gc

    url = f"sqlite:///{tmp_path / 'a.db'}"
    with ComplaintDesk(url, clock=FixedClock(NOW)) as desk:
        desk.receive(**RECEIVE)
    reports = ComplaintDesk(url, clock=FixedClock(NOW)).reports
    gc.collect()
    assert reports.backlog().reached[Stage.RECEIVED] == 1
