"""A plain oracle: every report computed straight from event histories.

It shares nothing with the projection but the report models and the SLA
policy arithmetic: no views, no SQL, no facts fold. It walks each complaint's
typed events from the start, the slow and obvious way, so that the views'
incremental answers can be held to it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID

from amends.domain import events as e
from amends.domain.sla import PolicySchedule, SlaPolicy
from amends.domain.stages import Stage
from amends.projections.reports import (
    AGE_BUCKETS,
    AtRisk,
    BacklogReport,
    Breach,
    CategoryRecurrence,
    ChainLink,
    ComplaintTimes,
    Compliance,
    Distribution,
    GroupDistribution,
    OwnerChain,
    OwnerRow,
    OwnershipReport,
    RecurrenceReport,
    ReportFilter,
    SlaReport,
    StageBacklog,
    StageElapsed,
    TimeToResolutionReport,
)

History = Sequence[e.ComplaintEvent]
ORDER = list(Stage)
NEXT_STAGE = {
    e.Acknowledged: Stage.ACKNOWLEDGED,
    e.Apologized: Stage.APOLOGIZED,
    e.PlanCommitted: Stage.PLAN_COMMITTED,
    e.UpdatePosted: Stage.UPDATING,
    e.Resolved: Stage.RESOLVED,
    e.SatisfactionConfirmed: Stage.SATISFACTION_CONFIRMED,
    e.SatisfactionDeclined: Stage.UPDATING,
    e.PreventionLogged: Stage.PREVENTION_LOGGED,
}
SPEAKS_TO_CUSTOMER = (
    e.Acknowledged,
    e.Apologized,
    e.PlanCommitted,
    e.UpdatePosted,
    e.Resolved,
)


@dataclass
class Promise:
    kind: str
    start: datetime
    within: timedelta | None = None
    fixed: datetime | None = None
    kept_at: datetime | None = None
    kept_by: str | None = None


@dataclass
class Case:
    """Everything the oracle learns from one history."""

    id: str
    policy: SlaPolicy
    received_at: datetime
    received_by: str
    channel: str
    category: str
    severity: str
    stage: Stage = Stage.RECEIVED
    first: dict[Stage, datetime] = field(default_factory=dict)
    owners: list[list[object]] = field(default_factory=list)  # [owner, start, end]
    pauses: list[list[datetime | None]] = field(default_factory=list)
    promises: list[Promise] = field(default_factory=list)
    gifts: list[tuple[str | None, str | None]] = field(default_factory=list)
    first_resolved: datetime | None = None
    resolver: str | None = None
    last_resolved: datetime | None = None
    resolutions: int = 0
    reopens: int = 0
    answer_first: bool | None = None
    answer_after: bool | None = None
    prevented: datetime | None = None
    handoffs: int = 0

    @property
    def owner(self) -> str:
        return str(self.owners[-1][0])

    def pause_pairs(self) -> list[tuple[datetime, datetime | None]]:
        return [(a, b) for a, b in self.pauses if a is not None]

    def due(self, promise: Promise) -> datetime | None:
        if promise.fixed is not None:
            return promise.fixed
        assert promise.within is not None
        return self.policy.deadline(
            promise.start,
            promise.within,
            self.pause_pairs(),
            acknowledging=promise.kind == "acknowledge",
        )

    def owner_at(self, moment: datetime) -> str:
        for owner, start, end in self.owners:
            assert isinstance(start, datetime)
            if start <= moment and (end is None or moment < end):  # type: ignore[operator]
                return str(owner)
        return str(self.owners[0][0])

    def sla(self, end: datetime) -> float:
        return self.policy.elapsed(
            self.received_at, end, self.pause_pairs()
        ).total_seconds()


def read_case(history: History, policies: PolicySchedule) -> Case:
    received = history[0]
    assert isinstance(received, e.Received)
    policy = policies.in_force(received.timestamp)
    targets = policy.targets_for(received.severity)
    case = Case(
        id=str(received.originator_id),
        policy=policy,
        received_at=received.timestamp,
        received_by=received.by,
        channel=received.channel,
        category=received.category,
        severity=received.severity.value,
    )
    case.first[Stage.RECEIVED] = received.timestamp
    case.owners.append([received.by, received.timestamp, None])
    if targets.acknowledge_within:
        case.promises.append(
            Promise(
                "acknowledge", received.timestamp, within=targets.acknowledge_within
            )
        )
    if targets.resolve_within:
        case.promises.append(
            Promise("resolve", received.timestamp, within=targets.resolve_within)
        )
    waiting = False
    for event in history[1:]:
        at = event.timestamp
        kind = type(event)
        # Promises this event keeps.
        for promise in case.promises:
            if promise.kept_at is not None:
                continue
            if (
                (promise.kind == "update" and isinstance(event, SPEAKS_TO_CUSTOMER))
                or (promise.kind == "acknowledge" and kind is e.Acknowledged)
                or (promise.kind in ("resolve", "plan_due") and kind is e.Resolved)
            ):
                promise.kept_at, promise.kept_by = at, case.owner
        if isinstance(event, e.PlanCommitted) and policy.keep_plan_due:
            case.promises.append(Promise("plan_due", at, fixed=event.due))
        if (
            isinstance(event, e.UpdatePosted)
            and event.revised_due is not None
            and policy.keep_plan_due
        ):
            for promise in case.promises:
                if promise.kind == "plan_due" and promise.kept_at is None:
                    assert promise.fixed is not None
                    if promise.fixed < at:  # lapsed: a breach, closed now
                        promise.kept_at, promise.kept_by = at, case.owner
                    else:  # restated in time: replaced by the new date
                        case.promises.remove(promise)
                    break
            case.promises.append(Promise("plan_due", at, fixed=event.revised_due))
        if isinstance(event, e.Resolved):
            case.resolutions += 1
            case.last_resolved = at
            if case.first_resolved is None:
                case.first_resolved = at
                case.resolver = case.owner
        if isinstance(event, e.SatisfactionConfirmed | e.SatisfactionDeclined):
            answer = isinstance(event, e.SatisfactionConfirmed)
            if case.resolutions == 1 and case.answer_first is None:
                case.answer_first = answer
            elif case.resolutions > 1:
                case.answer_after = answer
            if not answer:
                case.reopens += 1
        if isinstance(event, e.PreventionLogged):
            case.prevented = at
        if isinstance(event, e.OwnershipTransferred):
            case.owners[-1][2] = at
            case.owners.append([event.to_owner, at, None])
            case.handoffs += 1
        if isinstance(event, e.GestureOffered):
            case.gifts.append(
                (str(event.value) if event.value is not None else None, event.currency)
            )
        if isinstance(event, e.CustomerAwaited):
            waiting = True
            case.pauses.append([at, None])
        answered = isinstance(
            event, e.SatisfactionConfirmed | e.SatisfactionDeclined
        ) and bool(event.ended_wait)
        if (
            isinstance(event, e.CustomerReplied)
            or kind is e.PreventionLogged
            or answered
        ) and waiting:
            waiting = False
            case.pauses[-1][1] = at
        if kind in NEXT_STAGE:
            case.stage = NEXT_STAGE[kind]
            case.first.setdefault(case.stage, at)
        # Promises this event makes.
        if targets.update_every and (
            (
                isinstance(event, SPEAKS_TO_CUSTOMER)
                and case.stage
                in (
                    Stage.ACKNOWLEDGED,
                    Stage.APOLOGIZED,
                    Stage.PLAN_COMMITTED,
                    Stage.UPDATING,
                )
            )
            or kind is e.SatisfactionDeclined
        ):
            case.promises.append(Promise("update", at, within=targets.update_every))
    return case


def _selected(cases: Iterable[Case], f: ReportFilter) -> list[Case]:
    return [
        c
        for c in cases
        if (f.since is None or c.received_at >= f.since)
        and (f.until is None or c.received_at < f.until)
        and (f.category is None or c.category == f.category)
        and (f.owner is None or any(o[0] == f.owner for o in c.owners))
    ]


def _nearest_rank(values: list[float], p: int) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    import math

    return ordered[max(math.ceil(p * len(ordered) / 100), 1) - 1]


def _late(due: datetime | None, kept: datetime | None, now: datetime) -> bool:
    if due is None:
        return False
    return kept > due if kept is not None else due < now


class Oracle:
    def __init__(
        self, histories: dict[UUID, History], policies: PolicySchedule
    ) -> None:
        self.cases = [read_case(h, policies) for h in histories.values()]

    def ownership(self, now: datetime, f: ReportFilter, limit: int) -> OwnershipReport:
        cases = _selected(self.cases, f)
        owners = sorted({str(o[0]) for c in cases for o in c.owners})
        rows = []
        for owner in owners:
            if f.owner is not None and owner != f.owner:
                continue
            ttr = [
                (c.first_resolved - c.received_at).total_seconds()
                for c in cases
                if c.resolver == owner and c.first_resolved is not None
            ]
            breaches = 0
            for c in cases:
                for p in c.promises:
                    due = c.due(p)
                    if _late(due, p.kept_at, now) and due is not None:
                        breaches += c.owner_at(due) == owner
            rows.append(
                OwnerRow(
                    owner=owner,
                    open_now=sum(
                        c.owner == owner and c.stage is not Stage.PREVENTION_LOGGED
                        for c in cases
                    ),
                    received_first=sum(c.received_by == owner for c in cases),
                    handed_in=sum(o[0] == owner for c in cases for o in c.owners[1:]),
                    handed_out=sum(
                        o[0] == owner and o[2] is not None
                        for c in cases
                        for o in c.owners
                    ),
                    resolved_while_owner=len(ttr),
                    ttr_median=_nearest_rank(ttr, 50),
                    ttr_p90=_nearest_rank(ttr, 90),
                    sla_breaches=breaches,
                )
            )

        def chain(c: Case) -> OwnerChain:
            return OwnerChain(
                complaint_id=c.id,
                handoffs=c.handoffs,
                links=tuple(
                    ChainLink(owner=str(o), start=s, end=end)  # type: ignore[arg-type]
                    for o, s, end in c.owners
                ),
            )

        handed = sorted(
            (c for c in cases if c.handoffs > 0),
            key=lambda c: (-c.received_at.timestamp(), c.id),
        )
        frequent = sorted(
            (c for c in cases if c.handoffs >= 3), key=lambda c: (-c.handoffs, c.id)
        )
        return OwnershipReport(
            generated_at=now,
            filter=f,
            owners=tuple(rows),
            chains=tuple(chain(c) for c in handed[:limit]),
            chains_total=len(handed),
            handed_off_three_times=tuple(chain(c) for c in frequent[:limit]),
            handed_off_three_times_total=len(frequent),
        )

    def time_to_resolution(
        self, now: datetime, f: ReportFilter, limit: int
    ) -> TimeToResolutionReport:
        cases = _selected(self.cases, f)
        resolved = [c for c in cases if c.first_resolved is not None]
        groups: dict[tuple[int, str], tuple[list[float], list[float]]] = defaultdict(
            lambda: ([], [])
        )
        for c in resolved:
            assert c.first_resolved is not None
            day = c.received_at.astimezone(UTC).date()
            week = (day - timedelta(days=day.weekday())).isoformat()
            for index, key in enumerate(
                (c.resolver, c.category, c.channel, c.severity, week)
            ):
                walls, slas = groups[(index, str(key))]
                walls.append((c.first_resolved - c.received_at).total_seconds())
                slas.append(c.sla(c.first_resolved))
        names = ("owner", "category", "channel", "severity", "week")
        newest = sorted(cases, key=lambda c: (-c.received_at.timestamp(), c.id))[:limit]
        reopened = sum(c.reopens > 0 for c in resolved)
        return TimeToResolutionReport(
            generated_at=now,
            filter=f,
            resolved=len(resolved),
            reopened=reopened,
            reopen_rate=reopened / len(resolved) if resolved else None,
            distributions=tuple(
                GroupDistribution(
                    group_by=names[index],
                    key=key,
                    wall=_distribution(walls),
                    sla=_distribution(slas),
                )
                for (index, key), (walls, slas) in sorted(groups.items())
            ),
            complaints=tuple(
                ComplaintTimes(
                    complaint_id=c.id,
                    received_at=c.received_at,
                    owner=c.owner,
                    category=c.category,
                    stages=tuple(
                        StageElapsed(
                            stage=stage,
                            wall=(c.first[stage] - c.received_at).total_seconds(),
                            sla=c.sla(c.first[stage]),
                        )
                        for stage in ORDER
                        if stage in c.first
                    ),
                )
                for c in newest
            ),
            complaints_total=len(cases),
        )

    def sla(
        self, now: datetime, f: ReportFilter, horizon: timedelta, limit: int
    ) -> SlaReport:
        cases = _selected(self.cases, f)
        breaches = []
        risks = []
        by_target: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        by_owner: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for c in cases:
            for seq, p in enumerate(c.promises):
                due = c.due(p)
                kept = p.kept_at
                if kept is not None and (due is None or kept <= due):
                    owner = p.kept_by  # the owner then, in the events' order
                else:
                    owner = c.owner_at(due) if due is not None else None
                late = _late(due, p.kept_at, now)
                if late:
                    assert due is not None
                    breaches.append((due, c.id, seq, p, owner))
                if (
                    p.kept_at is None
                    and due is not None
                    and now <= due <= now + horizon
                ):
                    risks.append((due, c.id, seq, p, owner))
                if p.kept_at is not None or (due is not None and due <= now):
                    for bucket, key in ((by_target, p.kind), (by_owner, owner or "")):
                        bucket[key][0] += 1
                        bucket[key][1] += late
        breaches.sort(key=lambda b: (-b[0].timestamp(), b[1], b[2]))
        risks.sort(key=lambda r: (r[0], r[1], r[2]))
        return SlaReport(
            generated_at=now,
            filter=f,
            horizon=horizon,
            breaches=tuple(
                Breach(
                    complaint_id=cid,
                    target=p.kind,
                    due_at=due,
                    met_at=p.kept_at,
                    owner=o,
                )
                for due, cid, _, p, o in breaches[:limit]
            ),
            breaches_total=len(breaches),
            by_target=_compliance(by_target),
            by_owner=_compliance(by_owner),
            at_risk=tuple(
                AtRisk(complaint_id=cid, target=p.kind, due_at=due, owner=o)
                for due, cid, _, p, o in risks[:limit]
            ),
            at_risk_total=len(risks),
        )

    def backlog(self, now: datetime, f: ReportFilter) -> BacklogReport:
        cases = _selected(self.cases, f)
        buckets = [name for name, _ in AGE_BUCKETS]
        stages = []
        for stage in ORDER:
            ages = dict.fromkeys(buckets, 0)
            count = waiting = 0
            for c in cases:
                if c.stage is stage and stage is not Stage.PREVENTION_LOGGED:
                    waiting += bool(c.pauses) and c.pauses[-1][1] is None
                    age = now - c.received_at
                    for name, below in AGE_BUCKETS:
                        if below is None or age < below:
                            ages[name] += 1
                            break
                    count += 1
            if count:
                stages.append(
                    StageBacklog(stage=stage, open=count, waiting=waiting, by_age=ages)
                )

        def tally(answers: list[bool | None]) -> dict[str, int]:
            return {
                "yes": answers.count(True),
                "no": answers.count(False),
                "unanswered": answers.count(None),
            }

        totals: dict[str, Decimal] = {}
        for c in cases:
            for value, currency in c.gifts:
                if value is not None and currency is not None:
                    totals[currency] = totals.get(currency, Decimal(0)) + Decimal(value)
        return BacklogReport(
            generated_at=now,
            filter=f,
            open_by_stage=tuple(stages),
            reached={s: sum(s in c.first for c in cases) for s in ORDER},
            satisfied_first=tally([c.answer_first for c in cases if c.resolutions > 0]),
            satisfied_after_reopen=tally(
                [c.answer_after for c in cases if c.resolutions > 1]
            ),
            gestures_by_currency=dict(
                sorted(
                    Counter(
                        currency or "" for c in cases for _, currency in c.gifts
                    ).items()
                )
            ),
            gesture_totals={
                k: str(v.quantize(Decimal("0.01"))) for k, v in sorted(totals.items())
            },
        )

    def recurrence(
        self, now: datetime, f: ReportFilter, min_count: int
    ) -> RecurrenceReport:
        cases = _selected(self.cases, f)
        categories = []
        for category in sorted({c.category for c in cases}):
            members = [c for c in cases if c.category == category]
            if len(members) < min_count:
                continue
            lags = [
                (c.prevented - c.last_resolved).total_seconds()
                for c in members
                if c.prevented is not None and c.last_resolved is not None
            ]
            categories.append(
                CategoryRecurrence(
                    category=category,
                    complaints=len(members),
                    prevention_logged=sum(c.prevented is not None for c in members),
                    resolution_to_prevention_median=_nearest_rank(lags, 50),
                )
            )
        return RecurrenceReport(
            generated_at=now,
            filter=f,
            min_count=min_count,
            categories=tuple(categories),
        )


def _distribution(values: list[float]) -> Distribution:
    return Distribution(
        count=len(values),
        p50=_nearest_rank(values, 50),
        p90=_nearest_rank(values, 90),
        p95=_nearest_rank(values, 95),
        max=max(values) if values else None,
    )


def _compliance(buckets: dict[str, list[int]]) -> tuple[Compliance, ...]:
    return tuple(
        Compliance(
            key=key,
            due=due,
            on_time=due - late,
            breached=late,
            rate=(due - late) / due if due else None,
        )
        for key, (due, late) in sorted(buckets.items())
    )
