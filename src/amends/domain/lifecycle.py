"""The transition table: the one place that knows which command fits which stage.

The aggregate's guards, the refusal messages, replay (`evolve`), the Mermaid
diagram in the docs, the hypothesis strategies and the projections all read
`TRANSITIONS`; nothing else in amends lists stages against commands.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

from amends.domain import commands as c
from amends.domain import events as e
from amends.domain.stages import Stage

TERMINAL = Stage.PREVENTION_LOGGED


@dataclass(frozen=True)
class Transition:
    """`command` in `source` records `event` and moves the complaint to `target`.

    `source` is None for the command that creates a complaint. Waiting on the
    customer (the SLA clock paused) is not a stage but a flag beside it:
    `waiting` says whether the move needs the flag set (True), clear (False)
    or either (None); `waiting_after` sets or clears it (None: leaves it).
    """

    command: type[c.Command]
    source: Stage | None
    target: Stage
    event: type[e.ComplaintEvent]
    waiting: bool | None = None
    waiting_after: bool | None = None

    def fits(self, waiting: bool) -> bool:
        return self.waiting is None or self.waiting is waiting

    def waiting_then(self, waiting: bool, *, answered: bool = False) -> bool:
        """Whether the complaint waits on the customer after this move;
        `answered`: the event says the customer's answer ended a wait (a
        satisfaction answer recorded while waiting, from that event's
        version 2: earlier ones left the wait to the customer's reply)."""
        if answered:
            return False
        return waiting if self.waiting_after is None else self.waiting_after

    @property
    def command_name(self) -> str:
        return self.command.name

    def __str__(self) -> str:
        source = self.source if self.source is not None else "(new)"
        return f"{self.command_name}: {source} -> {self.target} ({self.event.__name__})"

    @property
    def changes_stage(self) -> bool:
        return self.source is not self.target


_PATH: tuple[Transition, ...] = (
    Transition(c.Receive, None, Stage.RECEIVED, e.Received),
    Transition(c.Acknowledge, Stage.RECEIVED, Stage.ACKNOWLEDGED, e.Acknowledged),
    Transition(c.Apologize, Stage.ACKNOWLEDGED, Stage.APOLOGIZED, e.Apologized),
    Transition(c.CommitPlan, Stage.APOLOGIZED, Stage.PLAN_COMMITTED, e.PlanCommitted),
    Transition(c.PostUpdate, Stage.PLAN_COMMITTED, Stage.UPDATING, e.UpdatePosted),
    Transition(c.PostUpdate, Stage.UPDATING, Stage.UPDATING, e.UpdatePosted),
    Transition(c.Resolve, Stage.UPDATING, Stage.RESOLVED, e.Resolved),
    Transition(
        c.ConfirmSatisfaction,
        Stage.RESOLVED,
        Stage.SATISFACTION_CONFIRMED,
        e.SatisfactionConfirmed,
    ),
    Transition(
        c.ConfirmSatisfaction, Stage.RESOLVED, Stage.UPDATING, e.SatisfactionDeclined
    ),
    Transition(
        c.LogPrevention,
        Stage.SATISFACTION_CONFIRMED,
        Stage.PREVENTION_LOGGED,
        e.PreventionLogged,
        waiting_after=False,  # closing the case ends any wait
    ),
)

_IN_ANY_OPEN_STAGE: tuple[
    tuple[type[c.Command], type[e.ComplaintEvent], bool | None, bool | None], ...
] = (
    (c.TransferOwnership, e.OwnershipTransferred, None, None),
    (c.AddNote, e.NoteAdded, None, None),
    (c.OfferGesture, e.GestureOffered, None, None),
    (c.AwaitCustomer, e.CustomerAwaited, False, True),
    (c.CustomerReplied, e.CustomerReplied, True, False),
)

TRANSITIONS: tuple[Transition, ...] = _PATH + tuple(
    Transition(command, stage, stage, event, waiting, waiting_after)
    for stage in Stage
    if stage is not TERMINAL
    for command, event, waiting, waiting_after in _IN_ANY_OPEN_STAGE
)
"""Every allowed move. Edit this, and only this, to change the lifecycle."""


def transitions_from(
    source: Stage | None, waiting: bool | None = None
) -> Iterator[Transition]:
    """Moves out of `source`; with `waiting` given, only those that fit it."""
    return (
        t
        for t in TRANSITIONS
        if t.source is source and (waiting is None or t.fits(waiting))
    )


@cache
def allowed_commands(source: Stage | None, waiting: bool = False) -> tuple[str, ...]:
    """Command names allowed in `source`, in table order, without repeats."""
    return tuple(
        dict.fromkeys(t.command_name for t in transitions_from(source, waiting))
    )


def command_names() -> tuple[str, ...]:
    """Every command name the table knows, in table order."""
    return tuple(dict.fromkeys(t.command_name for t in TRANSITIONS))


@cache
def transition_for(
    event_type: type[e.ComplaintEvent], source: Stage | None, waiting: bool = False
) -> Transition | None:
    """The transition that records `event_type` in `source`, if the table has one."""
    for t in transitions_from(source, waiting):
        if t.event is event_type:
            return t
    return None


def is_terminal(stage: Stage) -> bool:
    return stage is TERMINAL


def mermaid() -> str:
    """A Mermaid state diagram drawn from the table (stage moves only).

    Commands that keep the stage are listed once in a note rather than drawn as
    a self-loop on every open stage, which would bury the path in arrows.
    """
    lines = ["stateDiagram-v2", "    direction TB"]
    for t in TRANSITIONS:
        if t.source is None:
            lines.append(f"    [*] --> {t.target}: {t.command_name}")
        elif t.changes_stage or t.command not in _stage_keeping_everywhere():
            label = t.command_name
            if t.command is c.ConfirmSatisfaction:
                label += f" ({t.event.__name__})"
            lines.append(f"    {t.source} --> {t.target}: {label}")
    lines.append(f"    {TERMINAL} --> [*]")
    keeping = ", ".join(_with_condition(cmd) for cmd in _stage_keeping_everywhere())
    lines.append(f"    note right of {Stage.RECEIVED}")
    lines.append(f"        In every stage but {TERMINAL}: {keeping}")
    lines.append("    end note")
    return "\n".join(lines) + "\n"


def _with_condition(command: type[c.Command]) -> str:
    waiting = {t.waiting for t in TRANSITIONS if t.command is command}
    if waiting == {True}:
        return f"{command.name} (while waiting on the customer)"
    if waiting == {False}:
        return f"{command.name} (when not waiting)"
    return command.name


@cache
def _stage_keeping_everywhere() -> tuple[type[c.Command], ...]:
    """Commands that every open stage allows without changing the stage."""
    open_stages = [s for s in Stage if s is not TERMINAL]
    found: list[type[c.Command]] = []
    for t in TRANSITIONS:
        if t.command in found or t.changes_stage or t.source is None:
            continue
        if all(
            any(
                u.command is t.command and not u.changes_stage
                for u in transitions_from(s)
            )
            for s in open_stages
        ):
            found.append(t.command)
    return tuple(found)


@cache
def event_type_of(command: type[c.Command]) -> type[e.ComplaintEvent]:
    """The one event type `command` records; refuses commands with several."""
    found = {t.event for t in TRANSITIONS if t.command is command}
    if len(found) != 1:
        raise LookupError(f"{command.name} records {len(found)} event types")
    return found.pop()
