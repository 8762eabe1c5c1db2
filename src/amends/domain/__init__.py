"""The pure domain: stages, the transition table, commands, events, the Decider.

Nothing here touches a database, a clock or the network; `import-linter`
keeps it that way.
"""

from amends.domain.commands import COMMAND_TYPES, Command, parse_command
from amends.domain.complaint import Complaint, StageReached, decide, evolve, replay
from amends.domain.errors import (
    AmendsError,
    ComplaintNotFound,
    ConcurrencyConflict,
    FieldProblem,
    HistoryViolation,
    InvalidCommand,
    InvalidTransition,
)
from amends.domain.events import EVENT_TYPES, ComplaintEvent
from amends.domain.lifecycle import (
    TERMINAL,
    TRANSITIONS,
    Transition,
    allowed_commands,
    command_names,
    mermaid,
)
from amends.domain.stages import Severity, Stage

__all__ = [
    "COMMAND_TYPES",
    "EVENT_TYPES",
    "TERMINAL",
    "TRANSITIONS",
    "AmendsError",
    "Command",
    "Complaint",
    "ComplaintEvent",
    "ComplaintNotFound",
    "ConcurrencyConflict",
    "FieldProblem",
    "HistoryViolation",
    "InvalidCommand",
    "InvalidTransition",
    "Severity",
    "Stage",
    "StageReached",
    "Transition",
    "allowed_commands",
    "command_names",
    "decide",
    "evolve",
    "mermaid",
    "parse_command",
    "replay",
]
