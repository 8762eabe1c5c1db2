"""amends: an event-sourced complaint lifecycle engine.

Every complaint walks received -> acknowledged -> apologized -> plan committed
-> updating -> resolved -> satisfaction confirmed -> prevention logged, and the
transition table refuses every other move. Start with `ComplaintDesk`.
"""

from amends.domain.audit import (
    CaseBundle,
    Finding,
    Seal,
    SealEntry,
    VerificationReport,
)
from amends.domain.complaint import Complaint, StageReached
from amends.domain.errors import (
    AmendsError,
    ComplaintNotFound,
    ConcurrencyConflict,
    FieldProblem,
    HistoryViolation,
    InvalidCommand,
    InvalidTransition,
)
from amends.domain.history import CaseHistory, HistoryRecord
from amends.domain.lifecycle import TERMINAL, TRANSITIONS, Transition, allowed_commands
from amends.domain.stages import Severity, Stage
from amends.infra.desk import ComplaintDesk
from amends.infra.errors import ConfigurationError, DeskClosed, StoreUnavailable
from amends.projections.facts import PolicyMismatch
from amends.projections.forking import WorkerDied
from amends.projections.reports import UnknownSection
from amends.projections.runner import ViewsOfAnotherStore, ViewsOfLaterRelease

__version__ = "0.1.0"

__all__ = [
    "TERMINAL",
    "TRANSITIONS",
    "AmendsError",
    "CaseBundle",
    "CaseHistory",
    "Complaint",
    "ComplaintDesk",
    "ComplaintNotFound",
    "ConcurrencyConflict",
    "ConfigurationError",
    "DeskClosed",
    "FieldProblem",
    "Finding",
    "HistoryRecord",
    "HistoryViolation",
    "InvalidCommand",
    "InvalidTransition",
    "PolicyMismatch",
    "Seal",
    "SealEntry",
    "Severity",
    "Stage",
    "StageReached",
    "StoreUnavailable",
    "Transition",
    "UnknownSection",
    "VerificationReport",
    "ViewsOfAnotherStore",
    "ViewsOfLaterRelease",
    "WorkerDied",
    "__version__",
    "allowed_commands",
]
