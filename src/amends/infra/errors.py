"""Errors that come from the world outside the domain: configuration and stores."""

from __future__ import annotations

from amends.domain.errors import AmendsError


class ConfigurationError(AmendsError, ValueError):
    """A setting (such as a store URL) cannot be understood."""


class StoreUnavailable(AmendsError):
    """The event store could not be reached or failed; nothing was recorded."""


class DeskClosed(AmendsError):
    """The desk (or its reports) was used after `close()`: its connections
    are gone. A programming error, named as one rather than as the
    library's empty `ConnectionPoolClosedError`."""


def names_a_missing_schema(error: BaseException | None) -> bool:
    """PostgreSQL said a schema does not exist (SQLSTATE 3F000): a URL's
    `?schema=` to fix, which no retry gets past."""
    return getattr(error, "sqlstate", None) == "3F000"
