"""Hypothesis strategies for property tests against amends.

Everything here reads the transition table and runs candidate commands
through the pure domain (`decide`/`evolve`), so generated lifecycles are valid
by construction and follow any change to the table. Install with
`pip install amends[testing]`.

    from hypothesis import given
    from amends.testing import lifecycles

    @given(lifecycles(complete=True))
    def test_every_complete_case_is_apologized(lifecycle):
        desk = ComplaintDesk("memory://")
        complaint_id = lifecycle.run(desk)
        assert desk.get(complaint_id).reached_at(Stage.APOLOGIZED) is not None
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache, cached_property, partial
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

from hypothesis import strategies as st

from amends.domain.commands import COMMAND_TYPES, parse_command
from amends.domain.complaint import Complaint, decide, evolve
from amends.domain.lifecycle import (
    allowed_commands,
    command_names,
    is_terminal,
    transitions_from,
)
from amends.domain.stages import Severity, Stage

if TYPE_CHECKING:
    from amends.infra.desk import ComplaintDesk

PEOPLE: tuple[str, ...] = ("ana", "ben", "chidi", "dana", "eun-ji")
CATEGORIES: tuple[str, ...] = ("billing", "delivery", "quality", "service", "privacy")
CHANNELS: tuple[str, ...] = ("phone", "email", "chat", "letter", "in person")
EARLIEST = datetime(2018, 1, 1, tzinfo=UTC)
LATEST = datetime(2024, 12, 31, tzinfo=UTC)
"""Generated times lie in the past, so a desk on the real clock accepts them."""


@dataclass(frozen=True)
class Step:
    """One command with its arguments, ready to send to a `ComplaintDesk`."""

    command: str
    arguments: dict[str, Any] = field(hash=False)

    def apply(self, desk: ComplaintDesk, complaint_id: UUID | None = None) -> Any:
        """Send this step; `receive` returns the new id, the others the view."""
        method = getattr(desk, self.command)
        if self.command == "receive":
            return method(**self.arguments)
        return method(complaint_id, **self.arguments)


@dataclass(frozen=True)
class Lifecycle:
    """A complaint's valid history as steps, and the stages it walked.

    Where it ends (`waiting` on the customer or not, its `owner`, the time of
    its last step: what `invalid_steps` needs to draw a refused command) is
    read from the steps themselves, replayed through the pure domain, so a
    lifecycle cut or rebuilt with other steps says where those end."""

    steps: tuple[Step, ...]
    stages: tuple[Stage, ...]

    @property
    def final_stage(self) -> Stage:
        return self.stages[-1]

    @cached_property
    def final(self) -> Complaint:
        """The complaint after every step, as the pure domain decides it
        (under an id of its own: `run` records it under the desk's)."""
        state: Complaint | None = None
        complaint_id = uuid4()
        for step in self.steps:
            state = _advance(state, complaint_id, step.command, step.arguments)
        if state is None:
            raise ValueError("a lifecycle has at least one step, its receive")
        return state

    @property
    def waiting(self) -> bool:
        return self.final.waiting

    @property
    def owner(self) -> str:
        return self.final.owner

    @property
    def last_at(self) -> datetime:
        return self.final.last_event_at

    def run(self, desk: ComplaintDesk) -> UUID:
        """Send every step to `desk`; returns the complaint's id."""
        complaint_id: UUID = self.steps[0].apply(desk)
        for step in self.steps[1:]:
            step.apply(desk, complaint_id)
        return complaint_id


@cache  # built once per shape: drawn for every field of every step
def texts(max_size: int = 40, *, lines: bool = False) -> st.SearchStrategy[str]:
    """Non-blank text as the desk takes it and keeps it: letters, digits,
    punctuation, symbols (`<`, `€`, emoji), combining marks, spaces and format
    characters (a zero-width joiner, a right-to-left override) in any script;
    with `lines`, also tabs, line breaks (CR too) and Unicode's line and
    paragraph separators (the prose fields take them, names and labels do
    not). Without spaces at either end, which the desk trims, and composed
    (NFC), as the desk records who acts and owns and a channel or category:
    text drawn here reads back as drawn, in any field. Format characters and
    separators are what break a report's columns, a CSV export or a
    terminal, so they are drawn too."""
    return (
        st.text(
            alphabet=st.characters(
                categories=("L", "M", "N", "P", "S", "Zs", "Cf"),
                include_characters="\t\n\r\u2028\u2029" if lines else "",
            ),
            min_size=1,
            max_size=max_size,
        )
        .map(lambda text: unicodedata.normalize("NFC", text).strip())
        .filter(bool)
    )


def people() -> st.SearchStrategy[str]:
    return _PEOPLE


@cache
def gaps(max_hours: int = 72) -> st.SearchStrategy[timedelta]:
    """Time between two commands: from simultaneous to a few days."""
    return st.integers(min_value=0, max_value=max_hours * 3600).map(
        lambda s: timedelta(seconds=s)
    )


def later(at: datetime) -> st.SearchStrategy[datetime]:
    """A moment strictly after `at`, within a month, in UTC.

    Counted in UTC: added to a time in a zone with daylight saving, a
    timedelta moves its wall clock, and a minute after the second 01:30 of
    the night clocks go back would be earlier than it."""
    start = _utc(at, "later(at)")
    return _LATER_SECONDS.map(lambda s: start + timedelta(seconds=s))


def _utc(at: datetime, name: str) -> datetime:
    if at.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, not {at.isoformat()}")
    return at.astimezone(UTC)


_PEOPLE = st.sampled_from(PEOPLE)
_LATER_SECONDS = st.integers(min_value=60, max_value=30 * 86400)
_Arguments = st.SearchStrategy[dict[str, Any]]


def _receive(owner: str) -> _Arguments:
    return st.fixed_dictionaries(
        {
            "customer": texts(30),
            "summary": texts(lines=True),
            "channel": st.sampled_from(CHANNELS),
            "category": st.sampled_from(CATEGORIES),
            "severity": st.sampled_from(list(Severity)),
            "expectation": texts(lines=True),
        },
        optional={"preferred_contact": st.sampled_from(CHANNELS)},
    )


def _commit_plan(owner: str) -> _Arguments:
    return st.fixed_dictionaries(
        {
            "steps": st.lists(texts(20, lines=True), min_size=1, max_size=4),
            "due": _AFTER,
        }
    )


def _post_update(owner: str) -> _Arguments:
    return st.one_of(
        st.fixed_dictionaries({"note": texts(lines=True)}),
        st.fixed_dictionaries(
            {
                "note": texts(lines=True),
                "revised_due": _AFTER,
                "revision_reason": texts(lines=True),
            }
        ),
    )


def _confirm_satisfaction(owner: str) -> _Arguments:
    return st.one_of(
        st.fixed_dictionaries(
            {"satisfied": st.just(True)}, optional={"reason": texts(lines=True)}
        ),
        st.fixed_dictionaries(
            {"satisfied": st.just(False), "reason": texts(lines=True)}
        ),
    )


def _log_prevention(owner: str) -> _Arguments:
    return st.fixed_dictionaries(
        {
            "root_cause": texts(lines=True),
            "preventive_action": texts(lines=True),
            "informed": st.lists(people(), min_size=1, max_size=3, unique=True),
        }
    )


def _transfer_ownership(owner: str) -> _Arguments:
    return st.fixed_dictionaries(
        {
            "to": st.sampled_from([p for p in PEOPLE if p != owner]),
            "reason": texts(lines=True),
            "customer_told": st.booleans(),
        }
    )


def _offer_gesture(owner: str) -> _Arguments:
    return st.one_of(
        st.fixed_dictionaries({"description": texts(lines=True)}),
        st.fixed_dictionaries(
            {
                "description": texts(lines=True),
                "value": st.decimals(
                    min_value=Decimal("0"), max_value=Decimal("500"), places=2
                ),
                "currency": st.sampled_from(("EUR", "GBP", "USD", "AUD")),
            }
        ),
    )


def _customer_replied(owner: str) -> _Arguments:
    return st.fixed_dictionaries({}, optional={"note": texts(lines=True)})


def _text_field(name: str) -> Callable[[str], _Arguments]:
    def arguments(owner: str) -> _Arguments:
        return st.fixed_dictionaries({name: texts(lines=True)})

    return arguments


def _two_text_fields(first: str, second: str) -> Callable[[str], _Arguments]:
    def arguments(owner: str) -> _Arguments:
        return st.fixed_dictionaries(
            {first: texts(lines=True), second: texts(lines=True)}
        )

    return arguments


_ARGUMENTS: dict[str, Callable[[str], _Arguments]] = {
    "receive": _receive,
    "acknowledge": _text_field("paraphrase"),
    "apologize": _text_field("apology"),
    "commit_plan": _commit_plan,
    "post_update": _post_update,
    "resolve": _two_text_fields("resolution", "explanation"),
    "confirm_satisfaction": _confirm_satisfaction,
    "log_prevention": _log_prevention,
    "transfer_ownership": _transfer_ownership,
    "add_note": _text_field("text"),
    "await_customer": _text_field("reason"),
    "customer_replied": _customer_replied,
    "offer_gesture": _offer_gesture,
}


def arguments_for(
    command: str, *, at: datetime, owner: str = PEOPLE[0]
) -> st.SearchStrategy[dict[str, Any]]:
    """Valid arguments for `command` at `at` (besides `by` and `at` themselves).

    Valid means each field passes its own rules; whether the stage allows the
    command is the table's business, not this strategy's.
    """
    missing = set(command_names()) - set(_ARGUMENTS)
    if missing:  # a command was added to the table without a strategy
        raise LookupError(f"no argument strategy for {sorted(missing)}")
    if command not in _ARGUMENTS:
        raise LookupError(f"{command!r} is not a command of the transition table")
    return _arguments(command, owner).map(
        partial(_placed, at=_utc(at, "arguments_for(at=...)"))
    )


@cache
def _arguments(command: str, owner: str) -> _Arguments:
    """A command's arguments, times as offsets from the step's (`_After`):
    built once per command and owner. Built afresh for every step, the
    strategies cost hypothesis more to check than the domain cost to run,
    and ten lifecycles an example failed its health check for slowness."""
    return _ARGUMENTS[command](owner)


@dataclass(frozen=True, slots=True)
class _After:
    """A time `seconds` after the step's own (`_placed` makes it one)."""

    seconds: int


_AFTER = _LATER_SECONDS.map(_After)


def _placed(arguments: dict[str, Any], *, at: datetime) -> dict[str, Any]:
    return {
        name: at + timedelta(seconds=value.seconds)
        if isinstance(value, _After)
        else value
        for name, value in arguments.items()
    }


@st.composite
def lifecycles(
    draw: st.DrawFn,
    *,
    complete: bool | None = None,
    max_steps: int = 30,
    start: st.SearchStrategy[datetime] | None = None,
    forward_bias: float = 0.0,
) -> Lifecycle:
    """A valid history for one complaint, walked through the transition table.

    `complete=True` always ends in the terminal stage; `False` never does;
    `None` lets hypothesis choose. Side commands (handoffs, notes, gestures,
    waits on the customer) and reopens happen at random, at random times.
    `forward_bias` (0 to 1) is how often a step moves along the path rather
    than picking any allowed command: raise it to reach late stages, and
    reopens, within fewer steps.

    `max_steps` bounds the steps drawn at random; once they are spent, only
    moves forward along the path remain, so a complete lifecycle walks on to
    the end (eight steps at least) whatever the bound. Hypothesis shrinks
    towards short lifecycles and caps how much one example may draw, so long
    ones are rare: to reach a hundred events (the desk's default snapshot
    interval), add steps of your own with `arguments_for`.

    `start` draws the time of receipt (by default, in 2018 to 2024, UTC). It
    must draw aware datetimes, in any zone; the steps are timed in UTC from
    there.
    """
    if not 0.0 <= forward_bias <= 1.0:
        raise ValueError("forward_bias must lie between 0 and 1")
    if max_steps < 1:
        raise ValueError("max_steps must be at least 1")
    drawn = draw(start if start is not None else _RECEIVED_AT)
    at = _utc(drawn, "lifecycles(start=...)")
    complaint_id = uuid4()
    by = draw(people())
    receive = {"by": by, "at": at, **_placed(draw(_arguments("receive", by)), at=at)}
    state = _advance(None, complaint_id, "receive", receive)
    steps = [Step("receive", receive)]
    stages = [state.stage]
    budget = draw(_budget(max_steps))
    while not is_terminal(state.stage):
        finishing = len(steps) >= budget
        if finishing and not complete:
            break
        # Once the budget is spent, only moves forward along the path remain.
        forward = finishing or (
            forward_bias > 0 and draw(_PERCENT, label="forward?") < forward_bias * 100
        )
        choices = _forward_commands(state.stage) if forward else state.allowed_commands
        command = draw(_one_of(tuple(choices)))
        at = at + draw(gaps())
        # The command's cached strategy, its times placed after drawing: a
        # strategy made for each step costs hypothesis more to check than
        # the step costs to decide.
        arguments = _placed(draw(_arguments(command, state.owner)), at=at)
        if finishing and command == "confirm_satisfaction":
            arguments = {"satisfied": True}  # a reopen would walk backwards
        arguments = {"by": draw(people()), "at": at, **arguments}
        state = _advance(state, complaint_id, command, arguments)
        if complete is False and is_terminal(state.stage):
            break  # an incomplete lifecycle stops one short of the end
        steps.append(Step(command, arguments))
        stages.append(state.stage)
    return Lifecycle(tuple(steps), tuple(stages))


_PERCENT = st.integers(0, 99)
_RECEIVED_AT = st.datetimes(
    min_value=EARLIEST.replace(tzinfo=None),
    max_value=LATEST.replace(tzinfo=None),
    timezones=st.just(UTC),
)


@cache
def _budget(max_steps: int) -> st.SearchStrategy[int]:
    return st.integers(min_value=1, max_value=max_steps)


@cache
def _one_of(choices: tuple[str, ...]) -> st.SearchStrategy[str]:
    return st.sampled_from(choices)


def _forward_commands(stage: Stage) -> tuple[str, ...]:
    """Commands that can move `stage` to a later stage of the lifecycle."""
    order = list(Stage)
    return tuple(
        dict.fromkeys(
            t.command_name
            for t in transitions_from(stage)
            if order.index(t.target) > order.index(stage)
        )
    )


def _advance(
    state: Complaint | None, complaint_id: UUID, command: str, arguments: dict[str, Any]
) -> Complaint:
    parsed = parse_command(
        COMMAND_TYPES[command], complaint_id=complaint_id, **arguments
    )
    for event in decide(parsed, state):
        state = evolve(state, event)
    assert state is not None
    return state


@st.composite
def invalid_steps(
    draw: st.DrawFn, stage: Stage, *, at: datetime, owner: str, waiting: bool = False
) -> Step:
    """A command that `stage` does not allow (`waiting` on the customer or
    not: the two allow different commands), with otherwise valid arguments,
    at `at`. After a lifecycle, `invalid_steps_after` reads all three from it."""
    at = _utc(at, "invalid_steps(at=...)")
    command = draw(st.sampled_from(refused_commands(stage, waiting)))
    arguments = draw(arguments_for(command, at=at, owner=owner))
    return Step(command, {"by": draw(people()), "at": at, **arguments})


def invalid_steps_after(lifecycle: Lifecycle) -> st.SearchStrategy[Step]:
    """A command the complaint refuses once `lifecycle` has run, at the time
    of its last step (so no other rule refuses it first)."""
    return invalid_steps(
        lifecycle.final_stage,
        at=lifecycle.last_at,
        owner=lifecycle.owner,
        waiting=lifecycle.waiting,
    )


def refused_commands(stage: Stage, waiting: bool = False) -> tuple[str, ...]:
    """Commands (other than receive) that the table refuses in `stage`."""
    return tuple(
        c
        for c in command_names()
        if c != "receive" and c not in allowed_commands(stage, waiting)
    )


__all__ = [
    "CATEGORIES",
    "CHANNELS",
    "PEOPLE",
    "Lifecycle",
    "Step",
    "arguments_for",
    "gaps",
    "invalid_steps",
    "invalid_steps_after",
    "later",
    "lifecycles",
    "people",
    "refused_commands",
    "texts",
]
