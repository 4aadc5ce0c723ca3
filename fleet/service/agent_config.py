"""The osquery config each agent fetches, built from agent options and scheduled queries.

Agents refetch their config every `config_refresh` seconds, so the expensive part (agent
options and the `Global` pack from the database) is cached in process for a few seconds and
shared by every host of a platform; per request only the interval bookkeeping remains.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from fleet.core import agent_options as ao
from fleet.service.context import ServiceContext
from fleet.service.hostcache import CachedHost
from fleet.store import app_config as app_config_store
from fleet.store import hosts as host_store
from fleet.store import schedule as schedule_store
from fleet.store.db import is_outage

CACHE_SECONDS = 5.0


@dataclass
class _Snapshot:
    loaded_at: float
    agent_options: dict[str, Any]
    global_pack: dict[str, Any]
    automations: dict[str, bool]
    by_platform: dict[str, dict[str, Any]] = field(default_factory=dict)


class AgentConfigCache:
    """Agent options + scheduled queries, reloaded at most every CACHE_SECONDS."""

    def __init__(self) -> None:
        self._snap: _Snapshot | None = None
        self._reload: asyncio.Task[_Snapshot] | None = None

    async def _snapshot(self, ctx: ServiceContext) -> _Snapshot:
        snap = self._snap
        if snap is not None and time.monotonic() - snap.loaded_at <= CACHE_SECONDS:
            return snap
        # Single flight: the hundreds of requests that find the snapshot stale at once all
        # wait for one reload instead of each running the queries (and draining the pool).
        if self._reload is None or self._reload.done():
            self._reload = asyncio.ensure_future(self._load(ctx))
        try:
            return await asyncio.shield(self._reload)
        except Exception as exc:
            # While the database is away, agents keep the last config they were served
            # and their logs keep flowing to file destinations.
            if snap is not None and is_outage(exc):
                return snap
            raise

    async def _load(self, ctx: ServiceContext) -> _Snapshot:
        async with ctx.db.connect() as conn:
            app_cfg = await app_config_store.get_app_config(conn)
        options = app_cfg.get("agent_options") or ao.DEFAULT_AGENT_OPTIONS
        rows = await schedule_store.global_scheduled_queries(ctx.db)
        snap = _Snapshot(
            loaded_at=time.monotonic(), agent_options=options,
            global_pack={r.name: ao.query_content(r) for r in rows},
            automations=await schedule_store.global_query_automations(ctx.db))
        self._snap = snap
        return snap

    def invalidate(self) -> None:
        self._snap = None

    async def config_for(self, ctx: ServiceContext, platform: str) -> dict[str, Any]:
        snap = await self._snapshot(ctx)
        cfg = snap.by_platform.get(platform)
        if cfg is None:
            cfg = ao.config_for_platform(snap.agent_options, platform)
            if snap.global_pack:
                cfg["packs"] = {"Global": {"queries": snap.global_pack}}
            snap.by_platform[platform] = cfg
        return cfg

    async def intervals_for(self, ctx: ServiceContext, platform: str) -> dict[str, int]:
        """The check-in intervals (host columns) the config of `platform` sets."""
        options = (await self.config_for(ctx, platform)).get("options")
        if not isinstance(options, dict):
            return {}
        out: dict[str, int] = {}
        for name in ao.INTERVAL_OPTIONS:
            value = ao.lenient_int(options.get(name))
            if value is not None:
                out[name] = value
        return out

    async def forwards_results(self, ctx: ServiceContext, log_name: str) -> bool:
        """Whether a result log line goes to the destination (Fleet's filtering rule).

        Lines of queries Fleet does not know (other packs, schedules configured elsewhere)
        are always forwarded; lines of known queries only when automations are enabled.
        """
        snap = await self._snapshot(ctx)
        parts = log_name.split("/")
        if len(parts) == 3 and parts[0] == "pack" and parts[1] == "Global":
            return snap.automations.get(parts[2], True)
        return True


async def client_config(ctx: ServiceContext, cache: AgentConfigCache,
                        host: CachedHost) -> dict[str, Any]:
    """The config for `host`, recording the check-in intervals it will use.

    Enrollment already stored the intervals of the config at that time, so this writes only
    after the agent options changed.
    """
    cfg = await cache.config_for(ctx, host.platform)
    intervals = await cache.intervals_for(ctx, host.platform)
    changes = {name: value for name, value in intervals.items()
               if value != getattr(host, name)}
    if changes:
        await host_store.update_host(ctx.db, host.id, changes)
        for name, value in changes.items():
            setattr(host, name, value)
        await ctx.host_changed(host.id)
        ctx.host_cache.put(host)
    return cfg
