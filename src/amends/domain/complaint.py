"""The complaint aggregate as a Decider: a pure `decide` and a pure `evolve`.

`decide(command, state)` returns the events a command records, or raises a
refusal; `evolve(state, event)` returns the next state. Neither reads a clock,
a database or a global: the same inputs always give the same answer, which is
what lets an auditor replay a case and a property test explore millions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from amends.domain import commands as c
from amends.domain import events as e
from amends.domain.errors import (
    ComplaintNotFound,
    FieldProblem,
    HistoryViolation,
    InvalidCommand,
    InvalidTransition,
)
from amends.domain.lifecycle import (
    allowed_commands,
    event_type_of,
    is_terminal,
    transition_for,
)
from amends.domain.stages import Severity, Stage


class StageReached(BaseModel):
    """The first time a complaint reached a stage (reopens do not move it)."""

    model_config = ConfigDict(frozen=True)

    stage: Stage
    at: datetime


class Complaint(BaseModel):
    """A complaint as it stands after `version` events: an immutable view."""

    model_config = ConfigDict(frozen=True)

    id: UUID
    version: int
    stage: Stage
    owner: str
    received_by: str
    customer: str
    summary: str
    channel: str
    category: str
    severity: Severity
    expectation: str
    external_ref: str | None = None
    preferred_contact: str
    received_at: datetime
    last_event_at: datetime
    first_reached: tuple[StageReached, ...]
    reopen_count: int = 0
    plan_steps: tuple[str, ...] = ()
    due: datetime | None = None
    """The date promised to the customer: the plan's, or its latest revision."""
    due_revisions: int = 0
    updates_posted: int = 0
    handoffs: int = 0
    notes_added: int = 0
    gestures_offered: int = 0
    satisfied: bool | None = None
    """The customer's latest answer; None until they were asked."""
    head_digest: str
    """SHA-256 of the newest event: the next event records it."""
    waiting_since: datetime | None = None
    """Since when the team waits on the customer (SLA clock paused), if it does."""
    waits: int = 0

    def reached_at(self, stage: Stage) -> datetime | None:
        """When the complaint first reached `stage`, or None if it never did."""
        for reached in self.first_reached:
            if reached.stage is stage:
                return reached.at
        return None

    @property
    def is_closed(self) -> bool:
        return is_terminal(self.stage)

    @property
    def waiting(self) -> bool:
        return self.waiting_since is not None

    @property
    def allowed_commands(self) -> tuple[str, ...]:
        return allowed_commands(self.stage, self.waiting)


# --------------------------------------------------------------------- decide


def decide(command: c.Command, state: Complaint | None) -> tuple[e.ComplaintEvent, ...]:
    """The events `command` records against `state`, or a refusal.

    Receiving a complaint that already exists records nothing: that is what
    makes intake by external reference idempotent.
    """
    if state is None and not isinstance(command, c.Receive):
        raise ComplaintNotFound(command.complaint_id)
    if state is not None and isinstance(command, c.Receive):
        return ()
    source = state.stage if state is not None else None
    waiting = state is not None and state.waiting
    if command.name not in allowed_commands(source, waiting):
        assert state is not None  # receive is always allowed on a new complaint
        reason = ""
        if command.name in allowed_commands(source, not waiting):
            reason = (
                "it is waiting on the customer"
                if waiting
                else "nobody awaits the customer"
            )
        raise InvalidTransition(
            state.id, state.stage, command.name, state.allowed_commands, reason
        )
    problems: list[FieldProblem] = []
    if state is not None and command.at < state.last_event_at:
        problems.append(
            FieldProblem(
                "at",
                f"{command.at.isoformat()} is earlier than the complaint's last "
                f"event at {state.last_event_at.isoformat()}",
            )
        )
    problems.extend(_check(command, state))
    if problems:
        raise InvalidCommand(command.name, problems)
    envelope = {
        "originator_id": command.complaint_id,
        "originator_version": (state.version if state is not None else 0) + 1,
        "timestamp": command.at,
        "by": command.by,
        "previous_digest": state.head_digest if state is not None else None,
    }
    event_type, fields = _event_for(command, state)
    if transition_for(event_type, source, waiting) is None:
        assert state is not None
        raise InvalidTransition(
            state.id, state.stage, command.name, state.allowed_commands
        )
    return (event_type(**envelope, **fields),)


