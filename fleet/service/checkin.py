"""`distributed/read`: which queries a host should run now.

This runs every few seconds for every host, and nearly always the answer is "nothing": it
is decided from the cached host and the broker's cached campaign list, with no SQL.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from fleet.broker.base import BrokerUnavailable
from fleet.core import detail_queries
from fleet.service.context import ServiceContext
from fleet.service.hostcache import CachedHost

log = logging.getLogger("fleet.checkin")

LIVE_QUERY_PREFIX = "fleet_distributed_query_"
ACCELERATE_SECONDS = 10


def jitter_seconds(host_id: int, interval: float, max_jitter_percent: int) -> float:
    """Per-host offset (whole minutes, as Fleet) so refreshes of a fleet do not align."""
    buckets = int(max_jitter_percent * (interval / 60) / 100)
    return 60.0 * (host_id % buckets) if buckets > 0 else 0.0


def details_due(ctx: ServiceContext, host: CachedHost, now: float) -> bool:
    if host.refetch_requested:
        return True
    interval = ctx.cfg.osquery.detail_update_interval
    jitter = jitter_seconds(host.id, interval, ctx.cfg.osquery.max_jitter_percent)
    return host.detail_updated_at < now - (interval + jitter)


async def distributed_queries(ctx: ServiceContext, host: CachedHost) -> dict[str, Any]:
    queries: dict[str, str] = {}
    discovery: dict[str, str] = {}
    if details_due(ctx, host, time.time()):
        for name, q in detail_queries.queries_for_platform(host.platform).items():
            queries[name] = q.sql
            if q.discovery:
                discovery[name] = q.discovery
    try:
        live = await ctx.broker.live.queries_for_host(host.id)
    except BrokerUnavailable as exc:
        # Live queries are best effort here: vitals must still flow while Redis is down.
        log.warning("live query lookup failed for host %s: %s", host.id, exc)
        live = {}
    for campaign_id, sql in live.items():
        queries[f"{LIVE_QUERY_PREFIX}{campaign_id}"] = sql
    # Empty SQL would make osquery loop on the same answer; every query gets a discovery.
    queries = {name: sql for name, sql in queries.items() if sql}
    for name in queries:
        discovery.setdefault(name, "SELECT 1")
    out: dict[str, Any] = {"queries": queries, "discovery": discovery}
    if not host.hostname or not host.platform:
        out["accelerate"] = ACCELERATE_SECONDS
    return out
