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

    `source` is None for the command that creates a complaint.
    """

    command: type[c.Command]
    source: Stage | None
    target: Stage
    event: type[e.ComplaintEvent]

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
    ),
)

_IN_ANY_OPEN_STAGE: tuple[tuple[type[c.Command], type[e.ComplaintEvent]], ...] = (
    (c.TransferOwnership, e.OwnershipTransferred),
    (c.AddNote, e.NoteAdded),
    (c.OfferGesture, e.GestureOffered),
)

TRANSITIONS: tuple[Transition, ...] = _PATH + tuple(
    Transition(command, stage, stage, event)
    for stage in Stage
    if stage is not TERMINAL
    for command, event in _IN_ANY_OPEN_STAGE
)
"""Every allowed move. Edit this, and only this, to change the lifecycle."""


def transitions_from(source: Stage | None) -> Iterator[Transition]:
    return (t for t in TRANSITIONS if t.source is source)


@cache
def allowed_commands(source: Stage | None) -> tuple[str, ...]:
    """Command names allowed in `source`, in table order, without repeats."""
    return tuple(dict.fromkeys(t.command_name for t in transitions_from(source)))


def command_names() -> tuple[str, ...]:
    """Every command name the table knows, in table order."""
    return tuple(dict.fromkeys(t.command_name for t in TRANSITIONS))


def is_allowed(command_name: str, source: Stage | None) -> bool:
    return command_name in allowed_commands(source)


@cache
def transition_for(
    event_type: type[e.ComplaintEvent], source: Stage | None
) -> Transition | None:
    """The transition that records `event_type` in `source`, if the table has one."""
    for t in transitions_from(source):
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
    keeping = ", ".join(cmd.name for cmd in _stage_keeping_everywhere())
    lines.append(f"    note right of {Stage.RECEIVED}")
    lines.append(f"        In every stage but {TERMINAL}: {keeping}")
    lines.append("    end note")
    return "\n".join(lines) + "\n"


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