def _check(command: c.Command, state: Complaint | None) -> list[FieldProblem]:
    """Rules that need more than one field, or the state, to judge."""
    problems: list[FieldProblem] = []
    at = command.at
    if isinstance(command, c.CommitPlan) and command.due <= at:
        problems.append(FieldProblem("due", f"must be later than {at.isoformat()}"))
    elif isinstance(command, c.PostUpdate):
        if command.revised_due is not None:
            if command.revised_due <= at:
                problems.append(
                    FieldProblem("revised_due", f"must be later than {at.isoformat()}")
                )
            if command.revision_reason is None:
                problems.append(
                    FieldProblem("revision_reason", "is required with revised_due")
                )
        elif command.revision_reason is not None:
            problems.append(
                FieldProblem("revision_reason", "only goes with revised_due")
            )
    elif isinstance(command, c.ConfirmSatisfaction):
        if not command.satisfied and command.reason is None:
            problems.append(
                FieldProblem("reason", "is required when the customer is not satisfied")
            )
    elif isinstance(command, c.TransferOwnership):
        assert state is not None
        if command.to == state.owner:
            problems.append(FieldProblem("to", f"{command.to} already owns it"))
    elif isinstance(command, c.OfferGesture):
        if command.value is not None and command.currency is None:
            problems.append(FieldProblem("currency", "is required with value"))
        if command.value is None and command.currency is not None:
            problems.append(FieldProblem("currency", "only goes with value"))
    return problems


_COMMAND_ONLY = frozenset({"complaint_id", "by", "at"})


def _event_for(
    command: c.Command, state: Complaint | None
) -> tuple[type[e.ComplaintEvent], dict[str, Any]]:
    """Which event `command` records, and its payload.

    The event type comes from the transition table; only commands whose fields
    differ from their event's are spelled out here.
    """
    if isinstance(command, c.ConfirmSatisfaction):
        # Their answer is their reply: it ends a wait on them.
        ended_wait = state is not None and state.waiting
        if command.satisfied:
            return e.SatisfactionConfirmed, {
                "comment": command.reason,
                "ended_wait": ended_wait,
            }
        return e.SatisfactionDeclined, {
            "reason": command.reason,
            "ended_wait": ended_wait,
        }
    fields = command.model_dump(exclude=set(_COMMAND_ONLY))
    if isinstance(command, c.Receive) and command.preferred_contact is None:
        fields["preferred_contact"] = command.channel
    if isinstance(command, c.TransferOwnership):
        assert state is not None
        fields = {
            "from_owner": state.owner,
            "to_owner": command.to,
            "reason": command.reason,
            "customer_told": command.customer_told,
        }
    return event_type_of(type(command)), fields


# --------------------------------------------------------------------- evolve


