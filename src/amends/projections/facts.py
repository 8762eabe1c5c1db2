"""What the reports need to know of one complaint, folded from its events.

`ComplaintFacts` is the projection's working state for a complaint: its
ownership spans, pauses, SLA deadlines, gestures and the first time it reached
each stage. The runner keeps it (as JSON) beside the view rows it derives, so a
batch of new events continues the fold instead of replaying the complaint.

The fold reads stored payloads (plain JSON, upcast) rather than pydantic
events: catch-up must run at tens of thousands of events per second, and the
events were validated when they were written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from pydantic_core import from_json, to_json

from amends.domain.errors import AmendsError, HistoryViolation
from amends.domain.events import EVENT_TYPES
from amends.domain.lifecycle import TERMINAL, transition_for
from amends.domain.sla import PolicySchedule, SlaPolicy
from amends.domain.stages import Severity, Stage

CONTACTS = frozenset(
    {"Acknowledged", "Apologized", "PlanCommitted", "UpdatePosted", "Resolved"}
)
"""Events that tell the customer something: each one meets the update cadence."""

ACKNOWLEDGE, UPDATE, RESOLVE, PLAN_DUE = "acknowledge", "update", "resolve", "plan_due"
TARGETS = (ACKNOWLEDGE, UPDATE, RESOLVE, PLAN_DUE)


@dataclass(slots=True)
class Span:
    """One owner's time with the complaint: [start, end), end None while current."""

    owner: str
    start: datetime
    end: datetime | None
    via: str  # "intake" or "transfer"


@dataclass(slots=True)
class Deadline:
    """A promise with a due time: relative (SLA time from start) or fixed."""

    target: str
    start: datetime
    within: timedelta | None
    fixed_due: datetime | None
    met_at: datetime | None = None
    met_by: str | None = None
    """The owner when it was met, as the events had it then: a handoff at
    the same instant comes after the event that met it."""


@dataclass(slots=True)
class Gesture:
    at: datetime
    owner: str
    value: str | None
    currency: str | None


