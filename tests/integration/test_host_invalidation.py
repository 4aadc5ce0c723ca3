"""Host-cache invalidation between instances: batched broadcasts, applied by the others."""

from __future__ import annotations

import asyncio

from fleet.broker.base import CACHE_INVALIDATION_CHANNEL
from fleet.service.context import INVALIDATION_BATCH, ServiceContext
from fleet.service.hostcache import CachedHost


def cached(host_id: int) -> CachedHost:
    return CachedHost(id=host_id, node_key=f"nk-{host_id}", osquery_host_id=f"h{host_id}",
                      hostname="", platform="", team_id=None, detail_updated_at=0.0,
                      label_updated_at=0.0, refetch_requested=False, distributed_interval=10,
                      config_tls_refresh=0, logger_tls_period=10)


async def test_many_hosts_go_out_in_few_messages(ctx: ServiceContext) -> None:
    ids = list(range(1, 2 * INVALIDATION_BATCH + 2))
    for host_id in ids[:3]:
        ctx.host_cache.put(cached(host_id))
    received: list[bytes] = []
    async with ctx.broker.bus.subscribe(CACHE_INVALIDATION_CHANNEL) as sub:
        await ctx.hosts_changed(ids)

        async def read_three() -> None:
            async for payload in sub:
                received.append(payload)
                if len(received) == 3:
                    return

        await asyncio.wait_for(read_three(), 10)
    assert len(ctx.host_cache) == 0
    sent = [p.decode().split(":")[2].split(",") for p in received]
    assert all(p.decode().split(":")[:2] == [ctx.instance_id, "hosts"] for p in received)
    assert [int(h) for part in sent for h in part] == ids


async def test_other_instances_broadcasts_are_applied(ctx: ServiceContext) -> None:
    for host_id in (1, 2, 3):
        ctx.host_cache.put(cached(host_id))
    ctx.remote_change(f"{ctx.instance_id}:hosts:2".encode())  # our own echo: ignored
    ctx.remote_change(b"other-instance:hosts:1,3,junk")
    ctx.remote_change(b"other-instance:unknown-kind:2")
    assert ctx.host_cache.get("nk-1") is None and ctx.host_cache.get("nk-3") is None
    assert ctx.host_cache.get("nk-2") is not None
