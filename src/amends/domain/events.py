"""What happened to a complaint, as plain immutable data.

Each event type declares its own stable `topic`; the store records that string,
never the Python module path, so classes can move without breaking stored
history. `class_version` and `upcast` let a later schema read older rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, StrictBool

from amends.domain.digest import stored_digest
from amends.domain.stages import Severity
from amends.domain.values import (
    Currency,
    Instant,
    Label,
    Money,
    Name,
    NameList,
    Text,
    TextList,
)

EVENT_TYPES: dict[str, type[ComplaintEvent]] = {}
"""Every concrete event type by its stored topic."""


class ComplaintEvent(BaseModel):
    """Common envelope: which complaint, its version after this event, when, who."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    topic: ClassVar[str]
    class_version: ClassVar[int] = 1

    originator_id: UUID
    originator_version: int = Field(ge=1)
    timestamp: Instant
    by: Name
    previous_digest: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    """SHA-256 of the complaint's previous event; None only for version 1."""

    _stored_digest: str | None = PrivateAttr(default=None)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        topic = cls.__dict__.get("topic")
        if topic is None:
            return
        if topic in EVENT_TYPES:
            raise TypeError(f"event topic {topic!r} is declared twice")
        EVENT_TYPES[topic] = cls

    @classmethod
    def upcast(cls, state: dict[str, Any], from_version: int) -> dict[str, Any]:
        """Bring a stored payload of an older `class_version` up to this one.

        Each step is a static method `upcast_vN_vM(state) -> state` on the
        event class, applied in order, so one step is written per schema change.
        """
        if not isinstance(from_version, int) or from_version > cls.class_version:
            raise ValueError(
                f"{cls.topic} version {from_version!r} is newer than this code "
                f"knows ({cls.class_version})"
            )
        for version in range(from_version, cls.class_version):
            step = getattr(cls, f"upcast_v{version}_v{version + 1}", None)
            if step is None:
                raise ValueError(
                    f"{cls.topic} has no upcaster from version {version} "
                    f"to {version + 1}"
                )
            state = step(state)
        return state

    @property
    def name(self) -> str:
        return type(self).__name__

    @property
    def ends_wait(self) -> bool:
        """Whether this event says the customer's answer ended a wait on
        them (`Transition.waiting_then`'s `answered`)."""
        return False

    def payload(self) -> dict[str, Any]:
        """The stored JSON body: every field but the id and version columns."""
        payload = self.model_dump(
            mode="json", exclude={"originator_id", "originator_version"}
        )
        if self.class_version > 1:
            payload["class_version"] = self.class_version
        return payload

    @property
    def digest(self) -> str:
        """SHA-256 of this event as stored (see `amends.domain.digest`)."""
        if self._stored_digest is not None:
            return self._stored_digest
        payload = self.payload()
        payload.pop("class_version", None)
        return stored_digest(
            self.topic,
            self.class_version,
            self.originator_id,
            self.originator_version,
            payload,
        )

    def remember_stored_digest(self, digest: str) -> None:
        """Keep the digest of the stored form this event was upcast from."""
        self._stored_digest = digest

    def __eq__(self, other: object) -> bool:
        # Equal events have equal fields; where they were read from is no part.
        return type(self) is type(other) and self.__dict__ == other.__dict__

    def __hash__(self) -> int:
        return hash((type(self), self.originator_id, self.originator_version))


class Received(ComplaintEvent):
    """Version 2 added `preferred_contact` (version 1 rows read it as `channel`)."""

    topic = "amends.complaint.Received"
    class_version = 2

    customer: Name
    summary: Text
    channel: Label
    category: Label
    severity: Severity
    expectation: Text
    external_ref: Label | None = None
    preferred_contact: Label

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> dict[str, Any]:
        # Until told otherwise, answer on the channel the complaint came in by.
        return {**state, "preferred_contact": state.get("channel")}


class Acknowledged(ComplaintEvent):
    topic = "amends.complaint.Acknowledged"

    paraphrase: Text


class Apologized(ComplaintEvent):
    topic = "amends.complaint.Apologized"

    apology: Text


class PlanCommitted(ComplaintEvent):
    topic = "amends.complaint.PlanCommitted"

    steps: TextList
    due: Instant


class UpdatePosted(ComplaintEvent):
    topic = "amends.complaint.UpdatePosted"

    note: Text
    revised_due: Instant | None = None
    revision_reason: Text | None = None


class Resolved(ComplaintEvent):
    topic = "amends.complaint.Resolved"

    resolution: Text
    explanation: Text


class _SatisfactionAnswer(ComplaintEvent):
    """The customer's answer on their satisfaction (no topic of its own).
    Version 2 of both answers added `ended_wait` (version 1 rows read it as
    False)."""

    class_version = 2

    ended_wait: StrictBool = False
    """Recorded while the team waited on the customer: their answer is their
    reply, and ends the wait (the SLA clock runs again). Left open, a
    complaint reopened by a "no" kept its clock stopped and its update
    deadline never fell due. Version 1 answers left the wait open until a
    `CustomerReplied`, and read so still."""

    @property
    def ends_wait(self) -> bool:
        return self.ended_wait

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> dict[str, Any]:
        return {**state, "ended_wait": False}


class SatisfactionConfirmed(_SatisfactionAnswer):
    """The customer is satisfied with the resolution. Version 2 added
    `ended_wait` (version 1 rows read it as False)."""

    topic = "amends.complaint.SatisfactionConfirmed"

    comment: Text | None = None


class SatisfactionDeclined(_SatisfactionAnswer):
    """The customer is not satisfied: the case reopens; the old resolution
    stays. Version 2 added `ended_wait` (version 1 rows read it as False)."""

    topic = "amends.complaint.SatisfactionDeclined"

    reason: Text


def ended_a_wait(payload: Mapping[str, Any]) -> bool:
    """Whether a stored answer's payload says it ended a wait, read as the
    desk reads it: a version 1 answer never did (its upcaster says so
    whatever the row holds), and only a JSON true counts."""
    version = payload.get("class_version", 1)
    return (
        isinstance(version, int) and version >= 2 and payload.get("ended_wait") is True
    )


class PreventionLogged(ComplaintEvent):
    topic = "amends.complaint.PreventionLogged"

    root_cause: Text
    preventive_action: Text
    informed: NameList


class OwnershipTransferred(ComplaintEvent):
    topic = "amends.complaint.OwnershipTransferred"

    from_owner: Name
    to_owner: Name
    reason: Text
    customer_told: bool


class CustomerAwaited(ComplaintEvent):
    topic = "amends.complaint.CustomerAwaited"

    reason: Text


class CustomerReplied(ComplaintEvent):
    topic = "amends.complaint.CustomerReplied"

    note: Text | None = None


class NoteAdded(ComplaintEvent):
    topic = "amends.complaint.NoteAdded"

    text: Text


class GestureOffered(ComplaintEvent):
    topic = "amends.complaint.GestureOffered"

    description: Text
    value: Money | None = None
    currency: Currency | None = None
