"""Everything a use case needs, built once by `fleet.server` and passed to service functions."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

from fleet.broker.base import HOST_INVALIDATION_CHANNEL, Broker
from fleet.config import Config
from fleet.logdest import LogDestination, create_destination
from fleet.service.hostcache import HostCache
from fleet.service.seen import SeenBuffer
from fleet.store.db import Database

# Host ids per invalidation message (about 8 KiB of payload).
INVALIDATION_BATCH = 1000


@dataclass
class ServiceContext:
    cfg: Config
    db: Database
    broker: Broker
    host_cache: HostCache = field(default_factory=HostCache)
    seen: SeenBuffer = field(default_factory=SeenBuffer)
    # Tags this process's broadcasts, so it does not evict entries it just refreshed itself.
    instance_id: str = field(default_factory=lambda: secrets.token_hex(8))
    result_log: LogDestination = field(init=False)
    status_log: LogDestination = field(init=False)

    def __post_init__(self) -> None:
        self.result_log = create_destination(self.cfg, "result")
        self.status_log = create_destination(self.cfg, "status")

    async def host_changed(self, host_id: int) -> None:
        """A host row changed or vanished: drop it from every instance's node-key cache."""
        await self.hosts_changed([host_id])

    async def hosts_changed(self, host_ids: Sequence[int]) -> None:
        """`host_changed` for many hosts, a few messages instead of one per host."""
        for host_id in host_ids:
            self.host_cache.invalidate(host_id)
        for i in range(0, len(host_ids), INVALIDATION_BATCH):
            ids = ",".join(str(h) for h in host_ids[i:i + INVALIDATION_BATCH])
            await self.broker.bus.publish(HOST_INVALIDATION_CHANNEL,
                                          f"{self.instance_id}:{ids}".encode())

    def remote_host_change(self, payload: bytes) -> None:
        """Apply another instance's `hosts_changed` broadcast to this instance's cache."""
        origin, _, ids = payload.decode(errors="replace").partition(":")
        if origin == self.instance_id:
            return
        for host_id in ids.split(","):
            if host_id.isdigit():
                self.host_cache.invalidate(int(host_id))

    async def close_logs(self) -> None:
        await self.result_log.close()
        await self.status_log.close()
