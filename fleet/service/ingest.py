"""`distributed/write`: turn a host's answers into vitals and live-query results."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fleet.core import detail_queries
from fleet.core.agent_values import INT64_MAX, clean_rows, describe_dropped, short
from fleet.service import campaigns
from fleet.service.checkin import LIVE_QUERY_PREFIX
from fleet.service.context import ServiceContext
from fleet.service.hostcache import CachedHost, unix_seconds
from fleet.store import hosts as host_store
from fleet.store.db import utcnow

log = logging.getLogger("fleet.ingest")


def _campaign_id(text: str) -> int | None:
    """The id in a live query's name: plain ASCII digits within a 64-bit id, else None
    (`int()` would also take signs, spaces, underscores and non-ASCII digits)."""
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        return None
    value = int(text)
    return value if 0 < value <= INT64_MAX else None


async def submit_results(ctx: ServiceContext, host: CachedHost, *,
                         queries: Mapping[str, Any], statuses: Mapping[str, int],
                         messages: Mapping[str, str], stats: Mapping[str, Any],
                         public_ip: str) -> None:
    """Deliver live-query answers first, then store the detail queries' vitals: someone is
    waiting for the answers, so nothing a detail query carries may cost them."""
    dropped: dict[str, list[str]] = {}
    details: list[tuple[str, Any]] = []
    for name, raw_rows in queries.items():
        if name.startswith(detail_queries.PREFIX):
            details.append((name, raw_rows))
        elif name.startswith(LIVE_QUERY_PREFIX):
            campaign_id = _campaign_id(name[len(LIVE_QUERY_PREFIX):])
            if campaign_id is None:
                log.info("host %s answered unknown live query %r", host.id, short(name))
                continue
            rows, dropped[name] = clean_rows(raw_rows)
            error = (messages.get(name) or "query failed") if statuses.get(name, 0) else ""
            await campaigns.ingest_result(ctx, host, campaign_id, rows, error,
                                          stats.get(name))
        else:
            log.debug("host %s answered unknown query %r", host.id, short(name))
    vitals: dict[str, Any] = {}
    ingest_ctx = detail_queries.IngestContext(public_ip=public_ip)
    for name, raw_rows in details:
        if statuses.get(name, 0):
            message = messages.get(name, "")
            if not message.startswith("no such table"):
                log.info("detail query %s failed on host %s: %s", short(name), host.id,
                         short(message, 200))
            continue
        detail = detail_queries.BY_NAME.get(name[len(detail_queries.PREFIX):])
        if detail is None:
            log.info("host %s answered unknown detail query %r", host.id, short(name))
            continue
        rows, dropped[name] = clean_rows(raw_rows)
        vitals.update(detail.ingest(rows, ingest_ctx))
    if any(dropped.values()):
        log.warning("host %s (%s) sent values that are not osquery column values, "
                    "dropped: %s", host.id, short(host.osquery_host_id),
                    describe_dropped(dropped))
    if details:
        await _save_details(ctx, host, vitals)


async def _save_details(ctx: ServiceContext, host: CachedHost, vitals: dict[str, Any]) -> None:
    now = utcnow()
    await host_store.update_host(ctx.db, host.id, {
        **vitals, "detail_updated_at": now, "refetch_requested": False})
    # This instance keeps serving the host from an up-to-date entry; others reload it.
    await ctx.host_changed(host.id)
    for name in ("hostname", "platform", "distributed_interval", "config_tls_refresh",
                 "logger_tls_period"):
        if name in vitals:
            setattr(host, name, vitals[name])
    host.detail_updated_at = unix_seconds(now)
    host.refetch_requested = False
    ctx.host_cache.put(host)

