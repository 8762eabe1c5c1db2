"""A projection follower for the crash drill, run as a process of its own.

It is `python -m amends project --follow` with two differences the drill
needs: a small batch size (so a SIGKILL lands inside a batch's write
transaction, not only between batches) and a trail of where it is. Each
step is appended to the trail file with one `os.write` before it happens, so
the line survives a SIGKILL and the drill can tell where the kill landed:

    start                       the process is up, the desk open
    fold <from>                 reading and folding the events after <from>
    batch <from> <to>           writing the events after <from> up to <to>
    write                       the batch's write transaction moved the tracking row
    commit                      the transaction is committing
    done <to>                   the batch is committed

Usage: python tests/drill_follower.py STORE_URL TRAIL_FILE BATCH_SIZE
"""

from __future__ import annotations

import os
import sys
import threading
from datetime import timedelta
from typing import Any

from sqlalchemy import event

from amends import ComplaintDesk
from amends.projections import tables
from amends.projections.runner import Batch


def main(store_url: str, trail: str, batch_size: int) -> None:
    fd = os.open(trail, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def mark(line: str) -> None:
        os.write(fd, f"{line}\n".encode())

    with ComplaintDesk(store_url) as desk:
        runner = desk.reports.runner
        runner.batch_size = batch_size
        read_and_fold = runner._read_and_fold
        commit = runner._commit

        def traced_fold(position: int) -> Batch | None:
            mark(f"fold {position}")
            return read_and_fold(position)

        def traced_commit(batch: Batch) -> None:
            mark(f"batch {batch.position} {batch.last}")
            commit(batch)
            mark(f"done {batch.last}")

        runner._read_and_fold = traced_fold  # type: ignore[method-assign]
        runner._commit = traced_commit  # type: ignore[method-assign]

        @event.listens_for(runner.engine, "before_cursor_execute")
        def _statement(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            update = statement.lstrip().upper().startswith("UPDATE")
            if update and tables.tracking.name in statement:
                mark("write")

        @event.listens_for(runner.engine, "commit")
        def _commit(_conn: Any) -> None:
            mark("commit")

        mark("start")
        desk.reports.follow(threading.Event(), poll=timedelta(seconds=0.05))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
