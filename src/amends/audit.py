"""The auditor's toolkit that needs no database: check an exported case bundle.

    from amends.audit import load_seal, verify_bundle
    report = verify_bundle("case-0b6f.json")
    print(report.to_text())          # "verified 12 events of 1 complaints: clean"
    report = verify_bundle("case-0b6f.json", seal=load_seal("seal.json"))

A bundle comes from `ComplaintDesk.export_case(complaint_id, path)`, a seal
from `ComplaintDesk.seal()`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from amends.domain.audit import (
    CaseBundle,
    Finding,
    Seal,
    SealEntry,
    VerificationReport,
)
from amends.domain.digest import no_key_twice
from amends.domain.errors import first_line

__all__ = [
    "CaseBundle",
    "Finding",
    "Seal",
    "SealEntry",
    "UnreadableFile",
    "VerificationReport",
    "load_bundle",
    "load_seal",
    "verify_bundle",
]

M = TypeVar("M", bound=BaseModel)


class UnreadableFile(ValueError):
    """A bundle or seal that does not read as one; the message says where and
    why (the JSON parser's position, the field and what it should be)."""


def verify_bundle(
    path: str | Path, *, seal: Seal | str | Path | None = None
) -> VerificationReport:
    """Check a case bundle offline: its digest, each event's, the chain, the
    head, the lifecycle and the times; with a `seal` (or a seal's path) taken
    before the export, also that the bundle holds the event the seal pinned
    for the case, unchanged (a bundle that lacks it is a finding, whatever
    its `exported_at` claims: see `CaseBundle.verify`). A file that is no
    bundle is one finding; a seal that cannot be read, or that does not name
    the case, raises `ValueError` (`UnreadableFile` for the former)."""
    if seal is not None and not isinstance(seal, Seal):
        seal = load_seal(seal)
    try:
        bundle = load_bundle(path)
    except (OSError, UnreadableFile) as exc:
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
    return bundle.verify(seal)


def load_bundle(path: str | Path) -> CaseBundle:
    """Read a bundle written by `export_case` (or `amends export-case`),
    unchecked: `bundle.verify()` checks it. `UnreadableFile` names what
    does not read."""
    return _load(CaseBundle, path)


def load_seal(path: str | Path) -> Seal:
    """Read a seal written by `Seal.model_dump_json()` (or `amends seal`);
    `UnreadableFile` names what does not read."""
    return _load(Seal, path)


def _load(model: type[M], path: str | Path) -> M:
    """The file's JSON as `model`, read more strictly than JSON allows.

    An object that names a key twice is refused (`no_key_twice`): a bundle
    could say one thing to amends, which verified it, and another to the
    auditor's own tools, with the same digest. So are NaN and Infinity,
    which JSON does not have, and fields the model does not define, which no
    digest covers.
    """
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnreadableFile(
            f"not UTF-8 text: byte {exc.start} is {data[exc.start]:#04x}"
        ) from None
    try:
        parsed = json.loads(
            text, object_pairs_hook=no_key_twice, parse_constant=_no_constant
        )
    except json.JSONDecodeError as exc:
        raise UnreadableFile(
            f"not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    except (ValueError, RecursionError) as exc:
        raise UnreadableFile(f"not JSON amends writes: {first_line(exc)}") from None
    try:
        return model.model_validate(parsed)
    except ValidationError as exc:
        raise UnreadableFile(_first_problem(exc)) from None


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _first_problem(error: ValidationError) -> str:
    problems = error.errors(include_url=False)
    first = problems[0]
    where = ".".join(str(part) for part in first["loc"]) or "the file"
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{where}: {first['msg']}{more}"
