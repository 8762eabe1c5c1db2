"""The event store: the eventsourcing library's `Application` and its recorders.

amends adds nothing to how events are written or read; it only chooses the
recorder from a store URL and plugs in its pydantic mapper.
"""

from __future__ import annotations

from collections.abc import Mapping
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.persistence import Mapper
from eventsourcing.utils import Environment, EnvType

from amends.infra.mapper import PydanticMapper


class EventStoreApplication(Application[UUID]):
    """The library's application, configured only by the settings it is given.

    The library would also read `os.environ`; we do not let it, so the store URL
    is the single source of truth and a stray `PERSISTENCE_MODULE` in a host
    application's environment cannot redirect amends' events.
    """

    name = "amends"

    def __init__(self, settings: Mapping[str, str]) -> None:
        super().__init__(env=dict(settings))

    def construct_env(self, name: str, env: EnvType | None = None) -> Environment:
        return Environment(name, dict(env or {}))

    def construct_mapper(self) -> Mapper[UUID]:
        return PydanticMapper(
            transcoder=self.factory.transcoder(),
            compressor=self.factory.compressor(),
            cipher=self.factory.cipher(),
        )
