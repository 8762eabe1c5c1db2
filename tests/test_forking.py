"""The forked worker processes a rebuild and an import run their work in."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import pytest

from amends import WorkerDied
from amends.projections import forking

from helpers import kill_if_forked

pytestmark = pytest.mark.skipif(not forking.can_fork(), reason="no fork here")


def _call_inherited(argument: int) -> tuple[int, int]:
    """The inherited function (a closure: it could not be pickled) applied to
    `argument`, and the worker's process id."""
    return forking.inherited()(argument), os.getpid()


def test_each_task_runs_in_a_worker_with_what_the_parent_left_it() -> None:
    offset = 1000
    add: Callable[[int], int] = lambda n: n + offset  # noqa: E731 - not picklable
    with forking.forked(_call_inherited, range(20), 2, add, died="-") as futures:
        results = [future.result() for future in futures]
    assert [value for value, _ in results] == [n + offset for n in range(20)]
    assert os.getpid() not in {pid for _, pid in results}
    assert not mp.active_children()
    with pytest.raises(AssertionError):
        forking.inherited()  # the parent let go of it


def _die_on_three(argument: int) -> int:
    if argument == 3:
        kill_if_forked(forking.inherited())
    return argument


def test_a_worker_that_dies_is_worker_died_and_leaves_no_worker() -> None:
    def every_result() -> list[int]:
        with forking.forked(
            _die_on_three, range(8), 2, os.getpid(), died="the work stopped"
        ) as futures:
            return [future.result() for future in futures]

    with pytest.raises(WorkerDied, match="the work stopped") as died:
        every_result()
    assert isinstance(died.value.__cause__, BrokenProcessPool)
    assert not mp.active_children()


def _slowly(argument: int) -> int:
    time.sleep(0.2)
    return argument


def test_leaving_early_cancels_the_tasks_not_started() -> None:
    started = time.perf_counter()

    def first_result_only() -> None:
        with forking.forked(_slowly, range(40), 2, object(), died="-") as futures:
            futures[0].result()
            raise KeyError("the caller gave up")

    with pytest.raises(KeyError):
        first_result_only()
    # Two workers at 0.2 s a task: all 40 would take 4 s.
    assert time.perf_counter() - started < 2
    assert not mp.active_children()


def test_a_fork_refused_part_way_is_worker_died_and_leaves_no_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The second fork fails as it would for want of memory: the first
    worker, already forked, must not be left waiting for work (the
    interpreter would wait for it at exit)."""
    process_class: Any = mp.get_context("fork").Process
    start = process_class.start
    forks = [0]

    def refused_second(self: Any) -> None:
        forks[0] += 1
        if forks[0] == 2:
            raise OSError(12, "Cannot allocate memory")
        start(self)

    monkeypatch.setattr(process_class, "start", refused_second)
    with (
        pytest.raises(WorkerDied, match="could not"),
        forking.forked(_slowly, range(4), 2, object(), died="could not"),
    ):
        pass
    assert forks[0] == 2
    assert not mp.active_children()


PARENT_OF_SLEEPERS = """
import os, sys, time
from amends.projections import forking

def sleep_and_say(folder):
    with open(os.path.join(folder, str(os.getpid())), "w") as mark:
        mark.write("up")
    time.sleep(600)
    return 0

if __name__ == "__main__":
    with forking.forked(sleep_and_say, [sys.argv[1]] * 2, 2, None, died="-") as f:
        f[0].result()
"""


def _gone(pid: int) -> bool:
    """The process ended: no longer there, or a zombie nobody has reaped."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
def test_workers_end_when_their_parent_is_killed_outright(tmp_path: Any) -> None:
    """SIGKILL gives the parent no chance to stop its workers; they used to
    wait for ever, blocked on its pipe, with their memory and the store."""
    import subprocess
    import sys

    script = tmp_path / "parent.py"
    script.write_text(PARENT_OF_SLEEPERS)
    marks = tmp_path / "up"
    marks.mkdir()
    parent = subprocess.Popen([sys.executable, str(script), str(marks)])
    try:
        deadline = time.monotonic() + 30
        while len(os.listdir(marks)) < 2:
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.05)
        workers = [int(name) for name in os.listdir(marks)]
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 10
        while not all(_gone(pid) for pid in workers):
            assert time.monotonic() < deadline, "a worker outlived its parent"
            time.sleep(0.05)
    finally:
        parent.kill()
        for name in os.listdir(marks):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(name), signal.SIGKILL)
