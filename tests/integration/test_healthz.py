"""/healthz answers within its check timeout even when a check hangs (a saturated pool, a
database that no longer answers), and reports that as unhealthy."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from fleet.server import create_app
from fleet.service import health
from fleet.service.context import ServiceContext


async def test_hanging_check_fails_within_the_timeout(
        ctx: ServiceContext, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(health, "CHECK_TIMEOUT", 0.2)

    async def hang() -> None:
        await asyncio.Event().wait()

    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="https://fleet.test") as c:
        assert (await c.get("/healthz")).status_code == 200
        monkeypatch.setattr(ctx.db, "ping", hang)
        r = await asyncio.wait_for(c.get("/healthz?check=mysql"), 5)
        assert r.status_code == 500
        assert (await c.get("/healthz?check=redis")).status_code == 200
    assert any("no answer within 0.2 s" in rec.getMessage() for rec in caplog.records)
