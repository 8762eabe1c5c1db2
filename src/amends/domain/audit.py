"""Verifying stored histories: the digest chain, the lifecycle, time, seals.

Pure functions over stored records (id, version, topic, raw JSON payload), so
the same checks run against a live store (`ComplaintDesk.verify`) and against
an exported case bundle with no database at all (`amends.audit`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError

from amends.domain.digest import canonical_json, payload_digest, stored_digest
from amends.domain.events import EVENT_TYPES, ComplaintEvent, ended_a_wait
from amends.domain.lifecycle import transition_for, transitions_from
from amends.domain.stages import Stage
from amends.domain.values import shown

ENVELOPE_NAMES = frozenset({"topic", "originator_id", "originator_version"})
"""Names the digest adds to a payload; a payload must not carry them itself."""

FindingKind = Literal[
    "unreadable", "missing", "altered", "transition", "time", "sealed", "seal"
]


class Finding(BaseModel):
    """One break in the record, located by complaint and version."""

    model_config = ConfigDict(frozen=True)

    complaint_id: UUID | None
    version: int | None
    kind: FindingKind
    detail: str

    def __str__(self) -> str:
        if self.complaint_id is not None:
            where = f"complaint {self.complaint_id}"
        else:  # the seal itself, or a stored row that is no complaint's
            where = "seal" if self.kind == "seal" else "record"
        if self.version is not None:
            where += f" version {self.version}"
        return f"{where}: {self.kind}: {self.detail}"


class VerificationReport(BaseModel):
    """What was checked and every break found; `ok` when there is none."""

    model_config = ConfigDict(frozen=True)

    complaints: int
    events: int
    findings: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_text(self) -> str:
        """One line a finding, each with its `UNPRINTABLE` characters
        escaped: a finding may quote what a stored row or a bundle holds
        (a payload's field names), and a right-to-left override or a line
        break there rewrote the report on a terminal."""
        head = f"verified {self.events} events of {self.complaints} complaints: " + (
            "clean" if self.ok else f"{len(self.findings)} findings"
        )
        return "\n".join([head, *(f"  {shown(str(f))}" for f in self.findings)]) + "\n"


STRICT_FILE = ConfigDict(frozen=True, extra="forbid")
"""Models read from files an auditor is handed (a seal, a case bundle): a
field they do not define is refused, never silently left out of the digest
that vouches for the rest."""


class SealEntry(BaseModel):
    model_config = STRICT_FILE

    complaint_id: UUID
    version: int
    digest: str


SEAL_FORMAT = "amends.seal/1"


class Seal(BaseModel):
    """The head of every complaint's chain at one moment, with its own digest.

    An auditor keeps the seal outside the store; `verify(seal=...)` then also
    finds events removed or rewritten at the end of a chain after it was taken.
    """

    model_config = STRICT_FILE

    format: Literal["amends.seal/1"] = "amends.seal/1"
    sealed_at: AwareDatetime
    complaints: tuple[SealEntry, ...]
    digest: str

    @classmethod
    def create(cls, sealed_at: datetime, entries: Iterable[SealEntry]) -> Seal:
        ordered = tuple(sorted(entries, key=lambda e: str(e.complaint_id)))
        return cls(
            sealed_at=sealed_at,
            complaints=ordered,
            digest=_seal_digest(sealed_at, ordered),
        )

    @property
    def is_intact(self) -> bool:
        """False when the manifest was edited after it was made."""
        return self.digest == _seal_digest(self.sealed_at, self.complaints)


def _seal_digest(sealed_at: datetime, entries: tuple[SealEntry, ...]) -> str:
    body = {
        "format": SEAL_FORMAT,
        "sealed_at": sealed_at.isoformat(),
        "complaints": [e.model_dump(mode="json") for e in entries],
    }
    return hashlib.sha256(canonical_json(body)).hexdigest()


@dataclass(frozen=True)
class StoredRecord:
    """One stored event as the store holds it, decoded to JSON but no further.

    `payload` is None when the row could not be decoded; `problem` says why.
    """

    complaint_id: UUID
    version: int
    topic: str
    payload: dict[str, Any] | None
    problem: str | None = None


@dataclass
class _Chain:
    version: int = 0
    digest: str | None = None
    states: frozenset[_State] = frozenset({(None, False)})
    """Where the complaint can be (stage, waiting on the customer): one
    state, but after an event that cannot be read, or missing, every state
    the table reaches in that many events. An event none of them allows is a
    break; judged against one guessed state, events after an unreadable one
    were called breaks they were not, and a guess of "anything" let real
    breaks through."""
    last_time: datetime | None = None
    known: bool = True
    """False after an unreadable event: the next checks cannot rely on it."""


@dataclass(frozen=True)
class _Head:
    """What a seal needs to know of a checked complaint."""

    version: int
    digests: dict[int, str]


class ChainVerifier:
    """Checks complaints one at a time, each from its records in version order.

    Every record's digest link, version, transition and time are checked. The
    payload is also validated against its event model wherever the next
    record does not vouch for it by digest (the newest event, the one before a
    gap or a break), which catches a nonsensical edit of a chain's head even
    without a seal; records vouched for are exactly as the engine wrote them.
    """

    def __init__(
        self,
        seal: Seal | None = None,
        *,
        only: UUID | None = None,
        exported_at: datetime | None = None,
    ) -> None:
        """`exported_at`: the records are a case bundle's, which says it was
        exported then; a chain ending before the seal's version is then
        reported as a bundle cut short, or a seal taken after the export."""
        self._seal = seal
        self._exported_at = exported_at
        self._sealed = {
            e.complaint_id: e
            for e in (seal.complaints if seal is not None else ())
            if only is None or e.complaint_id == only
        }
        self._heads: dict[UUID, _Head] = {}
        self._findings: list[Finding] = []
        self._complaints = 0
        self._events = 0

    def check(self, records: Sequence[StoredRecord]) -> None:
        """Check one complaint's records (all of the same complaint, by version)."""
        if not records:
            return
        self._complaints += 1
        self._events += len(records)
        chain = _Chain()
        sealed = records[0].complaint_id in self._sealed
        digests: dict[int, str] = {}
        checked: list[tuple[StoredRecord, str | None]] = []
        for record in records:
            digest = self._check_record(record, chain)
            checked.append((record, digest))
            if sealed and digest is not None:
                digests[record.version] = digest
        for index, (record, digest) in enumerate(checked):
            following = checked[index + 1][0] if index + 1 < len(checked) else None
            vouched = (
                following is not None
                and following.payload is not None
                and following.version == record.version + 1
                and following.payload.get("previous_digest") == digest
            )
            if digest is not None and not vouched:
                self._check_payload(record)
        if sealed:
            self._heads[records[0].complaint_id] = _Head(chain.version, digests)

    def malformed(
        self, complaint_id: UUID | None, version: int | None, problem: str
    ) -> None:
        """A stored row that no event could have written (see the store's
        `MalformedRow`): a break of its own, beside its complaint's chain."""
        self._events += 1
        self._findings.append(
            Finding(
                complaint_id=complaint_id,
                version=version,
                kind="unreadable",
                detail=problem,
            )
        )

    def report(self) -> VerificationReport:
        findings = list(self._findings)
        if self._seal is not None:
            findings.extend(self._seal_findings())
        return VerificationReport(
            complaints=self._complaints, events=self._events, findings=tuple(findings)
        )

    def _check_record(self, record: StoredRecord, chain: _Chain) -> str | None:
        """Check one record against the chain so far; returns its digest."""
        expected_version = chain.version + 1
        report = self._reporter(record)
        if record.version > expected_version:
            missing = (
                f"version {expected_version}"
                if record.version == expected_version + 1
                else f"versions {expected_version} to {record.version - 1}"
            )
            report("missing", f"{missing} missing before this event", record.version)
            chain.known = False
            chain.states = _after_unseen(
                chain.states, record.version - expected_version
            )
        elif record.version < expected_version:
            report("missing", f"version {record.version} appears twice or out of order")
            return None
        chain.version = record.version
        event_type = EVENT_TYPES.get(record.topic)
        payload = record.payload
        if payload is None or event_type is None:
            problem = record.problem or f"unknown event topic {record.topic!r}"
            report("unreadable", problem)
            chain.known, chain.digest = False, None
            chain.states = _after_unseen(chain.states, 1)
            return None
        body = dict(payload)
        class_version = body.pop("class_version", 1)
        if ENVELOPE_NAMES & body.keys():
            # They would shadow the envelope in the digest: never written by amends.
            names = ", ".join(sorted(ENVELOPE_NAMES & body.keys()))
            report("unreadable", f"the payload carries envelope fields ({names})")
        digest = stored_digest(
            record.topic, class_version, record.complaint_id, record.version, body
        )
        self._check_chain(record, chain, body, report)
        self._check_transition(record, chain, event_type, report)
        self._check_time(record, chain, body, report)
        chain.digest, chain.known = digest, True
        return digest

    # ------------------------------------------------------------ checks

    def _reporter(self, record: StoredRecord) -> Any:
        def report(kind: FindingKind, detail: str, version: int | None = None) -> None:
            self._findings.append(
                Finding(
                    complaint_id=record.complaint_id,
                    version=record.version if version is None else version,
                    kind=kind,
                    detail=detail,
                )
            )

        return report

    def _check_chain(
        self, record: StoredRecord, chain: _Chain, body: dict[str, Any], report: Any
    ) -> None:
        if not chain.known:
            return
        recorded = body.get("previous_digest")
        if recorded != chain.digest:
            if record.version == 1:
                report("altered", "the first event names a predecessor")
            else:
                # Either event may have been edited: this one's record of its
                # predecessor, or the predecessor itself.
                report(
                    "altered",
                    f"its stored form does not match the digest version "
                    f"{record.version} records for it: version "
                    f"{record.version - 1} was changed, or version "
                    f"{record.version}'s record of it was",
                    record.version - 1,
                )

    def _check_transition(
        self,
        record: StoredRecord,
        chain: _Chain,
        event_type: type[ComplaintEvent],
        report: Any,
    ) -> None:
        answered = ended_a_wait(record.payload or {})
        moves = _moves(chain.states, event_type, answered)
        if not moves:
            report("transition", _not_allowed(event_type, chain.states))
            # Carry on from wherever this event leads, to find later breaks.
            moves = _moves(_EVERY_STATE, event_type, answered)
        chain.states = moves

    def _check_time(
        self, record: StoredRecord, chain: _Chain, body: dict[str, Any], report: Any
    ) -> None:
        try:
            at = datetime.fromisoformat(str(body.get("timestamp")))
        except ValueError:
            report("unreadable", "the timestamp is not an ISO 8601 time")
            return
        if at.utcoffset() is None:
            report("unreadable", "the timestamp has no time zone")
            return
        if chain.last_time is not None and at < chain.last_time:
            report(
                "time",
                f"time goes backwards: {at.isoformat()} is before "
                f"{chain.last_time.isoformat()}",
            )
        chain.last_time = at

    def _check_payload(self, record: StoredRecord) -> None:
        report = self._reporter(record)
        event_type = EVENT_TYPES[record.topic]
        body = dict(record.payload or {})
        class_version = body.pop("class_version", 1)
        try:
            state = event_type.upcast(body, class_version)
            event_type.model_validate(
                {
                    **state,
                    "originator_id": record.complaint_id,
                    "originator_version": record.version,
                }
            )
        except ValidationError as exc:
            fields = ", ".join(".".join(map(str, e["loc"])) for e in exc.errors())
            report("unreadable", f"invalid {event_type.__name__} ({fields})")
        except (ValueError, TypeError, KeyError) as exc:
            report("unreadable", f"cannot upcast {event_type.__name__}: {exc}")

    def _seal_findings(self) -> list[Finding]:
        assert self._seal is not None
        if not self._seal.is_intact:
            # Its entries are not the ones sealed: compared with the store,
            # they would accuse events nobody changed.
            detail = (
                "the seal's own digest does not match its contents: it was "
                "edited, and the store was not compared with it"
            )
            return [
                Finding(complaint_id=None, version=None, kind="seal", detail=detail)
            ]
        findings = []
        for entry in self._sealed.values():
            chain = self._heads.get(entry.complaint_id)
            if chain is None:
                detail = f"sealed at version {entry.version}, now has no events"
                findings.append(_sealed(entry, None, detail))
            elif chain.version < entry.version:
                findings.append(_sealed(entry, chain.version, self._cut_short(entry)))
            elif chain.digests.get(entry.version) != entry.digest:
                detail = "the event the seal pinned was changed after the seal"
                findings.append(_sealed(entry, entry.version, detail))
        return findings

    def _cut_short(self, entry: SealEntry) -> str:
        chain = self._heads[entry.complaint_id]
        assert self._seal is not None
        if self._exported_at is None:
            return (
                f"sealed at version {entry.version}, now ends at {chain.version}: "
                "events were removed after the seal"
            )
        # A bundle's export time is its own claim, as editable as the rest:
        # a bundle cut short and backdated must not pass for an honest one
        # checked against a later seal, so both readings are given.
        return (
            f"the seal of {self._seal.sealed_at.isoformat()} pins version "
            f"{entry.version}, the bundle ends at {chain.version}: either events "
            "were dropped from the bundle, or the seal was taken after the "
            "export, when the case had grown (the bundle says it was exported "
            f"at {self._exported_at.isoformat()}: its own claim, which nothing "
            "checks)"
        )


_State = tuple[Stage | None, bool]
"""A complaint's stage (None: not received yet) and whether it waits on the
customer: what the transition table allows depends on both."""

_EVERY_STATE: frozenset[_State] = frozenset(
    {(None, False)} | {(stage, waiting) for stage in Stage for waiting in (False, True)}
)

_UNSEEN_STEPS = 32
"""Events unseen after which every state reachable at all is taken: the
table's states are few, and a version edited far ahead is no count of
events."""


def _moves(
    states: frozenset[_State],
    event_type: type[ComplaintEvent] | None,
    answered: bool = False,
) -> frozenset[_State]:
    """Where an event of `event_type` (None: any event) leads from `states`
    (`answered`: see `Transition.waiting_then`)."""
    return frozenset(
        (t.target, t.waiting_then(waiting, answered=either))
        for stage, waiting in states
        for t in transitions_from(stage, waiting)
        if event_type is None or t.event is event_type
        # An event nobody can read may have been an answer that ended a wait.
        for either in (
            (False, True)
            if event_type is None and "ended_wait" in t.event.model_fields
            else (answered,)
        )
    )


def _after_unseen(states: frozenset[_State], events: int) -> frozenset[_State]:
    """Where the complaint can be after `events` events nobody can read."""
    seen = set(states)
    for _ in range(min(events, _UNSEEN_STEPS)):
        states = _moves(states, None)
        seen |= states
    return states if events <= _UNSEEN_STEPS else frozenset(seen)


def _not_allowed(event_type: type[ComplaintEvent], states: frozenset[_State]) -> str:
    name = event_type.__name__
    if len(states) == 1:
        ((stage, waiting),) = states
        where = str(stage or "a complaint not yet received")
        if transition_for(event_type, stage, not waiting):
            where += f" while {'' if waiting else 'not '}waiting"
        return f"{name} is not allowed in {where}"
    stages = sorted({str(stage or "not yet received") for stage, _ in states})
    return (
        f"{name} is not allowed in any stage the complaint can be in here, "
        f"after events that cannot be read ({', '.join(stages)})"
    )


def _sealed(entry: SealEntry, version: int | None, detail: str) -> Finding:
    return Finding(
        complaint_id=entry.complaint_id, version=version, kind="sealed", detail=detail
    )


BUNDLE_FORMAT = "amends.case-bundle/1"


class BundledEvent(BaseModel):
    """One event as stored: its payload is the stored JSON object, untouched.

    `class_version` and `digest` are listed for the auditor's tools; verify
    holds both to the payload (its `class_version`, 1 when it has none) and
    to the chain."""

    model_config = STRICT_FILE

    version: int
    topic: str
    class_version: int
    payload: dict[str, Any]
    digest: str


class CaseBundle(BaseModel):
    """Everything an auditor needs to check one case with no database.

    The events as stored, each one's digest, the schema versions and JSON
    Schemas of their types, the head of the chain, and a digest of the whole.
    """

    model_config = STRICT_FILE

    format: Literal["amends.case-bundle/1"] = "amends.case-bundle/1"
    complaint_id: UUID
    exported_at: AwareDatetime
    events: tuple[BundledEvent, ...]
    schemas: dict[str, dict[str, Any]]
    head: SealEntry
    digest: str

    @classmethod
    def build(
        cls, complaint_id: UUID, records: Iterable[StoredRecord], exported_at: datetime
    ) -> CaseBundle:
        events = []
        for record in records:
            if record.payload is None:
                raise ValueError(
                    f"complaint {complaint_id} version {record.version} cannot be "
                    f"read ({record.problem}); verify the store before exporting"
                )
            events.append(
                BundledEvent(
                    version=record.version,
                    topic=record.topic,
                    class_version=record.payload.get("class_version", 1),
                    payload=record.payload,
                    digest=payload_digest(
                        record.topic, complaint_id, record.version, record.payload
                    ),
                )
            )
        if not events:
            raise ValueError(f"complaint {complaint_id} has no events")
        schemas = {
            topic: {
                "class_version": EVENT_TYPES[topic].class_version,
                "schema": EVENT_TYPES[topic].model_json_schema(mode="serialization"),
            }
            for topic in sorted({e.topic for e in events})
            if topic in EVENT_TYPES
        }
        head = SealEntry(
            complaint_id=complaint_id,
            version=events[-1].version,
            digest=events[-1].digest,
        )
        fields = {
            "complaint_id": complaint_id,
            "exported_at": exported_at,
            "events": tuple(events),
            "schemas": schemas,
            "head": head,
        }
        draft = cls(**fields, digest="")
        return draft.model_copy(update={"digest": draft.content_digest()})

    def pinned_by(self, seal: Seal | None) -> SealEntry | None:
        """The seal's entry for this case (None: the seal does not name it,
        as when the case was received after the seal was taken, or the seal
        is of another store; `verify` refuses such a seal)."""
        if seal is None:
            return None
        return next(
            (e for e in seal.complaints if e.complaint_id == self.complaint_id), None
        )

    def content_digest(self) -> str:
        """SHA-256 over everything in the bundle but this digest itself."""
        body = self.model_dump(mode="json", exclude={"digest"})
        return hashlib.sha256(canonical_json(body)).hexdigest()

    def records(self) -> list[StoredRecord]:
        return [
            StoredRecord(self.complaint_id, e.version, e.topic, dict(e.payload))
            for e in self.events
        ]

    def verify(self, seal: Seal | None = None) -> VerificationReport:
        """Check the bundle's digest, every event's digest, the chain and the
        head; with a `seal` of the store taken before the export, also that
        the bundle holds the event the seal pinned for the case, as sealed.
        The bundle's own digests only show it is whole as exported: anyone
        who edits an event can compute them all again, and drop the newest
        events with them. A seal kept apart is what tells.

        A seal that pins a version the bundle does not hold is a `sealed`
        finding, whatever `exported_at` says: the bundle was cut short, or
        the seal taken after the export, and only the first is a break. The
        export time cannot tell them apart: it is the bundle's own claim,
        and anyone who drops the newest events can backdate it too (before,
        a seal later than `exported_at` was refused as a usage error, which
        turned exactly that forgery into the auditor's mistake).

        A seal that does not name the case at all cannot check it: that is
        `ValueError`, not a clean report (see `pinned_by`).
        """
        if seal is not None and seal.is_intact and self.pinned_by(seal) is None:
            # Received after the seal, or a seal of another store; or the
            # bundle's complaint id was rewritten with every digest redone,
            # which a clean report would have let slip out of the seal.
            raise ValueError(
                f"the seal of {seal.sealed_at.isoformat()} does not name complaint "
                f"{self.complaint_id}, so it cannot check this bundle (a case "
                "received after the seal, or a seal of another store): check it "
                "without the seal, or against one that names it"
            )
        verifier = ChainVerifier(
            seal, only=self.complaint_id, exported_at=self.exported_at
        )
        verifier.check(self.records())
        report = verifier.report()
        extra: list[Finding] = []
        if self.head.complaint_id != self.complaint_id:
            extra.append(
                Finding(
                    complaint_id=self.complaint_id,
                    version=None,
                    kind="sealed",
                    detail=f"its head names complaint {self.head.complaint_id}",
                )
            )
        last_time = _event_time(self.events[-1]) if self.events else None
        if last_time is not None and self.exported_at < last_time:
            extra.append(
                Finding(
                    complaint_id=self.complaint_id,
                    version=self.events[-1].version,
                    kind="time",
                    detail=(
                        f"exported at {self.exported_at.isoformat()}, before this "
                        f"event at {last_time.isoformat()}"
                    ),
                )
            )
        if self.digest != self.content_digest():
            extra.append(
                Finding(
                    complaint_id=self.complaint_id,
                    version=None,
                    kind="seal",
                    detail="the bundle's digest does not match its contents",
                )
            )
        for event in self.events:
            # The listed digest is checked against the event's stored form,
            # its payload with the payload's own `class_version`, the one the
            # next event's `previous_digest` vouches for. Checked with the
            # listed `class_version`, both could be edited together and
            # verify clean, a listed digest no successor ever recorded.
            stored_class = event.payload.get("class_version", 1)
            if event.class_version != stored_class:
                extra.append(
                    Finding(
                        complaint_id=self.complaint_id,
                        version=event.version,
                        kind="altered",
                        detail=(
                            f"listed as class_version {event.class_version!r}, "
                            f"its payload says {stored_class!r}"
                        ),
                    )
                )
            actual = payload_digest(
                event.topic, self.complaint_id, event.version, event.payload
            )
            if actual != event.digest:
                extra.append(
                    Finding(
                        complaint_id=self.complaint_id,
                        version=event.version,
                        kind="altered",
                        detail="the payload does not match the digest listed for it",
                    )
                )
        last = self.events[-1] if self.events else None
        if last is None or (last.version, last.digest) != (
            self.head.version,
            self.head.digest,
        ):
            extra.append(
                Finding(
                    complaint_id=self.complaint_id,
                    version=self.head.version,
                    kind="sealed",
                    detail="the events do not end at the head the bundle names",
                )
            )
        return report.model_copy(update={"findings": (*report.findings, *extra)})


def _event_time(event: BundledEvent) -> datetime | None:
    """An event's time as recorded, or None where it does not read as one
    (the chain's checks report that)."""
    try:
        at = datetime.fromisoformat(str(event.payload.get("timestamp")))
    except ValueError:
        return None
    return at if at.utcoffset() is not None else None
