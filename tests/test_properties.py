"""Properties of the pure domain, over lifecycles drawn by amends.testing."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from amends import ComplaintDesk, InvalidTransition, Stage
from amends.domain.commands import COMMAND_TYPES, parse_command
from amends.domain.complaint import decide, evolve, replay
from amends.testing import Lifecycle, invalid_steps, lifecycles, refused_commands

from spec import ORDER, allowed, first_reached_order, is_legal_walk


def events_of(lifecycle: Lifecycle) -> list:  # type: ignore[type-arg]
    from uuid import uuid4

    complaint_id = uuid4()
    state = None
    events = []
    for step in lifecycle.steps:
        command = parse_command(
            COMMAND_TYPES[step.command], complaint_id=complaint_id, **step.arguments
        )
        for event in decide(command, state):
            state = evolve(state, event)
            events.append(event)
    return events


@given(lifecycles())
def test_every_generated_lifecycle_is_a_legal_walk(lifecycle: Lifecycle) -> None:
    assert is_legal_walk(lifecycle.stages)


@given(lifecycles(complete=True))
def test_a_closed_complaint_passed_every_stage_in_order(lifecycle: Lifecycle) -> None:
    assert lifecycle.final_stage is Stage.PREVENTION_LOGGED
    assert first_reached_order(lifecycle.stages) == list(ORDER)


@given(lifecycles(complete=False))
def test_incomplete_lifecycles_stay_open(lifecycle: Lifecycle) -> None:
    assert lifecycle.final_stage is not Stage.PREVENTION_LOGGED


@given(lifecycles())
def test_replaying_the_events_gives_the_decided_state(lifecycle: Lifecycle) -> None:
    events = events_of(lifecycle)
    state = replay(events)
    assert state is not None
    assert state.version == len(events) == len(lifecycle.steps)
    assert state.stage is lifecycle.final_stage
    # Every prefix replays to the stage the walk had at that point.
    for n, stage in enumerate(lifecycle.stages, start=1):
        prefix = replay(events[:n])
        assert prefix is not None
        assert prefix.stage is stage


@given(lifecycles(), st.data())
def test_no_stage_accepts_a_command_the_spec_forbids(
    lifecycle: Lifecycle, data: st.DataObject
) -> None:
    events = events_of(lifecycle)
    state = replay(events)
    assert state is not None
    if state.stage is Stage.PREVENTION_LOGGED:
        forbidden = refused_commands(state.stage)
        assert set(forbidden) == set(COMMAND_TYPES) - {"receive"}
    step = data.draw(
        invalid_steps(
            state.stage,
            at=state.last_event_at,
            owner=state.owner,
            waiting=state.waiting,
        )
    )
    assert step.command not in allowed(state.stage, state.waiting)
    command = parse_command(
        COMMAND_TYPES[step.command], complaint_id=state.id, **step.arguments
    )
    try:
        decide(command, state)
    except InvalidTransition as refusal:
        assert refusal.stage is state.stage
    else:
        raise AssertionError(f"{step.command} was accepted in {state.stage}")


@settings(max_examples=30)
@given(lifecycles())
def test_the_desk_agrees_with_the_pure_domain(lifecycle: Lifecycle) -> None:
    with ComplaintDesk("memory://") as desk:
        complaint_id = lifecycle.run(desk)
        assert desk.history(complaint_id).stages == lifecycle.stages
