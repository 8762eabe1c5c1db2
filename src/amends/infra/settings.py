"""Store URLs, turned into the eventsourcing library's own settings.

One URL names the whole store (`memory://`, `sqlite:///file.db`,
`postgresql://user@host:port/db`), so an embedding team configures amends the
way it configures everything else, and the library's environment variables
stay an implementation detail.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from amends.infra.errors import ConfigurationError
from amends.projections import forking

STORE_URL_VARIABLE = "AMENDS_STORE_URL"
CIPHER_KEY_VARIABLE = "AMENDS_CIPHER_KEY"
DEFAULT_STORE_URL = "sqlite:///amends.db"

_POSTGRES_OPTIONS = {
    "connect_timeout": "POSTGRES_CONNECT_TIMEOUT",
    "schema": "POSTGRES_SCHEMA",
    "pool_size": "POSTGRES_POOL_SIZE",
    "max_overflow": "POSTGRES_MAX_OVERFLOW",
    "lock_timeout": "POSTGRES_LOCK_TIMEOUT",
    "pre_ping": "POSTGRES_PRE_PING",
}
POSTGRES_MODULE = "amends.infra.store:PostgresFactory"
"""The library's PostgreSQL persistence, with retries that end."""
POSTGRES_URL_OPTIONS = frozenset(_POSTGRES_OPTIONS)
"""The options a PostgreSQL store URL may carry (`?schema=...&...`)."""


def resolve_store_url(store_url: str | None) -> str:
    """The URL given, else `AMENDS_STORE_URL`, else the embedded SQLite file."""
    if store_url is None:
        store_url = (
            from_environment(STORE_URL_VARIABLE, "the default store, amends.db")
            or DEFAULT_STORE_URL
        )
    return unpadded(store_url, "store URL")


def from_environment(name: str, unset_means: str) -> str | None:
    """The variable's value, None when it is not set. Set but blank is
    refused: an empty value (a secret that failed to arrive, a template's
    blank) was taken for unset, so the store was ./amends.db wherever the
    process ran, and an empty cipher key stored customers' names in the
    clear."""
    value = os.environ.get(name)
    if value is not None and not value.strip():
        raise ConfigurationError(
            f"{name} is set but empty: unset it for {unset_means}, or give it a value"
        )
    return value


def unpadded(url: str, what: str) -> str:
    """Refuse a URL with spaces at either end: a trailing space made a
    store file whose name ends in one, which the next command, given the
    URL as meant, could not find."""
    if url != url.strip():
        raise ConfigurationError(
            f"{what} {redacted_url(url)!r} starts or ends with a space"
        )
    return url


def cipher_settings(cipher_key: str | None) -> dict[str, str]:
    """Settings that encrypt every stored payload with AES-GCM, if a key is given.

    The key (from `python -m amends keygen`) is base64 of 16, 24 or 32 bytes,
    as text. `cipher_key=None` means `AMENDS_CIPHER_KEY`, else no encryption;
    any other value is the key. A blank one is refused, not taken for None:
    `cipher_key=os.environ.get("VAULT_KEY", "")` with the secret missing
    turned encryption off even where `AMENDS_CIPHER_KEY` was set, and stored
    customers' names in the clear. Bytes are refused too, whatever they hold
    (the key's raw bytes, or its base64): the key is the text keygen prints.
    """
    if cipher_key is None:
        key = from_environment(CIPHER_KEY_VARIABLE, "payloads stored in the clear")
        if key is None:
            return {}
        source = CIPHER_KEY_VARIABLE
    elif not isinstance(cipher_key, str):
        raise ConfigurationError(
            "cipher_key= must be the key as text (base64, as python -m amends "
            f"keygen prints it), not {type(cipher_key).__name__}"
        )
    elif not cipher_key.strip():
        raise ConfigurationError(
            f"cipher_key= is blank ({cipher_key!r}): give the key, or leave it "
            f"out (None) to use {CIPHER_KEY_VARIABLE}, else store in the clear"
        )
    else:
        key, source = cipher_key, "cipher_key="
    try:
        raw = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) not in (16, 24, 32):
        raise ConfigurationError(
            f"{source} must be base64 of 16, 24 or 32 bytes "
            "(make one with: python -m amends keygen)"
        )
    return {"CIPHER_TOPIC": "eventsourcing.cryptography:AESCipher", "CIPHER_KEY": key}


