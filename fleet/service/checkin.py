"""`distributed/read`: which queries a host should run now.

This runs every few seconds for every host, and nearly always the answer is "nothing": each
query family decides from the cached host whether it is due (no SQL), and only a due family
is asked for its queries (the live family: the broker's cached campaign list).
"""

from __future__ import annotations

import time
from typing import Any

from fleet.service import families
from fleet.service.context import ServiceContext
from fleet.service.hostcache import CachedHost

ACCELERATE_SECONDS = 10


async def distributed_queries(ctx: ServiceContext, host: CachedHost) -> dict[str, Any]:
    queries: dict[str, str] = {}
    discovery: dict[str, str] = {}
    now = time.time()
    for family in families.REGISTRY:
        if not family.due(ctx, host, now):
            continue
        for name, query in (await family.queries(ctx, host)).items():
            # Empty SQL would make osquery loop on the same answer; every query gets a
            # discovery.
            if query.sql:
                queries[family.prefix + name] = query.sql
                discovery[family.prefix + name] = query.discovery or "SELECT 1"
    out: dict[str, Any] = {"queries": queries, "discovery": discovery}
    if not host.hostname or not host.platform:
        out["accelerate"] = ACCELERATE_SECONDS
    return out
