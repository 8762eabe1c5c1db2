"""The walks: one complaint script driven through amends or the bare library.

Both walks issue the same eight commands with the same arguments in the same
order, one call (one read, one decision, one write) per command, as a service
handling one request at a time would. The write-only walk is the library's
floor: the eight events are made in memory and written in one save.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from uuid import UUID

from amends import ComplaintDesk, Stage
from bench.raw import RawComplaint, RawDesk
from bench.workload import STAGE_COUNT, ComplaintScript


def utc_now() -> datetime:
    """The desk's clock: the real time, timezone-aware, as a service would pass."""
    return datetime.now(UTC)


def walk_amends(desk: ComplaintDesk, scripts: Sequence[ComplaintScript]) -> UUID:
    """All eight steps per complaint through the public API; the last id."""
    complaint_id = None
    for s in scripts:
        t = s.times
        complaint_id = desk.receive(
            by=s.by,
            customer=s.customer,
            summary=s.summary,
            channel=s.channel,
            category=s.category,
            severity=s.severity,
            expectation=s.expectation,
            at=t[0],
        )
        desk.acknowledge(complaint_id, by=s.by, paraphrase=s.paraphrase, at=t[1])
        desk.apologize(complaint_id, by=s.by, apology=s.apology, at=t[2])
        desk.commit_plan(complaint_id, by=s.by, steps=s.steps, due=s.due, at=t[3])
        desk.post_update(complaint_id, by=s.by, note=s.note, at=t[4])
        desk.resolve(
            complaint_id,
            by=s.by,
            resolution=s.resolution,
            explanation=s.explanation,
            at=t[5],
        )
        desk.confirm_satisfaction(complaint_id, by=s.by, satisfied=True, at=t[6])
        desk.log_prevention(
            complaint_id,
            by=s.by,
            root_cause=s.root_cause,
            preventive_action=s.preventive_action,
            informed=s.informed,
            at=t[7],
        )
    assert complaint_id is not None, "no scripts to walk"
    return complaint_id


def walk_raw(app: RawDesk, scripts: Sequence[ComplaintScript]) -> UUID:
    """The same eight steps, get + command + save each, on the bare library."""
    complaint_id = None
    for s in scripts:
        t = s.times
        complaint_id = app.receive(
            by=s.by,
            customer=s.customer,
            summary=s.summary,
            channel=s.channel,
            category=s.category,
            severity=s.severity,
            expectation=s.expectation,
            at=t[0],
        )
        app.acknowledge(complaint_id, by=s.by, paraphrase=s.paraphrase, at=t[1])
        app.apologize(complaint_id, by=s.by, apology=s.apology, at=t[2])
        app.commit_plan(complaint_id, by=s.by, steps=list(s.steps), due=s.due, at=t[3])
        app.post_update(complaint_id, by=s.by, note=s.note, at=t[4])
        app.resolve(
            complaint_id,
            by=s.by,
            resolution=s.resolution,
            explanation=s.explanation,
            at=t[5],
        )
        app.confirm_satisfaction(complaint_id, by=s.by, satisfied=True, at=t[6])
        app.log_prevention(
            complaint_id,
            by=s.by,
            root_cause=s.root_cause,
            preventive_action=s.preventive_action,
            informed=list(s.informed),
            at=t[7],
        )
    assert complaint_id is not None, "no scripts to walk"
    return complaint_id


def write_only_raw(app: RawDesk, scripts: Sequence[ComplaintScript]) -> UUID:
    """Each complaint's eight events made in memory, then one save: no reads."""
    complaint_id = None
    for s in scripts:
        t = s.times
        complaint = RawComplaint(
            by=s.by,
            customer=s.customer,
            summary=s.summary,
            channel=s.channel,
            category=s.category,
            severity=s.severity,
            expectation=s.expectation,
            at=t[0],
        )
        complaint.acknowledge(by=s.by, paraphrase=s.paraphrase, at=t[1])
        complaint.apologize(by=s.by, apology=s.apology, at=t[2])
        complaint.commit_plan(by=s.by, steps=list(s.steps), due=s.due, at=t[3])
        complaint.post_update(by=s.by, note=s.note, at=t[4])
        complaint.resolve(
            by=s.by, resolution=s.resolution, explanation=s.explanation, at=t[5]
        )
        complaint.confirm_satisfaction(by=s.by, satisfied=True, at=t[6])
        complaint.log_prevention(
            by=s.by,
            root_cause=s.root_cause,
            preventive_action=s.preventive_action,
            informed=list(s.informed),
            at=t[7],
        )
        app.save(complaint)
        complaint_id = complaint.id
    assert complaint_id is not None, "no scripts to walk"
    return complaint_id


def check_amends(desk: ComplaintDesk, last_id: UUID, complaints: int) -> None:
    """The walk did what it claims: every event stored, the last case closed.

    Not a performance check: a harness that silently measured refusals would
    report nonsense, so a wrong count stops the run.
    """
    stored = desk.last_position()
    if stored != complaints * STAGE_COUNT:
        raise RuntimeError(f"amends stored {stored} events, not {complaints * 8}")
    if desk.get(last_id).stage is not Stage.PREVENTION_LOGGED:
        raise RuntimeError("amends did not close the last complaint")


def check_raw(app: RawDesk, last_id: UUID, complaints: int) -> None:
    stored = app.event_count()
    if stored != complaints * STAGE_COUNT:
        raise RuntimeError(f"raw stored {stored} events, not {complaints * 8}")
    complaint: RawComplaint = app.repository.get(last_id)
    if complaint.stage != "PREVENTION_LOGGED":
        raise RuntimeError("raw did not close the last complaint")
