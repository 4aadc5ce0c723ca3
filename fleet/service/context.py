"""Everything a use case needs, built once by `fleet.server` and passed to service functions."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

from fleet.broker.base import CACHE_INVALIDATION_CHANNEL, Broker, BrokerUnavailable
from fleet.config import Config
from fleet.logdest import LogDestination, create_destination
from fleet.service.configcache import AgentConfigCache
from fleet.service.hostcache import HostCache
from fleet.service.labelcache import LabelQueryCache
from fleet.service.seen import SeenBuffer
from fleet.service.settingscache import SettingsCache
from fleet.service.software_writer import SoftwareWriter
from fleet.store.db import Database

log = logging.getLogger("fleet.context")

# Host ids per invalidation message (about 8 KiB of payload).
INVALIDATION_BATCH = 1000
# Kinds of invalidation message: `<instance id>:<kind>:<data>` on CACHE_INVALIDATION_CHANNEL.
HOSTS = "hosts"  # data: host ids, comma-separated
AGENT_CONFIG = "agent_config"  # data: a team id, or `*` for every team
LABELS = "labels"  # data: empty (the dynamic labels' queries changed)
SETTINGS = "settings"  # data: empty (the app config document changed)


@dataclass
class ServiceContext:
    cfg: Config
    db: Database
    broker: Broker
    host_cache: HostCache = field(default_factory=HostCache)
    agent_config: AgentConfigCache = field(default_factory=AgentConfigCache)
    seen: SeenBuffer = field(default_factory=SeenBuffer)
    label_queries: LabelQueryCache = field(default_factory=LabelQueryCache)
    settings: SettingsCache = field(default_factory=SettingsCache)
    # Tags this process's broadcasts, so it does not evict entries it just refreshed itself.
    instance_id: str = field(default_factory=lambda: secrets.token_hex(8))
    result_log: LogDestination = field(init=False)
    status_log: LogDestination = field(init=False)
    software: SoftwareWriter = field(init=False)

    def __post_init__(self) -> None:
        self.software = SoftwareWriter(self.db, self.hosts_changed)
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
            await self._announce(HOSTS, ids)

    async def agent_config_changed(self, team_id: int | None = None) -> None:
        """Agent options, scheduled queries or packs changed (of one team, or global when
        None): every instance serves the new config at the next fetch.

        Called after the change committed. A broker outage only delays the other instances
        by the cache's age limit, so it is logged, not raised into the caller's answer.
        """
        self.agent_config.invalidate(team_id)
        try:
            await self._announce(AGENT_CONFIG, "*" if team_id is None else str(team_id))
        except BrokerUnavailable as exc:
            log.warning("agent config change not announced to other instances: %s", exc)

    async def labels_changed(self) -> None:
        """A label was created, changed or deleted (after the commit): every instance asks
        hosts the new set at their next label refresh. A broker outage only delays the
        others by the cache's age limit, so it is logged, not raised."""
        self.label_queries.invalidate()
        try:
            await self._announce(LABELS, "")
        except BrokerUnavailable as exc:
            log.warning("label change not announced to other instances: %s", exc)

    async def settings_changed(self) -> None:
        """The app config document changed (after the commit): every instance acts on the
        new settings at once. A broker outage only delays the others by the cache's age
        limit, so it is logged, not raised."""
        self.settings.invalidate()
        try:
            await self._announce(SETTINGS, "")
        except BrokerUnavailable as exc:
            log.warning("app config change not announced to other instances: %s", exc)

    async def _announce(self, kind: str, data: str) -> None:
        await self.broker.bus.publish(CACHE_INVALIDATION_CHANNEL,
                                      f"{self.instance_id}:{kind}:{data}".encode())

    def remote_change(self, payload: bytes) -> None:
        """Apply another instance's announcement to this instance's caches."""
        origin, _, rest = payload.decode(errors="replace").partition(":")
        if origin == self.instance_id:
            return
        kind, _, data = rest.partition(":")
        if kind == HOSTS:
            for host_id in data.split(","):
                if host_id.isdigit():
                    self.host_cache.invalidate(int(host_id))
        elif kind == AGENT_CONFIG:
            self.agent_config.invalidate(int(data) if data.isdigit() else None)
        elif kind == LABELS:
            self.label_queries.invalidate()
        elif kind == SETTINGS:
            self.settings.invalidate()

    def drop_caches(self) -> None:
        """Forget every cached host and config (announcements may have been missed)."""
        self.host_cache.clear()
        self.agent_config.invalidate()
        self.label_queries.invalidate()
        self.settings.invalidate()

    async def close_logs(self) -> None:
        await self.result_log.close()
        await self.status_log.close()
