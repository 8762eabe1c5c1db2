"""Hostile input: arbitrary payloads to every command are refused cleanly.

Wrong types, blank and huge strings, control characters, naive and far-away
datetimes, unknown fields and unicode edge cases: every one ends in a named
refusal (an `AmendsError`), never an unhandled exception, and nothing is
recorded.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field, ValidationError

from amends import (
    AmendsError,
    ComplaintDesk,
    ComplaintNotFound,
    InvalidCommand,
    InvalidTransition,
)
from amends.domain import values
from amends.domain.commands import COMMAND_TYPES, field_problems
from amends.domain.values import FIRST_YEAR, LAST_YEAR, UNPRINTABLE, shown

from conftest import NOW, FixedClock
from helpers import ODD_TEXTS, RECEIVE

ODD_TEXT = st.sampled_from(ODD_TEXTS)
ODD_TIMES = st.sampled_from(
    [
        datetime(2026, 3, 1, 9, 0),  # naive
        datetime(9999, 12, 31, 23, 59, tzinfo=UTC),
        datetime(1, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=14))),
        datetime(1, 1, 1, tzinfo=UTC),
        NOW + timedelta(days=1),
    ]
)
ANYTHING: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=50),
    ODD_TEXT,
    ODD_TIMES,
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.binary(max_size=5),
    st.decimals(allow_nan=True, allow_infinity=True),
)


@st.composite
def hostile_payloads(draw: st.DrawFn, command: str) -> dict[str, Any]:
    fields = [f for f in COMMAND_TYPES[command].model_fields if f != "complaint_id"]
    payload = {
        field: draw(ANYTHING)
        for field in draw(st.lists(st.sampled_from(fields), unique=True))
    }
    if draw(st.booleans()):
        payload[draw(st.text(min_size=1, max_size=10))] = draw(ANYTHING)
    return payload


REFUSALS = (InvalidCommand, InvalidTransition, ComplaintNotFound)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(command=st.sampled_from(sorted(COMMAND_TYPES)), data=st.data())
def test_arbitrary_payloads_are_refused_by_name_and_record_nothing(
    command: str, data: st.DataObject
) -> None:
    with ComplaintDesk("memory://", clock=FixedClock()) as desk:
        complaint_id = desk.receive(**RECEIVE, at=NOW - timedelta(days=1))
        payload = data.draw(hostile_payloads(command))
        target = data.draw(
            st.sampled_from([complaint_id, str(complaint_id), "nonsense", 42, None])
        )
        position = desk.last_position()
        try:
            if command == "receive":
                desk.execute(command, **payload)
            else:
                desk.execute(command, target, **payload)
        except REFUSALS as refusal:
            assert str(refusal)
            if isinstance(refusal, InvalidCommand):
                assert refusal.problems, "an InvalidCommand names its fields"
            assert desk.last_position() == position
        except AmendsError as other:  # pragma: no cover - reported as a failure
            raise AssertionError(f"unexpected refusal {other!r}") from other
        else:
            assert desk.last_position() == position + 1


@settings(max_examples=200, deadline=None)
@given(payload=hostile_payloads("receive"))
def test_hostile_intake_next_to_valid_fields_is_refused(
    payload: dict[str, Any],
) -> None:
    with ComplaintDesk("memory://", clock=FixedClock()) as desk:
        arguments = {**RECEIVE, **payload}
        try:
            desk.execute("receive", **arguments)
        except InvalidCommand as refusal:
            assert set(refusal.fields) & (set(payload) | {"at", "external_ref"})
            assert desk.last_position() == 0
        else:
            assert desk.last_position() == 1


OUTSIDE_THE_CALENDAR_YEARS = st.one_of(
    st.integers(1, FIRST_YEAR - 1), st.integers(LAST_YEAR + 1, 9999)
).map(lambda year: datetime(year, 6, 1, 12, tzinfo=UTC))


@settings(max_examples=50, deadline=None)
@given(moment=OUTSIDE_THE_CALENDAR_YEARS, field=st.sampled_from(["at", "due"]))
def test_a_time_outside_the_calendar_years_is_never_recorded(
    moment: datetime, field: str
) -> None:
    """Business calendars cover 1900 to 2999: a command time outside them
    could not be measured in business time (no business time passes there),
    so it is refused, by name, and nothing is written."""
    with ComplaintDesk(
        "memory://", clock=FixedClock(), sla_policies="fca_disp_payments"
    ) as desk:
        if field == "at":
            attempt = lambda: desk.receive(**RECEIVE, at=moment)  # noqa: E731
        else:
            complaint = desk.receive(**RECEIVE, at=NOW - timedelta(days=1))
            desk.acknowledge(complaint, by="ana", paraphrase="P")
            desk.apologize(complaint, by="ana", apology="A")
            attempt = lambda: desk.commit_plan(  # noqa: E731
                complaint, by="ana", steps=["Refund"], due=moment
            )
        position = desk.last_position()
        with pytest.raises(InvalidCommand) as refused:
            attempt()
        assert refused.value.fields == (field,)
        assert f"{FIRST_YEAR} to {LAST_YEAR}" in str(refused.value)
        assert desk.last_position() == position
        desk.reports.backlog()  # what is recorded can be measured


def test_a_command_never_follows_a_stored_event_past_the_calendar_years(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A command left to the clock happens no earlier than the complaint's
    last event. When a store written before the limit holds one after 2999,
    the command is refused by name rather than recorded there too."""
    clock = FixedClock(datetime(3100, 1, 1, tzinfo=UTC))
    with ComplaintDesk("memory://", clock=clock) as desk:
        monkeypatch.setattr(values, "LAST_YEAR", 9999)  # as written before
        complaint = desk.receive(**RECEIVE)
        monkeypatch.undo()
        clock.now = NOW
        with pytest.raises(InvalidCommand) as refused:
            desk.add_note(complaint, by="ana", text="Called back")
        assert refused.value.fields == ("at",)
        assert "3100-01-01" in str(refused.value)
        assert desk.last_position() == 1


