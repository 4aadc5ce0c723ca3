"""The query-family registry of the agent path, on both backends: answers of several
families in one write all land, and what the families store commits in one transaction."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa

from fleet.broker.base import results_channel
from fleet.core.authz import Role, Viewer
from fleet.core.detail_queries import HostTables, IngestContext
from fleet.service import campaigns, families
from fleet.service.context import ServiceContext
from fleet.service.families import Answer, HostWrite, Query, Registry
from fleet.service.hostcache import CachedHost
from fleet.store.db import utcnow
from fleet.store.hosts import HostTables as StoreHostTables
from fleet.store.schema import host_seen_times, hosts, users
from tests.integration.test_agent_endpoints import agent, enroll

__all__ = ["agent"]  # the fixture, imported for the tests below

ADMIN = Viewer(user_id=1, email="admin@example.com", name="Admin", global_role=Role.ADMIN)


async def host_row(ctx: ServiceContext) -> Any:
    async with ctx.db.connect() as conn:
        return (await conn.execute(sa.select(hosts))).one()


async def test_live_and_detail_answers_of_one_write_all_land(
        ctx: ServiceContext, agent: httpx.AsyncClient) -> None:
    now = utcnow()
    async with ctx.db.begin() as conn:
        await conn.execute(users.insert().values(
            id=ADMIN.user_id, email=ADMIN.email, name=ADMIN.name, password=b"x",
            global_role=str(ADMIN.global_role), created_at=now, updated_at=now))
    node_key = await enroll(agent)
    host = ctx.host_cache.get(node_key)
    assert host is not None
    campaign = await campaigns.create(ctx, ADMIN, sql="SELECT 42 AS answer", query_id=None,
                                      host_ids=[host.id])
    live = f"fleet_distributed_query_{campaign.id}"
    r = await agent.post("/api/osquery/distributed/read", json={"node_key": node_key})
    asked = r.json()["queries"]
    assert asked[live] == "SELECT 42 AS answer" and "fleet_detail_query_uptime" in asked
    async with ctx.broker.bus.subscribe(results_channel(campaign.id)) as sub:
        r = await agent.post("/api/osquery/distributed/write", json={
            "node_key": node_key,
            "queries": {live: [{"answer": "42"}],
                        "fleet_detail_query_uptime": [{"total_seconds": "60"}],
                        "fleet_detail_query_osquery_info": [{"version": "5.99.0"}],
                        "fleet_nobodys_query_1": [{"x": "1"}]},
            "statuses": {live: 0, "fleet_detail_query_uptime": 0}})
        assert r.status_code == 200, r.text
        result = orjson.loads(await asyncio.wait_for(anext(aiter(sub)), 10))
    assert result["rows"][0]["answer"] == "42"
    row = await host_row(ctx)
    assert (row.uptime, row.osquery_version) == (60 * 10**9, "5.99.0")
    # The cached host agrees with the row: the details are not due again.
    cached = ctx.host_cache.get(node_key)
    assert cached is not None and not families.DETAILS.due(ctx, cached, utcnow().timestamp())


class SeenFamily:
    """A test family that stores into a table of its own (host_seen_times) and stamps a
    host column, through a direct ingest."""

    prefix = "fleet_test_query_"

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    def due(self, ctx: ServiceContext, host: CachedHost, now: float) -> bool:
        return True

    async def queries(self, ctx: ServiceContext, host: CachedHost) -> Mapping[str, Query]:
        return {"seen": Query("SELECT unix_time FROM time")}

    async def ingest(self, ctx: ServiceContext, host: CachedHost,
                     answers: Mapping[str, Answer], write: HostWrite) -> None:
        write.direct.append((self._store, write.clean(answers["seen"])))
        write.columns["label_updated_at"] = write.now

    async def _store(self, tables: HostTables, rows: Sequence[Mapping[str, str]],
                     _context: IngestContext) -> None:
        await tables.replace_rows("host_seen_times", [
            {"seen_time": dt.datetime.fromtimestamp(int(r["unix_time"]), dt.UTC)
             .replace(tzinfo=None)} for r in rows])
        if self.fail:
            raise RuntimeError("direct ingest failed")


@pytest.mark.parametrize("fail", [False, True])
async def test_direct_ingest_commits_with_the_host_columns(
        ctx: ServiceContext, agent: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch,
        fail: bool) -> None:
    monkeypatch.setattr(families, "REGISTRY",
                        Registry((*families.REGISTRY, SeenFamily(fail=fail))))
    node_key = await enroll(agent)
    r = await agent.post("/api/osquery/distributed/read", json={"node_key": node_key})
    assert r.json()["queries"]["fleet_test_query_seen"] == "SELECT unix_time FROM time"
    before = (await host_row(ctx)).label_updated_at
    r = await agent.post("/api/osquery/distributed/write", json={
        "node_key": node_key, "statuses": {},
        "queries": {"fleet_test_query_seen": [{"unix_time": "1700000000"}]}})
    assert r.status_code == (500 if fail else 200), r.text
    async with ctx.db.connect() as conn:
        seen = (await conn.execute(sa.select(host_seen_times.c.seen_time))).scalars().all()
    after = (await host_row(ctx)).label_updated_at
    if fail:  # neither the table nor the host column
        assert (seen, after) == ([], before)
    else:
        assert seen == [dt.datetime(2023, 11, 14, 22, 13, 20)] and after > before


async def test_a_store_outside_the_host_tables_is_refused(ctx: ServiceContext) -> None:
    async with ctx.db.begin() as conn:
        for table in ("hosts", "users", "no_such_table"):
            with pytest.raises(ValueError, match="not a table of host rows"):
                await StoreHostTables(conn, 1).replace_rows(table, [])


def test_prefixes_must_not_overlap() -> None:
    class Family(SeenFamily):
        def __init__(self, prefix: str) -> None:
            super().__init__()
            self.prefix = prefix

    with pytest.raises(ValueError, match="ambiguous"):
        Registry((Family("fleet_detail_query_x"), families.DETAILS))
    with pytest.raises(ValueError, match="ambiguous"):
        Registry((families.DETAILS, families.DETAILS))
    registry = Registry((Family("fleet_test_a_"), Family("fleet_test_b_")))
    assert registry.family_of("fleet_test_b_1") is list(registry)[1]
    assert registry.family_of("fleet_test_c_1") is None
