"""What a person asks amends to do, validated before anything is decided.

Commands are pydantic models so a bad value is refused at the edge with the
field named; `parse_command` turns pydantic's errors into `InvalidCommand`.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, StrictBool, ValidationError

from amends.domain.errors import FieldProblem, InvalidCommand
from amends.domain.stages import Severity
from amends.domain.values import (
    CommandInstant,
    Currency,
    Grouping,
    Label,
    Money,
    Name,
    NameList,
    Owner,
    Text,
    TextList,
)

COMMAND_TYPES: dict[str, type[Command]] = {}
"""Every command type by its name (the `ComplaintDesk` method of that name)."""


class Command(BaseModel):
    """Common fields: which complaint, who acts, and when it happened."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: ClassVar[str]

    complaint_id: UUID
    by: Owner
    at: CommandInstant

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("name")
        if name is not None:
            COMMAND_TYPES[name] = cls


class Receive(Command):
    name = "receive"

    customer: Name
    summary: Text
    channel: Grouping
    category: Grouping
    severity: Severity
    expectation: Text
    external_ref: Label | None = None
    preferred_contact: Label | None = None
    """How the customer wants to hear back; by default the channel it came in by."""


class Acknowledge(Command):
    name = "acknowledge"

    paraphrase: Text


class Apologize(Command):
    name = "apologize"

    apology: Text


class CommitPlan(Command):
    name = "commit_plan"

    steps: TextList
    due: CommandInstant


class PostUpdate(Command):
    name = "post_update"

    note: Text
    revised_due: CommandInstant | None = None
    revision_reason: Text | None = None


class Resolve(Command):
    name = "resolve"

    resolution: Text
    explanation: Text


class ConfirmSatisfaction(Command):
    name = "confirm_satisfaction"

    satisfied: StrictBool
    reason: Text | None = None
    """Why the customer is not satisfied (required then), or their comment."""


class LogPrevention(Command):
    name = "log_prevention"

    root_cause: Text
    preventive_action: Text
    informed: NameList


class TransferOwnership(Command):
    name = "transfer_ownership"

    to: Owner
    reason: Text
    customer_told: StrictBool


class AwaitCustomer(Command):
    """The team waits on the customer: the SLA clock pauses, on a policy that
    pauses (the wall clock never does)."""

    name = "await_customer"

    reason: Text


class CustomerReplied(Command):
    """The customer answered: a paused SLA clock runs again."""

    name = "customer_replied"

    note: Text | None = None


class AddNote(Command):
    name = "add_note"

    text: Text


class OfferGesture(Command):
    name = "offer_gesture"

    description: Text
    value: Money | None = None
    currency: Currency | None = None


TCommand = TypeVar("TCommand", bound=Command)


def parse_command(command_type: type[TCommand], **arguments: Any) -> TCommand:
    """Validate arguments into a command, or refuse naming every bad field."""
    try:
        return command_type.model_validate(arguments)
    except ValidationError as exc:
        raise InvalidCommand(
            command_type.name, field_problems(exc, command_type.name)
        ) from None


def field_problems(exc: ValidationError, command: str) -> list[FieldProblem]:
    """Each pydantic error as a field and its problem, in words. pydantic
    counts a list's items after validating them, so a list whose items were
    refused may come out too short; it is said to be only if the caller's
    list was (the item errors say the rest)."""
    return [
        field_problem(error, command)
        for error in exc.errors()
        if not (error["type"] == "too_short" and _given_enough(error))
    ]


def _given_enough(error: Any) -> bool:
    given = error.get("input")
    least = (error.get("ctx") or {}).get("min_length")
    return (
        isinstance(given, (list, tuple)) and least is not None and len(given) >= least
    )


def field_problem(error: Any, command: str) -> FieldProblem:
    """One pydantic error as the field it names and what is wrong, in words."""
    field = ".".join(str(part) for part in error["loc"]) or "arguments"
    kind = error["type"]
    context = error.get("ctx") or {}
    if kind == "missing":
        problem = "is required"
    elif kind == "extra_forbidden":
        problem = f"is not an argument of {command}"
    elif kind == "string_too_short" and context.get("min_length") == 1:
        problem = "must not be blank"
    elif kind == "string_too_long":
        problem = f"is longer than {context.get('max_length')} characters"
    elif kind == "timezone_aware":
        problem = "must be timezone-aware (a naive datetime has no zone)"
    elif kind == "too_short" and context.get("min_length") == 1:
        problem = "needs at least one item"
    elif kind == "too_long":
        # pydantic says "Tuple should have at most 50 items after validation":
        # a type the caller never wrote, and a step they did not see. (It
        # knows no length for an iterator, which it stopped reading.)
        given, most = context.get("actual_length"), context.get("max_length")
        problem = (
            f"has more than the {most} items allowed"
            if given is None
            else f"has {given} items, more than the {most} allowed"
        )
    else:
        problem = str(error["msg"]).removeprefix("Value error, ")
    return FieldProblem(field, problem)
