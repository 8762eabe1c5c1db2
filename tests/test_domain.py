"""The pure Decider: validation, guards and replay, with no store at all."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from amends import (
    HistoryViolation,
    InvalidCommand,
    InvalidTransition,
    Stage,
)
from amends.domain import commands as c
from amends.domain import events as e
from amends.domain.commands import parse_command
from amends.domain.complaint import Complaint, decide, evolve, replay
from amends.domain.errors import ComplaintNotFound
from amends.domain.values import (
    MAX_LABEL_LENGTH,
    MAX_NAME_LENGTH,
    MAX_TEXT_LENGTH,
    UNPRINTABLE,
    _width_by_character,
    display_width,
    shown,
)

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
CID = UUID("00000000-0000-4000-8000-000000000001")


def command(kind: type[c.Command], at: datetime = T0, **fields: Any) -> c.Command:
    return parse_command(
        kind, complaint_id=CID, by=fields.pop("by", "ana"), at=at, **fields
    )


def received(at: datetime = T0) -> Complaint:
    receive = command(
        c.Receive,
        at,
        customer="Jo",
        summary="Broken kettle",
        channel="email",
        category="quality",
        severity="normal",
        expectation="A new kettle",
    )
    (event,) = decide(receive, None)
    return evolve(None, event)


def run(state: Complaint | None, cmd: c.Command) -> Complaint:
    for event in decide(cmd, state):
        state = evolve(state, event)
    assert state is not None
    return state


def test_receive_makes_the_receiver_the_owner() -> None:
    state = received()
    assert (state.stage, state.owner, state.version) == (Stage.RECEIVED, "ana", 1)
    assert state.reached_at(Stage.RECEIVED) == T0


def test_receiving_an_existing_complaint_records_nothing() -> None:
    state = received()
    again = command(
        c.Receive,
        customer="Jo",
        summary="x",
        channel="email",
        category="quality",
        severity="low",
        expectation="x",
    )
    assert decide(again, state) == ()


def test_commands_for_an_unknown_complaint_are_not_found() -> None:
    with pytest.raises(ComplaintNotFound):
        decide(command(c.Acknowledge, paraphrase="x"), None)


def test_invalid_transition_names_complaint_stage_command_and_allowed() -> None:
    with pytest.raises(InvalidTransition) as caught:
        decide(command(c.Resolve, resolution="r", explanation="e"), received())
    message = str(caught.value)
    assert str(CID) in message
    assert "RECEIVED" in message
    assert "resolve" in message
    allowed_now = (
        "acknowledge",
        "transfer_ownership",
        "add_note",
        "offer_gesture",
        "await_customer",
    )
    assert f"allowed now: {', '.join(allowed_now)}" in message
    assert caught.value.allowed == allowed_now


def test_waiting_on_the_customer_pauses_until_they_reply() -> None:
    state = received()
    with pytest.raises(InvalidTransition, match="nobody awaits the customer"):
        decide(command(c.CustomerReplied), state)
    waiting = run(
        state, command(c.AwaitCustomer, at=T0 + timedelta(hours=1), reason="r")
    )
    assert waiting.waiting_since == T0 + timedelta(hours=1)
    assert "customer_replied" in waiting.allowed_commands
    assert "await_customer" not in waiting.allowed_commands
    with pytest.raises(InvalidTransition, match="it is waiting on the customer"):
        decide(command(c.AwaitCustomer, reason="again"), waiting)
    # The team may go on working while it waits.
    later = T0 + timedelta(hours=2)
    acknowledged = run(waiting, command(c.Acknowledge, at=later, paraphrase="p"))
    assert acknowledged.waiting
    replied = run(acknowledged, command(c.CustomerReplied, at=later, note="Here"))
    assert (replied.waiting_since, replied.waits) == (None, 1)


def test_replay_refuses_a_reply_nobody_awaited() -> None:
    first, _ = history()
    reply = e.CustomerReplied(
        originator_id=CID,
        originator_version=2,
        timestamp=T0,
        by="ana",
        previous_digest=first.digest,
    )
    with pytest.raises(HistoryViolation, match="while not waiting"):
        replay([first, reply])


@pytest.mark.parametrize(
    ("fields", "bad_field", "words"),
    [
        ({"paraphrase": "   "}, "paraphrase", "must not be blank"),
        ({}, "paraphrase", "is required"),
        ({"paraphrase": "x" * (MAX_TEXT_LENGTH + 1)}, "paraphrase", "longer than"),
        ({"paraphrase": "bell\x07"}, "paraphrase", "control characters"),
        ({"paraphrase": "ok", "colour": "red"}, "colour", "not an argument"),
        ({"paraphrase": "ok", "by": " "}, "by", "must not be blank"),
        ({"paraphrase": "ok", "by": "a" * (MAX_NAME_LENGTH + 1)}, "by", "longer"),
        ({"paraphrase": "ok", "by": "two\nlines"}, "by", "one line"),
        ({"paraphrase": 42}, "paraphrase", "string"),
    ],
)
def test_bad_arguments_name_the_field(
    fields: dict[str, Any], bad_field: str, words: str
) -> None:
    with pytest.raises(InvalidCommand) as caught:
        command(c.Acknowledge, **fields)
    assert bad_field in caught.value.fields
    assert words in str(caught.value)


def test_too_many_items_are_refused_in_amends_words() -> None:
    """A list longer than allowed is named with its count and the limit, not
    in pydantic's words ("Tuple should have at most 50 items after
    validation"), which name a type the caller never wrote."""
    steps = ["step"] * 51
    with pytest.raises(InvalidCommand) as caught:
        command(c.CommitPlan, steps=steps, due=T0 + timedelta(days=1))
    assert caught.value.fields == ("steps",)
    assert "steps: has 51 items, more than the 50 allowed" in str(caught.value)
    assert "Tuple" not in str(caught.value)


