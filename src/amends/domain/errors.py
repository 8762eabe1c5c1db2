"""Every refusal amends makes is an `AmendsError`, so callers can catch one type.

Each error says what is wrong in words a support engineer can act on; none of
them is raised after anything was recorded.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from uuid import UUID


class AmendsError(Exception):
    """Base of every error amends raises on purpose."""


@dataclass(frozen=True)
class FieldProblem:
    """One bad field of a command: where it is and what is wrong with it."""

    field: str
    problem: str

    def __str__(self) -> str:
        return f"{self.field}: {self.problem}"


class InvalidCommand(AmendsError, ValueError):
    """A command's arguments are wrong; `problems` names each bad field."""

    def __init__(self, command: str, problems: Iterable[FieldProblem]) -> None:
        self.command = command
        self.problems: tuple[FieldProblem, ...] = tuple(problems)
        details = "; ".join(str(p) for p in self.problems) or "no details"
        super().__init__(f"{command} refused: {details}")

    @property
    def fields(self) -> tuple[str, ...]:
        """The names of the bad fields, in the order they were found."""
        return tuple(p.field for p in self.problems)

    @classmethod
    def single(cls, command: str, field: str, problem: str) -> InvalidCommand:
        return cls(command, [FieldProblem(field, problem)])


class InvalidTransition(AmendsError):
    """A command was sent to a complaint in a stage that does not allow it."""

    def __init__(
        self,
        complaint_id: UUID,
        stage: str,
        command: str,
        allowed: Sequence[str],
        reason: str = "",
    ) -> None:
        self.complaint_id = complaint_id
        self.stage = stage
        self.command = command
        self.allowed: tuple[str, ...] = tuple(allowed)
        self.reason = reason
        allowed_text = ", ".join(self.allowed) if self.allowed else "none (closed)"
        why = f" ({reason})" if reason else ""
        super().__init__(
            f"complaint {complaint_id} is {stage}: {command} is not allowed there"
            f"{why}; allowed now: {allowed_text}"
        )


class ComplaintNotFound(AmendsError, LookupError):
    """No complaint has this id (or not at the version asked for)."""

    def __init__(self, complaint_id: UUID | str, detail: str = "") -> None:
        self.complaint_id = complaint_id
        suffix = f" {detail}" if detail else ""
        super().__init__(f"complaint {complaint_id} not found{suffix}")


class ConcurrencyConflict(AmendsError):
    """Concurrent writers kept winning the race; retrying could not settle it."""

    def __init__(self, complaint_id: UUID, attempts: int) -> None:
        self.complaint_id = complaint_id
        self.attempts = attempts
        super().__init__(
            f"complaint {complaint_id} was changed concurrently {attempts} times "
            "in a row; nothing was recorded, try again"
        )


class HistoryViolation(AmendsError):
    """A stored history breaks the lifecycle; replay refuses to invent a state."""

    def __init__(
        self, complaint_id: UUID | str, version: int | str, problem: str
    ) -> None:
        """`complaint_id` and `version` as stored: a row edited by hand may
        hold an id that is no complaint's, or a version that is no number."""
        self.complaint_id = complaint_id
        self.version = version
        self.problem = problem
        super().__init__(f"complaint {complaint_id} version {version}: {problem}")


def stored_complaint_id(raw: object, version: object = "?") -> UUID:
    """A stored row's originator id as its complaint's. Every reader of raw
    rows (the audit, the views, a seal) reads ids so: a row a hand edit left
    with an id that is no complaint's is a history no event could have
    written, not a crash."""
    if isinstance(raw, UUID):
        return raw
    try:
        return UUID(raw)  # type: ignore[arg-type]
    except (ValueError, TypeError, AttributeError):
        raise HistoryViolation(
            repr(raw), repr(version), f"a row's originator_id {raw!r} is no id"
        ) from None


def stored_version(complaint_id: UUID, raw: object) -> int:
    """A stored row's version, which SQLite keeps as whatever a hand edit
    put there (see `stored_complaint_id`)."""
    if type(raw) is int:
        return raw
    raise HistoryViolation(
        complaint_id,
        repr(raw),
        f"a row's originator_version {raw!r} is not a whole number",
    )


def first_line(error: BaseException) -> str:
    """What an error says, to its first line (drivers append the SQL and
    hints on further lines), or its type's name when it says nothing: a
    message that fits the one line a failure is given."""
    return next(iter(str(error).strip().splitlines()), type(error).__name__)