@pytest.mark.parametrize(
    "moment",
    [datetime(FIRST_YEAR, 1, 1, tzinfo=UTC), datetime(1930, 6, 1, tzinfo=UTC)],
)
def test_the_earliest_calendar_years_are_measured_in_business_time(
    moment: datetime,
) -> None:
    with ComplaintDesk(
        "memory://", clock=FixedClock(), sla_policies="fca_disp_payments"
    ) as desk:
        desk.receive(**RECEIVE, at=moment)
        report = desk.reports.sla()
        assert {(b.target, b.due_at.year) for b in report.breaches} == {
            ("acknowledge", moment.year),
            ("resolve", moment.year),
        }


@pytest.mark.parametrize(
    ("steps", "problems"),
    [
        ([42], [("steps.0", "Input should be a valid string")]),
        ([42, "Refund"], [("steps.0", "Input should be a valid string")]),
        (
            ["  ", None],
            [
                ("steps.0", "must not be blank"),
                ("steps.1", "Input should be a valid string"),
            ],
        ),
        ([], [("steps", "needs at least one item")]),
    ],
    ids=["one-bad-item", "one-of-two", "all-bad", "empty"],
)
def test_a_list_of_refused_items_is_not_also_called_empty(
    steps: list[Any], problems: list[tuple[str, str]]
) -> None:
    """pydantic counts a list's items after validating them: a list whose
    items were all refused would be "empty" too, which the caller's was not."""
    with ComplaintDesk("memory://", clock=FixedClock(NOW)) as desk:
        complaint_id = desk.receive(**RECEIVE)
        desk.acknowledge(complaint_id, by="ana", paraphrase="Billed twice")
        desk.apologize(complaint_id, by="ana", apology="Sorry")
        with pytest.raises(InvalidCommand) as refused:
            desk.commit_plan(
                complaint_id, by="ana", steps=steps, due=NOW + timedelta(days=3)
            )
        assert [(p.field, p.problem) for p in refused.value.problems] == problems
        assert desk.get(complaint_id).version == 3


def test_a_list_too_short_as_given_is_said_to_be_whatever_its_items() -> None:
    """The rule reads the caller's list, not what was left of it: a list of
    two where three are needed is too short, one bad item or not."""

    class Plan(BaseModel):
        steps: Annotated[tuple[str | int, ...], Field(min_length=3)]

    for items, too_short in ((["a", None], True), (["a", None, "c"], False)):
        with pytest.raises(ValidationError) as refused:
            Plan(steps=items)
        problems = field_problems(refused.value, "plan")
        assert any(p.field == "steps" for p in problems) is too_short
        assert any(p.field.startswith("steps.1") for p in problems)


FORMAT_CHARACTERS = ["\u202e", "\u200b", "\u2066", "\u00ad", "\ue000", "\U000e0001"]
"""A right-to-left override, a zero-width space, an isolate, a soft hyphen, a
private-use and a tag character: names may hold them (only control
characters are refused)."""
NAMES = st.text(
    alphabet=st.one_of(
        st.sampled_from(FORMAT_CHARACTERS),
        st.characters(blacklist_categories=["Cc", "Cs", "Zl", "Zp"]),
    ),
    min_size=1,
    max_size=12,
).filter(str.strip)
TEXTS = st.text(
    alphabet=st.one_of(
        st.sampled_from([*FORMAT_CHARACTERS, "\n", "\t", "\u2028", "\u2029"]),
        st.characters(blacklist_categories=["Cc", "Cs"]),
    ),
    min_size=1,
    max_size=40,
).filter(str.strip)


@settings(max_examples=60, deadline=None)
@given(by=NAMES, customer=NAMES, note=TEXTS, steps=st.lists(TEXTS, min_size=1))
def test_history_text_never_contains_an_unprintable_character(
    by: str, customer: str, note: str, steps: list[str]
) -> None:
    """The timeline (`amends history`) is read on a terminal: what people
    wrote in it, names and prose, is shown with every `UNPRINTABLE`
    character escaped, as `amends show` and the reports show it, so a
    right-to-left override in a name cannot reverse the rest of its line
    (its stages) nor a name pass for another it looks the same as."""
    with ComplaintDesk("memory://", clock=FixedClock()) as desk:
        complaint_id = desk.receive(**{**RECEIVE, "by": by, "customer": customer})
        desk.add_note(complaint_id, by=by, text=note)
        desk.acknowledge(complaint_id, by=by, paraphrase=note)
        desk.apologize(complaint_id, by=by, apology=note)
        desk.commit_plan(complaint_id, by=by, steps=steps, due=NOW + timedelta(days=1))
        text = desk.history(complaint_id).to_text()
    for line in text.split("\n"):
        assert not any(unicodedata.category(ch) in UNPRINTABLE for ch in line), line
    assert len(text.splitlines()) == text.count("\n")  # no other line breaks
    assert f"by {shown(by.strip())}  (new -> RECEIVED)" in text
