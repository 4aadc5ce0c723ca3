"""Live queries through the production app in-process, on both backends: the REST
endpoints that start campaigns or wait for answers, and the results websocket (driven as
uvicorn drives an ASGI app), with agents answering through the service as check-ins would."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from fleet.service import campaigns
from fleet.service.hostcache import CachedHost
from fleet.store.db import utcnow
from tests import factories
from tests.integration.conftest import Api, assert_error, build_app

DEADLINE_SECONDS = 10.0


class WebSocket:
    """One websocket connection to an ASGI app: JSON text messages both ways."""

    def __init__(self, inbox: asyncio.Queue[dict[str, Any]],
                 outbox: asyncio.Queue[dict[str, Any]]) -> None:
        self.inbox, self.outbox = inbox, outbox

    async def send(self, type_: str, data: Any) -> None:
        await self.inbox.put({"type": "websocket.receive",
                              "text": json.dumps({"type": type_, "data": data})})

    async def receive(self) -> dict[str, Any]:
        message = await asyncio.wait_for(self.outbox.get(), DEADLINE_SECONDS)
        assert message["type"] == "websocket.send", message
        decoded: dict[str, Any] = json.loads(message["text"])
        return decoded

    async def receive_type(self, type_: str) -> Any:
        """The data of the next message of `type_` (skipping others)."""
        while (message := await self.receive())["type"] != type_:
            pass
        return message["data"]


@contextlib.asynccontextmanager
async def websocket(app: Any, path: str = "/api/latest/fleet/results/websocket"
                    ) -> AsyncIterator[WebSocket]:
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    scope = {"type": "websocket", "asgi": {"version": "3.0"}, "scheme": "ws", "path": path,
             "raw_path": path.encode(), "root_path": "", "query_string": b"",
             "headers": [(b"host", b"fleet.test")], "client": ("127.0.0.1", 5000),
             "server": ("fleet.test", 80), "subprotocols": []}
    task = asyncio.create_task(app(scope, inbox.get, outbox.put))
    await inbox.put({"type": "websocket.connect"})
    accepted = await asyncio.wait_for(outbox.get(), DEADLINE_SECONDS)
    assert accepted["type"] == "websocket.accept", accepted
    try:
        yield WebSocket(inbox, outbox)
    finally:
        await inbox.put({"type": "websocket.disconnect", "code": 1000})
        await asyncio.wait_for(task, DEADLINE_SECONDS)


async def answer_forever(api: Api, hosts: list[CachedHost]) -> None:
    """What the hosts' check-ins would do: answer every live query handed to them."""
    while True:
        for host in hosts:
            for campaign_id in await api.ctx.broker.live.queries_for_host(host.id):
                await campaigns.ingest_result(api.ctx, host, campaign_id,
                                              [{"answer": str(host.id)}], "", None)
        await asyncio.sleep(0.02)


async def test_campaigns_start_by_ids_and_by_identifiers(admin_api: Api) -> None:
    web = await factories.host(admin_api.ctx, hostname="web-1", seen=utcnow())
    await factories.host(admin_api.ctx, hostname="db-1", seen=utcnow())
    r = await admin_api.request("POST", "/queries/run", json={
        "query": "SELECT 1", "selected": {"hosts": [web.id]}})
    assert r.status_code == 200, r.text
    campaign = r.json()["campaign"]
    assert campaign["id"] and campaign["status"] == 0
    assert await admin_api.ctx.broker.live.queries_for_host(web.id) == {
        campaign["id"]: "SELECT 1"}
    r = await admin_api.request("POST", "/queries/run_by_identifiers", json={
        "query": "SELECT 2", "selected": {"hosts": ["db-1"], "labels": ["All Hosts"]}})
    assert r.status_code == 200, r.text
    assert r.json()["campaign"]["id"] != campaign["id"]
    assert_error(await admin_api.request("POST", "/queries/run_by_names", json={
        "query": "SELECT 3", "selected": {"labels": ["Nope"]}}), 400, "Bad request")
    _, observer = await admin_api.user("observer")
    assert_error(await admin_api.request("POST", "/queries/run", token=observer, json={
        "query": "SELECT 1", "selected": {"hosts": [web.id]}}), 403, "Permission Denied")


async def test_synchronous_runs_wait_for_the_answers(admin_api: Api) -> None:
    ctx = admin_api.ctx
    ctx.cfg = ctx.cfg.with_overrides({"live_query_rest_period": DEADLINE_SECONDS})
    online = [await factories.host(ctx, seen=utcnow()) for _ in range(2)]
    offline = await factories.host(ctx, created=utcnow().replace(year=2020))
    query_id = await factories.query(ctx, name="answer", query="SELECT 42 AS answer")
    agents = asyncio.create_task(answer_forever(admin_api, online))
    try:
        r = await admin_api.request("POST", f"/hosts/{online[0].id}/query",
                                    json={"query": "SELECT 1"})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "online"
        assert r.json()["rows"][0]["answer"] == str(online[0].id)
        r = await admin_api.request("POST", f"/hosts/{offline.id}/query",
                                    json={"query": "SELECT 1"})
        assert r.status_code == 200 and r.json()["status"] == "offline", r.text
        r = await admin_api.request("POST", f"/queries/{query_id}/run",
                                    json={"host_ids": [h.id for h in online]})
        assert r.status_code == 200, r.text
    finally:
        agents.cancel()
    body = r.json()
    assert (body["targeted_host_count"], body["responded_host_count"]) == (2, 2)
    assert sorted(a["host_id"] for a in body["results"]) == sorted(h.id for h in online)


async def test_results_websocket_streams_a_campaign(admin_api: Api) -> None:
    hosts = [await factories.host(admin_api.ctx, seen=utcnow()) for _ in range(2)]
    r = await admin_api.request("POST", "/queries/run", json={
        "query": "SELECT 1", "selected": {"hosts": [h.id for h in hosts]}})
    campaign_id = r.json()["campaign"]["id"]
    app = build_app(admin_api.ctx)
    async with websocket(app) as ws:
        await ws.send("auth", {"token": admin_api.admin_token})
        await ws.send("select_campaign", {"campaign_id": campaign_id})
        totals = await ws.receive_type("totals")
        assert (totals["count"], totals["online"]) == (2, 2)
        agents = asyncio.create_task(answer_forever(admin_api, hosts))
        try:
            results = [await ws.receive_type("result") for _ in hosts]
        finally:
            agents.cancel()
    assert sorted(r["host"]["id"] for r in results) == sorted(h.id for h in hosts)
    assert results[0]["rows"][0]["answer"] == str(results[0]["host"]["id"])

    async with websocket(app) as ws:
        await ws.send("auth", {"token": "not-a-session"})
        assert await ws.receive_type("error") == "unauthorized"
