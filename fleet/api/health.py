"""Unauthenticated operational endpoints: `/healthz` and `/version`."""

from __future__ import annotations

import platform

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from fleet import __version__
from fleet.api.deps import CheckedRoute
from fleet.core.authz import authorize_none
from fleet.service import health
from fleet.service.context import ServiceContext

router = APIRouter(route_class=CheckedRoute)


@router.get("/healthz", include_in_schema=False)
async def healthz(request: Request) -> Response:
    """Live checks. `fleet serve` answers a plain `GET /healthz` before the application,
    from its HealthMonitor (fleet/httpserver.py); this route serves `?check=` and the
    moments when the monitor has no recent result."""
    authorize_none("load balancers probe health without credentials")
    ctx: ServiceContext = request.app.state.ctx
    names = request.query_params.getlist("check") or list(health.checks(ctx))
    if any(name not in health.checks(ctx) for name in names):
        return Response("the provided check is not valid", status_code=400)
    failed = await health.run_checks(ctx, names)
    for name, reason in failed.items():
        health.log.warning("health check %s failed: %s", name, reason)
    return Response(status_code=500 if failed else 200)


@router.get("/version", include_in_schema=False)
async def version() -> JSONResponse:
    authorize_none("build information is public")
    return JSONResponse({
        "version": __version__, "branch": "unknown", "revision": "unknown",
        "go_version": "", "python_version": platform.python_version(),
        "build_date": "unknown", "build_user": "unknown",
    })
