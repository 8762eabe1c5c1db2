"""Worker processes forked for CPU-bound work: a rebuild's load of the report
views, and an import's deciding of cases.

Forked, not spawned: a worker needs what its parent holds (a runner with its
folder and engine; an import's rows, mapper and cipher), which a fork has at
once, without pickling any of it through a pipe; only small results come back.

The workers are a `ProcessPoolExecutor`'s. A `multiprocessing.Pool` replaces
a worker that dies (killed for want of memory, or by Ctrl-C) and waits for
ever on the task it held; the replacements, forked once the parent had let go
of what the first workers inherited, failed at once and were replaced in
turn, about a hundred a second. An executor instead fails every task left
(`BrokenProcessPool`, raised here as `WorkerDied`) and stops its other
workers.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Any, TypeVar

from amends.domain.errors import AmendsError

T = TypeVar("T")
R = TypeVar("R")


class WorkerDied(AmendsError):
    """A worker process ended abruptly (killed, perhaps for want of memory,
    or unable to start); what it was doing is not done, and the work can be
    run again."""


_LOCK = threading.Lock()
_INHERITED: Any = None


def inherited() -> Any:
    """What the parent handed its workers (see `forked`); in a worker only."""
    assert _INHERITED is not None, "only forked workers inherit"
    return _INHERITED


def can_fork() -> bool:
    return "fork" in mp.get_all_start_methods()


@contextmanager
def forked(
    task: Callable[[T], R],
    arguments: Sequence[T],
    workers: int,
    inherit: object,
    *,
    died: str,
    initializer: Callable[[], None] | None = None,
) -> Iterator[list[Future[R]]]:
    """`task` of each of `arguments`, run by up to `workers` forked processes
    that inherit `inherit` (read with `inherited()`): the futures, in the
    order of `arguments`.

    Every task is submitted here, while `inherit` is set, so every worker is
    forked while it is (the executor forks them as tasks arrive, all at the
    first with "fork"). On leaving, the tasks not started are cancelled and
    the running ones finish. A worker that dies fails the tasks left, raised
    as `WorkerDied(died)`. A start that fails part-way (a fork refused for
    want of memory) is a `WorkerDied` too, and leaves no worker behind: the
    ones already forked are terminated, or the interpreter would wait for
    them at exit.
    """
    global _INHERITED
    context = mp.get_context("fork")
    with _LOCK:
        before = set(mp.active_children())
        _INHERITED = inherit
        pool: ProcessPoolExecutor | None = None
        try:
            pool = ProcessPoolExecutor(
                max(1, min(workers, len(arguments))),
                mp_context=context,
                initializer=_die_with_parent,
                initargs=(os.getpid(), initializer),
            )
            futures = [pool.submit(task, argument) for argument in arguments]
        except BaseException as exc:
            _abandon(pool, set(mp.active_children()) - before)
            if isinstance(exc, BrokenProcessPool | OSError):
                raise WorkerDied(died) from exc
            raise
        finally:
            _INHERITED = None
    try:
        yield futures
    except BrokenProcessPool as exc:
        raise WorkerDied(died) from exc
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


PR_SET_PDEATHSIG = 1
"""prctl(2): the signal a process gets when the thread that forked it ends."""


def _die_with_parent(parent: int, then: Callable[[], None] | None) -> None:
    """First thing in a worker: be killed when the parent is.

    A parent killed outright (SIGKILL, the OOM killer) cannot stop its
    workers, and an executor's worker blocked writing a result to the dead
    parent's pipe waited there for ever, holding its memory and the store's
    file. On Linux the kernel kills the worker when the parent goes (the
    forking thread: `forked` waits for its workers before that thread can
    leave it); a parent gone before this ran is seen by its pid. Elsewhere
    the workers end when their pipe fails, as before.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux
        pass
    if os.getppid() != parent:
        os._exit(1)
    if then is not None:
        then()


def _abandon(pool: ProcessPoolExecutor | None, forked: set[Any]) -> None:
    """Let go of a pool that failed to start, and of the workers it forked."""
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)
    for process in forked:
        process.terminate()
        process.join()