def fork_workers(limit: int) -> int:
    """How many processes CPU-bound work may be forked into: one per core this
    process may run on, `limit` at most; 1 where processes cannot be forked."""
    if not forking.can_fork():
        return 1
    affinity = getattr(os, "sched_getaffinity", None)
    cores = len(affinity(0)) if affinity is not None else os.cpu_count() or 1
    return max(1, min(cores, limit))


def new_cipher_key() -> str:
    """A fresh random AES-256 key, base64-encoded."""
    return base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def store_settings(store_url: str) -> dict[str, str]:
    """The eventsourcing environment for `store_url`, or a `ConfigurationError`."""
    parts = urlsplit(store_url)
    scheme = parts.scheme.lower()
    where = _where(store_url)
    if scheme == "memory":
        return {"PERSISTENCE_MODULE": "eventsourcing.popo"}
    if scheme == "sqlite":
        # sqlite:///relative.db, sqlite:////absolute/path.db: as SQLAlchemy reads them.
        path = unquote(parts.path[1:]) if parts.path.startswith("/") else ""
        if not path or parts.netloc:
            raise ConfigurationError(
                f"{where}: write sqlite:///relative/file.db "
                "or sqlite:////absolute/file.db"
            )
        if Path(path).is_dir():
            # The driver's "unable to open database file" read as an outage.
            raise ConfigurationError(f"{where}: {path} is a directory, not a file")
        if parts.query:
            # The library opens the file itself: ?mode=ro was silently ignored.
            raise ConfigurationError(
                f"{where}: a SQLite store takes no options "
                f"(?{urlsplit(redacted_url(store_url)).query})"
            )
        return {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": path,
            "SQLITE_LOCK_TIMEOUT": "10",
        }
    if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        return _postgres_settings(store_url, parts.query)
    raise ConfigurationError(
        f"{where}: the scheme must be memory, sqlite or postgresql"
    )


def _where(store_url: str) -> str:
    """The URL as a refusal names it: its password hidden."""
    return f"store URL {redacted_url(store_url)!r}"