@dataclass(slots=True)
class ComplaintFacts:
    id: UUID
    version: int
    policy: str
    received_at: datetime
    received_by: str
    owner: str
    channel: str
    category: str
    severity: Severity
    stage: Stage
    last_event_at: datetime
    reached: dict[Stage, datetime] = field(default_factory=dict)
    waiting: bool = False
    spans: list[Span] = field(default_factory=list)
    pauses: list[list[datetime | None]] = field(default_factory=list)
    deadlines: list[Deadline] = field(default_factory=list)
    gestures: list[Gesture] = field(default_factory=list)
    first_resolved_at: datetime | None = None
    resolved_by: str | None = None
    last_resolved_at: datetime | None = None
    """The latest resolution: after a reopen, the one that stood."""
    resolutions: int = 0
    reopens: int = 0
    satisfied_first: bool | None = None
    satisfied_after_reopen: bool | None = None
    prevention_at: datetime | None = None
    handoffs: int = 0

    # ------------------------------------------------------------ derived

    @property
    def is_open(self) -> bool:
        return self.stage is not TERMINAL

    def pause_list(self) -> list[tuple[datetime, datetime | None]]:
        return [(start, end) for start, end in self.pauses if start is not None]

    def due(self, deadline: Deadline, policy: SlaPolicy) -> datetime | None:
        """When the deadline falls due; None while the clock stands still."""
        if deadline.fixed_due is not None:
            return deadline.fixed_due
        assert deadline.within is not None
        return policy.deadline(
            deadline.start,
            deadline.within,
            self.pause_list(),
            acknowledging=deadline.target == ACKNOWLEDGE,
        )

    def sla_elapsed(self, policy: SlaPolicy, end: datetime) -> timedelta:
        return policy.elapsed(self.received_at, end, self.pause_list())

    # ------------------------------------------------------------ storage

    def to_json(self) -> str:
        # Written out by hand: dataclasses.asdict deep-copies every value and
        # cost most of the catch-up time. Times are POSIX seconds (a float
        # holds microseconds exactly for any date amends sees, and reads back
        # to the same datetime): an aware isoformat() costs several times more.
        data = {
            "id": str(self.id),
            "version": self.version,
            "policy": self.policy,
            "received_at": self.received_at.timestamp(),
            "received_by": self.received_by,
            "owner": self.owner,
            "channel": self.channel,
            "category": self.category,
            "severity": self.severity.value,
            "stage": self.stage.value,
            "last_event_at": self.last_event_at.timestamp(),
            "reached": {k.value: v.timestamp() for k, v in self.reached.items()},
            "waiting": self.waiting,
            "spans": [
                {
                    "owner": s.owner,
                    "start": s.start.timestamp(),
                    "end": _ts(s.end),
                    "via": s.via,
                }
                for s in self.spans
            ],
            "pauses": [[_ts(a), _ts(b)] for a, b in self.pauses],
            "deadlines": [
                {
                    "target": d.target,
                    "start": d.start.timestamp(),
                    "within": d.within.total_seconds()
                    if d.within is not None
                    else None,
                    "fixed_due": _ts(d.fixed_due),
                    "met_at": _ts(d.met_at),
                    "met_by": d.met_by,
                }
                for d in self.deadlines
            ],
            "gestures": [
                {
                    "at": g.at.timestamp(),
                    "owner": g.owner,
                    "value": g.value,
                    "currency": g.currency,
                }
                for g in self.gestures
            ],
            "first_resolved_at": _ts(self.first_resolved_at),
            "resolved_by": self.resolved_by,
            "last_resolved_at": _ts(self.last_resolved_at),
            "resolutions": self.resolutions,
            "reopens": self.reopens,
            "satisfied_first": self.satisfied_first,
            "satisfied_after_reopen": self.satisfied_after_reopen,
            "prevention_at": _ts(self.prevention_at),
            "handoffs": self.handoffs,
        }
        # pydantic's serializer: compact UTF-8 JSON (what json.dumps writes
        # with tight separators and ensure_ascii off), about four times faster.
        return to_json(data).decode()

    @classmethod
    def from_json(cls, text: str | bytes) -> ComplaintFacts:
        data = from_json(text)
        return cls(
            id=UUID(data["id"]),
            version=data["version"],
            policy=data["policy"],
            received_at=_time(data["received_at"]),
            received_by=data["received_by"],
            owner=data["owner"],
            channel=data["channel"],
            category=data["category"],
            severity=Severity(data["severity"]),
            stage=_STAGES[data["stage"]],
            last_event_at=_time(data["last_event_at"]),
            reached=_reached(data),
            waiting=data["waiting"],
            spans=[
                Span(s["owner"], _time(s["start"]), _maybe_time(s["end"]), s["via"])
                for s in data["spans"]
            ],
            pauses=[[_time(a), _maybe_time(b)] for a, b in data["pauses"]],
            deadlines=[
                Deadline(
                    d["target"],
                    _time(d["start"]),
                    timedelta(seconds=d["within"]) if d["within"] is not None else None,
                    _maybe_time(d["fixed_due"]),
                    _maybe_time(d["met_at"]),
                    d["met_by"],
                )
                for d in data["deadlines"]
            ],
            gestures=[
                Gesture(_time(g["at"]), g["owner"], g["value"], g["currency"])
                for g in data["gestures"]
            ],
            first_resolved_at=_maybe_time(data["first_resolved_at"]),
            resolved_by=data["resolved_by"],
            last_resolved_at=_maybe_time(data["last_resolved_at"]),
            resolutions=data["resolutions"],
            reopens=data["reopens"],
            satisfied_first=data["satisfied_first"],
            satisfied_after_reopen=data["satisfied_after_reopen"],
            prevention_at=_maybe_time(data["prevention_at"]),
            handoffs=data["handoffs"],
        )


@dataclass(slots=True)
class StageClock:
    """What a complaint's stage times need (on the wall clock and the SLA
    clock), decoded from its stored facts without the rest.

    The time-to-resolution report lists up to fifty complaints a call, each
    from its facts JSON; building their spans, deadlines and gestures was
    most of the report's time, and the listing reads none of them.
    """

    id: UUID
    policy: str
    received_at: datetime
    owner: str
    category: str
    reached: dict[Stage, datetime]
    pauses: list[tuple[datetime, datetime | None]]

    @classmethod
    def from_json(cls, text: str | bytes) -> StageClock:
        data = from_json(text)
        return cls(
            id=UUID(data["id"]),
            policy=data["policy"],
            received_at=_time(data["received_at"]),
            owner=data["owner"],
            category=data["category"],
            reached=_reached(data),
            pauses=[
                (_time(a), _maybe_time(b)) for a, b in data["pauses"] if a is not None
            ],
        )

    def sla_elapsed(self, policy: SlaPolicy, end: datetime) -> timedelta:
        return policy.elapsed(self.received_at, end, self.pauses)


