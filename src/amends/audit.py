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
import os
import stat
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
    "MAX_BUNDLE_BYTES",
    "MAX_SEAL_BYTES",
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

MIB = 1024 * 1024

MAX_BUNDLE_BYTES = 64 * MIB
"""The largest bundle read. A case of 10,000 events, every one a note of the
longest text amends takes (5,000 characters), exports to 54 MB; a case of
10,000 ordinary events to 6 MB. Reading one costs about five times its size
in memory, so a file of any size (or /dev/zero) could exhaust the machine."""

MAX_SEAL_BYTES = 256 * MIB
"""The largest seal read: a seal holds 182 bytes a complaint, so this is a
store of about 1.4 million complaints (the benchmarks' largest is 100,000)."""


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
    return _load(CaseBundle, path, MAX_BUNDLE_BYTES)


def load_seal(path: str | Path) -> Seal:
    """Read a seal written by `Seal.model_dump_json()` (or `amends seal`);
    `UnreadableFile` names what does not read."""
    return _load(Seal, path, MAX_SEAL_BYTES)


def _read_capped(path: str | Path, limit: int, what: str) -> bytes:
    """The bytes of `path`, a regular file of at most `limit` bytes, else
    `UnreadableFile` before anything is read: a device, a pipe or a file
    of any size would otherwise be read whole, or for ever (/dev/zero).

    The file is opened first and the open file examined, so what is read
    is what was checked; a FIFO is opened without waiting for a writer. A
    file that grows past the limit while read is refused too.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise UnreadableFile(
                f"not a regular file ({_file_kind(status.st_mode)}): a {what} is "
                "read from a regular file only"
            )
        most = f"{limit // MIB} MiB" if limit % MIB == 0 else f"{limit} bytes"
        too_big = f"above the {most} a {what} is read up to"
        if status.st_size > limit:
            raise UnreadableFile(f"{status.st_size} bytes, {too_big}")
        chunks = []
        left = limit + 1
        while left > 0 and (chunk := os.read(fd, min(left, MIB))):
            chunks.append(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    if left <= 0:
        raise UnreadableFile(f"more than {limit} bytes, {too_big}")
    return b"".join(chunks)


def _file_kind(mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a pipe"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((name for test, name in kinds if test(mode)), "not a file")


def _load(model: type[M], path: str | Path, limit: int) -> M:
    """The file's JSON as `model`, read more strictly than JSON allows.

    An object that names a key twice is refused (`no_key_twice`): a bundle
    could say one thing to amends, which verified it, and another to the
    auditor's own tools, with the same digest. So are NaN and Infinity,
    which JSON does not have, and fields the model does not define, which no
    digest covers.
    """
    data = _read_capped(path, limit, "bundle" if model is CaseBundle else "seal")
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
