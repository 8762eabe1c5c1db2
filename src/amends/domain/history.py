"""A case's history as an auditor reads it: who did what, when, and to which stage."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from amends.domain.complaint import Complaint, evolve
from amends.domain.events import ComplaintEvent
from amends.domain.lifecycle import transition_for
from amends.domain.stages import Stage
from amends.domain.values import shown

_ENVELOPE = frozenset(
    {"originator_id", "originator_version", "timestamp", "by", "previous_digest"}
)


_SHOWN_WHEN_SET = frozenset({"ended_wait"})
"""Flags the timeline shows only when they are set: an answer that did not
end a wait (most) says nothing about waits."""


class HistoryRecord(BaseModel):
    """One event of a case, with the stage it left and the stage it reached."""

    model_config = ConfigDict(frozen=True)

    version: int
    at: datetime
    by: str
    command: str
    event: str
    stage_before: Stage | None
    stage_after: Stage
    payload: dict[str, Any]
    digest: str
    """SHA-256 of this event as stored; the next event records it."""


class CaseHistory(BaseModel):
    """The ordered records of one complaint."""

    model_config = ConfigDict(frozen=True)

    complaint_id: UUID
    records: tuple[HistoryRecord, ...]

    @property
    def stages(self) -> tuple[Stage, ...]:
        """The stage after each event, in order: the complaint's walk."""
        return tuple(r.stage_after for r in self.records)

    def to_jsonl(self) -> str:
        return "".join(
            json.dumps(
                {"complaint_id": str(self.complaint_id), **r.model_dump(mode="json")},
                ensure_ascii=False,
            )
            + "\n"
            for r in self.records
        )

    def to_text(self) -> str:
        """A timeline a person can read in a terminal or an e-mail.

        What people wrote (names, notes) is shown with its `UNPRINTABLE`
        characters escaped: names may hold format characters, and a
        right-to-left override in an actor's name reversed the rest of its
        line on a terminal, stages included."""
        lines = [f"complaint {self.complaint_id}"]
        for r in self.records:
            moved = (
                f"{r.stage_before or 'new'} -> {r.stage_after}"
                if r.stage_before is not r.stage_after
                else f"stays {r.stage_after}"
            )
            # To the microsecond when the time has one: an auditor pastes it
            # into `show --as-of`, and a time cut to the second comes before
            # the event it names.
            lines.append(
                f"  v{r.version:<3} {r.at.isoformat()}  "
                f"{r.command:<20} by {shown(r.by)}  ({moved})"
            )
            for key, value in r.payload.items():
                if value is None or (key in _SHOWN_WHEN_SET and not value):
                    continue
                lines.append(f"         {key}: {_short(value)}")
        return "\n".join(lines) + "\n"


def history_of(complaint_id: UUID, events: Iterable[ComplaintEvent]) -> CaseHistory:
    """Replay `events`, recording each step; refuses histories the table forbids."""
    state: Complaint | None = None
    records = []
    for event in events:
        before = state.stage if state is not None else None
        waiting = state is not None and state.waiting
        transition = transition_for(type(event), before, waiting)
        state = evolve(state, event)
        assert transition is not None  # evolve refuses events the table lacks
        records.append(
            HistoryRecord(
                version=event.originator_version,
                at=event.timestamp,
                by=event.by,
                command=transition.command_name,
                event=event.name,
                stage_before=before,
                stage_after=state.stage,
                payload=event.model_dump(mode="json", exclude=set(_ENVELOPE)),
                digest=event.digest,
            )
        )
    return CaseHistory(complaint_id=complaint_id, records=tuple(records))


def _short(value: Any, limit: int = 100) -> str:
    """`value` on one line of at most `limit` characters before escaping
    (cut first, so no escape is cut in half)."""
    text = "; ".join(map(str, value)) if isinstance(value, list) else str(value)
    text = " ".join(text.split())
    return shown(text if len(text) <= limit else text[: limit - 1] + "…")
