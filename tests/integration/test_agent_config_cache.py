"""The agent-config cache of every instance follows changes made through any instance, on
both backends (in-process broker, Redis), without waiting for its age limit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from fleet.agent.routes import AgentFrontDoor
from fleet.broker import create_broker
from fleet.jobs import background
from fleet.service import configcache
from fleet.service.context import ServiceContext
from fleet.service.hostcache import CachedHost
from fleet.store.db import create_database
from tests.integration.conftest import Api
from tests.integration.test_agent_endpoints import agent, enroll

__all__ = ["agent"]  # the fixture, imported for the tests below


@pytest.fixture
async def other(ctx: ServiceContext) -> AsyncIterator[ServiceContext]:
    """A second instance on the same database and broker, following the invalidation
    channel as `fleet serve` does (the in-process broker is shared as one process would)."""
    cfg = ctx.cfg
    broker = ctx.broker if not cfg.redis.address else await create_broker(
        redis_address=cfg.redis.address, database=cfg.redis.database)
    instance = ServiceContext(cfg=cfg, db=create_database(cfg), broker=broker)
    follower = asyncio.create_task(background.follow_invalidations(instance))
    instance.host_cache.put(_marker())
    deadline = asyncio.get_running_loop().time() + 10
    while True:  # the follower drops its caches once subscribed
        if not len(instance.host_cache) or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.01)
    assert not len(instance.host_cache), "the second instance never subscribed"
    try:
        yield instance
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        if broker is not ctx.broker:
            await broker.close()
        await instance.db.close()


def _marker() -> CachedHost:
    return CachedHost(id=0, node_key="marker", osquery_host_id="", hostname="", platform="",
                      team_id=None, detail_updated_at=0.0, label_updated_at=0.0,
                      refetch_requested=False, distributed_interval=0,
                      config_tls_refresh=0, logger_tls_period=0)


async def test_a_query_change_on_one_instance_is_served_by_the_other_at_once(
        ctx: ServiceContext, admin_api: Api, agent: httpx.AsyncClient,
        other: ServiceContext, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(configcache, "CACHE_SECONDS", 3600.0)  # only an announcement helps
    node_key = await enroll(agent)
    transport = httpx.ASGITransport(app=AgentFrontDoor(other, Starlette()))
    async with httpx.AsyncClient(transport=transport, base_url="https://b.test") as b:
        r = await b.post("/api/osquery/config", json={"node_key": node_key})
        assert r.status_code == 200 and "packs" not in r.json()
        r = await admin_api.request("POST", "/queries", json={
            "name": "uptime", "query": "SELECT * FROM uptime", "interval": 300})
        assert r.status_code == 200, r.text
        deadline = asyncio.get_running_loop().time() + 10
        while True:  # the announcement crosses the broker: poll, with a deadline
            r = await b.post("/api/osquery/config", json={"node_key": node_key})
            packs = r.json().get("packs", {})
            if packs or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.01)
        assert packs["Global"]["queries"]["uptime"]["query"] == "SELECT * FROM uptime"
        # ... and the instance that made the change, without any broker round trip.
        r = await agent.post("/api/osquery/config", json={"node_key": node_key})
        assert r.json()["packs"]["Global"]["queries"]["uptime"]["interval"] == 300

        query_id = (await admin_api.request("GET", "/queries")).json()["queries"][0]["id"]
        r = await admin_api.request("DELETE", f"/queries/id/{query_id}")
        assert r.status_code == 200, r.text
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            r = await b.post("/api/osquery/config", json={"node_key": node_key})
            if "packs" not in r.json() or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.01)
        assert "packs" not in r.json()


async def test_a_team_change_reloads_only_that_team(ctx: ServiceContext) -> None:
    cache = ctx.agent_config
    for team_id in (None, 1, 2):
        await cache.config_for(ctx.db, team_id, "darwin")
    before = ctx.db.statement_count
    cache.invalidate(1)
    for team_id in (None, 2):
        await cache.config_for(ctx.db, team_id, "darwin")
    assert ctx.db.statement_count == before  # still cached
    await cache.config_for(ctx.db, 1, "darwin")
    reloaded = ctx.db.statement_count
    assert reloaded > before
    cache.invalidate()  # a global change: every team
    for team_id in (None, 1, 2):
        await cache.config_for(ctx.db, team_id, "darwin")
    assert ctx.db.statement_count - reloaded == 3 * (reloaded - before)


async def test_a_change_during_a_reload_is_not_undone_by_it(
        ctx: ServiceContext, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reload that started before the change may have read the old rows: the next
    request loads again instead of serving what it produced."""
    cache = ctx.agent_config
    started, release = asyncio.Event(), asyncio.Event()
    real = configcache.schedule_store.global_scheduled_queries

    async def slow(conn: Any) -> Any:
        started.set()
        await release.wait()
        return await real(conn)

    monkeypatch.setattr(configcache.schedule_store, "global_scheduled_queries", slow)
    first = asyncio.ensure_future(cache.config_for(ctx.db, None, "linux"))
    await started.wait()
    await ctx.agent_config_changed()
    started.clear()
    second = asyncio.ensure_future(cache.config_for(ctx.db, None, "linux"))
    await started.wait()  # a second load, not the one in flight
    release.set()
    await asyncio.gather(first, second)
    before = ctx.db.statement_count
    await cache.config_for(ctx.db, None, "linux")
    assert ctx.db.statement_count == before  # the second load's snapshot is current