def evolve(state: Complaint | None, event: e.ComplaintEvent) -> Complaint:
    """The complaint after `event`; refuses a history the lifecycle forbids.

    Replay checks the same table the guards use, so a store edited by hand
    cannot produce a state the engine itself could never have reached.
    """
    source = state.stage if state is not None else None
    version = (state.version if state is not None else 0) + 1
    complaint_id = event.originator_id
    if event.originator_version != version:
        raise HistoryViolation(
            complaint_id,
            event.originator_version,
            f"expected version {version}, found {event.originator_version}",
        )
    waiting = state is not None and state.waiting
    transition = transition_for(type(event), source, waiting)
    if transition is None:
        where = source if source is not None else "a complaint not yet received"
        if transition_for(type(event), source, not waiting) is not None:
            where = f"{where} while {'' if waiting else 'not '}waiting on the customer"
        raise HistoryViolation(
            complaint_id, version, f"{event.name} is not allowed in {where}"
        )
    expected_digest = state.head_digest if state is not None else None
    if event.previous_digest != expected_digest:
        raise HistoryViolation(
            complaint_id,
            version,
            "the digest chain is broken: this event records its predecessor as "
            f"{_short_digest(event.previous_digest)}, but the predecessor digests "
            f"to {_short_digest(expected_digest)} (an event was altered or removed)",
        )
    if isinstance(event, e.Received):
        return Complaint(
            id=complaint_id,
            version=version,
            stage=transition.target,
            owner=event.by,
            received_by=event.by,
            customer=event.customer,
            summary=event.summary,
            channel=event.channel,
            category=event.category,
            severity=event.severity,
            expectation=event.expectation,
            external_ref=event.external_ref,
            preferred_contact=event.preferred_contact,
            received_at=event.timestamp,
            last_event_at=event.timestamp,
            first_reached=(StageReached(stage=transition.target, at=event.timestamp),),
            head_digest=event.digest,
        )
    assert state is not None
    if event.timestamp < state.last_event_at:
        raise HistoryViolation(
            complaint_id,
            version,
            f"time goes backwards: {event.timestamp.isoformat()} is before "
            f"{state.last_event_at.isoformat()}",
        )
    changes: dict[str, Any] = {
        "version": version,
        "stage": transition.target,
        "last_event_at": event.timestamp,
        "head_digest": event.digest,
    }
    if transition.waiting_then(waiting, answered=event.ends_wait) is not waiting:
        if waiting:
            changes["waiting_since"] = None
        else:
            changes["waiting_since"] = event.timestamp
            changes["waits"] = state.waits + 1
    if state.reached_at(transition.target) is None:
        changes["first_reached"] = (
            *state.first_reached,
            StageReached(stage=transition.target, at=event.timestamp),
        )
    apply = _APPLY.get(type(event))
    if apply is not None:
        changes.update(apply(state, event))
    return state.model_copy(update=changes)


_Apply = Callable[[Complaint, Any], dict[str, Any]]


def _on_plan(state: Complaint, event: e.PlanCommitted) -> dict[str, Any]:
    return {"plan_steps": event.steps, "due": event.due}


def _on_update(state: Complaint, event: e.UpdatePosted) -> dict[str, Any]:
    changes: dict[str, Any] = {"updates_posted": state.updates_posted + 1}
    if event.revised_due is not None:
        changes["due"] = event.revised_due
        changes["due_revisions"] = state.due_revisions + 1
    return changes


def _on_declined(state: Complaint, event: e.SatisfactionDeclined) -> dict[str, Any]:
    return {"satisfied": False, "reopen_count": state.reopen_count + 1}


_APPLY: dict[type[e.ComplaintEvent], _Apply] = {
    e.PlanCommitted: _on_plan,
    e.UpdatePosted: _on_update,
    e.SatisfactionConfirmed: lambda state, event: {"satisfied": True},
    e.SatisfactionDeclined: _on_declined,
    e.OwnershipTransferred: lambda state, event: {
        "owner": event.to_owner,
        "handoffs": state.handoffs + 1,
    },
    e.NoteAdded: lambda state, event: {"notes_added": state.notes_added + 1},
    e.GestureOffered: lambda state, event: {
        "gestures_offered": state.gestures_offered + 1
    },
}
"""What each event changes beyond version, stage and time; absent means nothing."""


def _short_digest(digest: str | None) -> str:
    return "nothing" if digest is None else digest[:12] + "…"


def replay(events: Iterable[e.ComplaintEvent]) -> Complaint | None:
    """Fold a history into the complaint it describes (None for no events)."""
    state: Complaint | None = None
    for event in events:
        state = evolve(state, event)
    return state
