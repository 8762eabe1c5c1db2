"""The transition table against the lifecycle as specified (tests/spec.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from amends import TRANSITIONS, Stage, allowed_commands
from amends.domain.lifecycle import command_names, event_type_of, mermaid
from amends.infra.docs import generated_docs

from spec import ALL_COMMANDS, ORDER, allowed, is_legal_move

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_stages_are_declared_in_lifecycle_order() -> None:
    assert tuple(Stage) == ORDER


@pytest.mark.parametrize("stage", list(Stage))
def test_each_stage_allows_exactly_the_specified_commands(stage: Stage) -> None:
    assert set(allowed_commands(stage)) == allowed(stage)
    assert set(allowed_commands(stage, waiting=True)) == allowed(stage, waiting=True)


def test_only_receive_creates_a_complaint() -> None:
    assert allowed_commands(None) == ("receive",)
    assert set(command_names()) == ALL_COMMANDS | {"receive"}


@pytest.mark.parametrize(
    "transition", [t for t in TRANSITIONS if t.source is not None], ids=str
)
def test_no_transition_skips_a_stage(transition: object) -> None:
    assert is_legal_move(transition.source, transition.target)  # type: ignore[attr-defined]


def test_receive_lands_in_received() -> None:
    (create,) = [t for t in TRANSITIONS if t.source is None]
    assert create.target is Stage.RECEIVED


def test_terminal_stage_allows_nothing_and_every_other_stage_moves_on() -> None:
    for stage in ORDER[:-1]:
        forward = [
            t
            for t in TRANSITIONS
            if t.source is stage and ORDER.index(t.target) == ORDER.index(stage) + 1
        ]
        assert forward, f"{stage} has no way forward"
    assert not [t for t in TRANSITIONS if t.source is Stage.PREVENTION_LOGGED]


def test_only_a_declined_confirmation_goes_backwards() -> None:
    backwards = [
        t
        for t in TRANSITIONS
        if t.source is not None and ORDER.index(t.target) < ORDER.index(t.source)
    ]
    assert [
        (t.command_name, t.source, t.target, t.event.__name__) for t in backwards
    ] == [
        ("confirm_satisfaction", Stage.RESOLVED, Stage.UPDATING, "SatisfactionDeclined")
    ]


def test_single_event_commands_name_their_event() -> None:
    assert (
        event_type_of(
            next(t.command for t in TRANSITIONS if t.command_name == "resolve")
        ).__name__
        == "Resolved"
    )
    confirm = next(
        t.command for t in TRANSITIONS if t.command_name == "confirm_satisfaction"
    )
    with pytest.raises(LookupError):
        event_type_of(confirm)


def test_diagram_draws_every_stage_move_of_the_table() -> None:
    diagram = mermaid()
    for t in TRANSITIONS:
        if t.source is not None and t.source is not t.target:
            assert f"{t.source} --> {t.target}: {t.command_name}" in diagram


@pytest.mark.parametrize("relative", sorted(generated_docs()))
def test_committed_docs_match_the_code(relative: str) -> None:
    committed = DOCS / relative
    assert committed.exists(), f"docs/{relative} is missing: run python -m amends docs"
    assert committed.read_text(encoding="utf-8") == generated_docs()[relative], (
        f"docs/{relative} is stale: run python -m amends docs"
    )


def test_no_stale_event_schema_files() -> None:
    expected = {name for name in generated_docs() if name.startswith("events/")}
    present = {f"events/{p.name}" for p in (DOCS / "events").glob("*.json")}
    assert present == expected
