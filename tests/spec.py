"""The lifecycle as the issue states it, written out by hand.

Tests compare the transition table with this independent copy, so an edit to
the table that allows a skip (say RECEIVED -> APOLOGIZED) fails the suite
instead of silently flowing into the guards, strategies and docs that read it.
"""

from itertools import pairwise

from amends import Stage

ORDER: tuple[Stage, ...] = (
    Stage.RECEIVED,
    Stage.ACKNOWLEDGED,
    Stage.APOLOGIZED,
    Stage.PLAN_COMMITTED,
    Stage.UPDATING,
    Stage.RESOLVED,
    Stage.SATISFACTION_CONFIRMED,
    Stage.PREVENTION_LOGGED,
)

ANYTIME = {"transfer_ownership", "add_note", "offer_gesture", "await_customer"}
"""Allowed in every open stage (await_customer only when not already waiting)."""

ALLOWED: dict[Stage, set[str]] = {
    Stage.RECEIVED: {"acknowledge"} | ANYTIME,
    Stage.ACKNOWLEDGED: {"apologize"} | ANYTIME,
    Stage.APOLOGIZED: {"commit_plan"} | ANYTIME,
    Stage.PLAN_COMMITTED: {"post_update"} | ANYTIME,
    Stage.UPDATING: {"post_update", "resolve"} | ANYTIME,
    Stage.RESOLVED: {"confirm_satisfaction"} | ANYTIME,
    Stage.SATISFACTION_CONFIRMED: {"log_prevention"} | ANYTIME,
    Stage.PREVENTION_LOGGED: set(),
}

ALL_COMMANDS = set().union(*ALLOWED.values()) | {"customer_replied"}


def allowed(stage: Stage, waiting: bool = False) -> set[str]:
    """While waiting on the customer, customer_replied replaces await_customer."""
    if not waiting or stage is Stage.PREVENTION_LOGGED:
        return ALLOWED[stage]
    return (ALLOWED[stage] - {"await_customer"}) | {"customer_replied"}


def is_legal_move(source: Stage, target: Stage) -> bool:
    """Stay, take exactly one step forward, or reopen a resolved case."""
    i, j = ORDER.index(source), ORDER.index(target)
    return j in (i, i + 1) or (source, target) == (Stage.RESOLVED, Stage.UPDATING)


def is_legal_walk(stages: list[Stage] | tuple[Stage, ...]) -> bool:
    if not stages or stages[0] is not Stage.RECEIVED:
        return False
    return all(is_legal_move(a, b) for a, b in pairwise(stages))


def first_reached_order(stages: list[Stage] | tuple[Stage, ...]) -> list[Stage]:
    return list(dict.fromkeys(stages))
