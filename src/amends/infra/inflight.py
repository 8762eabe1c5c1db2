"""The calls using a desk's connections at a moment, so that closing the desk
waits for them rather than closing connections under them."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Concatenate, ParamSpec, Protocol, TypeVar

from amends.infra.errors import DeskClosed

P = ParamSpec("P")
R = TypeVar("R")


class InFlight:
    """Counts the calls under way; `close()` refuses new ones (`DeskClosed`)
    and waits for those under way to end.

    A SQLite connection closed while another thread is in a statement on it
    can crash the interpreter (a segmentation fault, in most runs of a
    thread reading while another closed the desk); a pooled connection
    closed under a call failed it with the library's bare
    `ConnectionPoolClosedError`. A call made within a call of the same
    thread (a command reading the complaint) is the same call: it neither
    counts again nor is refused halfway by a close begun meanwhile.

    `on_entry` runs as each call begins (not a call within one), counted:
    what every use of the connections must check first (the desk's cipher
    key against the store).
    """

    def __init__(
        self, closed_message: str, on_entry: Callable[[], None] = lambda: None
    ) -> None:
        self._closed_message = closed_message
        self._on_entry = on_entry
        self._changed = threading.Condition()
        self._under_way = 0
        self._closed = False
        self._depth = threading.local()

    def _own_depth(self) -> int:
        depth: int = getattr(self._depth, "value", 0)
        return depth

    @contextmanager
    def call(self, closed_message: str | None = None) -> Iterator[None]:
        depth = self._own_depth()
        if depth == 0:
            with self._changed:
                if self._closed:
                    raise DeskClosed(closed_message or self._closed_message)
                self._under_way += 1
        self._depth.value = depth + 1
        try:
            if depth == 0:
                self._on_entry()
            yield
        finally:
            self._depth.value = depth
            if depth == 0:
                with self._changed:
                    self._under_way -= 1
                    self._changed.notify_all()

    def begin(self, closed_message: str | None = None) -> None:
        """What a call checks as it begins, for work that is no call (a
        follower, which a close stops instead): refused once closed, and
        `on_entry` run."""
        with self.call(closed_message):
            pass

    def close(self) -> bool:
        """Refuse calls from now on and wait for those under way (but this
        thread's own, when a call closes the desk); False if closed before."""
        own = 1 if self._own_depth() else 0
        with self._changed:
            if self._closed:
                return False
            self._closed = True
            self._changed.wait_for(lambda: self._under_way <= own)
        return True


class _HasInFlight(Protocol):
    _in_flight: InFlight


S = TypeVar("S", bound=_HasInFlight)


def counted(method: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
    """A method that uses the connections: a call `InFlight` counts."""

    @wraps(method)
    def call(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with self._in_flight.call():
            return method(self, *args, **kwargs)

    return call
