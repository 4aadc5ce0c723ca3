"""The app under test is the production app: every router in `fleet/api/` is mounted by
`fleet.server.create_app`, so a new router cannot be left out of the server (or of the
in-process tests, which build the same app)."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable, Iterator
from typing import Any

from fastapi import APIRouter

import fleet.api
from fleet.service.context import ServiceContext
from tests.integration.conftest import build_app, rest_app


def api_routers() -> dict[str, APIRouter]:
    modules = (importlib.import_module(f"fleet.api.{m.name}")
               for m in pkgutil.iter_modules(fleet.api.__path__))
    return {module.__name__: module.router for module in modules
            if isinstance(getattr(module, "router", None), APIRouter)}


def endpoints(routes: Iterable[Any]) -> Iterator[Any]:
    """The endpoints behind `routes`; FastAPI keeps an included router whole, as one route
    holding the `original_router`."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from endpoints(included.routes)
        else:
            yield getattr(route, "endpoint", None)


async def test_every_api_router_is_mounted(ctx: ServiceContext) -> None:
    routers = api_routers()
    assert {"fleet.api.health", "fleet.api.home", "fleet.api.live",
            "fleet.api.websocket", "fleet.api.hosts"} <= set(routers)
    mounted = set(endpoints(rest_app(build_app(ctx)).routes))
    for name, router in routers.items():
        assert router.routes, name
        for route in router.routes:
            assert getattr(route, "endpoint", None) in mounted, (
                f"{name}: {getattr(route, 'path', route)} is not mounted by create_app")
