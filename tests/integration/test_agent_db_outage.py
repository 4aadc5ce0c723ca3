"""The database goes away under the agents, on both backends: cached hosts keep checking in
and shipping logs to a file, anything that needs the database is a 503 (osquery retries),
and the log gets a line per episode instead of a traceback per request."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy import event as sa_event
from starlette.applications import Starlette

from fleet import config, logthrottle
from fleet.agent.routes import AgentFrontDoor
from fleet.service import checkin, configcache
from fleet.service.context import ServiceContext
from fleet.store.db import create_database
from tests import factories
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
    monkeypatch.setattr(configcache, "CACHE_SECONDS", 0.0)  # every request tries a reload
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
    ctx.cfg = ctx.cfg.with_overrides({"osquery.max_concurrent_requests": 2})
    await factories.enroll_secret(ctx, SECRET)
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


class TcpProxy:
    """A TCP relay to MariaDB that the test can cut (every connection dropped, nothing
    listening) and restore on the same port: the database dies under a live pool."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except ConnectionError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()
        await self.server.wait_closed()


class DatabaseOutage:
    """The database of `ctx` stops answering, then comes back: MySQL through a TcpProxy
    that is cut; SQLite by the driver's I/O error at the store boundary (every statement)."""

    def __init__(self, ctx: ServiceContext, tmp_path: Path) -> None:
        self.ctx = ctx
        self.tmp_path = tmp_path
        self.proxy: TcpProxy | None = None
        self.live_db = ctx.db

    async def __aenter__(self) -> DatabaseOutage:
        if self.ctx.db.dialect == "mysql":
            host, _, port = self.ctx.cfg.mysql.address.rpartition(":")
            self.proxy = TcpProxy((host, int(port)))
            await self.proxy.start()
            overrides = backend_overrides("mysql", self.tmp_path, self.ctx.cfg.mysql.database)
            overrides["mysql.address"] = f"127.0.0.1:{self.proxy.port}"
            self.ctx.db = create_database(config.from_mapping(overrides))
        return self

    async def start(self) -> None:
        if self.proxy is not None:
            await self.proxy.cut()
        else:
            sa_event.listen(self.ctx.db.engine.sync_engine, "before_cursor_execute",
                            _disk_io_error)

    async def end(self) -> None:
        if self.proxy is not None:
            await self.proxy.start()  # the same port again
        else:
            sa_event.remove(self.ctx.db.engine.sync_engine, "before_cursor_execute",
                            _disk_io_error)

    async def __aexit__(self, *_exc: object) -> None:
        if self.proxy is not None:
            await self.ctx.db.close()
            self.ctx.db = self.live_db
            if self.proxy.server is not None:
                self.proxy.server.close()


def _disk_io_error(*_args: object) -> None:
    raise sqlite3.OperationalError("disk I/O error")


async def test_database_dying_under_a_live_pool_is_503_then_recovers(
        ctx: ServiceContext, agent: httpx.AsyncClient, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(configcache, "CACHE_SECONDS", 0.0)  # every request tries a reload
    async with DatabaseOutage(ctx, tmp_path) as outage:
        node_key = await enroll(agent)
        body = {"node_key": node_key}
        detail = {**body, "queries": {"fleet_detail_query_uptime": [{"total_seconds": "5"}]},
                  "statuses": {}}
        for path in ("/api/osquery/config", "/api/osquery/distributed/write"):
            r = await agent.post(path, json=detail if path.endswith("write") else body)
            assert r.status_code == 200, r.text  # the pool holds live connections now

        await outage.start()
        caplog.clear()
        r = await agent.post("/api/osquery/distributed/read", json=body)
        assert r.status_code == 200  # a cached host needs no database
        r = await agent.post("/api/osquery/config", json=body)
        assert r.status_code == 200  # the last config
        r = await agent.post("/api/osquery/log", json={
            **body, "log_type": "result",
            "data": [{"name": "pack/Global/q", "hostIdentifier": "host-1", "n": 7}]})
        assert r.status_code == 200, r.text
        for _ in range(3):
            r = await agent.post("/api/osquery/distributed/write", json=detail)
            assert r.status_code == 503, r.text
            assert r.json()["error"] == "database unavailable, retry later"
            r = await agent.post("/api/osquery/enroll", json={
                "enroll_secret": SECRET, "host_identifier": "host-2"})
            assert r.status_code == 503, r.text
        warnings = [rec for rec in caplog.records if rec.levelno >= logging.WARNING]
        assert len(warnings) == 1, [rec.getMessage() for rec in warnings]
        assert "database unavailable" in warnings[0].getMessage()
        assert not any(rec.exc_info for rec in caplog.records)
        lines = Path(ctx.cfg.filesystem.result_log_file).read_bytes().splitlines()
        assert [orjson.loads(line)["n"] for line in lines] == [7]

        await outage.end()
        deadline = asyncio.get_running_loop().time() + 10
        while True:  # the pool replaces its dead connections: poll, with a deadline
            r = await agent.post("/api/osquery/distributed/write", json=detail)
            if r.status_code == 200 or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.05)
        assert r.status_code == 200, r.text
        r = await agent.post("/api/osquery/enroll", json={
            "enroll_secret": SECRET, "host_identifier": "host-2"})
        assert r.status_code == 200, r.text


async def test_rejections_of_one_kind_are_one_line_per_interval(
        ctx: ServiceContext, agent: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """Junk that varies (JSON errors at other positions, other query names) is still one
    kind: an attacker cannot flood the log; the next line says how many were held back."""
    clock = [1000.0]
    monkeypatch.setattr(logthrottle.time, "monotonic", lambda: clock[0])
    caplog.set_level(logging.INFO, logger="fleet.agent")
    node_key = await enroll(agent)
    for i in range(5):
        r = await agent.post("/api/osquery/config", content=b"{" + b" " * i + b"x")
        assert r.status_code == 400
        # An invalid status fails that query only (the write is answered), logged as one kind.
        r = await agent.post("/api/osquery/distributed/write", json={
            "node_key": node_key, "statuses": {f"q{i}" * 1000: "x" * (i + 1)}})
        assert r.status_code == 200
    r = await agent.post("/api/osquery/log", content=b" " * (ctx.cfg.server.max_request_body_size
                                                               + 1))
    assert r.status_code == 413
    clock[0] += 11
    r = await agent.post("/api/osquery/config", content=b"{]")
    assert r.status_code == 400
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "fleet.agent"]
    assert len(lines) == 4, lines
    json_lines = [line for line in lines if "json decoder error" in line]
    assert len(json_lines) == 2 and json_lines[1].endswith("(4 more like it in the last 10 s)")
    status_line, = (line for line in lines if "invalid status" in line)
    assert len(status_line) < 400  # the 4,000-character query name is cut
    assert any("rejected (413)" in line for line in lines)
