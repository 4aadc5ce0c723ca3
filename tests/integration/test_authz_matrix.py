"""Every route of the production app x every role, from one permission table.

The routes come from `fleet.server.create_app`, so a route added without an entry here fails
this test. Each entry names the roles allowed (or PUBLIC: no token needed) and a request that
passes validation, so the answer is the authorization's: an allowed role gets anything but
401/403 (objects are absent: 404 or 400 are fine), a denied role 403, no token 401. No answer
may be a 5xx: the backstop turns a route that forgot to authorize into one.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIWebSocketRoute, iter_route_contexts

from fleet.server import FLEET_API_PREFIXES, create_app
from fleet.service.context import ServiceContext
from tests.integration.conftest import ADMIN_EMAIL, PASSWORD, Api

ADMIN, MAINTAINER, OBSERVER, OBSERVER_PLUS, GITOPS = (
    "admin", "maintainer", "observer", "observer_plus", "gitops")
ROLES = (ADMIN, MAINTAINER, OBSERVER, OBSERVER_PLUS, GITOPS)
PUBLIC = frozenset({"public"})  # no token needed, nobody refused
SIGNED_IN = frozenset(ROLES)
READERS = frozenset({ADMIN, MAINTAINER, OBSERVER, OBSERVER_PLUS})  # hosts, queries
WRITERS = frozenset({ADMIN, MAINTAINER, GITOPS})  # queries, enroll secrets
HOST_WRITERS = frozenset({ADMIN, MAINTAINER})
LIVE = frozenset({ADMIN, MAINTAINER, OBSERVER_PLUS})  # new SQL
ADMINS = frozenset({ADMIN})
API = "/api/latest/fleet"
MISSING = 999999  # every id in a path names nothing: allowed roles get 404s, no side effects


@dataclass(frozen=True)
class Entry:
    allowed: frozenset[str]
    json: Any = None
    last: bool = False  # ends the session: run after everything else


SETUP = {"admin": {"email": "late@example.com", "name": "L", "password": PASSWORD},
         "org_info": {"org_name": "Late"}}
RUN_NEW_SQL = {"query": "SELECT 1", "selected": {"hosts": ["nope"]}}

# (method, path) -> Entry; /api/v1/fleet routes share the entry of their /api/latest/fleet twin.
PERMISSIONS: dict[tuple[str, str], Entry] = {
    ("GET", "/"): Entry(PUBLIC),
    ("GET", "/healthz"): Entry(PUBLIC),
    ("GET", "/version"): Entry(PUBLIC),
    ("GET", API + "/openapi.json"): Entry(PUBLIC),
    ("GET", API + "/docs"): Entry(PUBLIC),
    ("GET", API + "/docs/{name}"): Entry(PUBLIC),  # 404: no such asset
    ("POST", "/api/setup"): Entry(PUBLIC, SETUP),  # 409 once done
    ("POST", "/api/v1/setup"): Entry(PUBLIC, SETUP),
    ("POST", API + "/login"): Entry(PUBLIC, {"email": ADMIN_EMAIL, "password": PASSWORD}),
    ("POST", API + "/logout"): Entry(SIGNED_IN, last=True),
    ("GET", API + "/me"): Entry(SIGNED_IN),
    ("GET", API + "/version"): Entry(SIGNED_IN),
    ("POST", API + "/perform_required_password_reset"): Entry(
        SIGNED_IN, {"new_password": "new-horse-2!x"}),  # 400: none is required
    # users
    ("POST", API + "/users/admin"): Entry(
        ADMINS, {"email": "made@example.com", "name": "M", "password": PASSWORD}),
    ("GET", API + "/users"): Entry(ADMINS),
    ("GET", API + "/users/{user_id:int}"): Entry(ADMINS),  # and oneself
    ("PATCH", API + "/users/{user_id:int}"): Entry(ADMINS, {"name": "X"}),  # and oneself
    ("DELETE", API + "/users/{user_id:int}"): Entry(ADMINS),
    ("POST", API + "/users/{user_id:int}/require_password_reset"): Entry(
        ADMINS, {"require": False}),
    # hosts
    ("GET", API + "/hosts"): Entry(READERS),
    ("GET", API + "/hosts/count"): Entry(READERS),
    ("GET", API + "/hosts/report"): Entry(READERS),
    ("GET", API + "/host_summary"): Entry(READERS),
    ("GET", API + "/hosts/identifier/{identifier}"): Entry(READERS),
    ("GET", API + "/hosts/{host_id:int}"): Entry(READERS),
    ("POST", API + "/hosts/delete"): Entry(HOST_WRITERS, {"ids": [MISSING]}),
    ("DELETE", API + "/hosts/{host_id:int}"): Entry(HOST_WRITERS),
    ("POST", API + "/hosts/{host_id:int}/refetch"): Entry(READERS),
    # labels and their specs (gitops writes them, as queries)
    ("GET", API + "/labels"): Entry(READERS),
    ("GET", API + "/labels/summary"): Entry(READERS),
    ("GET", API + "/labels/{label_id:int}"): Entry(READERS),
    ("GET", API + "/labels/{label_id:int}/hosts"): Entry(READERS),
    ("POST", API + "/labels"): Entry(WRITERS, {"name": "matrix", "query": "SELECT 1"}),
    ("PATCH", API + "/labels/{label_id:int}"): Entry(WRITERS, {"name": "renamed"}),
    ("DELETE", API + "/labels/id/{label_id:int}"): Entry(WRITERS),
    ("DELETE", API + "/labels/{name:path}"): Entry(WRITERS),
    ("POST", API + "/hosts/{host_id:int}/labels"): Entry(HOST_WRITERS, {"labels": ["x"]}),
    ("DELETE", API + "/hosts/{host_id:int}/labels"): Entry(HOST_WRITERS, {"labels": ["x"]}),
    ("GET", API + "/spec/labels"): Entry(READERS),
    ("GET", API + "/spec/labels/{name:path}"): Entry(READERS),
    ("POST", API + "/spec/labels"): Entry(
        WRITERS, {"specs": [{"name": "spec", "query": "SELECT 1"}]}),
    # live-query target picker
    ("POST", API + "/targets"): Entry(READERS, {"query": "x"}),
    ("POST", API + "/targets/count"): Entry(READERS, {"selected": {"labels": [MISSING]}}),
    # saved queries and their specs
    ("GET", API + "/queries"): Entry(READERS),
    ("GET", API + "/queries/{query_id:int}"): Entry(READERS),
    ("POST", API + "/queries"): Entry(WRITERS, {"name": "matrix", "query": "SELECT 1"}),
    ("PATCH", API + "/queries/{query_id:int}"): Entry(WRITERS, {"name": "renamed"}),
    ("POST", API + "/queries/delete"): Entry(WRITERS, {"ids": [MISSING]}),
    ("DELETE", API + "/queries/id/{query_id:int}"): Entry(WRITERS),
    ("DELETE", API + "/queries/{name:path}"): Entry(WRITERS),
    ("GET", API + "/spec/queries"): Entry(READERS),
    ("GET", API + "/spec/queries/{name:path}"): Entry(READERS),
    ("POST", API + "/spec/queries"): Entry(
        WRITERS, {"specs": [{"name": "spec", "query": "SELECT 1"}]}),
    # enroll secrets
    ("GET", API + "/spec/enroll_secret"): Entry(WRITERS),
    ("POST", API + "/spec/enroll_secret"): Entry(
        WRITERS, {"spec": {"secrets": [{"secret": "s3"}]}}),
    # live queries (400 "no hosts targeted" or 404 for the allowed)
    ("POST", API + "/queries/run"): Entry(
        LIVE, {"query": "SELECT 1", "selected": {"hosts": [MISSING]}}),
    ("POST", API + "/queries/run_by_identifiers"): Entry(LIVE, RUN_NEW_SQL),
    ("POST", API + "/queries/run_by_names"): Entry(LIVE, RUN_NEW_SQL),
    ("POST", API + "/hosts/{host_id:int}/query"): Entry(LIVE, {"query": "SELECT 1"}),
    # Observers may run saved queries marked observer_can_run (the query is absent here).
    ("POST", API + "/queries/{query_id:int}/run"): Entry(READERS, {"host_ids": [MISSING]}),
    # software inventory (global counts: global roles that read hosts)
    ("GET", API + "/software/versions"): Entry(READERS),
    ("GET", API + "/software/versions/{software_id:int}"): Entry(READERS),
    ("GET", API + "/software/titles"): Entry(READERS),
    ("GET", API + "/software/titles/{title_id:int}"): Entry(READERS),
    # named schedules (no ?name=: 404 for the allowed, nothing queued)
    ("POST", API + "/trigger"): Entry(ADMINS),
    # app config (a PATCH that changes nothing: every allowed role may send it)
    ("GET", API + "/config"): Entry(SIGNED_IN),
    ("PATCH", API + "/config"): Entry(frozenset({ADMIN, GITOPS}), {}),
}
# Websockets authenticate in their own handshake and authorize in campaigns.load (tested in
# test_campaigns and the e2e live-query tests), not through HTTP statuses.
WEBSOCKETS = {"/api/v1/fleet/results/websocket", "/api/latest/fleet/results/websocket",
              "/api/2022-04/fleet/results/websocket"}


def fastapi_app(app: Any) -> FastAPI:
    """The FastAPI application inside create_app's middleware layers."""
    while not isinstance(app, FastAPI):
        app = getattr(app, "fallback", None) or app.app
    return app


