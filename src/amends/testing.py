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

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
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
    """A complaint's valid history as steps, and the stages it walked."""

    steps: tuple[Step, ...]
    stages: tuple[Stage, ...]

    @property
    def final_stage(self) -> Stage:
        return self.stages[-1]

    def run(self, desk: ComplaintDesk) -> UUID:
        """Send every step to `desk`; returns the complaint's id."""
        complaint_id: UUID = self.steps[0].apply(desk)
        for step in self.steps[1:]:
            step.apply(desk, complaint_id)
        return complaint_id


def texts(max_size: int = 40) -> st.SearchStrategy[str]:
    """Printable, non-blank prose, including non-ASCII letters."""
    return st.text(
        alphabet=st.characters(categories=("L", "N", "P", "Zs")),
        min_size=1,
        max_size=max_size,
    ).filter(lambda s: s.strip() != "")


def people() -> st.SearchStrategy[str]:
    return st.sampled_from(PEOPLE)


def gaps(max_hours: int = 72) -> st.SearchStrategy[timedelta]:
    """Time between two commands: from simultaneous to a few days."""
    return st.integers(min_value=0, max_value=max_hours * 3600).map(
        lambda s: timedelta(seconds=s)
    )


def later(at: datetime) -> st.SearchStrategy[datetime]:
    """A moment strictly after `at`, within a month."""
    return st.integers(min_value=60, max_value=30 * 86400).map(
        lambda s: at + timedelta(seconds=s)
    )


def arguments_for(
    command: str, *, at: datetime, owner: str = PEOPLE[0]
) -> st.SearchStrategy[dict[str, Any]]:
    """Valid arguments for `command` at `at` (besides `by` and `at` themselves).

    Valid means each field passes its own rules; whether the stage allows the
    command is the table's business, not this strategy's.
    """
    others = [p for p in PEOPLE if p != owner]
    builders: dict[str, st.SearchStrategy[dict[str, Any]]] = {
        "receive": st.fixed_dictionaries(
            {
                "customer": texts(30),
                "summary": texts(),
                "channel": st.sampled_from(CHANNELS),
                "category": st.sampled_from(CATEGORIES),
                "severity": st.sampled_from(list(Severity)),
                "expectation": texts(),
            }
        ),
        "acknowledge": st.fixed_dictionaries({"paraphrase": texts()}),
        "apologize": st.fixed_dictionaries({"apology": texts()}),
        "commit_plan": st.fixed_dictionaries(
            {"steps": st.lists(texts(20), min_size=1, max_size=4), "due": later(at)}
        ),
        "post_update": st.one_of(
            st.fixed_dictionaries({"note": texts()}),
            st.fixed_dictionaries(
                {"note": texts(), "revised_due": later(at), "revision_reason": texts()}
            ),
        ),
        "resolve": st.fixed_dictionaries(
            {"resolution": texts(), "explanation": texts()}
        ),
        "confirm_satisfaction": st.one_of(
            st.fixed_dictionaries(
                {"satisfied": st.just(True)},
                optional={"reason": texts()},
            ),
            st.fixed_dictionaries({"satisfied": st.just(False), "reason": texts()}),
        ),
        "log_prevention": st.fixed_dictionaries(
            {
                "root_cause": texts(),
                "preventive_action": texts(),
                "informed": st.lists(people(), min_size=1, max_size=3, unique=True),
            }
        ),
        "transfer_ownership": st.fixed_dictionaries(
            {
                "to": st.sampled_from(others),
                "reason": texts(),
                "customer_told": st.booleans(),
            }
        ),
        "add_note": st.fixed_dictionaries({"text": texts()}),
        "offer_gesture": st.one_of(
            st.fixed_dictionaries({"description": texts()}),
            st.fixed_dictionaries(
                {
                    "description": texts(),
                    "value": st.decimals(
                        min_value=Decimal("0"), max_value=Decimal("500"), places=2
                    ),
                    "currency": st.sampled_from(("EUR", "GBP", "USD", "AUD")),
                }
            ),
        ),
    }
    missing = set(command_names()) - set(builders)
    if missing:  # a command was added to the table without a strategy
        raise LookupError(f"no argument strategy for {sorted(missing)}")
    if command not in builders:
        raise LookupError(f"{command!r} is not a command of the transition table")
    return builders[command]


@st.composite
def lifecycles(
    draw: st.DrawFn,
    *,
    complete: bool | None = None,
    max_steps: int = 30,
    start: st.SearchStrategy[datetime] | None = None,
) -> Lifecycle:
    """A valid history for one complaint, walked through the transition table.

    `complete=True` always ends in the terminal stage; `False` never does;
    `None` lets hypothesis choose. Side commands (handoffs, notes, gestures)
    and reopens happen at random, at random times.
    """
    at = draw(
        start
        if start is not None
        else st.datetimes(
            min_value=EARLIEST.replace(tzinfo=None),
            max_value=LATEST.replace(tzinfo=None),
            timezones=st.just(UTC),
        )
    )
    complaint_id = uuid4()
    by = draw(people())
    receive = {"by": by, "at": at, **draw(arguments_for("receive", at=at))}
    state = _advance(None, complaint_id, "receive", receive)
    steps = [Step("receive", receive)]
    budget = draw(st.integers(min_value=1, max_value=max_steps))
    while not is_terminal(state.stage):
        finishing = len(steps) >= budget
        if finishing and not complete:
            break
        # Once the budget is spent, only moves forward along the path remain.
        choices = (
            _forward_commands(state.stage)
            if finishing
            else allowed_commands(state.stage)
        )
        command = draw(st.sampled_from(choices))
        at = at + draw(gaps())
        arguments = draw(arguments_for(command, at=at, owner=state.owner))
        if finishing and command == "confirm_satisfaction":
            arguments = {"satisfied": True}  # a reopen would walk backwards
        arguments = {"by": draw(people()), "at": at, **arguments}
        state = _advance(state, complaint_id, command, arguments)
        steps.append(Step(command, arguments))
        if complete is False and is_terminal(state.stage):
            # Undo: an incomplete lifecycle stops one short of the end.
            steps.pop()
            break
    return Lifecycle(tuple(steps), _walk(complaint_id, steps))


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


def _walk(complaint_id: UUID, steps: Sequence[Step]) -> tuple[Stage, ...]:
    state: Complaint | None = None
    stages = []
    for step in steps:
        state = _advance(state, complaint_id, step.command, step.arguments)
        stages.append(state.stage)
    return tuple(stages)


@st.composite
def invalid_steps(draw: st.DrawFn, stage: Stage, *, at: datetime, owner: str) -> Step:
    """A command that `stage` does not allow, with otherwise valid arguments."""
    command = draw(st.sampled_from(refused_commands(stage)))
    arguments = draw(arguments_for(command, at=at, owner=owner))
    return Step(command, {"by": draw(people()), "at": at, **arguments})


def refused_commands(stage: Stage) -> tuple[str, ...]:
    """Commands (other than receive) that the table refuses in `stage`."""
    return tuple(
        c
        for c in command_names()
        if c != "receive" and c not in allowed_commands(stage)
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
    "later",
    "lifecycles",
    "people",
    "refused_commands",
    "texts",
]