_SPELLED = st.text(
    st.characters(categories=["L", "M", "Nd"]),
    min_size=1,
    max_size=12,
).filter(lambda text: unicodedata.category(text[0]) != "Mn")


@given(name=_SPELLED, category=_SPELLED)
def test_a_name_or_grouping_spelled_two_ways_is_always_recorded_one_way(
    name: str, category: str
) -> None:
    """Who acts or owns, and a channel or category, are recorded composed
    (NFC): "José" typed with a combining accent and typed precomposed look
    alike, and were two owners, two categories, in every report."""
    received = [
        command(
            c.Receive,
            by=unicodedata.normalize(form, name),
            customer="Jo",
            summary="s",
            channel=unicodedata.normalize(form, category),
            category=unicodedata.normalize(form, category),
            severity="low",
            expectation="e",
        )
        for form in ("NFD", "NFC")
    ]
    first, second = (cmd.model_dump() for cmd in received)
    assert first == second
    assert first["by"] == unicodedata.normalize("NFC", name.strip())
    handoff = command(
        c.TransferOwnership,
        to=unicodedata.normalize("NFD", name),
        reason="r",
        customer_told=True,
    )
    assert handoff.to == first["by"]


@given(text=st.text())
def test_width_and_escaping_take_no_shortcut_that_changes_them(text: str) -> None:
    """ASCII text is measured by its length and shown as it is, without
    asking Unicode about each letter: never another width or another
    escaping than the letter by letter rules give."""
    ascii_only = text.encode("ascii", "ignore").decode()
    for drawn in (text, ascii_only):  # the shortcut taken on every example
        assert display_width(drawn) == _width_by_character(drawn)
        letter_by_letter = "".join(
            ch.encode("unicode_escape").decode("ascii")
            if unicodedata.category(ch) in UNPRINTABLE
            else ch
            for ch in drawn
        )
        assert shown(drawn) == letter_by_letter


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(InvalidCommand) as caught:
        command(c.Acknowledge, at=datetime(2026, 1, 5, 9, 0), paraphrase="x")
    assert caught.value.fields == ("at",)
    assert "timezone-aware" in str(caught.value)


def test_times_are_normalised_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    cmd = command(
        c.Acknowledge, at=datetime(2026, 1, 5, 11, 0, tzinfo=plus_two), paraphrase="x"
    )
    assert cmd.at == T0
    assert cmd.at.tzinfo is UTC


def test_every_bad_field_is_named_at_once() -> None:
    with pytest.raises(InvalidCommand) as caught:
        command(c.TransferOwnership, to="", reason="", customer_told="maybe")
    assert set(caught.value.fields) == {"to", "reason", "customer_told"}


def test_label_limit() -> None:
    with pytest.raises(InvalidCommand) as caught:
        command(
            c.Receive,
            customer="Jo",
            summary="s",
            channel="c" * (MAX_LABEL_LENGTH + 1),
            category="q",
            severity="normal",
            expectation="e",
        )
    assert caught.value.fields == ("channel",)


def test_unknown_severity_is_refused() -> None:
    with pytest.raises(InvalidCommand) as caught:
        command(
            c.Receive,
            customer="Jo",
            summary="s",
            channel="c",
            category="q",
            severity="catastrophic",
            expectation="e",
        )
    assert caught.value.fields == ("severity",)


