"""Adapters: the desk (application service), the event store, settings."""

from amends.infra.desk import ComplaintDesk, utc_now
from amends.infra.errors import ConfigurationError, StoreUnavailable

__all__ = ["ComplaintDesk", "ConfigurationError", "StoreUnavailable", "utc_now"]
