"""`amends.testing` as a team's property tests use it: what its strategies
promise holds on a real desk."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amends import ComplaintDesk, InvalidTransition
from amends.domain.commands import COMMAND_TYPES, Command, parse_command
from amends.domain.lifecycle import command_names
from amends.testing import (
    Lifecycle,
    arguments_for,
    invalid_steps_after,
    later,
    lifecycles,
    texts,
)

NEW_YORK = ZoneInfo("America/New_York")
FALL_BACK = datetime(2024, 11, 3, 1, 30, tzinfo=NEW_YORK, fold=1)
"""The second 01:30 of the night New York's clocks go back: 06:30 UTC. A
timedelta added to it moves the wall clock and lands at 05:31 UTC plus."""
AROUND_DST = st.datetimes(
    min_value=datetime(2024, 3, 9),
    max_value=datetime(2024, 11, 4),
    timezones=st.just(NEW_YORK),
)
"""Times in a zone with daylight saving, both changes of 2024 among them."""


def parsed(name: str, **arguments: Any) -> Any:
    command: Command = parse_command(
        COMMAND_TYPES[name], complaint_id=uuid4(), **arguments
    )
    return command


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from([None, False, True]).flatmap(
        lambda complete: lifecycles(complete=complete)
    ),
    st.data(),
)
def test_a_step_drawn_after_a_lifecycle_is_always_refused_and_records_nothing(
    lifecycle: Lifecycle, data: st.DataObject
) -> None:
    """Waiting on the customer changes what is refused (`customer_replied`
    is allowed, `await_customer` is not): the lifecycle says whether it
    ends waiting, so the drawn step is one the complaint refuses. An
    incomplete lifecycle ends where its last kept step leaves it, not where
    the closing step it dropped would have."""
    with ComplaintDesk("memory://") as desk:
        complaint_id = lifecycle.run(desk)
        complaint = desk.get(complaint_id)
        assert (complaint.stage, complaint.waiting, complaint.owner) == (
            lifecycle.final_stage,
            lifecycle.waiting,
            lifecycle.owner,
        )
        assert complaint.last_event_at == lifecycle.last_at
        step = data.draw(invalid_steps_after(lifecycle))
        with pytest.raises(InvalidTransition):
            step.apply(desk, complaint_id)
        assert desk.get(complaint_id).version == complaint.version


@settings(max_examples=50, deadline=None)
@given(lifecycles(start=AROUND_DST))
def test_a_lifecycle_started_in_any_zone_runs_in_order(lifecycle: Lifecycle) -> None:
    times = [step.arguments["at"] for step in lifecycle.steps]
    assert all(t.tzinfo is UTC for t in times)
    assert times == sorted(times)
    with ComplaintDesk("memory://") as desk:
        complaint_id = lifecycle.run(desk)
        assert desk.get(complaint_id).stage is lifecycle.final_stage


@given(st.one_of(st.just(FALL_BACK), AROUND_DST), st.data())
def test_later_is_later_in_real_time_across_a_change_of_clocks(
    at: datetime, data: st.DataObject
) -> None:
    moment = data.draw(later(at))
    assert moment.tzinfo is UTC
    assert timedelta(minutes=1) <= moment - at <= timedelta(days=30)


def test_a_plan_due_later_than_the_second_half_hour_of_a_fall_back_is_accepted() -> (
    None
):
    @settings(max_examples=30, deadline=None)
    @given(arguments_for("commit_plan", at=FALL_BACK))
    def plan_is_valid(arguments: dict[str, Any]) -> None:
        command = parsed("commit_plan", by="ana", at=FALL_BACK, **arguments)
        assert command.due > FALL_BACK

    plan_is_valid()


def test_a_naive_time_is_refused_by_the_strategies_by_name() -> None:
    naive = datetime(2024, 5, 1, 12)
    with pytest.raises(ValueError, match=r"later\(at\) must be timezone-aware"):
        later(naive)

    @given(lifecycles(start=st.just(naive)))
    def drawn(lifecycle: Lifecycle) -> None:
        raise AssertionError("a naive start was drawn from")

    with pytest.raises(ValueError, match=r"lifecycles\(start=...\) must be"):
        drawn()


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(texts(200, lines=True), texts(100))
def test_texts_are_what_the_desk_takes_symbols_and_marks_included(
    prose: str, name: str
) -> None:
    command = parsed(
        "transfer_ownership",
        by="ana",
        at=datetime(2024, 5, 1, tzinfo=UTC),
        to=name,
        reason=prose,
        customer_told=True,
    )
    # As drawn: the desk trims spaces at either end, and texts() draws
    # none there, so a round trip reads back what was sent.
    assert command.reason == prose
    assert command.to == name
    assert not {"\n", "\t", "\r", "\u2028", "\u2029"} & set(name)


def test_texts_reach_symbols_marks_and_line_breaks() -> None:
    """The strategies' reach: a user's serialisation tests see `<`, `€`,
    emoji and combining accents, and prose sees line breaks."""
    seen: set[str] = set()

    @settings(max_examples=400, database=None)
    @given(texts(lines=True))
    def collect(text: str) -> None:
        seen.update(unicodedata.category(ch) for ch in text)
        seen.update("line" for ch in text if ch in "\t\n\r\u2028\u2029")

    collect()
    # Format characters (a zero-width joiner, a right-to-left override) and
    # line separators break columns, CSV and terminals: drawn as well.
    assert {"Cf", "line"} <= seen
    assert {"L", "M", "N", "P", "S", "Z"} <= {category[0] for category in seen}


@pytest.mark.parametrize("name", command_names())
def test_every_command_has_arguments_the_desk_takes(name: str) -> None:
    at = datetime(2024, 5, 1, tzinfo=UTC)

    @settings(max_examples=30, deadline=None)
    @given(arguments_for(name, at=at, owner="ana"))
    def valid(arguments: dict[str, Any]) -> None:
        parsed(name, by="ana", at=at, **arguments)

    valid()


def test_a_lifecycle_needs_at_least_one_step() -> None:
    @given(lifecycles(max_steps=0))
    def drawn(lifecycle: Lifecycle) -> None:
        raise AssertionError("drawn with no steps allowed")

    with pytest.raises(ValueError, match="max_steps must be at least 1"):
        drawn()


@settings(max_examples=30, deadline=None)
@given(lifecycles(complete=True, max_steps=12), st.data())
def test_a_lifecycle_cut_short_says_where_its_own_steps_end(
    lifecycle: Lifecycle, data: st.DataObject
) -> None:
    kept = data.draw(st.integers(1, len(lifecycle.steps)))
    cut = Lifecycle(lifecycle.steps[:kept], lifecycle.stages[:kept])
    with ComplaintDesk("memory://") as desk:
        complaint = desk.get(cut.run(desk))
    assert (complaint.waiting, complaint.owner, complaint.last_event_at) == (
        cut.waiting,
        cut.owner,
        cut.last_at,
    )


def test_arguments_for_refuses_a_naive_time_for_every_command() -> None:
    for name in command_names():
        with pytest.raises(ValueError, match=r"arguments_for\(at=...\) must be"):
            arguments_for(name, at=datetime(2024, 5, 1))
