"""Host users on both backends: the `users` detail query's rows become the host detail's
`users`, an unchanged answer writes nothing, and `features.enable_host_users` off stops
asking."""

from __future__ import annotations

import httpx

from tests.integration.conftest import Api
from tests.integration.test_agent_endpoints import agent, enroll
from tests.integration.test_software import statements

__all__ = ["agent"]  # the fixture, imported for the tests below

USERS = "fleet_detail_query_users"
ROWS = [
    {"uid": "1000", "uuid": "", "username": "alice", "type": "", "groupname": "alice",
     "shell": "/bin/bash"},
    {"uid": "0", "uuid": "", "username": "root", "type": "", "groupname": "root",
     "shell": "/bin/bash"},
    {"uid": "not-a-number", "uuid": "", "username": "broken", "type": "", "groupname": "",
     "shell": ""},
]


async def answer(agent: httpx.AsyncClient, node_key: str, rows: list[dict[str, str]]) -> None:
    r = await agent.post("/api/osquery/distributed/write", json={
        "node_key": node_key, "queries": {USERS: rows}, "statuses": {USERS: 0}})
    assert r.status_code == 200, r.text


async def test_users_reach_the_host_detail_and_unchanged_answers_write_nothing(
        admin_api: Api, agent: httpx.AsyncClient) -> None:
    ctx = admin_api.ctx
    node_key = await enroll(agent)
    r = await agent.post("/api/osquery/distributed/read", json={"node_key": node_key})
    assert "shell NOT LIKE '%/nologin'" in r.json()["queries"][USERS]
    await answer(agent, node_key, ROWS)
    host = ctx.host_cache.get(node_key)
    assert host is not None
    detail = (await admin_api.request("GET", f"/hosts/{host.id}")).json()["host"]
    assert detail["users"] == [
        {"uid": 0, "username": "root", "type": "", "groupname": "root", "shell": "/bin/bash"},
        {"uid": 1000, "username": "alice", "type": "", "groupname": "alice",
         "shell": "/bin/bash"}]
    assert detail["batteries"] == [] and detail["pack_stats"] == []
    with statements(ctx) as again:
        await answer(agent, node_key, list(reversed(ROWS)))
    assert not [s for s in again.writes if "host_users" in s], again.writes
    await answer(agent, node_key, ROWS[:1])
    detail = (await admin_api.request("GET", f"/hosts/{host.id}")).json()["host"]
    assert [u["username"] for u in detail["users"]] == ["alice"]


async def test_users_are_not_asked_while_host_users_are_off(admin_api: Api,
                                                           agent: httpx.AsyncClient) -> None:
    r = await admin_api.request("PATCH", "/config",
                                json={"features": {"enable_host_users": False}})
    assert r.status_code == 200, r.text
    node_key = await enroll(agent)
    r = await agent.post("/api/osquery/distributed/read", json={"node_key": node_key})
    assert USERS not in r.json()["queries"]
    assert "fleet_detail_query_uptime" in r.json()["queries"]
