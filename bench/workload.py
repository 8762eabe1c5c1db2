"""The complaints every section feeds in: realistic, deterministic, time-ordered.

Texts are drawn from pools of what support staff actually write (a seeded
`random.Random`, so two runs store the same bytes), because payload size and
validation work scale with the text: "x" as every argument would flatter
amends' validators and the JSON encoders alike. Times are timezone-aware UTC,
start 30 days ago and increase within each complaint, so amends accepts every
explicit `at` (not before the last event, not in the future).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

STAGE_COUNT = 8
"""receive, acknowledge, apologize, commit_plan, post_update, resolve,
confirm_satisfaction, log_prevention: one event each."""

HISTORY_START = timedelta(days=30)
"""How far back the first complaint is received."""

HISTORY_SPAN = timedelta(days=25)
"""Receipts are spread over this span; the last walk ends about two days later."""

STEP_OFFSETS = (
    timedelta(0),
    timedelta(minutes=12),
    timedelta(minutes=18),
    timedelta(minutes=30),
    timedelta(hours=3),
    timedelta(hours=20),
    timedelta(hours=30),
    timedelta(hours=48),
)
"""When each of the eight steps happens, after the complaint is received."""

PLAN_DUE_AFTER = timedelta(days=3)

STAFF = (
    "Ana Ribeiro",
    "Ben Okafor",
    "Chloé Martin",
    "Dmitri Volkov",
    "Ewa Nowak",
    "Farid Haddad",
    "Grace O'Neill",
    "Hiroshi Tanaka",
)
CUSTOMERS = (
    "Jo Smith",
    "Priya Raman",
    "Lucas Ferreira",
    "Mette Andersen",
    "Kwame Mensah",
    "Sofia Rossi",
    "Liam Byrne",
    "Yuki Sato",
    "Amira Hassan",
    "Noah Fischer",
)
CHANNELS = ("phone", "email", "web form", "chat", "letter", "in store")
SEVERITIES = ("low", "normal", "normal", "high", "urgent")
CASES = (
    (
        "billing",
        "Charged twice for the March invoice; the second charge is still pending "
        "on my card statement.",
        "Refund of the duplicate charge and confirmation in writing.",
        "You were billed twice for March and want the extra charge returned.",
        "A retried payment job charged the card a second time.",
        "Payment retries were not idempotent.",
        "Retries now carry an idempotency key checked by the payment provider.",
    ),
    (
        "delivery",
        "The parcel was marked as delivered on Tuesday but nothing arrived, and "
        "the driver's photo shows a different front door.",
        "Redelivery this week or a full refund.",
        "Your order was marked delivered to the wrong address and you still "
        "have not received it.",
        "The courier scanned the parcel at a neighbouring address.",
        "Courier photo checks were not compared against the delivery address.",
        "Delivery photos are now matched to the address before closing a route.",
    ),
    (
        "service",
        "The engineer missed two booked appointments without calling, and I "
        "took a day off work for each.",
        "A confirmed appointment and compensation for the lost days.",
        "Two booked visits were missed without notice, costing you two days of leave.",
        "The visits were rescheduled internally but the reminder SMS was not.",
        "Rescheduling did not trigger customer notifications.",
        "Any change to a booked slot now sends an SMS and an email.",
    ),
    (
        "product",
        "The kettle's lid hinge cracked after three weeks of normal use and "
        "now it will not switch off by itself.",
        "A replacement kettle, not a repair.",
        "Your kettle broke within a month and no longer turns itself off, "
        "which is unsafe.",
        "A batch of hinges was moulded with the wrong plastic.",
        "Incoming parts inspection skipped material checks for this supplier.",
        "Material certificates are now verified for every incoming hinge batch.",
    ),
    (
        "account",
        "I was locked out of my account after a password reset and support "
        "asked me to resend my ID three times.",
        "Access restored today and my ID documents deleted afterwards.",
        "You cannot get into your account and were asked for your ID repeatedly.",
        "Uploaded IDs were filed against a stale ticket and never reviewed.",
        "Identity checks were routed by ticket number, not by customer.",
        "Identity uploads are now attached to the customer record directly.",
    ),
)
APOLOGIES = (
    "I am sorry; that was our mistake and it should not have happened.",
    "I apologise for the trouble this has caused you, and for the wait.",
    "We are sorry. You should not have had to chase us for this.",
)
PLAN_STEPS = (
    "Confirm the facts with the team responsible",
    "Put the immediate problem right",
    "Call the customer back with what was done",
    "Check a week later that it stayed fixed",
)
UPDATES = (
    "The team confirmed what happened; the fix is scheduled for tomorrow.",
    "Spoke to the customer: the first step is done and they are kept informed.",
    "Escalated to the team lead, who has approved the remedy.",
)
RESOLUTIONS = (
    "Refund issued and confirmed by email.",
    "Replacement dispatched by next-day courier with tracking.",
    "Appointment rebooked and attended; compensation paid.",
    "Access restored and the stored documents deleted.",
)
INFORMED = ("support leads", "operations team", "quality manager", "product owner")


@dataclass(frozen=True)
class ComplaintScript:
    """One complaint's arguments for all eight steps, the same for amends and raw."""

    by: str
    customer: str
    summary: str
    channel: str
    category: str
    severity: str
    expectation: str
    paraphrase: str
    apology: str
    steps: tuple[str, ...]
    due: datetime
    note: str
    resolution: str
    explanation: str
    root_cause: str
    preventive_action: str
    informed: tuple[str, ...]
    times: tuple[datetime, ...]
    """When each of the eight steps happens, increasing, all in the past."""


def make_scripts(
    count: int, *, now: datetime | None = None, seed: int = 2026
) -> list[ComplaintScript]:
    """`count` complaints received between 30 and 5 days before `now`."""
    now = now or datetime.now(UTC)
    start = (now - HISTORY_START).replace(microsecond=0)
    spacing = min(timedelta(minutes=10), HISTORY_SPAN / max(count, 1))
    rng = random.Random(seed)
    scripts = []
    for index in range(count):
        received = start + spacing * index
        times = tuple(received + offset for offset in STEP_OFFSETS)
        category, summary, expectation, paraphrase, explanation, cause, action = (
            rng.choice(CASES)
        )
        scripts.append(
            ComplaintScript(
                by=rng.choice(STAFF),
                customer=rng.choice(CUSTOMERS),
                summary=summary,
                channel=rng.choice(CHANNELS),
                category=category,
                severity=rng.choice(SEVERITIES),
                expectation=expectation,
                paraphrase=paraphrase,
                apology=rng.choice(APOLOGIES),
                steps=tuple(PLAN_STEPS[: rng.randint(2, len(PLAN_STEPS))]),
                due=times[3] + PLAN_DUE_AFTER,
                note=rng.choice(UPDATES),
                resolution=rng.choice(RESOLUTIONS),
                explanation=explanation,
                root_cause=cause,
                preventive_action=action,
                informed=tuple(rng.sample(INFORMED, rng.randint(1, 3))),
                times=times,
            )
        )
    assert all(script.times[-1] < now for script in scripts)
    return scripts