def test_a_command_earlier_than_the_last_event_is_refused() -> None:
    state = received()
    with pytest.raises(InvalidCommand) as caught:
        decide(
            command(c.Acknowledge, at=T0 - timedelta(seconds=1), paraphrase="x"), state
        )
    assert caught.value.fields == ("at",)


def test_commands_at_the_same_instant_are_accepted() -> None:
    state = run(received(), command(c.Acknowledge, paraphrase="x"))
    assert state.stage is Stage.ACKNOWLEDGED


def walk_to_apologized() -> Complaint:
    state = run(received(), command(c.Acknowledge, paraphrase="x"))
    return run(state, command(c.Apologize, apology="Sorry"))


def test_a_plan_needs_a_step_and_a_due_date_after_now() -> None:
    state = walk_to_apologized()
    with pytest.raises(InvalidCommand) as caught:
        command(c.CommitPlan, steps=[], due=T0 + timedelta(days=1))
    assert caught.value.fields == ("steps",)
    with pytest.raises(InvalidCommand) as caught:
        decide(command(c.CommitPlan, steps=["fix"], due=T0), state)
    assert caught.value.fields == ("due",)
    planned = run(
        state, command(c.CommitPlan, steps=["a", "b"], due=T0 + timedelta(hours=24))
    )
    assert planned.plan_steps == ("a", "b")
    assert planned.due == T0 + timedelta(hours=24)


def planned() -> Complaint:
    return run(
        walk_to_apologized(),
        command(c.CommitPlan, steps=["fix"], due=T0 + timedelta(days=1)),
    )


def test_resolving_straight_from_the_plan_is_refused() -> None:
    with pytest.raises(InvalidTransition):
        decide(command(c.Resolve, resolution="r", explanation="e"), planned())


def test_a_revised_due_date_needs_a_reason_and_a_future_date() -> None:
    state = planned()
    with pytest.raises(InvalidCommand) as caught:
        decide(
            command(c.PostUpdate, note="n", revised_due=T0 + timedelta(days=3)), state
        )
    assert caught.value.fields == ("revision_reason",)
    with pytest.raises(InvalidCommand) as caught:
        decide(command(c.PostUpdate, note="n", revision_reason="why"), state)
    assert caught.value.fields == ("revision_reason",)
    with pytest.raises(InvalidCommand) as caught:
        decide(
            command(c.PostUpdate, note="n", revised_due=T0, revision_reason="r"), state
        )
    assert caught.value.fields == ("revised_due",)
    updated = run(
        state,
        command(
            c.PostUpdate,
            note="n",
            revised_due=T0 + timedelta(days=3),
            revision_reason="parts late",
        ),
    )
    assert (updated.stage, updated.due, updated.due_revisions) == (
        Stage.UPDATING,
        T0 + timedelta(days=3),
        1,
    )


def resolved() -> Complaint:
    state = run(planned(), command(c.PostUpdate, note="n"))
    return run(state, command(c.Resolve, resolution="r", explanation="e"))


def test_dissatisfaction_needs_a_reason_and_reopens() -> None:
    state = resolved()
    with pytest.raises(InvalidCommand) as caught:
        decide(command(c.ConfirmSatisfaction, satisfied=False), state)
    assert caught.value.fields == ("reason",)
    reopened = run(
        state, command(c.ConfirmSatisfaction, satisfied=False, reason="still broken")
    )
    assert (reopened.stage, reopened.reopen_count, reopened.satisfied) == (
        Stage.UPDATING,
        1,
        False,
    )
    # The first resolution keeps its date; reaching RESOLVED again does not move it.
    again = run(reopened, command(c.Resolve, resolution="r2", explanation="e2"))
    assert again.reached_at(Stage.RESOLVED) == state.reached_at(Stage.RESOLVED)


def test_satisfied_must_be_a_real_boolean() -> None:
    with pytest.raises(InvalidCommand) as caught:
        command(c.ConfirmSatisfaction, satisfied="yes")
    assert caught.value.fields == ("satisfied",)


def test_prevention_closes_the_case_and_needs_someone_informed() -> None:
    state = run(resolved(), command(c.ConfirmSatisfaction, satisfied=True))
    with pytest.raises(InvalidCommand) as caught:
        command(c.LogPrevention, root_cause="r", preventive_action="p", informed=[])
    assert caught.value.fields == ("informed",)
    closed = run(
        state,
        command(
            c.LogPrevention, root_cause="r", preventive_action="p", informed=["qa"]
        ),
    )
    assert closed.is_closed
    assert closed.allowed_commands == ()
    with pytest.raises(InvalidTransition) as caught_transition:
        decide(command(c.AddNote, text="late note"), closed)
    assert "allowed now: none" in str(caught_transition.value)


