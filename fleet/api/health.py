"""Unauthenticated operational endpoints: `/healthz` and `/version`."""

from __future__ import annotations

import asyncio
import logging
import platform
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from fleet import __version__
from fleet.api.deps import CheckedRoute
from fleet.core.authz import authorize_none
from fleet.service.context import ServiceContext

log = logging.getLogger("fleet.healthz")
router = APIRouter(route_class=CheckedRoute)
# A check that takes longer fails: a load balancer must get an answer before its own
# timeout, and a database that needs seconds for SELECT 1 is not healthy.
CHECK_TIMEOUT = 2.0


def _checkers(ctx: ServiceContext) -> dict[str, Callable[[], Awaitable[None]]]:
    # `mysql` checks whichever database is configured (the SQLite file when embedded) and
    # `redis` whichever broker runs (always healthy in-process), so probes work unchanged
    # on both deployment shapes.
    return {"mysql": ctx.db.ping, "redis": ctx.broker.ping}


@router.get("/healthz", include_in_schema=False)
async def healthz(request: Request) -> Response:
    authorize_none("load balancers probe health without credentials")
    ctx: ServiceContext = request.app.state.ctx
    checkers = _checkers(ctx)
    names = request.query_params.getlist("check") or list(checkers)
    if any(name not in checkers for name in names):
        return Response("the provided check is not valid", status_code=400)
    failed = False
    for name in names:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                await checkers[name]()
        except TimeoutError:
            log.warning("health check %s failed: no answer within %g s", name, CHECK_TIMEOUT)
            failed = True
        except Exception as exc:
            log.warning("health check %s failed: %s", name, exc)
            failed = True
    return Response(status_code=500 if failed else 200)


@router.get("/version", include_in_schema=False)
async def version() -> JSONResponse:
    authorize_none("build information is public")
    return JSONResponse({
        "version": __version__, "branch": "unknown", "revision": "unknown",
        "go_version": "", "python_version": platform.python_version(),
        "build_date": "unknown", "build_user": "unknown",
    })
