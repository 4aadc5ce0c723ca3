"""Everything a use case needs, built once by `fleet.server` and passed to service functions."""

from __future__ import annotations

from dataclasses import dataclass, field

from fleet.broker.base import HOST_INVALIDATION_CHANNEL, Broker
from fleet.config import Config
from fleet.logdest import LogDestination, create_destination
from fleet.service.hostcache import HostCache
from fleet.service.seen import SeenBuffer
from fleet.store.db import Database


@dataclass
class ServiceContext:
    cfg: Config
    db: Database
    broker: Broker
    host_cache: HostCache = field(default_factory=HostCache)
    seen: SeenBuffer = field(default_factory=SeenBuffer)
    result_log: LogDestination = field(init=False)
    status_log: LogDestination = field(init=False)

    def __post_init__(self) -> None:
        osq, fs = self.cfg.osquery, self.cfg.filesystem
        self.result_log = create_destination(osq.result_log_plugin, fs.result_log_file)
        self.status_log = create_destination(osq.status_log_plugin, fs.status_log_file)

    async def host_changed(self, host_id: int) -> None:
        """A host row changed or vanished: drop it from every instance's node-key cache."""
        self.host_cache.invalidate(host_id)
        await self.broker.bus.publish(HOST_INVALIDATION_CHANNEL, str(host_id).encode())

    async def close_logs(self) -> None:
        await self.result_log.close()
        await self.status_log.close()