def _postgres_settings(store_url: str, query: str) -> dict[str, str]:
    where = _where(store_url)
    parts = urlsplit(store_url)
    dbname = unquote(parts.path.lstrip("/"))
    if not parts.hostname or not dbname:
        raise ConfigurationError(f"{where}: write postgresql://user@host:port/dbname")
    try:
        port = parts.port or 5432
    except ValueError as exc:
        raise ConfigurationError(f"{where}: {exc}") from None
    settings = {
        # The library's, with retries that end (see amends.infra.store).
        "PERSISTENCE_MODULE": POSTGRES_MODULE,
        "POSTGRES_DBNAME": dbname,
        "POSTGRES_HOST": parts.hostname,
        "POSTGRES_PORT": str(port),
        "POSTGRES_USER": unquote(parts.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
        "POSTGRES_CONNECT_TIMEOUT": "5",
        "POSTGRES_POOL_SIZE": "5",
        "POSTGRES_MAX_OVERFLOW": "5",
    }
    for name, values in parse_qs(query).items():
        key = _POSTGRES_OPTIONS.get(name)
        if key is None:
            known = ", ".join(sorted(_POSTGRES_OPTIONS))
            raise ConfigurationError(
                f"{where}: unknown option {name!r} (known: {known})"
            )
        settings[key] = values[-1]
    check_postgres_url(store_url, "store URL")
    pool_size, max_overflow = (
        int(settings[key]) for key in ("POSTGRES_POOL_SIZE", "POSTGRES_MAX_OVERFLOW")
    )
    if pool_size + max_overflow < 1:
        raise ConfigurationError(
            f"{where}: pool_size and max_overflow allow no connection at all"
        )
    return settings


_WHOLE_NUMBER = re.compile(r"[0-9]{1,9}")
_SCHEMA = re.compile(r"[^\W\d][\w$]*")
_TRUTH = frozenset(
    {"y", "yes", "t", "true", "on", "1", "n", "no", "f", "false", "off", "0"}
)


def _whole_number(value: str) -> bool:
    return _WHOLE_NUMBER.fullmatch(value) is not None


_OPTION_RULES: dict[str, tuple[Callable[[str], bool], str]] = {
    "connect_timeout": (
        lambda v: _whole_number(v) and int(v) >= 1,
        "whole seconds, 1 or more",
    ),
    "pool_size": (_whole_number, "a whole number"),
    "max_overflow": (_whole_number, "a whole number"),
    "lock_timeout": (_whole_number, "whole seconds (0: wait as long as it takes)"),
    "pre_ping": (lambda v: v.lower() in _TRUTH, "yes or no"),
    "schema": (
        lambda v: (
            bool(_SCHEMA.fullmatch(v))
            and not any("A" <= ch <= "Z" for ch in v)
            and len(v.encode()) <= 63
        ),
        "a lower-case name of letters, digits, underscores and dollar signs, not "
        "starting with a digit, at most 63 bytes (the library does not quote it)",
    ),
}


def check_postgres_url(url: str, what: str) -> None:
    """Refuse, as a `ConfigurationError` naming it, a PostgreSQL URL whose
    user or password holds an unescaped `@` (the driver and SQLAlchemy would
    split it at different places, and part of the password would show in
    messages) or whose option has a value the store cannot use."""
    netloc = urlsplit(url).netloc
    if netloc.count("@") > 1:
        raise ConfigurationError(
            f"{what} {redacted_url(url)!r}: an '@' in the user name or password "
            "must be written %40"
        )
    for name, values in parse_qs(urlsplit(url).query).items():
        rule = _OPTION_RULES.get(name)
        if rule is not None and not rule[0](values[-1]):
            raise ConfigurationError(
                f"{what} {redacted_url(url)!r}: {name} must be {rule[1]}, "
                f"not {values[-1]!r}"
            )


def redacted_url(store_url: str) -> str:
    """The URL without its password, fit for an error message or a log.

    The host is after the last `@` of the network location, as `urlsplit`
    and the driver read it: a password holding an unescaped `@` is hidden
    whole."""
    scheme, slashes, rest = store_url.partition("//")
    if not slashes:
        return _without_password_option(store_url)
    netloc, path_start, path = _split_netloc(rest)
    credentials, at, host = netloc.rpartition("@")
    if at and ":" in credentials:
        user = credentials.split(":", 1)[0]
        netloc = f"{user}:***@{host}"
    return _without_password_option(f"{scheme}//{netloc}{path_start}{path}")


_OPTION = re.compile(r"([?&])([^=&#]*)=([^&#]*)")


def _without_password_option(url: str) -> str:
    """`?password=...` (or `sslpassword=`), which libpq takes as well as the
    network location's, hidden too, however its name is written (`pass%77ord`
    reads as `password`): a URL refused for naming it (an option amends does
    not take) printed it whole."""

    def hidden(option: re.Match[str]) -> str:
        name = unquote(option.group(2)).lower()
        if name.endswith("password"):
            return f"{option.group(1)}{option.group(2)}=***"
        return option.group(0)

    return _OPTION.sub(hidden, url)


def _split_netloc(rest: str) -> tuple[str, str, str]:
    """`rest` (after `//`) as the network location, the character that ends
    it, and what follows."""
    ends = [i for i in (rest.find(ch) for ch in "/?#") if i >= 0]
    if not ends:
        return rest, "", ""
    end = min(ends)
    return rest[:end], rest[end], rest[end + 1 :]
