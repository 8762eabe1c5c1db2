"""The stages a complaint walks through, in the order a well-run team takes them."""

from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    """Where a complaint stands. The declaration order is the lifecycle order."""

    RECEIVED = "RECEIVED"
    ACKNOWLEDGED = "ACKNOWLEDGED"
    APOLOGIZED = "APOLOGIZED"
    PLAN_COMMITTED = "PLAN_COMMITTED"
    UPDATING = "UPDATING"
    RESOLVED = "RESOLVED"
    SATISFACTION_CONFIRMED = "SATISFACTION_CONFIRMED"
    PREVENTION_LOGGED = "PREVENTION_LOGGED"


class Severity(StrEnum):
    """How much a complaint hurts; SLA policies set their targets per severity."""

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"
