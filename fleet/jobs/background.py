"""Background work: the per-instance loops (seen-time flushes, cache invalidations) and
the loops of the named schedules (`fleet.jobs.schedule`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from fleet.broker.base import CACHE_INVALIDATION_CHANNEL, BrokerUnavailable
from fleet.jobs.failures import log_failure
from fleet.jobs.schedule import Schedule
from fleet.service.context import ServiceContext
from fleet.service.seen import FLUSH_INTERVAL

log = logging.getLogger("fleet.background")

RETRY_DELAY = 1.0


async def flush_seen_forever(ctx: ServiceContext) -> None:
    while True:
        await asyncio.sleep(FLUSH_INTERVAL)
        try:
            await ctx.seen.flush(ctx.db)
        except Exception as exc:
            log_failure(log, "flushing host seen times failed; will retry", exc)


async def follow_invalidations(ctx: ServiceContext) -> None:
    """Drop cached hosts and agent configs that another instance changed; resubscribe
    after broker outages.

    While the subscription is down, changes may be missed, so the caches are dropped on
    every (re)subscribe; hosts are then reloaded on their next check-in.
    """
    while True:
        try:
            async with ctx.broker.bus.subscribe(CACHE_INVALIDATION_CHANNEL) as sub:
                ctx.drop_caches()
                async for payload in sub:
                    ctx.remote_change(payload)
        except BrokerUnavailable as exc:
            log.warning("cache invalidation channel lost: %s; retrying", exc)
        await asyncio.sleep(RETRY_DELAY)


def start(ctx: ServiceContext, schedules: Sequence[Schedule]) -> list[asyncio.Task[None]]:
    """This instance's loops, and the loop of every schedule (which runs its jobs only
    while it holds the schedule's lock)."""
    loops = [asyncio.create_task(job(ctx), name=job.__name__)
             for job in (flush_seen_forever, follow_invalidations)]
    return loops + [asyncio.create_task(s.run_forever(ctx), name=f"schedule:{s.name}")
                    for s in schedules]


# How long shutdown waits for queued software lists to be written.
SOFTWARE_DRAIN_SECONDS = 10.0


async def stop(ctx: ServiceContext, tasks: list[asyncio.Task[None]]) -> None:
    """Cancel the loops, then write what is still buffered."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await ctx.software.close(SOFTWARE_DRAIN_SECONDS)
    try:
        await ctx.seen.flush(ctx.db)
    except Exception as exc:
        log_failure(log, "final flush of host seen times failed", exc)
