"""Stores pydantic events as canonical JSON under their own stable topics.

The eventsourcing 9.5 `Mapper` writes `vars(event)` under a topic derived from
the class's module path. Ours writes `model_dump(mode="json")` (sorted keys,
no envelope fields) under the event's declared topic, upcasts older
`class_version`s on the way back, and validates every payload it reads, so a
row edited by hand surfaces as a named `HistoryViolation`, not a crash later.
"""

from __future__ import annotations

import json
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Mapper, StoredEvent
from pydantic import ValidationError

from amends.domain.digest import canonical_json, stored_digest
from amends.domain.errors import HistoryViolation
from amends.domain.events import EVENT_TYPES, ComplaintEvent


class PydanticMapper(Mapper[UUID]):
    def to_stored_event(self, domain_event: DomainEventProtocol[UUID]) -> StoredEvent:
        if not isinstance(domain_event, ComplaintEvent):
            return super().to_stored_event(domain_event)
        data = canonical_json(domain_event.payload())
        if self.compressor:
            data = self.compressor.compress(data)
        if self.cipher:
            data = self.cipher.encrypt(data)
        return StoredEvent(
            originator_id=domain_event.originator_id,
            originator_version=domain_event.originator_version,
            topic=domain_event.topic,
            state=data,
        )

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[UUID]:
        event_type = EVENT_TYPES.get(stored_event.topic)
        if event_type is None:
            return super().to_domain_event(stored_event)
        originator_id = _as_uuid(stored_event.originator_id)
        version = stored_event.originator_version
        try:
            data = stored_event.state
            if self.cipher:
                data = self.cipher.decrypt(data)
            if self.compressor:
                data = self.compressor.decompress(data)
            payload = json.loads(data)
            if not isinstance(payload, dict):
                raise TypeError("the payload is not a JSON object")
            from_version = payload.pop("class_version", 1)
            digest = stored_digest(
                stored_event.topic, from_version, originator_id, version, payload
            )
            payload = event_type.upcast(payload, from_version)
            payload["originator_id"] = originator_id
            payload["originator_version"] = version
            event = event_type.model_validate(payload)
            event.remember_stored_digest(digest)
            return event
        except ValidationError as exc:
            fields = ", ".join(
                ".".join(str(p) for p in err["loc"]) for err in exc.errors()
            )
            raise HistoryViolation(
                originator_id,
                version,
                f"stored {event_type.__name__} is invalid ({fields})",
            ) from None
        except Exception as exc:  # decryption, decompression, JSON, upcasting
            raise HistoryViolation(
                originator_id,
                version,
                f"stored {event_type.__name__} cannot be read: {exc}",
            ) from exc


def _as_uuid(value: UUID | str) -> UUID:
    return value if isinstance(value, UUID) else UUID(value)
