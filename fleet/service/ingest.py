"""`distributed/write`: hand each answer to its query family, then store what they made of
them (host columns, a family's own tables) in one transaction, and queue a software list
for the batch writer."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from fleet.core.agent_values import describe_dropped, short
from fleet.core.detail_queries import IngestContext
from fleet.service import families
from fleet.service.context import ServiceContext
from fleet.service.families import Answer, HostWrite, QueryFamily
from fleet.service.hostcache import CachedHost
from fleet.store import hosts as host_store
from fleet.store.db import utcnow

log = logging.getLogger("fleet.ingest")


async def submit_results(ctx: ServiceContext, host: CachedHost, *,
                         queries: Mapping[str, Any], statuses: Mapping[str, int],
                         messages: Mapping[str, str], stats: Mapping[str, Any],
                         public_ip: str) -> None:
    """Families ingest in registry order: live-query answers are delivered first, since
    someone is waiting for them and nothing a detail query carries may cost them."""
    registry = families.REGISTRY
    by_family: dict[QueryFamily, dict[str, Answer]] = {}
    for name, rows in queries.items():
        family = registry.family_of(name)
        if family is None:
            log.debug("host %s answered unknown query %r", host.id, short(name))
            continue
        by_family.setdefault(family, {})[name[len(family.prefix):]] = Answer(
            name, rows, statuses.get(name, 0), messages.get(name, ""), stats.get(name))
    write = HostWrite(now=utcnow(), context=IngestContext(public_ip=public_ip))
    for family in registry:
        answers = by_family.get(family)
        if answers:
            await family.ingest(ctx, host, answers, write)
    if any(write.dropped.values()):
        log.warning("host %s (%s) sent values that are not osquery column values, "
                    "dropped: %s", host.id, short(host.osquery_host_id),
                    describe_dropped(write.dropped))
    if write:
        await _save(ctx, host, write)


# Hosts writing overlapping rows (label memberships) at once can deadlock on MySQL; the
# loser runs its (idempotent) write again.
SAVE_ATTEMPTS = 5


async def _commit(ctx: ServiceContext, host_id: int, write: HostWrite,
                  columns: Mapping[str, Any], *, direct: bool) -> None:
    async def work(conn: AsyncConnection) -> None:
        if direct:
            tables = host_store.HostTables(conn, host_id)
            for direct_ingest, rows in write.direct:
                await direct_ingest(tables, rows, write.context)
        if columns:
            await host_store.update_host(conn, host_id, dict(columns))
    await ctx.db.transact(work, attempts=SAVE_ATTEMPTS, backoff=0.02)


def _not_answered(columns: Mapping[str, Any]) -> dict[str, Any]:
    """The columns without the families' "answered at" marks (and with a refetch kept), so
    what could not be stored is asked again on the next check-in."""
    return {k: v for k, v in columns.items()
            if not k.endswith("_updated_at") and k != "refetch_requested"}


async def _save(ctx: ServiceContext, host: CachedHost, write: HostWrite) -> None:
    try:
        await _commit(ctx, host.id, write, write.columns, direct=True)
    except (IntegrityError, OperationalError) as exc:
        if not write.direct or not ctx.db.is_retryable(exc):
            raise
        # The families' own tables kept colliding with other hosts' writes (MySQL lock
        # conflicts): the host's vitals still land, and its details and labels are asked
        # again on the next check-in instead of an interval later.
        log.warning("host %s: storing its label results kept conflicting with other hosts "
                    "(%s); saved its vitals and will ask again", host.id, short(str(exc), 200))
        write.columns = _not_answered(write.columns)
        await _commit(ctx, host.id, write, write.columns, direct=False)
    # This instance keeps serving the host from an up-to-date entry; others reload it.
    await ctx.host_changed(host.id)
    host.apply(write.columns)
    ctx.host_cache.put(host)
    if write.software is not None:
        await ctx.software.submit(host.id, write.software)
