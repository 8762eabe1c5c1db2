"""The canonical form of an event and its SHA-256 digest.

Each event records the digest of its predecessor in the same complaint, so a
complaint's events form a chain: changing, removing or reordering a stored
event breaks it. The digest is taken over the event *as stored* (its topic,
schema version, id, version and JSON payload), so upcasting an old event on
read does not change the digest it was chained with.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from uuid import UUID


def canonical_json(payload: dict[str, Any]) -> bytes:
    """One byte string per payload: sorted keys, no spaces, UTF-8."""
    return json.dumps(
        payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def stored_digest(
    topic: str,
    class_version: int,
    complaint_id: UUID | str,
    version: int,
    payload: dict[str, Any],
) -> str:
    """SHA-256 (hex) of an event's canonical form, from its stored parts.

    `payload` is the stored JSON object without `class_version`.
    """
    body = {
        **payload,
        "topic": topic,
        "class_version": class_version,
        "originator_id": str(complaint_id),
        "originator_version": version,
    }
    return hashlib.sha256(canonical_json(body)).hexdigest()


def payload_digest(
    topic: str, complaint_id: UUID | str, version: int, payload: dict[str, Any]
) -> str:
    """`stored_digest` of a payload as stored, `class_version` inside it
    (absent: 1, as the first events were written)."""
    body = dict(payload)
    class_version = body.pop("class_version", 1)
    return stored_digest(topic, class_version, complaint_id, version, body)


def no_key_twice(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """`json.loads(..., object_pairs_hook=no_key_twice)`: an object that names
    a key twice is a `ValueError`. JSON readers disagree on which value counts
    (Python and pydantic keep the last, SQLite's `json_extract` the first),
    so such a file says one thing to amends and another to other tools."""
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise ValueError(f"an object names {key!r} twice")
        found[key] = value
    return found
