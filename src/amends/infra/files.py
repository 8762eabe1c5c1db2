"""Writing the files an auditor is handed: case bundles and seals."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_private(path: str | Path, text: str, *, overwrite: bool = False) -> None:
    """Write `text` (UTF-8) to a new file at `path`, readable by its owner only.

    A bundle holds every customer field in the clear, even from an encrypted
    store (ADR 0007), so it is written with mode 0600, whatever the umask.
    An existing file is refused (`FileExistsError`) unless `overwrite`: an
    export never replaces evidence silently. A symbolic link at `path` is
    refused even then: written through, it let a bundle land anywhere the
    link pointed. The text goes to a temporary file in the same directory,
    which is then linked (new) or renamed (replacing) into place, so a crash
    never leaves half a bundle under its name, and no link is followed.
    """
    target = Path(path)
    if target.is_symlink():
        raise FileExistsError(
            f"{target} is a symbolic link: amends writes no bundle or seal "
            "through one, nor replaces it"
        )
    if not overwrite and target.exists():
        raise FileExistsError(_exists(target))
    fd, temporary = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".tmp", dir=target.parent
    )
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(text.encode("utf-8"))
            file.flush()
            os.fsync(file.fileno())
        if overwrite:
            os.replace(temporary, target)  # replaces a link, never follows it
        else:
            _link_new(temporary, target)
    finally:
        if os.path.lexists(temporary):
            os.unlink(temporary)


def _link_new(temporary: str, target: Path) -> None:
    """Give `temporary` the name `target`, which must not exist: a hard
    link fails on any name there, a symbolic link included."""
    try:
        os.link(temporary, target)
    except FileExistsError:
        raise FileExistsError(_exists(target)) from None
    except OSError:
        # No hard links on this file system: claim the name exclusively,
        # then rename over the empty file just made.
        try:
            claimed = os.open(
                target,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                0o600,
            )
        except FileExistsError:
            raise FileExistsError(_exists(target)) from None
        os.close(claimed)
        os.replace(temporary, target)


def _exists(target: Path) -> str:
    return f"{target} exists: amends replaces it only when told to (overwrite=True)"
