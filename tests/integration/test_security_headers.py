"""Security headers on the production app (create_app), on both backends, in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from fleet.security_headers import SecurityHeaders
from fleet.server import create_app
from fleet.service.context import ServiceContext
from tests.integration.conftest import ADMIN_EMAIL, PASSWORD

BROWSER_SAFE = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
    "strict-transport-security": "max-age=31536000",
}


@pytest.fixture
async def client(ctx: ServiceContext) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(ctx))  # server.tls is on by default
    async with httpx.AsyncClient(transport=transport, base_url="https://fleet.test") as c:
        yield c


def assert_secured(r: httpx.Response) -> None:
    for name, value in BROWSER_SAFE.items():
        assert r.headers.get(name) == value, (r.request.url, name, r.headers)


async def test_every_rest_answer_carrying_a_secret_is_secured(
        client: httpx.AsyncClient) -> None:
    r = await client.post("/api/v1/setup", json={
        "admin": {"admin": True, "email": ADMIN_EMAIL, "name": "Admin", "password": PASSWORD,
                  "password_confirmation": PASSWORD},
        "org_info": {"org_name": "Acme"}, "server_url": "https://fleet.test"})
    assert r.status_code == 200 and r.json()["token"]
    assert_secured(r)
    r = await client.post("/api/v1/fleet/login", json={"email": ADMIN_EMAIL,
                                                       "password": PASSWORD})
    assert r.status_code == 200
    assert_secured(r)
    auth = {"Authorization": f"Bearer {r.json()['token']}"}
    for path in ("/api/latest/fleet/me", "/api/latest/fleet/spec/enroll_secret"):
        r = await client.get(path, headers=auth)
        assert r.status_code == 200, r.text
        assert_secured(r)
    # Errors, unknown paths, the health check and the home page too.
    for path, status in (("/api/latest/fleet/me", 401), ("/nowhere", 404), ("/healthz", 200),
                         ("/", 200)):
        r = await client.get(path)
        assert r.status_code == status, path
        assert_secured(r)


async def test_agent_answers_are_never_cached_or_sniffed(ctx: ServiceContext,
                                                         client: httpx.AsyncClient) -> None:
    from fleet.service import secrets

    await secrets.ensure_global_secret(ctx, "s3cret")
    r = await client.post("/api/osquery/enroll", json={"enroll_secret": "s3cret",
                                                       "host_identifier": "h1"})
    assert r.status_code == 200 and r.json()["node_key"]
    node_key = r.json()["node_key"]
    r2 = await client.post("/api/osquery/config", json={"node_key": node_key})
    r3 = await client.post("/api/osquery/config", json={"node_key": "wrong"})
    assert (r2.status_code, r3.status_code) == (200, 401)
    for answer in (r, r2, r3):
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["content-type"] == "application/json"


async def test_plain_http_has_no_hsts_and_handlers_keep_their_own_policies() -> None:
    async def page(_request: object) -> PlainTextResponse:
        return PlainTextResponse("hi", headers={"Cache-Control": "max-age=60",
                                                "Content-Security-Policy": "default-src 'self'"})

    app = SecurityHeaders(Starlette(routes=[Route("/", page)]), tls=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://t") as c:
        r = await c.get("/")
    assert "strict-transport-security" not in r.headers
    assert r.headers["cache-control"] == "max-age=60"
    assert r.headers["content-security-policy"] == "default-src 'self'"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"


async def test_paths_outside_the_url_prefix_are_secured_too(ctx: ServiceContext) -> None:
    ctx.cfg = ctx.cfg.with_overrides({"server.url_prefix": "/fleet"})
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="https://fleet.test") as c:
        outside, inside = await c.get("/healthz"), await c.get("/fleet/healthz")
    assert (outside.status_code, inside.status_code) == (404, 200)
    for r in (outside, inside):
        assert r.headers["cache-control"] == "no-store"
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["x-content-type-options"] == "nosniff"