def app_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, table key) of every HTTP route, the API prefixes folded into one."""
    found = []
    for route in iter_route_contexts(app.routes):
        if isinstance(route.original_route, APIWebSocketRoute):
            assert route.path in WEBSOCKETS, f"websocket {route.path} is not in the table"
            continue
        path = str(route.path)
        for prefix in FLEET_API_PREFIXES:
            if path.startswith(prefix + "/"):
                path = API + path[len(prefix):]
        found += [(method, path) for method in sorted(route.methods or ()) if method != "HEAD"]
    return found


def concrete(path: str) -> str:
    """A request path for a route template: every parameter names a missing object."""
    path = re.sub(r"\{\w+:int\}", str(MISSING), path)
    return re.sub(r"\{\w+(:path)?\}", "missing-object", path)


@pytest.fixture
async def prod_api(ctx: ServiceContext) -> AsyncIterator[Api]:
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://fleet.test") as client:
        api = Api(client, ctx)
        await api.setup()
        yield api


async def test_every_route_has_a_permission_entry_and_every_role_gets_it(
        prod_api: Api) -> None:
    routes = app_routes(fastapi_app(create_app(prod_api.ctx)))
    missing = sorted(set(routes) - set(PERMISSIONS))
    assert not missing, f"routes without a permission entry in {__name__}: {missing}"
    stale = sorted(set(PERMISSIONS) - set(routes))
    assert not stale, f"permission entries for routes that do not exist: {stale}"

    tokens: dict[str | None, str | None] = {ADMIN: prod_api.admin_token, None: None}
    for name in ROLES[1:]:
        _user, tokens[name] = await prod_api.user(name)
    failures = []
    order = sorted(set(routes), key=lambda key: PERMISSIONS[key].last)
    for method, path in order:
        entry = PERMISSIONS[(method, path)]
        for role, token in tokens.items():
            headers = {} if token is None else prod_api.auth(token)
            r = await prod_api.client.request(method, concrete(path), json=entry.json,
                                              headers=headers)
            if entry.allowed is PUBLIC or role in entry.allowed:
                ok = r.status_code not in (401, 403)
            else:
                ok = r.status_code == (401 if role is None else 403)
            if not ok or r.status_code >= 500:
                failures.append(f"{method} {path} as {role or 'no token'}: "
                                f"{r.status_code} {r.text[:120]}")
    assert not failures, "\n".join(failures)