_STAGES = {stage.value: stage for stage in Stage}
"""Each stage by its stored name: a lookup here costs a tenth of calling
`Stage(name)`, and every complaint read back names up to eight stages."""


def _reached(data: dict[str, Any]) -> dict[Stage, datetime]:
    return {_STAGES[k]: _time(v) for k, v in data["reached"].items()}


def _ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _time(value: str | float) -> datetime:
    """A stored time: POSIX seconds, or ISO 8601 (as earlier releases wrote it)."""
    if isinstance(value, str):
        return datetime.fromisoformat(value).astimezone(UTC)
    return datetime.fromtimestamp(value, UTC)


def _maybe_time(value: str | float | None) -> datetime | None:
    return None if value is None else _time(value)


# ------------------------------------------------------------------- the fold


class PolicyMismatch(AmendsError):
    """The views were built under SLA policies this desk was not given."""


class Folder:
    """Folds stored event payloads into `ComplaintFacts`, per the policy schedule."""

    def __init__(self, policies: PolicySchedule) -> None:
        self.policies = policies
        self._by_key = {_key(p): p for _, p in policies.entries}

    def policy_of(self, facts: ComplaintFacts | StageClock) -> SlaPolicy:
        try:
            return self._by_key[facts.policy]
        except KeyError:
            known = ", ".join(sorted(self._by_key))
            raise PolicyMismatch(
                f"the report views measure complaint {facts.id} by SLA policy "
                f"{facts.policy}, which this desk's policies ({known}) lack: use "
                "the same sla_policies (--sla) everywhere, or rebuild the views"
            ) from None

    def apply(
        self,
        facts: ComplaintFacts | None,
        complaint_id: UUID,
        version: int,
        topic: str,
        payload: dict[str, Any],
    ) -> ComplaintFacts:
        """The facts after one stored event (payload already upcast)."""
        event_type = EVENT_TYPES[topic]
        name = event_type.__name__
        at = _time(payload["timestamp"])
        if facts is None:
            if name != "Received":
                raise HistoryViolation(
                    complaint_id, version, f"{name} before the complaint was received"
                )
            return self._received(complaint_id, at, payload)
        transition = transition_for(event_type, facts.stage, facts.waiting)
        if transition is None:
            raise HistoryViolation(
                complaint_id, version, f"{name} is not allowed in {facts.stage}"
            )
        facts.version = version
        facts.last_event_at = at
        self._close_contacts(facts, name, at)
        handler = getattr(self, f"_on_{name}", None)
        if handler is not None:
            handler(facts, at, payload)
        facts.stage = transition.target
        facts.reached.setdefault(transition.target, at)
        was_waiting = facts.waiting
        facts.waiting = transition.waiting_then(
            # The payload is upcast: a version 1 answer reads False.
            facts.waiting,
            answered=payload.get("ended_wait") is True,
        )
        if was_waiting and not facts.waiting:
            facts.pauses[-1][1] = at
        elif facts.waiting and not was_waiting:
            facts.pauses.append([at, None])
        self._open_contacts(facts, name, at)
        return facts

    def _received(
        self, complaint_id: UUID, at: datetime, payload: dict[str, Any]
    ) -> ComplaintFacts:
        policy = self.policies.in_force(at)
        by = payload["by"]
        facts = ComplaintFacts(
            id=complaint_id,
            version=1,
            policy=_key(policy),
            received_at=at,
            received_by=by,
            owner=by,
            channel=payload["channel"],
            category=payload["category"],
            severity=Severity(payload["severity"]),
            stage=Stage.RECEIVED,
            last_event_at=at,
            reached={Stage.RECEIVED: at},
            spans=[Span(by, at, None, "intake")],
        )
        targets = policy.targets_for(facts.severity)
        if targets.acknowledge_within is not None:
            facts.deadlines.append(
                Deadline(ACKNOWLEDGE, at, targets.acknowledge_within, None)
            )
        if targets.resolve_within is not None:
            facts.deadlines.append(Deadline(RESOLVE, at, targets.resolve_within, None))
        return facts

    # Deadlines met by this event, before it changes anything else.
    def _close_contacts(self, facts: ComplaintFacts, name: str, at: datetime) -> None:
        met: set[str] = set()
        if name in CONTACTS:
            met.add(UPDATE)
        if name == "Acknowledged":
            met.add(ACKNOWLEDGE)
        if name == "Resolved":
            met |= {RESOLVE, PLAN_DUE}
        for deadline in facts.deadlines:
            if deadline.met_at is None and deadline.target in met:
                deadline.met_at, deadline.met_by = at, facts.owner

    # Deadlines this event starts, after the stage has moved.
    def _open_contacts(self, facts: ComplaintFacts, name: str, at: datetime) -> None:
        every = self.policy_of(facts).targets_for(facts.severity).update_every
        if every is None:
            return
        unresolved = facts.stage in (
            Stage.ACKNOWLEDGED,
            Stage.APOLOGIZED,
            Stage.PLAN_COMMITTED,
            Stage.UPDATING,
        )
        if (name in CONTACTS and unresolved) or name == "SatisfactionDeclined":
            facts.deadlines.append(Deadline(UPDATE, at, every, None))

    def _on_PlanCommitted(  # noqa: N802 - named after the event
        self, facts: ComplaintFacts, at: datetime, payload: dict[str, Any]
    ) -> None:
        if self.policy_of(facts).keep_plan_due:
            facts.deadlines.append(Deadline(PLAN_DUE, at, None, _time(payload["due"])))

    def _on_UpdatePosted(  # noqa: N802
        self, facts: ComplaintFacts, at: datetime, payload: dict[str, Any]
    ) -> None:
        revised = payload.get("revised_due")
        if revised is None or not self.policy_of(facts).keep_plan_due:
            return
        for deadline in facts.deadlines:
            if deadline.target == PLAN_DUE and deadline.met_at is None:
                assert deadline.fixed_due is not None
                if deadline.fixed_due < at:
                    # Restated after it lapsed: a breach, which the new date
                    # closes.
                    deadline.met_at, deadline.met_by = at, facts.owner
                else:
                    # Restated in time: the new date replaces it. Counting it
                    # as kept would let a plan postponed every time it fell
                    # due keep all its promises but the last.
                    facts.deadlines.remove(deadline)
                break  # each date closes the one before: one is unmet at most
        facts.deadlines.append(Deadline(PLAN_DUE, at, None, _time(revised)))

    def _on_Resolved(  # noqa: N802
        self, facts: ComplaintFacts, at: datetime, payload: dict[str, Any]
    ) -> None:
        facts.resolutions += 1
        facts.last_resolved_at = at
        if facts.first_resolved_at is None:
            facts.first_resolved_at = at
            facts.resolved_by = facts.owner

    def _on_SatisfactionConfirmed(  # noqa: N802
        self, facts: ComplaintFacts, at: datetime, payload: dict[str, Any]
    ) -> None:
        self._answer(facts, True)

    def _on_SatisfactionDeclined(  # noqa: N802
        self, facts: ComplaintFacts, at: datetime, payload: dict[str, Any]
    ) -> None:
        self._answer(facts, False)
        facts.reopens += 1

    def _answer(self, facts: ComplaintFacts, satisfied: bool) -> None:
        if facts.resolutions == 1 and facts.satisfied_first is None:
            facts.satisfied_first = satisfied
        elif facts.resolutions > 1:
            facts.satisfied_after_reopen = satisfied

    def _on_PreventionLogged(  # noqa: N802
        self, facts: ComplaintFacts, at: datetime, payload: dict[str, Any]
    ) -> None:
        facts.prevention_at = at

    def _on_OwnershipTransferred(  # noqa: N802
        self, facts: ComplaintFacts, at: datetime, payload: dict[str, Any]
    ) -> None:
        facts.spans[-1].end = at
        facts.owner = payload["to_owner"]
        facts.spans.append(Span(facts.owner, at, None, "transfer"))
        facts.handoffs += 1

    def _on_GestureOffered(  # noqa: N802
        self, facts: ComplaintFacts, at: datetime, payload: dict[str, Any]
    ) -> None:
        facts.gestures.append(
            Gesture(at, facts.owner, payload.get("value"), payload.get("currency"))
        )


def _key(policy: SlaPolicy) -> str:
    return f"{policy.name}@{policy.version}"


def policy_key(policy: SlaPolicy) -> str:
    """How a complaint's row names the policy it is measured by."""
    return _key(policy)
