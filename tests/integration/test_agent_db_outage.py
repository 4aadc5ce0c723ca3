"""The database goes away under the agents, on both backends: cached hosts keep checking in
and shipping logs to a file, anything that needs the database is a 503 (osquery retries),
and the log gets a line per episode instead of a traceback per request."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import orjson
import pytest

from fleet import config
from fleet.service import agent_config
from fleet.service.context import ServiceContext
from fleet.store.db import create_database
from tests.conftest import backend_overrides
from tests.integration.test_agent_endpoints import agent, enroll

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
