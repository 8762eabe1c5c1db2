"""A realistic stretch of a support team's work, simulated through the desk.

Several owners, categories, channels and severities; acknowledgements,
updates and resolutions after plausible (log-normal) delays; handoffs, waits
on the customer, gestures, dissatisfied customers who reopen their case, and
some promises broken. Every command goes through `ComplaintDesk`, in time
order across complaints, so the store holds exactly what a team would have
written; whatever would happen after "now" has not happened yet.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from amends.infra.desk import ComplaintDesk

OWNERS = ("ana", "ben", "chidi", "dana", "eun-ji", "farid")
CATEGORIES = ("billing", "delivery", "quality", "service", "privacy")
CHANNELS = ("phone", "email", "chat", "letter", "social")
SEVERITIES = (("low", 3), ("normal", 5), ("high", 2), ("urgent", 1))
SUMMARIES = {
    "billing": "Charged twice for the same order",
    "delivery": "Parcel arrived late and damaged",
    "quality": "Product stopped working after a week",
    "service": "Nobody called back as promised",
    "privacy": "Received marketing after opting out",
}


@dataclass(frozen=True)
class Planned:
    """One command a complaint's story will send, and when."""

    at: datetime
    complaint: int
    command: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class DemoSummary:
    complaints: int
    commands: int
    refused: int
    first: datetime
    last: datetime


def _hours(rng: random.Random, median: float, spread: float = 0.8) -> timedelta:
    """A log-normal delay: most near the median, a long tail of slow ones."""
    return timedelta(hours=median * math.exp(rng.gauss(0, spread)))


def plan(*, complaints: int, days: float, seed: int, now: datetime) -> list[Planned]:
    """Every command of every complaint's story, in time order, up to `now`."""
    rng = random.Random(seed)
    start = now - timedelta(days=days)
    steps: list[Planned] = []
    for n in range(complaints):
        received = start + timedelta(seconds=rng.uniform(0, days * 86400))
        steps.extend(_story(rng, n, received))
    steps = [s for s in steps if s.at <= now]
    steps.sort(key=lambda s: (s.at, s.complaint))
    return steps


def _story(rng: random.Random, n: int, at: datetime) -> list[Planned]:
    owner = rng.choice(OWNERS)
    category = rng.choice(CATEGORIES)
    severity = rng.choices(
        [s for s, _ in SEVERITIES], weights=[w for _, w in SEVERITIES]
    )[0]
    story: list[Planned] = []

    def send(command: str, **arguments: Any) -> None:
        story.append(Planned(at, n, command, {"by": owner, "at": at, **arguments}))

    send(
        "receive",
        customer=f"Customer {n:04d}",
        summary=SUMMARIES[category],
        channel=rng.choice(CHANNELS),
        category=category,
        severity=severity,
        expectation="A fix and an explanation",
    )
    at += _hours(rng, 3 if severity != "urgent" else 0.5, 1.0)
    send(
        "acknowledge", paraphrase=f"You are telling us: {SUMMARIES[category].lower()}."
    )
    at += _hours(rng, 0.3)
    send("apologize", apology="I am sorry this happened; it is on us to fix it.")
    at += _hours(rng, 1)
    promised = timedelta(hours=rng.choice((24, 48, 72)))
    send(
        "commit_plan",
        steps=["Investigate", "Fix", "Confirm with the customer"],
        due=at + promised,
    )
    if rng.random() < 0.3:
        at += _hours(rng, 2)
        new_owner = rng.choice([o for o in OWNERS if o != owner])
        send(
            "transfer_ownership",
            to=new_owner,
            reason="Needs a specialist",
            customer_told=rng.random() < 0.8,
        )
        owner = new_owner
    if rng.random() < 0.2:
        at += _hours(rng, 4)
        send("await_customer", reason="Waiting for a receipt from the customer")
        at += _hours(rng, 30)
        send("customer_replied", note="Receipt received")
    work = _hours(rng, 40, 0.9)
    updates = max(1, int(work / timedelta(hours=rng.uniform(12, 40))))
    for _ in range(updates):
        at += work / updates
        send("post_update", note="Still working on it; next update tomorrow.")
    if rng.random() < 0.2:
        value = f"{rng.choice((5, 10, 15, 25))}.00"
        send("offer_gesture", description="Fee waived", value=value, currency="EUR")
    for round_ in range(3):
        at += _hours(rng, 2)
        send("resolve", resolution="Fixed and refunded", explanation="A process gap")
        at += _hours(rng, 20)
        if round_ < 2 and rng.random() < 0.15:
            send("confirm_satisfaction", satisfied=False, reason="It happened again")
            at += _hours(rng, 12)
            send("post_update", note="Looking into the repeat.")
            continue
        send("confirm_satisfaction", satisfied=True)
        break
    if rng.random() < 0.9:
        at += _hours(rng, 48)
        send(
            "log_prevention",
            root_cause=f"{category.capitalize()} process gap",
            preventive_action="Checklist and alert added",
            informed=["team leads"],
        )
    return story


def simulate(
    desk: ComplaintDesk,
    *,
    complaints: int = 300,
    days: float = 30,
    seed: int = 7,
    progress: Callable[[int, int], None] | None = None,
) -> DemoSummary:
    """Send the planned stories through `desk`, ending at the desk's clock."""
    from amends.domain.errors import AmendsError

    now = desk.reports.clock()
    steps = plan(complaints=complaints, days=days, seed=seed, now=now)
    ids: dict[int, UUID] = {}
    refused = 0
    for done, step in enumerate(steps, start=1):
        try:
            if step.command == "receive":
                ids[step.complaint] = desk.receive(**step.arguments)
            else:
                getattr(desk, step.command)(ids[step.complaint], **step.arguments)
        except AmendsError:
            refused += 1  # a story that no longer fits (never expected)
        if progress is not None:
            progress(done, len(steps))
    return DemoSummary(
        complaints=len(ids),
        commands=len(steps),
        refused=refused,
        first=steps[0].at,
        last=steps[-1].at,
    )
