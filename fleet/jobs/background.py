"""Per-instance background work: seen-time flushes, cache invalidations, cleanup jobs."""

from __future__ import annotations

import asyncio
import logging

from fleet.broker.base import CACHE_INVALIDATION_CHANNEL, BrokerUnavailable
from fleet.service import campaigns, sessions
from fleet.service.context import ServiceContext
from fleet.service.seen import FLUSH_INTERVAL
from fleet.store.db import driver_error, is_outage

log = logging.getLogger("fleet.background")

CLEANUP_INTERVAL = 60.0
RETRY_DELAY = 1.0


async def flush_seen_forever(ctx: ServiceContext) -> None:
    while True:
        await asyncio.sleep(FLUSH_INTERVAL)
        try:
            await ctx.seen.flush(ctx.db)
        except Exception as exc:
            _log_failure("flushing host seen times failed; will retry", exc)


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


async def cleanups_forever(ctx: ServiceContext) -> None:
    """Periodic cleanups, run by one instance at a time (leader lock): complete abandoned
    campaigns, delete expired sessions. One failing does not stop the other."""
    jobs = (("abandoned live query campaigns completed", campaigns.cleanup_stale),
            ("expired sessions deleted", sessions.cleanup_expired))
    while True:
        await asyncio.sleep(CLEANUP_INTERVAL)
        try:
            leader = await ctx.broker.locks.acquire("cleanups", ctx.instance_id,
                                                    CLEANUP_INTERVAL * 2)
        except BrokerUnavailable as exc:
            log.warning("cleanups skipped: %s", exc)
            continue
        if not leader:
            continue
        for what, job in jobs:
            try:
                n = await job(ctx)
                if n:
                    log.info("%s: %d", what, n)
            except Exception as exc:
                _log_failure(f"cleanup failed ({what}); will retry", exc)


def start(ctx: ServiceContext) -> list[asyncio.Task[None]]:
    return [asyncio.create_task(job(ctx), name=job.__name__) for job in
            (flush_seen_forever, follow_invalidations, cleanups_forever)]


async def stop(ctx: ServiceContext, tasks: list[asyncio.Task[None]]) -> None:
    """Cancel the loops, then write what is still buffered."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    try:
        await ctx.seen.flush(ctx.db)
    except Exception as exc:
        _log_failure("final flush of host seen times failed", exc)


def _log_failure(what: str, exc: Exception) -> None:
    """One warning line for a database or broker that is away (the loop retries, and a
    traceback would say nothing more): the driver's own message. A traceback for a bug."""
    if is_outage(exc) or isinstance(exc, BrokerUnavailable | OSError):
        reason = driver_error(exc)
        log.warning("%s: %s: %s", what, type(reason).__name__, reason)
    else:
        log.exception(what)
