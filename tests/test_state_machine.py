"""A hypothesis state machine drives a desk with random valid and invalid commands.

After every step, for every complaint: its stages form a legal walk (checked
against tests/spec.py, not the table), a refused command left the store exactly
as it was, the complaint read back from the store equals the state the test
holds, and a closed complaint passed through all eight stages in order.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from amends import (
    Complaint,
    ComplaintDesk,
    InvalidCommand,
    InvalidTransition,
    Stage,
)
from amends.testing import arguments_for, gaps, people

from conftest import NOW, FixedClock
from spec import (
    ALL_COMMANDS,
    ANYTIME,
    ORDER,
    allowed,
    first_reached_order,
    is_legal_walk,
)

WAIT = {"customer_replied"}

COMMANDS = sorted(ALL_COMMANDS)


class LifecycleMachine(RuleBasedStateMachine):
    """One desk, several complaints, random commands."""

    complaints = Bundle("complaints")
    closed_seen = 0

    def __init__(self, store_url: str) -> None:
        super().__init__()
        self.clock = FixedClock(NOW)
        self.desk = ComplaintDesk(store_url, clock=self.clock)
        self.held: dict[UUID, Complaint] = {}

    def teardown(self) -> None:
        self.desk.close()

    # ----------------------------------------------------------------- rules

    @rule(target=complaints, data=st.data())
    def receive(self, data: st.DataObject) -> UUID:
        at = self.clock.advance(minutes=data.draw(st.integers(0, 600)))
        arguments = data.draw(arguments_for("receive", at=at))
        complaint_id = self.desk.receive(by=data.draw(people()), at=at, **arguments)
        self.held[complaint_id] = self.desk.get(complaint_id)
        return complaint_id

    @rule(complaint_id=complaints, command=st.sampled_from(COMMANDS), data=st.data())
    def send_any_command(
        self, complaint_id: UUID, command: str, data: st.DataObject
    ) -> None:
        """Valid or not for the stage: the table decides, the spec checks."""
        self._send(complaint_id, command, data)

    @rule(complaint_id=complaints, data=st.data())
    def move_forward(self, complaint_id: UUID, data: st.DataObject) -> None:
        """Biases the walk forward so complaints do reach the end."""
        held = self.held[complaint_id]
        forward = sorted(allowed(held.stage, held.waiting) - ANYTIME - WAIT)
        if forward:
            self._send(complaint_id, data.draw(st.sampled_from(forward)), data)

    @rule(complaint_id=complaints, data=st.data())
    def walk_on_along_the_path(self, complaint_id: UUID, data: st.DataObject) -> None:
        """Several forward moves in a row, so closed complaints are common."""
        for _ in range(data.draw(st.integers(1, 10), label="moves")):
            self.move_forward(complaint_id, data)

    @rule(complaint_id=complaints, data=st.data())
    def send_a_command_the_stage_allows(
        self, complaint_id: UUID, data: st.DataObject
    ) -> None:
        held = self.held[complaint_id]
        permitted = sorted(allowed(held.stage, held.waiting))
        if permitted:
            self._send(complaint_id, data.draw(st.sampled_from(permitted)), data)

    @rule(complaint_id=complaints, command=st.sampled_from(COMMANDS), data=st.data())
    def send_bad_arguments(
        self, complaint_id: UUID, command: str, data: st.DataObject
    ) -> None:
        state = self.held[complaint_id]
        at = state.last_event_at
        arguments = data.draw(arguments_for(command, at=at, owner=state.owner))
        spoil = data.draw(
            st.sampled_from(["blank_by", "naive_at", "earlier_at", "extra"])
        )
        arguments = {"by": "ana", "at": at, **arguments}
        if spoil == "blank_by":
            arguments["by"] = "  "
        elif spoil == "naive_at":
            arguments["at"] = at.replace(tzinfo=None)
        elif spoil == "earlier_at":
            arguments["at"] = at - timedelta(seconds=1)
        else:
            arguments["priority"] = "high"
        before, position = self.desk.events(complaint_id), self.desk.last_position()
        try:
            self.desk.execute(command, complaint_id, **arguments)
        except InvalidCommand as refusal:
            expected = {"blank_by": "by", "naive_at": "at", "earlier_at": "at"}
            assert expected.get(spoil, "priority") in refusal.fields
        except InvalidTransition:
            # Only a well-formed command reaches the stage check.
            assert spoil == "earlier_at"
            assert command not in allowed(state.stage, state.waiting)
        else:
            raise AssertionError(f"{command} with {spoil} was accepted")
        assert self.desk.events(complaint_id) == before
        assert self.desk.last_position() == position

    def _send(self, complaint_id: UUID, command: str, data: st.DataObject) -> None:
        state = self.held[complaint_id]
        at = state.last_event_at + data.draw(gaps())
        self.clock.now = max(self.clock.now, at)
        arguments = data.draw(arguments_for(command, at=at, owner=state.owner))
        before, position = self.desk.events(complaint_id), self.desk.last_position()
        permitted = command in allowed(state.stage, state.waiting)
        try:
            view = getattr(self.desk, command)(
                complaint_id, by=data.draw(people()), at=at, **arguments
            )
        except InvalidTransition as refusal:
            assert not permitted, f"{command} refused in {state.stage}: {refusal}"
            assert self.desk.events(complaint_id) == before
            assert self.desk.last_position() == position
            return
        assert permitted, f"{command} accepted in {state.stage}"
        assert view.version == state.version + 1
        self.held[complaint_id] = view

    # ------------------------------------------------------------ invariants

    @invariant()
    def every_complaint_walked_legally_and_replays_to_the_held_state(self) -> None:
        for complaint_id, held in self.held.items():
            stages = self.desk.history(complaint_id).stages
            assert is_legal_walk(stages), stages
            assert stages[-1] is held.stage
            assert self.desk.get(complaint_id) == held
            if held.stage is Stage.PREVENTION_LOGGED:
                assert first_reached_order(stages) == list(ORDER)
                type(self).closed_seen += 1


def _run(store_url: str, examples: int, **extra: Any) -> None:
    LifecycleMachine.closed_seen = 0
    run_state_machine_as_test(
        lambda: LifecycleMachine(store_url),
        settings=settings(
            max_examples=examples,
            stateful_step_count=60,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            **extra,
        ),
    )
    print(f"closed complaint states checked: {LifecycleMachine.closed_seen}")
    assert LifecycleMachine.closed_seen > 0, "no complaint reached the end"


def test_lifecycle_state_machine(store_url: str) -> None:
    examples = 60 if store_url == "memory://" else 25
    _run(store_url, examples)
