"""The database goes away under the agents, on both backends: cached hosts keep checking in
and shipping logs to a file, anything that needs the database is a 503 (osquery retries),
and the log gets a line per episode instead of a traceback per request."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import httpx
import orjson
import pytest
from starlette.applications import Starlette

from fleet import config
from fleet.agent.routes import AgentFrontDoor
from fleet.service import agent_config, checkin
from fleet.service.context import ServiceContext
from fleet.store.db import create_database, utcnow
from fleet.store.schema import enroll_secrets
from tests.conftest import backend_overrides
from tests.integration.test_agent_endpoints import SECRET, agent, enroll

__all__ = ["agent"]  # the fixture, imported for the tests below


def unreachable(ctx: ServiceContext, tmp_path: Path) -> config.Config:
    """The same backend, somewhere nothing answers: a closed port, or a missing directory."""
    if ctx.db.dialect == "mysql":
        overrides = backend_overrides("mysql", tmp_path, "fleet")
        overrides["mysql.address"] = "127.0.0.1:9"  # discard port: connection refused
    else:
        overrides = {"sqlite.path": str(tmp_path / "gone" / "fleet.db")}
    return config.from_mapping(overrides)


async def test_database_outage_is_503_and_logs_keep_flowing(
        ctx: ServiceContext, agent: httpx.AsyncClient, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    node_key = await enroll(agent)
    live_db = ctx.db
    ctx.db = create_database(unreachable(ctx, tmp_path))
    monkeypatch.setattr(agent_config, "CACHE_SECONDS", 0.0)  # every request tries a reload
    try:
        r = await agent.post("/api/osquery/distributed/read", json={"node_key": node_key})
        assert r.status_code == 200  # a cached host costs no SQL
        r = await agent.post("/api/osquery/log", json={
            "node_key": node_key, "log_type": "result",
            "data": [{"name": "pack/Global/q", "hostIdentifier": "host-1", "n": 1}]})
        assert r.status_code == 200, r.text  # served from the last config
        lines = Path(ctx.cfg.filesystem.result_log_file).read_bytes().splitlines()
        assert [orjson.loads(line)["n"] for line in lines] == [1]

        caplog.clear()
        for _ in range(3):  # an unknown node key needs the database
            r = await agent.post("/api/osquery/config", json={"node_key": "someone-else"})
            assert r.status_code == 503
            assert "database unavailable" in r.json()["error"]
        outage = [rec for rec in caplog.records if "database unavailable" in rec.getMessage()]
        assert len(outage) == 1 and outage[0].levelno == logging.WARNING
        assert not any(rec.exc_info for rec in caplog.records)
    finally:
        await ctx.db.close()
        ctx.db = live_db
    r = await agent.post("/api/osquery/config", json={"node_key": node_key})
    assert r.status_code == 200  # back to normal once the database is


async def test_rejected_agent_requests_are_logged_without_flooding(
        ctx: ServiceContext, agent: httpx.AsyncClient,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fleet.agent")
    for _ in range(5):
        r = await agent.post("/api/osquery/enroll", json={
            "enroll_secret": "guessed-secret-123", "host_identifier": "h"})
        assert r.status_code == 401
    r = await agent.post("/api/osquery/config", json={"node_key": "stale"})
    assert r.status_code == 401 and r.json()["node_invalid"] is True
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "fleet.agent"]
    enroll_lines = [line for line in lines if "invalid enroll secret" in line]
    assert len(enroll_lines) == 1 and "203.0.113.9" in enroll_lines[0]
    assert any("invalid node key" in line for line in lines)
    assert not any("guessed-secret-123" in line for line in lines)


async def test_requests_beyond_the_admission_limit_get_a_fast_503(
        ctx: ServiceContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    ctx.cfg.osquery.max_concurrent_requests = 2
    async with ctx.db.begin() as conn:
        await conn.execute(enroll_secrets.insert().values(secret=SECRET, created_at=utcnow()))
    transport = httpx.ASGITransport(app=AgentFrontDoor(ctx, Starlette()))
    async with httpx.AsyncClient(transport=transport, base_url="https://fleet.test") as c:
        node_key = await enroll(c)
        release = asyncio.Event()
        real = checkin.distributed_queries

        async def held(*args: object) -> dict[str, object]:
            await release.wait()
            return await real(*args)  # type: ignore[arg-type]

        monkeypatch.setattr(checkin, "distributed_queries", held)
        body = {"node_key": node_key}
        busy = [asyncio.create_task(c.post("/api/osquery/distributed/read", json=body))
                for _ in range(2)]
        deadline = asyncio.get_running_loop().time() + 10
        while asyncio.get_running_loop().time() < deadline:
            r = await c.post("/api/osquery/config", json=body)
            if r.status_code == 503:
                break
            await asyncio.sleep(0.01)
        assert r.status_code == 503 and r.json()["error"] == "server busy, retry later"
        release.set()
        assert [t.status_code for t in await asyncio.gather(*busy)] == [200, 200]
        r = await c.post("/api/osquery/config", json=body)
        assert r.status_code == 200  # admitted again once the load is gone
    assert sum("max_concurrent_requests" in rec.getMessage() for rec in caplog.records) == 1
