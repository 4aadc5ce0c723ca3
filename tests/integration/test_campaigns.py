"""Live-query campaigns on both backends: targeting, delivery, no loss, no duplicates."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from fleet.core.authz import Role, Viewer
from fleet.core.campaigns import STATUS_COMPLETE
from fleet.core.errors import BadRequest, PermissionDenied
from fleet.service import campaigns
from fleet.service.context import ServiceContext
from fleet.service.hostcache import CachedHost
from fleet.store import campaigns as campaign_store
from fleet.store import hosts as host_store
from fleet.store.db import utcnow
from fleet.store.schema import distributed_query_campaigns as campaign_table
from fleet.store.schema import users

ADMIN = Viewer(user_id=1, email="admin@example.com", name="Admin", global_role=Role.ADMIN)
OBSERVER = Viewer(user_id=2, email="obs@example.com", name="Obs", global_role=Role.OBSERVER)


@pytest.fixture
async def fleet(ctx: ServiceContext) -> list[CachedHost]:
    """Three enrolled hosts (and the two users the viewers stand for)."""
    now = utcnow()
    async with ctx.db.begin() as conn:
        for v in (ADMIN, OBSERVER):
            await conn.execute(users.insert().values(
                id=v.user_id, email=v.email, name=v.name, password=b"x",
                global_role=str(v.global_role), created_at=now, updated_at=now))
    out = []
    for i in range(3):
        host_id, _ = await host_store.enroll(
            ctx.db, osquery_host_id=f"h{i}", node_key=f"nk{i}", team_id=None,
            cooldown_seconds=0, values={"hostname": f"host-{i}", "platform": "ubuntu",
                                        "uuid": f"UUID-{i}"})
        async with ctx.db.connect() as conn:
            row = await host_store.find_by_node_key(conn, f"nk{i}")
        assert row is not None and row.id == host_id
        out.append(CachedHost.from_row(row))
    return out


async def campaign_status(ctx: ServiceContext, campaign_id: int) -> int:
    async with ctx.db.connect() as conn:
        record = await campaign_store.get(conn, campaign_id)
    assert record is not None
    return record.status


async def all_hosts_label(ctx: ServiceContext) -> int:
    async with ctx.db.connect() as conn:
        return (await campaign_store.label_ids_by_name(conn, ["All Hosts"]))["All Hosts"]


async def test_targets_hosts_and_all_hosts_label(ctx: ServiceContext,
                                                 fleet: list[CachedHost]) -> None:
    c = await campaigns.create(ctx, ADMIN, sql="SELECT 1", query_id=None,
                               host_ids=[fleet[1].id])
    assert c.host_ids == (fleet[1].id,)
    assert await ctx.broker.live.queries_for_host(fleet[1].id) == {c.id: "SELECT 1"}
    assert await ctx.broker.live.queries_for_host(fleet[0].id) == {}
    c2 = await campaigns.create(ctx, ADMIN, sql="SELECT 2", query_id=None,
                                label_ids=[await all_hosts_label(ctx)])
    assert set(c2.host_ids) == {h.id for h in fleet}
    totals = await campaigns.totals(ctx, c2.id)
    assert (totals.count, totals.online) == (3, 3)


async def test_targeting_errors(ctx: ServiceContext, fleet: list[CachedHost]) -> None:
    with pytest.raises(BadRequest, match="no hosts targeted"):
        await campaigns.create(ctx, ADMIN, sql="SELECT 1", query_id=None, host_ids=[999])
    with pytest.raises(BadRequest, match=r"Invalid label name\(s\): Nope, Gone\."):
        await campaigns.create_by_identifiers(ctx, ADMIN, sql="SELECT 1", query_id=None,
                                              hosts=[], labels=["All Hosts", "Nope", "Gone"])
    with pytest.raises(PermissionDenied):
        await campaigns.create(ctx, OBSERVER, sql="SELECT 1", query_id=None,
                               host_ids=[fleet[0].id])


async def test_by_identifiers_accepts_hostname_uuid(ctx: ServiceContext,
                                                    fleet: list[CachedHost]) -> None:
    c = await campaigns.create_by_identifiers(ctx, ADMIN, sql="SELECT 1", query_id=None,
                                              hosts=["host-0", "UUID-2"], labels=[])
    assert c.host_ids == (fleet[0].id, fleet[2].id)


async def collect(events: Any, want_results: int) -> list[campaigns.Event]:
    out: list[campaigns.Event] = []
    async for event in events:
        out.append(event)
        if sum(e.type == "result" for e in out) == want_results and \
                event.type == "status" and event.data["status"] == "finished":
            break
    return out


async def test_answers_reach_watcher_once_and_unwatched_answers_are_asked_again(
        ctx: ServiceContext, fleet: list[CachedHost]) -> None:
    c = await campaigns.create(ctx, ADMIN, sql="SELECT 1", query_id=None,
                               host_ids=[h.id for h in fleet])
    # An answer before anyone watches is not lost: the host keeps the query.
    await campaigns.ingest_result(ctx, fleet[0], c.id, [{"a": "early"}], "", None)
    assert c.id in await ctx.broker.live.queries_for_host(fleet[0].id)

    watch = campaigns.watch(ctx, c.id)
    first = await anext(watch)
    assert first.type == "totals" and first.data["count"] == 3
    status = await anext(watch)
    assert status.data == {"expected_results": 3, "actual_results": 0, "status": "pending"}
    rest = asyncio.ensure_future(collect(watch, 3))
    for host in fleet:
        await campaigns.ingest_result(ctx, host, c.id, [{"a": str(host.id)}], "", None)
    await campaigns.ingest_result(ctx, fleet[0], c.id, [{"a": "dup"}], "", None)  # replay
    events = await asyncio.wait_for(rest, 30)
    await watch.aclose()
    results = [e.data for e in events if e.type == "result"]
    assert sorted(r["host"]["id"] for r in results) == sorted(h.id for h in fleet)
    assert results[0]["rows"][0]["host_hostname"] == results[0]["host"]["hostname"]
    # Answers arriving together are summed up in one status, not one status per answer.
    statuses = [e.data["actual_results"] for e in events if e.type == "status"]
    assert statuses[-1] == 3 and len(statuses) < 3
    for host in fleet:  # delivered: nobody is asked again
        assert c.id not in await ctx.broker.live.queries_for_host(host.id)
    await campaigns.complete(ctx, c.id)
    assert await campaign_status(ctx, c.id) == STATUS_COMPLETE


async def test_unwatched_old_campaign_is_stopped(ctx: ServiceContext,
                                                 fleet: list[CachedHost]) -> None:
    c = await campaigns.create(ctx, ADMIN, sql="SELECT 1", query_id=None,
                               host_ids=[fleet[0].id])
    async with ctx.db.begin() as conn:
        await conn.execute(campaign_table.update().where(campaign_table.c.id == c.id).values(
            created_at=utcnow() - campaigns.LISTENER_GRACE * 2))
    await campaigns.ingest_result(ctx, fleet[0], c.id, [], "", None)
    assert await ctx.broker.live.queries_for_host(fleet[0].id) == {}
    assert await campaign_status(ctx, c.id) == STATUS_COMPLETE


async def test_run_sync_collects_answers(ctx: ServiceContext, fleet: list[CachedHost]) -> None:
    async def agent() -> None:
        while True:  # answer as soon as the query is handed out
            for host in fleet[:2]:
                for campaign_id in await ctx.broker.live.queries_for_host(host.id):
                    await campaigns.ingest_result(ctx, host, campaign_id,
                                                  [{"n": str(host.id)}], "", None)
            await asyncio.sleep(0.05)

    task = asyncio.create_task(agent())
    try:
        campaign, answers = await campaigns.run_sync(
            ctx, ADMIN, sql="SELECT 1", query_id=None, host_ids=[fleet[0].id, fleet[1].id],
            wait_seconds=30)
    finally:
        task.cancel()
    assert set(answers) == {fleet[0].id, fleet[1].id}
    assert answers[fleet[0].id].rows == [{"n": str(fleet[0].id)}]
    assert await campaign_status(ctx, campaign.id) == STATUS_COMPLETE


async def test_host_query_authorizes_before_looking_the_host_up(
        ctx: ServiceContext, fleet: list[CachedHost]) -> None:
    for host_id in (fleet[0].id, 999_999):  # an offline host, and no host at all
        with pytest.raises(PermissionDenied):
            await campaigns.run_on_host(ctx, OBSERVER, host_id, "SELECT 1", 0.1)


async def test_results_carry_the_host_display_name(ctx: ServiceContext) -> None:
    await host_store.enroll(ctx.db, osquery_host_id="dn", node_key="nk-dn", team_id=None,
                            cooldown_seconds=0,
                            values={"hostname": "web-1", "computer_name": "Web Box"})
    async with ctx.db.connect() as conn:
        row = await host_store.find_by_node_key(conn, "nk-dn")
    payload = orjson.loads(campaigns.result_payload(
        7, CachedHost.from_row(row), [{"a": "1"}], "", None))
    assert payload["host"]["display_name"] == "Web Box"
    assert payload["rows"][0]["host_display_name"] == "Web Box"