def test_transfer_changes_owner_and_refuses_the_current_owner() -> None:
    state = received()
    with pytest.raises(InvalidCommand) as caught:
        decide(
            command(c.TransferOwnership, to="ana", reason="r", customer_told=True),
            state,
        )
    assert caught.value.fields == ("to",)
    moved = run(
        state, command(c.TransferOwnership, to="ben", reason="r", customer_told=True)
    )
    assert (moved.owner, moved.received_by, moved.handoffs, moved.stage) == (
        "ben",
        "ana",
        1,
        Stage.RECEIVED,
    )


def test_gesture_value_and_currency_go_together() -> None:
    state = received()
    with pytest.raises(InvalidCommand) as caught:
        decide(command(c.OfferGesture, description="d", value="5"), state)
    assert caught.value.fields == ("currency",)
    with pytest.raises(InvalidCommand) as caught:
        decide(command(c.OfferGesture, description="d", currency="EUR"), state)
    assert caught.value.fields == ("currency",)
    with pytest.raises(InvalidCommand) as caught:
        command(c.OfferGesture, description="d", value="-1", currency="EUR")
    assert caught.value.fields == ("value",)
    with pytest.raises(InvalidCommand) as caught:
        command(c.OfferGesture, description="d", value="1", currency="euro")
    assert caught.value.fields == ("currency",)
    offered = run(
        state, command(c.OfferGesture, description="d", value="5.50", currency="EUR")
    )
    assert offered.gestures_offered == 1
    # -0.00 passed `ge=0` and read "-0.00" in the history: it is 0.00.
    nothing = command(c.OfferGesture, description="d", value="-0.00", currency="EUR")
    assert isinstance(nothing, c.OfferGesture)
    assert str(nothing.value) == "0.00"


def history() -> list[e.ComplaintEvent]:
    state = received()
    first = e.Received(
        originator_id=CID,
        originator_version=1,
        timestamp=T0,
        by="ana",
        customer=state.customer,
        summary=state.summary,
        channel=state.channel,
        category=state.category,
        severity=state.severity,
        expectation=state.expectation,
        preferred_contact=state.channel,
    )
    second = e.Acknowledged(
        originator_id=CID,
        originator_version=2,
        timestamp=T0,
        by="ana",
        paraphrase="p",
        previous_digest=first.digest,
    )
    return [first, second]


def test_replay_of_decided_events_equals_the_decided_state() -> None:
    state = run(received(), command(c.Acknowledge, paraphrase="p"))
    assert replay(history()) == state


def test_replay_refuses_a_skipped_stage() -> None:
    events = history()
    events[1] = e.Apologized(
        originator_id=CID, originator_version=2, timestamp=T0, by="ana", apology="a"
    )
    with pytest.raises(HistoryViolation) as caught:
        replay(events)
    assert caught.value.version == 2
    assert "Apologized is not allowed in RECEIVED" in str(caught.value)


def test_replay_refuses_a_gap_in_versions() -> None:
    events = history()
    events[1] = events[1].model_copy(update={"originator_version": 3})
    with pytest.raises(HistoryViolation, match="expected version 2"):
        replay(events)


def test_replay_refuses_time_going_backwards() -> None:
    events = history()
    events[1] = events[1].model_copy(update={"timestamp": T0 - timedelta(minutes=1)})
    with pytest.raises(HistoryViolation, match="time goes backwards"):
        replay(events)


def test_replay_refuses_a_history_that_does_not_start_with_receive() -> None:
    with pytest.raises(HistoryViolation, match="not yet received"):
        replay([history()[1].model_copy(update={"originator_version": 1})])


def test_replay_refuses_a_broken_digest_chain() -> None:
    first, second = history()
    altered = first.model_copy(update={"customer": "Someone Else"})
    with pytest.raises(HistoryViolation, match="digest chain is broken") as caught:
        replay([altered, second])
    assert caught.value.version == 2


def test_each_event_chains_to_its_predecessor() -> None:
    state = run(received(), command(c.Acknowledge, paraphrase="p"))
    (event,) = decide(command(c.Apologize, apology="sorry"), state)
    assert event.previous_digest == state.head_digest
    assert len(state.head_digest) == 64
    assert evolve(state, event).head_digest == event.digest != state.head_digest
