"""The forked worker processes a rebuild and an import run their work in."""

from __future__ import annotations

import multiprocessing as mp
import os
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
