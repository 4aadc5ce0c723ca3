"""Live queries: create a campaign, hand it to hosts, deliver every answer to its watchers.

Flow: targets are resolved to host ids and stored in the broker's live-query store; hosts
pick the SQL up at their next `distributed/read`; each `distributed/write` answer is
published on `results_<campaign>` and reaches every watcher on any instance. A host's bit is
cleared only once its answer reached at least one watcher, so an answer that arrives before
anyone watches is asked for again instead of being lost.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from fleet.broker.base import results_channel
from fleet.core import hoststatus
from fleet.core.authz import (
    Action,
    Subject,
    TeamFilter,
    Viewer,
    authorize,
    authorize_any,
)
from fleet.core.campaigns import (
    STATUS_COMPLETE,
    STATUS_RUNNING,
    Campaign,
    CampaignRecord,
    Totals,
)
from fleet.core.errors import BadRequest, NotFound
from fleet.core.hosts import HostSeen
from fleet.service import queries as query_service
from fleet.service.context import ServiceContext
from fleet.service.hostcache import CachedHost
from fleet.store import campaigns as store
from fleet.store.db import utcnow

log = logging.getLogger("fleet.campaigns")

# How long an answer with no watcher keeps the host's bit set (Fleet: one minute).
LISTENER_GRACE = dt.timedelta(minutes=1)
# How often a watcher re-reads totals (online counts change as hosts check in); Fleet: 5 s.
TOTALS_REFRESH_SECONDS = 5.0
# Least time between two "pending" status messages to a watcher.
STATUS_INTERVAL_SECONDS = 0.5


async def _query_sql(ctx: ServiceContext, viewer: Viewer, sql: str | None,
                     query_id: int | None) -> tuple[int, str, TeamFilter]:
    """Authorize running a saved query or new SQL; returns (query id, SQL, the hosts it may
    run on)."""
    if query_id:
        authorize_any(viewer, Action.RUN_SAVED_QUERIES, Subject(observer_can_run=True))
        query = await query_service.get_query(ctx, viewer, query_id)
        teams = authorize_any(viewer, Action.RUN_SAVED_QUERIES,
                              Subject(observer_can_run=query.observer_can_run))
        return query_id, query.query, teams
    teams = authorize_any(viewer, Action.RUN_NEW_QUERIES)
    if not sql or not sql.strip():
        raise BadRequest("query is required", name="query")
    return await query_service.create_unsaved_query(ctx, viewer, sql), sql, teams


async def create(ctx: ServiceContext, viewer: Viewer, *, sql: str | None,
                 query_id: int | None, host_ids: Sequence[int] = (),
                 label_ids: Sequence[int] = (), start: bool = True) -> Campaign:
    """Create a campaign for the selected hosts and labels; `start` hands it to the hosts."""
    qid, text, teams = await _query_sql(ctx, viewer, sql, query_id)
    async with ctx.db.begin() as conn:
        resolved = await store.resolve_targets(conn, host_ids, label_ids, teams)
        if not resolved:
            raise BadRequest("no hosts targeted")
        record = await store.create(conn, query_id=qid, user_id=viewer.user_id,
                                    host_ids=list(host_ids), label_ids=list(label_ids))
    campaign = Campaign(id=record.id, query_id=qid, sql=text, user_id=viewer.user_id,
                        status=record.status, created_at=record.created_at,
                        host_ids=tuple(resolved))
    if start:
        await begin(ctx, campaign)
    return campaign


async def begin(ctx: ServiceContext, campaign: Campaign) -> None:
    await ctx.broker.live.run_query(campaign.id, campaign.sql, campaign.host_ids)


async def create_by_identifiers(ctx: ServiceContext, viewer: Viewer, *, sql: str | None,
                                query_id: int | None, hosts: Sequence[str],
                                labels: Sequence[str]) -> Campaign:
    """Like `create`, with hosts by hostname/UUID/serial and labels by name (fleetctl)."""
    # Authorize before the lookups, so unknown label names tell nobody unauthorized anything.
    teams = authorize_any(viewer, Action.RUN_SAVED_QUERIES if query_id else
                          Action.RUN_NEW_QUERIES, Subject(observer_can_run=True))
    async with ctx.db.connect() as conn:
        label_ids = await store.label_ids_by_name(conn, labels) if labels else {}
        unknown = [name for name in labels if name not in label_ids]
        if unknown:
            raise BadRequest(f"Invalid label name(s): {', '.join(unknown)}.")
        host_ids = await store.host_ids_by_identifier(conn, hosts, teams) if hosts else []
    return await create(ctx, viewer, sql=sql, query_id=query_id, host_ids=host_ids,
                        label_ids=list(label_ids.values()))


async def totals(ctx: ServiceContext, campaign_id: int) -> Totals:
    async with ctx.db.connect() as conn:
        facts = await store.target_seen_facts(conn, campaign_id)
    return tally(facts, utcnow())


def tally(facts: Sequence[HostSeen], now: dt.datetime) -> Totals:
    """Targeted, online, offline and missing hosts among `facts`."""
    online = missing = count = 0
    for f in facts:
        count += 1
        if hoststatus.is_online(f.seen_time, f.distributed_interval, f.config_tls_refresh, now):
            online += 1
        elif hoststatus.is_missing(f.seen_time, now):
            missing += 1
    return Totals(count=count, online=online, offline=count - online,
                  missing_in_action=missing)


async def load(ctx: ServiceContext, viewer: Viewer, campaign_id: int) -> CampaignRecord:
    async with ctx.db.connect() as conn:
        record = await store.get(conn, campaign_id)
    if record is None:
        raise NotFound(f"cannot find campaign for ID {campaign_id}")
    authorize(viewer, Action.WATCH_CAMPAIGN, Subject(owner_id=record.user_id))
    return record


async def _set_status(ctx: ServiceContext, campaign_id: int, status: int) -> None:
    async with ctx.db.begin() as conn:
        await store.set_status(conn, campaign_id, status)


async def complete(ctx: ServiceContext, campaign_id: int) -> None:
    """Stop handing the campaign to hosts and mark it complete (idempotent)."""
    await ctx.broker.live.stop_query(campaign_id)
    await _set_status(ctx, campaign_id, STATUS_COMPLETE)


def result_payload(campaign_id: int, host: CachedHost, rows: list[dict[str, Any]],
                   error: str, stats: Any) -> bytes:
    """What watchers receive for one host's answer (Fleet's DistributedQueryResult)."""
    display_name = host.display_name or host.hostname
    for row in rows:
        row["host_hostname"] = host.hostname
        row["host_display_name"] = display_name
    payload: dict[str, Any] = {
        "distributed_query_execution_id": campaign_id,
        "host": {"id": host.id, "hostname": host.hostname, "display_name": display_name},
        "rows": rows, "stats": stats if isinstance(stats, dict) and stats else None,
    }
    if error:
        payload["error"] = error
    return orjson.dumps(payload)


async def ingest_result(ctx: ServiceContext, host: CachedHost, campaign_id: int,
                        rows: list[dict[str, Any]], error: str, stats: Any) -> None:
    """Deliver one host's answer; keep asking the host while nobody is listening yet."""
    listeners = await ctx.broker.bus.publish(
        results_channel(campaign_id), result_payload(campaign_id, host, rows, error, stats))
    if listeners > 0:
        await ctx.broker.live.query_completed_by_host(campaign_id, host.id)
        return
    async with ctx.db.connect() as conn:
        record = await store.get(conn, campaign_id)
    if record is None or utcnow() - record.created_at > LISTENER_GRACE:
        log.info("campaign %s has no listener; stopping it", campaign_id)
        await complete(ctx, campaign_id)


