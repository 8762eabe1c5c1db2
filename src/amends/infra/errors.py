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


SETTING_TO_FIX = ("does not exist", "password authentication failed", "pg_hba.conf")
"""What a PostgreSQL server says when a URL names a database, user or password
it does not know, or a client it does not admit: no retry gets past those."""


def names_a_setting_to_fix(error: BaseException | None) -> bool:
    """A connection to PostgreSQL refused for a setting (`SETTING_TO_FIX`),
    not for want of a server: a URL to fix, not a store to wait for. Only
    what a connection attempt said counts ("connection failed: ..." or
    "connection to server ... failed"): a statement's "relation ... does not
    exist" is no setting."""
    words = str(error)
    return words.startswith("connection") and any(
        marker in words for marker in SETTING_TO_FIX
    )


def names_no_database(error: BaseException | None) -> bool:
    """SQLite opened a file that is not a database (another kind of file at
    the URL's path): a setting to fix, which no retry gets past."""
    return "not a database" in str(error)
