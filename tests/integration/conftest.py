"""REST API fixtures: the production app (`fleet.server.create_app`, without its background
jobs) served in-process, and helpers to set up the first admin and users of each role."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from fleet.server import create_app
from fleet.service.context import ServiceContext
from tests.factories import PASSWORD

__all__ = ["PASSWORD"]  # re-exported: the tests import it from here
ADMIN_EMAIL = "admin@example.com"


def build_app(ctx: ServiceContext) -> Any:
    """The ASGI app `fleet serve` runs (agent front door, security headers, every router)."""
    return create_app(ctx, start_jobs=False)


def rest_app(app: Any) -> FastAPI:
    """The FastAPI application inside `build_app`'s layers (front door, headers, prefix)."""
    while not isinstance(app, FastAPI):
        app = getattr(app, "fallback", None) or app.app
    return app


@contextlib.asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    """Run the app's startup and shutdown as uvicorn does (httpx's transport does not)."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}},
                                   inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    assert (await outbox.get())["type"] == "lifespan.startup.complete"
    try:
        yield
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        assert (await outbox.get())["type"] == "lifespan.shutdown.complete"
        await task


def assert_error(response: httpx.Response, status: int, message: str,
                 name: str | None = None) -> dict[str, Any]:
    """Fleet's error envelope with the given status and message (and field name)."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["message"] == message, body
    assert body["uuid"] and body["errors"] and set(body["errors"][0]) == {"name", "reason"}
    if name is not None:
        assert body["errors"][0]["name"] == name, body
    return body


@dataclass
class Api:
    client: httpx.AsyncClient
    ctx: ServiceContext
    admin_token: str = ""
    _emails = itertools.count(1)

    def auth(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    async def setup(self) -> dict[str, Any]:
        r = await self.client.post("/api/v1/setup", json={
            "admin": {"admin": True, "email": ADMIN_EMAIL, "name": "Admin",
                      "password": PASSWORD, "password_confirmation": PASSWORD},
            "org_info": {"org_name": "Acme"}, "server_url": "https://fleet.example.com"})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        self.admin_token = body["token"]
        return body

    async def request(self, method: str, path: str, token: str | None = None,
                      **kwargs: Any) -> httpx.Response:
        """A call to /api/latest/fleet<path>, as the admin unless another token is given."""
        headers = self.auth(self.admin_token if token is None else token)
        return await self.client.request(method, "/api/latest/fleet" + path, headers=headers,
                                         **kwargs)

    async def login(self, email: str, password: str = PASSWORD) -> str:
        r = await self.client.post("/api/v1/fleet/login",
                                   json={"email": email, "password": password})
        assert r.status_code == 200, r.text
        return str(r.json()["token"])

    async def user(self, role: str, **fields: Any) -> tuple[dict[str, Any], str]:
        """Create a user with `role` as the admin and log in: (user JSON, token). Unless the
        caller says otherwise, the user has no password reset pending."""
        email = fields.pop("email", f"{role}{next(self._emails)}@example.com")
        fields.setdefault("admin_forced_password_reset", False)
        r = await self.request("POST", "/users/admin", json={
            "email": email, "name": role.title(), "password": PASSWORD, "global_role": role,
            **fields})
        assert r.status_code == 200, r.text
        return r.json()["user"], await self.login(email)


@pytest.fixture
async def api(ctx: ServiceContext) -> AsyncIterator[Api]:
    """A client of a fresh server (no users yet)."""
    app = build_app(ctx)
    transport = httpx.ASGITransport(app=app)
    async with lifespan(app), httpx.AsyncClient(transport=transport,
                                                base_url="http://fleet.test") as client:
        yield Api(client, ctx)


@pytest.fixture
async def admin_api(api: Api) -> Api:
    """Like `api`, after setup: `admin_token` holds the first admin's session."""
    await api.setup()
    return api
