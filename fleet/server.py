"""ASGI application factory: builds the service context and mounts every transport."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI

from fleet import __version__
from fleet.agent.routes import AgentFrontDoor
from fleet.api import (
    config,
    docs,
    health,
    home,
    hosts,
    labels,
    live,
    queries,
    secrets,
    sessions,
    setup,
    software,
    targets,
    trigger,
    users,
    websocket,
)
from fleet.api.errors import install_error_handlers
from fleet.api.schemas import DocumentedAPI
from fleet.broker import create_broker
from fleet.config import Config
from fleet.jobs import background
from fleet.jobs.cleanups import CLEANUPS_THEN_AGGREGATION, SOFTWARE_HOST_COUNTS
from fleet.jobs.schedule import Schedule
from fleet.security_headers import ALWAYS as SECURITY_ALWAYS
from fleet.security_headers import DEFAULTS as SECURITY_DEFAULTS
from fleet.security_headers import SecurityHeaders
from fleet.service.context import ServiceContext
from fleet.store.db import create_database

log = logging.getLogger("fleet.server")

FLEET_API_PREFIXES = ("/api/v1/fleet", "/api/latest/fleet")

# Every instance runs every schedule; the lock of each decides which one runs its jobs.
SCHEDULES: tuple[Schedule, ...] = (CLEANUPS_THEN_AGGREGATION, SOFTWARE_HOST_COUNTS)


async def build_context(cfg: Config) -> ServiceContext:
    """Connect the database and the broker selected by the configuration."""
    db = create_database(cfg)
    broker = await create_broker(
        redis_address=cfg.redis.address, username=cfg.redis.username,
        password=cfg.redis.password, database=cfg.redis.database,
        use_tls=cfg.redis.use_tls, connect_timeout=cfg.redis.connect_timeout,
        read_timeout=cfg.redis.read_timeout, max_open_conns=cfg.redis.max_open_conns,
        conn_wait_timeout=cfg.redis.conn_wait_timeout)
    return ServiceContext(cfg=cfg, db=db, broker=broker)


def create_app(ctx: ServiceContext, *, owns_context: bool = False,
               start_jobs: bool = True) -> Any:
    """The whole HTTP surface. With `owns_context`, shutdown also closes db and broker;
    without `start_jobs` (in-process tests), no background loop runs."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        tasks = background.start(ctx, SCHEDULES) if start_jobs else []
        try:
            yield
        finally:
            await background.stop(ctx, tasks)
            await ctx.close_logs()
            if owns_context:
                await ctx.broker.close()
                await ctx.db.close()

    # The docs page is fleet.api.docs (assets from a package, a CSP without inline script).
    app = DocumentedAPI(title="Fleet", version=__version__, lifespan=lifespan, docs_url=None,
                        redoc_url=None, openapi_url="/api/latest/fleet/openapi.json")
    app.state.ctx = ctx
    app.state.schedule_names = tuple(s.name for s in SCHEDULES)
    install_error_handlers(app)
    app.include_router(setup.router)
    app.include_router(health.router)
    app.include_router(home.router)
    app.include_router(docs.router)
    for prefix in FLEET_API_PREFIXES:
        for module in (sessions, users, hosts, labels, queries, secrets, live, targets,
                       trigger, software, config):
            app.include_router(module.router, prefix=prefix)
    app.include_router(websocket.router)
    front = AgentFrontDoor(ctx, SecurityHeaders(app, tls=ctx.cfg.server.tls))
    prefix = ctx.cfg.server.url_prefix
    return StripPrefix(front, prefix) if prefix else front


ASGIApp = Callable[[dict[str, Any], Callable[..., Awaitable[Any]],
                    Callable[..., Awaitable[None]]], Awaitable[None]]


class StripPrefix:
    """Serve `app` under `server.url_prefix`: paths outside it are 404, lifespan passes."""

    def __init__(self, app: Any, prefix: str) -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            path: str = scope["path"]
            if path != self.prefix and not path.startswith(self.prefix + "/"):
                if scope["type"] == "http":
                    await _not_found(send)
                else:
                    await send({"type": "websocket.close", "code": 1008})
                return
            scope = dict(scope, path=path[len(self.prefix):] or "/",
                         root_path=scope.get("root_path", "") + self.prefix)
        await self.app(scope, receive, send)


async def _not_found(send: Any) -> None:
    body = b'{"message":"Resource Not Found","errors":[{"name":"base","reason":"not found"}]}'
    await send({"type": "http.response.start", "status": 404,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            *SECURITY_ALWAYS, *SECURITY_DEFAULTS]})
    await send({"type": "http.response.body", "body": body})


__all__ = ["build_context", "create_app"]
