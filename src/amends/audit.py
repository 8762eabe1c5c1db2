"""The auditor's toolkit that needs no database: check an exported case bundle.

    from amends.audit import verify_bundle
    report = verify_bundle("case-0b6f.json")
    print(report.to_text())          # "verified 12 events of 1 complaints: clean"

A bundle comes from `ComplaintDesk.export_case(complaint_id, path)`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from amends.domain.audit import (
    CaseBundle,
    Finding,
    Seal,
    SealEntry,
    VerificationReport,
)
from amends.domain.errors import first_line

__all__ = [
    "CaseBundle",
    "Finding",
    "Seal",
    "SealEntry",
    "VerificationReport",
    "load_bundle",
    "load_seal",
    "verify_bundle",
]


def verify_bundle(path: str | Path) -> VerificationReport:
    """Check a case bundle offline: its digest, each event's, the chain, the head,
    the lifecycle and the times. A file that is no bundle is one finding."""
    try:
        bundle = load_bundle(path)
    except (OSError, ValidationError) as exc:
        return VerificationReport(
            complaints=0,
            events=0,
            findings=(
                Finding(
                    complaint_id=None,
                    version=None,
                    kind="unreadable",
                    detail=f"{path} is not a readable case bundle: {first_line(exc)}",
                ),
            ),
        )
    return bundle.verify()


def load_bundle(path: str | Path) -> CaseBundle:
    """Read a bundle written by `export_case` (or `amends export-case`),
    unchecked: `bundle.verify()` checks it."""
    return CaseBundle.model_validate_json(Path(path).read_bytes())


def load_seal(path: str | Path) -> Seal:
    """Read a seal written by `Seal.model_dump_json()` (or `amends seal`)."""
    return Seal.model_validate_json(Path(path).read_bytes())
