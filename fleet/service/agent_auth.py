"""Node-key authentication of osquery agents, served from the in-process host cache."""

from __future__ import annotations

from fleet.core.errors import NodeInvalid
from fleet.service.context import ServiceContext
from fleet.service.hostcache import CachedHost
from fleet.store import hosts as host_store


async def authenticate_host(ctx: ServiceContext, node_key: str) -> CachedHost:
    """The host behind `node_key`, recording that it was seen; NodeInvalid if unknown.

    A cache hit costs no I/O; a miss (first request after start, re-enroll, or an entry
    invalidated by another instance) costs one indexed SELECT.
    """
    if not node_key:
        raise NodeInvalid("authentication error: missing node key")
    host = ctx.host_cache.get(node_key)
    if host is None:
        async with ctx.db.connect() as conn:
            row = await host_store.find_by_node_key(conn, node_key)
        if row is None:
            raise NodeInvalid("authentication error: invalid node key")
        host = CachedHost.from_row(row)
        ctx.host_cache.put(host)
    ctx.seen.record(host.id)
    return host