@dataclass(frozen=True)
class Event:
    type: str  # totals | status | result
    data: Any


async def watch(ctx: ServiceContext, campaign_id: int) -> AsyncGenerator[Event, None]:
    """Totals, status and results of a campaign as they change, until the caller stops.

    The subscription is active before the campaign is marked running, so no answer that
    arrives afterwards can be missed. Duplicate answers of one host are dropped. Status
    goes out at most every STATUS_INTERVAL_SECONDS (and at once when finished), not after
    every answer, which would double the messages of a 10,000-host campaign; totals are
    re-read on their own clock whether or not answers keep arriving.
    """
    async with ctx.broker.bus.subscribe(results_channel(campaign_id)) as sub:
        await _set_status(ctx, campaign_id, STATUS_RUNNING)
        current = await totals(ctx, campaign_id)
        yield Event("totals", asdict(current))
        responded: set[int] = set()
        sent_status: dict[str, Any] | None = None
        status_due = 0.0
        totals_due = time.monotonic() + TOTALS_REFRESH_SECONDS
        messages = aiter(sub)
        pending: asyncio.Future[bytes] | None = None
        try:
            while True:
                now = time.monotonic()
                status = _status(current.online, len(responded))
                if status != sent_status and \
                        (now >= status_due or status["status"] == "finished"):
                    sent_status, status_due = status, now + STATUS_INTERVAL_SECONDS
                    yield Event("status", status)
                if now >= totals_due:
                    totals_due = now + TOTALS_REFRESH_SECONDS
                    fresh = await totals(ctx, campaign_id)
                    if fresh != current:
                        current = fresh
                        yield Event("totals", asdict(current))
                    continue
                wake = totals_due if status == sent_status else min(totals_due, status_due)
                if pending is None:
                    pending = asyncio.ensure_future(anext(messages))
                done, _ = await asyncio.wait({pending}, timeout=max(0.0, wake - now))
                if not done:
                    continue
                raw, pending = pending.result(), None
                result = orjson.loads(raw)
                host_id = result.get("host", {}).get("id")
                if host_id not in responded:
                    responded.add(host_id)
                    yield Event("result", result)
        finally:
            if pending is not None:
                pending.cancel()


