"""`/config`: the osquery config of a host, from the context's `AgentConfigCache`."""

from __future__ import annotations

from typing import Any

from fleet.service.context import ServiceContext
from fleet.service.hostcache import CachedHost
from fleet.store import hosts as host_store


async def client_config(ctx: ServiceContext, host: CachedHost) -> dict[str, Any]:
    """The config for `host`, recording the check-in intervals it will use.

    Enrollment already stored the intervals of the config at that time, so this writes only
    after the agent options changed.
    """
    cfg = await ctx.agent_config.config_for(ctx.db, host.team_id, host.platform)
    intervals = await ctx.agent_config.intervals_for(ctx.db, host.team_id, host.platform)
    changes = {name: value for name, value in intervals.items()
               if value != getattr(host, name)}
    if changes:
        async with ctx.db.begin() as conn:
            await host_store.update_host(conn, host.id, changes)
        await ctx.host_changed(host.id)
        host.apply(changes)
        ctx.host_cache.put(host)
    return cfg
