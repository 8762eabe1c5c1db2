"""Stores pydantic events as canonical JSON under their own stable topics.

The eventsourcing 9.5 `Mapper` writes `vars(event)` under a topic derived from
the class's module path. Ours writes the event's canonical JSON payload under
its declared topic, upcasts older `class_version`s on the way back, remembers
the digest of the stored form (the chain links stored forms, see
`amends.domain.digest`), and validates every payload it reads, so a row edited
by hand surfaces as a named `HistoryViolation`, not a crash later.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Mapper, StoredEvent
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import from_json

from amends.domain.complaint import Complaint
from amends.domain.digest import canonical_json, stored_digest
from amends.domain.errors import HistoryViolation
from amends.domain.events import EVENT_TYPES, ComplaintEvent
from amends.infra.errors import ConfigurationError


class ComplaintSnapshot(BaseModel):
    """A complaint's state at a version, so long histories load quickly.

    Snapshots are a cache: the library's snapshot store keeps them apart from
    the events, `verify()` never trusts them, and one that no longer reads
    (after the `Complaint` model changed) is ignored and rebuilt from events.
    """

    model_config = ConfigDict(frozen=True)

    topic: ClassVar[str] = "amends.complaint.Snapshot"

    originator_id: UUID
    originator_version: int
    timestamp: datetime
    state: Complaint


_KEYLESS_HINT = " (encrypted? set AMENDS_CIPHER_KEY)"


class UnreadableRecord(Exception):
    """A stored row that cannot be turned back into JSON (why is the message)."""


class PydanticMapper(Mapper[UUID]):
    key_checked: bool = False
    """Set once one of the store's first or newest events read under this
    mapper's cipher key (or lack of one; `ComplaintDesk._check_cipher`): a
    row that then fails to decrypt or to parse is that row's fault, named as
    unreadable, not the key's."""

    def to_stored_event(self, domain_event: DomainEventProtocol[UUID]) -> StoredEvent:
        if isinstance(domain_event, ComplaintEvent):
            payload = domain_event.payload()
        elif isinstance(domain_event, ComplaintSnapshot):
            payload = domain_event.model_dump(
                mode="json", exclude={"originator_id", "originator_version"}
            )
        else:
            return super().to_stored_event(domain_event)
        return StoredEvent(
            originator_id=domain_event.originator_id,
            originator_version=domain_event.originator_version,
            topic=domain_event.topic,
            state=self._seal(canonical_json(payload)),
        )

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[UUID]:
        originator_id = _as_uuid(stored_event.originator_id)
        version = stored_event.originator_version
        if stored_event.topic == ComplaintSnapshot.topic:
            payload = self.decode_payload(stored_event)
            return ComplaintSnapshot.model_validate(
                {
                    **payload,
                    "originator_id": originator_id,
                    "originator_version": version,
                }
            )
        event_type = EVENT_TYPES.get(stored_event.topic)
        if event_type is None:
            raise HistoryViolation(
                originator_id, version, f"unknown event topic {stored_event.topic!r}"
            )
        try:
            payload = self.decode_payload(stored_event)
        except UnreadableRecord as exc:
            raise HistoryViolation(originator_id, version, str(exc)) from None
        from_version = payload.pop("class_version", 1)
        digest = stored_digest(
            stored_event.topic, from_version, originator_id, version, payload
        )
        try:
            payload = event_type.upcast(payload, from_version)
            event = event_type.model_validate(
                {
                    **payload,
                    "originator_id": originator_id,
                    "originator_version": version,
                }
            )
        except ValidationError as exc:
            fields = ", ".join(
                ".".join(str(p) for p in err["loc"]) for err in exc.errors()
            )
            raise HistoryViolation(
                originator_id,
                version,
                f"stored {event_type.__name__} is invalid ({fields})",
            ) from None
        except (ValueError, TypeError, KeyError) as exc:
            raise HistoryViolation(
                originator_id, version, f"cannot upcast {event_type.__name__}: {exc}"
            ) from None
        event.remember_stored_digest(digest)
        return event

    def decode_payload(self, stored_event: StoredEvent) -> dict[str, Any]:
        """The stored JSON object, decrypted and decompressed, not yet upcast."""
        return self.decode_state(stored_event.state)

    def decode_state(self, data: bytes) -> dict[str, Any]:
        """A stored state as its JSON object, decrypted and decompressed, not
        yet upcast (for readers of raw rows, such as the views' feed)."""
        if not isinstance(data, bytes | bytearray | memoryview | str):
            # A hand edit: NULL, or a number SQLite kept as such.
            found = "NULL" if data is None else f"a {type(data).__name__}"
            raise UnreadableRecord(f"the stored state is {found}, not a payload")
        if self.cipher:
            try:
                data = self.cipher.decrypt(data)
            except Exception as exc:
                if self.key_checked:
                    raise UnreadableRecord(
                        "it does not decrypt with the store's key: altered "
                        "since it was written, or written under another key"
                    ) from None
                raise ConfigurationError(
                    "the cipher key does not decrypt this store's events "
                    "(is AMENDS_CIPHER_KEY the key the store was written with?)"
                ) from exc
        hint = "" if self.cipher or self.key_checked else _KEYLESS_HINT
        if self.compressor:
            try:
                data = self.compressor.decompress(data)
            except Exception:
                # zlib.error, or whatever another compressor raises: the
                # row's break (or the key's, says `_check_cipher`), named as
                # such, not a crash in whatever was reading it.
                raise UnreadableRecord(
                    f"the payload does not decompress{hint}"
                ) from None
        try:
            # pydantic's parser: the same objects as json.loads for anything
            # amends writes (canonical UTF-8 JSON), about four times faster,
            # which the views' catch-up and verify() pay once per event.
            payload = from_json(data)
        except (UnicodeDecodeError, ValueError):
            raise UnreadableRecord(f"the payload is not JSON{hint}") from None
        if not isinstance(payload, dict):
            raise UnreadableRecord("the payload is not a JSON object")
        return payload

    def _seal(self, data: bytes) -> bytes:
        if self.compressor:
            data = self.compressor.compress(data)
        if self.cipher:
            data = self.cipher.encrypt(data)
        return data


def _as_uuid(value: UUID | str) -> UUID:
    return value if isinstance(value, UUID) else UUID(value)
