"""The baseline: the same lifecycle on the bare eventsourcing library.

No amends code and no amends logic: no transition table, no validation, no
pydantic, the library's own mapper and JSON transcoder. Each command is an
`@event` method that records its arguments; the application does what a
service on the plain library would do per request: `repository.get(id)`, call
the method, `save()`. The gap between this and `ComplaintDesk` on the same
store is what amends itself costs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import ApplicationRecorder, Notification
from eventsourcing.sqlite import SQLiteAggregateRecorder

LOG_BATCH = 2_000
"""Notifications per read of the log: the projection runner's batch size."""


class RawComplaint(Aggregate):
    """A complaint as a plain library aggregate: events carry the arguments."""

    @event("Received")
    def __init__(
        self,
        *,
        by: str,
        customer: str,
        summary: str,
        channel: str,
        category: str,
        severity: str,
        expectation: str,
        at: datetime,
    ) -> None:
        self.owner = by
        self.customer = customer
        self.summary = summary
        self.channel = channel
        self.category = category
        self.severity = severity
        self.expectation = expectation
        self.stage = "RECEIVED"
        self.last_event_at = at

    @event("Acknowledged")
    def acknowledge(self, *, by: str, paraphrase: str, at: datetime) -> None:
        self.stage = "ACKNOWLEDGED"
        self.last_event_at = at

    @event("Apologized")
    def apologize(self, *, by: str, apology: str, at: datetime) -> None:
        self.stage = "APOLOGIZED"
        self.last_event_at = at

    @event("PlanCommitted")
    def commit_plan(
        self, *, by: str, steps: list[str], due: datetime, at: datetime
    ) -> None:
        self.stage = "PLAN_COMMITTED"
        self.due = due
        self.last_event_at = at

    @event("UpdatePosted")
    def post_update(self, *, by: str, note: str, at: datetime) -> None:
        self.stage = "UPDATING"
        self.last_event_at = at

    @event("Resolved")
    def resolve(
        self, *, by: str, resolution: str, explanation: str, at: datetime
    ) -> None:
        self.stage = "RESOLVED"
        self.last_event_at = at

    @event("SatisfactionConfirmed")
    def confirm_satisfaction(self, *, by: str, satisfied: bool, at: datetime) -> None:
        self.stage = "SATISFACTION_CONFIRMED"
        self.satisfied = satisfied
        self.last_event_at = at

    @event("PreventionLogged")
    def log_prevention(
        self,
        *,
        by: str,
        root_cause: str,
        preventive_action: str,
        informed: list[str],
        at: datetime,
    ) -> None:
        self.stage = "PREVENTION_LOGGED"
        self.last_event_at = at


class LogReader(Application[UUID]):
    """The bare library's application on the store amends writes, to read
    it: named as amends names its own, since the library names PostgreSQL's
    tables after the application (SQLite's are named alike for any)."""

    name = "amends"

    def __init__(self, env: Mapping[str, str]) -> None:
        super().__init__(env=dict(env))


class RawDesk(Application[UUID]):
    """get + command + save per call, as a service on the plain library would.

    Configured only by the `env` it is given (on top of the process
    environment, as the library always does), so the harness can point it at
    the same fresh store amends gets.
    """

    name = "RawBench"

    def __init__(self, env: Mapping[str, str]) -> None:
        super().__init__(env=dict(env))

    def receive(
        self,
        *,
        by: str,
        customer: str,
        summary: str,
        channel: str,
        category: str,
        severity: str,
        expectation: str,
        at: datetime,
    ) -> UUID:
        complaint = RawComplaint(
            by=by,
            customer=customer,
            summary=summary,
            channel=channel,
            category=category,
            severity=severity,
            expectation=expectation,
            at=at,
        )
        self.save(complaint)
        return complaint.id

    def _get(self, complaint_id: UUID) -> RawComplaint:
        complaint: RawComplaint = self.repository.get(complaint_id)
        return complaint

    def acknowledge(
        self, complaint_id: UUID, *, by: str, paraphrase: str, at: datetime
    ) -> None:
        complaint = self._get(complaint_id)
        complaint.acknowledge(by=by, paraphrase=paraphrase, at=at)
        self.save(complaint)

    def apologize(
        self, complaint_id: UUID, *, by: str, apology: str, at: datetime
    ) -> None:
        complaint = self._get(complaint_id)
        complaint.apologize(by=by, apology=apology, at=at)
        self.save(complaint)

    def commit_plan(
        self,
        complaint_id: UUID,
        *,
        by: str,
        steps: list[str],
        due: datetime,
        at: datetime,
    ) -> None:
        complaint = self._get(complaint_id)
        complaint.commit_plan(by=by, steps=steps, due=due, at=at)
        self.save(complaint)

    def post_update(
        self, complaint_id: UUID, *, by: str, note: str, at: datetime
    ) -> None:
        complaint = self._get(complaint_id)
        complaint.post_update(by=by, note=note, at=at)
        self.save(complaint)

    def resolve(
        self,
        complaint_id: UUID,
        *,
        by: str,
        resolution: str,
        explanation: str,
        at: datetime,
    ) -> None:
        complaint = self._get(complaint_id)
        complaint.resolve(by=by, resolution=resolution, explanation=explanation, at=at)
        self.save(complaint)

    def confirm_satisfaction(
        self, complaint_id: UUID, *, by: str, satisfied: bool, at: datetime
    ) -> None:
        complaint = self._get(complaint_id)
        complaint.confirm_satisfaction(by=by, satisfied=satisfied, at=at)
        self.save(complaint)

    def log_prevention(
        self,
        complaint_id: UUID,
        *,
        by: str,
        root_cause: str,
        preventive_action: str,
        informed: list[str],
        at: datetime,
    ) -> None:
        complaint = self._get(complaint_id)
        complaint.log_prevention(
            by=by,
            root_cause=root_cause,
            preventive_action=preventive_action,
            informed=informed,
            at=at,
        )
        self.save(complaint)

    def event_count(self) -> int:
        """How many events the store holds: checks the workload did its work."""
        return self.recorder.max_notification_id() or 0


# ------------------------------------------------------------ raw readers


def read_by_complaint(recorder: ApplicationRecorder) -> int:
    """The baseline: every complaint's rows, as verify reads them, JSON-decoded.

    The ids come from the same `SELECT DISTINCT` verify uses (the library has
    no call that lists aggregates), sorted as verify sorts them.
    """
    assert isinstance(recorder, SQLiteAggregateRecorder)
    with recorder.datastore.transaction(commit=False) as cursor:
        cursor.execute(
            f"SELECT DISTINCT originator_id FROM {recorder.events_table_name}"
        )
        ids = sorted(UUID(row["originator_id"]) for row in cursor.fetchall())
    events = 0
    for complaint_id in ids:
        for stored in recorder.select_events(complaint_id):
            json.loads(stored.state)
            events += 1
    return events


def read_page(
    recorder: ApplicationRecorder, start: int, limit: int
) -> Sequence[Notification]:
    """Up to `limit` notifications from position `start`, each state
    JSON-decoded: what reading the store costs before any projection or
    check, a page of the log at a time."""
    page = recorder.select_notifications(start, limit)
    for notification in page:
        json.loads(notification.state)
    return page


def read_log(recorder: ApplicationRecorder) -> int:
    """The whole notification log, `read_page` by `read_page` of `LOG_BATCH`."""
    start, events = 1, 0
    while batch := read_page(recorder, start, LOG_BATCH):
        events += len(batch)
        start = batch[-1].id + 1
    return events