def _status(expected: int, actual: int) -> dict[str, Any]:
    return {"expected_results": expected, "actual_results": actual,
            "status": "finished" if actual >= expected else "pending"}


@dataclass(frozen=True)
class SyncAnswer:
    host_id: int
    rows: list[dict[str, Any]]
    error: str | None


async def run_sync(ctx: ServiceContext, viewer: Viewer, *, sql: str | None,
                   query_id: int | None, host_ids: Sequence[int],
                   wait_seconds: float) -> tuple[Campaign, dict[int, SyncAnswer]]:
    """Run a live query and wait (up to `wait_seconds`) until every targeted host answered."""
    campaign = await create(ctx, viewer, sql=sql, query_id=query_id, host_ids=host_ids,
                            start=False)
    answers: dict[int, SyncAnswer] = {}
    try:
        async with ctx.broker.bus.subscribe(results_channel(campaign.id)) as sub:
            await begin(ctx, campaign)
            await _set_status(ctx, campaign.id, STATUS_RUNNING)

            async def collect() -> None:
                async for raw in sub:
                    result = orjson.loads(raw)
                    hid = int(result["host"]["id"])
                    rows = [{k: v for k, v in r.items()
                             if k not in ("host_hostname", "host_display_name")}
                            for r in result.get("rows") or []]
                    answers.setdefault(hid, SyncAnswer(hid, rows, result.get("error")))
                    if len(answers) >= len(campaign.host_ids):
                        return

            try:
                await asyncio.wait_for(collect(), wait_seconds)
            except TimeoutError:
                pass
    finally:
        await complete(ctx, campaign.id)
    return campaign, answers


@dataclass(frozen=True)
class HostAnswer:
    status: str  # online | offline (an offline host is not asked)
    rows: list[dict[str, Any]]
    error: str | None


async def run_on_host(ctx: ServiceContext, viewer: Viewer, host_id: int, sql: str,
                      wait_seconds: float) -> HostAnswer:
    """Run new SQL on one host and wait for its answer. The viewer is authorized before the
    host is looked up, so its existence and status tell nobody who may not run queries."""
    authorize_any(viewer, Action.RUN_NEW_QUERIES)
    status = await host_status(ctx, viewer, host_id)
    if status != "online":
        return HostAnswer(status, [], None)
    _campaign, answers = await run_sync(ctx, viewer, sql=sql, query_id=None,
                                        host_ids=[host_id], wait_seconds=wait_seconds)
    answer = answers.get(host_id)
    if answer is None:
        return HostAnswer(status, [], "timeout waiting for the host to answer")
    return HostAnswer(status, answer.rows, answer.error)


async def host_status(ctx: ServiceContext, viewer: Viewer, host_id: int) -> str:
    """online/offline of one host; NotFound if it does not exist or the viewer's teams do not
    hold it."""
    teams = authorize_any(viewer, Action.READ_HOSTS)
    async with ctx.db.connect() as conn:
        f = await store.host_seen_facts(conn, host_id, teams)
    if f is None:
        raise NotFound.of(f"Host {host_id}")
    return hoststatus.status(f.seen_time, f.distributed_interval, f.config_tls_refresh,
                             utcnow())


async def cleanup_stale(ctx: ServiceContext) -> int:
    """Complete campaigns nobody watches any more (run periodically under a leader lock)."""
    async with ctx.db.connect() as conn:
        ids = await store.stale_campaign_ids(conn, utcnow())
    for campaign_id in ids:
        await complete(ctx, campaign_id)
    return len(ids)
