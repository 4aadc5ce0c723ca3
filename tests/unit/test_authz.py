"""The permission model (roles globally and per team, object rules, team filters) and the
backstop that turns a REST answer without an authorization check into a logged 500."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI
from starlette.responses import Response

from fleet.api.deps import StrictBody, rest_router
from fleet.api.errors import install_error_handlers, json_response
from fleet.core.authz import (
    EVERYTHING,
    GLOBAL,
    Action,
    Role,
    Subject,
    TeamFilter,
    Viewer,
    allowed,
    authorize,
    authorize_any,
    authorize_none,
    team_filter,
    track,
)
from fleet.core.errors import NotFound, PermissionDenied

A = Action
READ = {A.READ_HOSTS, A.READ_QUERIES, A.RUN_SAVED_QUERIES, A.READ_LABELS, A.READ_APP_CONFIG}
# Fleet's matrix (fleet-surface.md §1.2) on global objects; RUN_SAVED_QUERIES for observers
# only on queries marked observer_can_run.
GLOBAL_MATRIX = {
    Role.OBSERVER: READ,
    Role.OBSERVER_PLUS: READ | {A.RUN_NEW_QUERIES},
    Role.MAINTAINER: READ | {A.RUN_NEW_QUERIES, A.WRITE_HOSTS, A.WRITE_QUERIES,
                             A.READ_SECRETS, A.WRITE_SECRETS, A.WRITE_LABELS},
    Role.ADMIN: set(Action) - {A.WATCH_CAMPAIGN},
    Role.GITOPS: {A.WRITE_QUERIES, A.READ_SECRETS, A.WRITE_SECRETS, A.WRITE_LABELS,
                  A.READ_APP_CONFIG, A.WRITE_APP_CONFIG},
}
RUNNABLE_BY_OBSERVERS = Subject(observer_can_run=True)


def viewer(role: Role | None = None, teams: dict[int, Role] | None = None,
           user_id: int = 7) -> Viewer:
    return Viewer(user_id=user_id, email="v@example.com", name="V", global_role=role,
                  teams=teams or {})


@pytest.mark.parametrize("role", list(Role))
def test_global_roles_follow_fleets_matrix(role: Role) -> None:
    v = viewer(role)
    got = {a for a in Action if allowed(v, a, RUNNABLE_BY_OBSERVERS)}
    assert got == GLOBAL_MATRIX[role]
    # A global role reaches every team's objects alike.
    assert {a for a in Action if allowed(v, a, Subject(team_id=3, observer_can_run=True))} \
        == GLOBAL_MATRIX[role]


def test_observers_run_only_queries_marked_observer_can_run() -> None:
    plain = Subject(observer_can_run=False)
    assert not allowed(viewer(Role.OBSERVER), A.RUN_SAVED_QUERIES, plain)
    assert allowed(viewer(Role.OBSERVER), A.RUN_SAVED_QUERIES, RUNNABLE_BY_OBSERVERS)
    assert allowed(viewer(Role.OBSERVER_PLUS), A.RUN_SAVED_QUERIES, plain)
    assert not allowed(viewer(Role.OBSERVER), A.RUN_SAVED_QUERIES, GLOBAL)


def test_team_roles_apply_to_their_team_only() -> None:
    v = viewer(teams={1: Role.MAINTAINER, 2: Role.OBSERVER})
    assert allowed(v, A.WRITE_HOSTS, Subject(team_id=1))
    assert not allowed(v, A.WRITE_HOSTS, Subject(team_id=2))
    assert allowed(v, A.READ_HOSTS, Subject(team_id=2))
    assert not allowed(v, A.READ_HOSTS, Subject(team_id=3))
    # Hosts in no team belong to global roles; global queries and labels are shared.
    assert not allowed(v, A.READ_HOSTS, GLOBAL)
    assert allowed(v, A.READ_QUERIES, GLOBAL) and allowed(v, A.READ_LABELS, GLOBAL)
    assert not allowed(v, A.WRITE_QUERIES, GLOBAL)
    assert not allowed(v, A.READ_USERS, GLOBAL) and not allowed(v, A.READ_SECRETS, GLOBAL)
    # A team gitops sees none of its team's hosts.
    assert not allowed(viewer(teams={1: Role.GITOPS}), A.READ_HOSTS, Subject(team_id=1))


def test_domain_objects_carrying_team_id_are_subjects() -> None:
    @dataclass(frozen=True, slots=True)
    class Host:
        id: int
        team_id: int | None

    v = viewer(teams={1: Role.OBSERVER})
    assert allowed(v, A.READ_HOSTS, Host(5, 1)) and not allowed(v, A.READ_HOSTS, Host(6, 2))
    # Object rules need a Subject: a bare domain object never counts as observer-runnable.
    assert not allowed(v, A.RUN_SAVED_QUERIES, Host(5, 1))


def test_owners_read_and_change_themselves_and_watch_only_their_campaigns() -> None:
    me, other = Subject(owner_id=7), Subject(owner_id=8)
    observer, admin = viewer(Role.OBSERVER), viewer(Role.ADMIN)
    assert allowed(observer, A.READ_USERS, me) and allowed(observer, A.WRITE_USERS, me)
    assert not allowed(observer, A.READ_USERS, other)
    assert allowed(admin, A.WRITE_USERS, other)
    assert allowed(observer, A.WATCH_CAMPAIGN, me)
    assert not allowed(admin, A.WATCH_CAMPAIGN, other)
    assert not allowed(viewer(None), A.READ_HOSTS, me)  # ownership is no role


def test_team_filters_derive_from_the_same_matrix() -> None:
    assert team_filter(viewer(Role.OBSERVER), A.READ_HOSTS) == EVERYTHING
    assert EVERYTHING.unrestricted and not EVERYTHING.empty
    v = viewer(teams={1: Role.MAINTAINER, 2: Role.OBSERVER, 3: Role.GITOPS})
    assert team_filter(v, A.READ_HOSTS) == TeamFilter(team_ids=frozenset({1, 2}))
    assert team_filter(v, A.WRITE_HOSTS) == TeamFilter(team_ids=frozenset({1}))
    assert team_filter(v, A.READ_QUERIES) == TeamFilter(team_ids=frozenset({1, 2}),
                                                       global_objects=True)
    assert team_filter(v, A.WRITE_QUERIES) == TeamFilter(team_ids=frozenset({1, 3}))
    runs = team_filter(v, A.RUN_SAVED_QUERIES, Subject(observer_can_run=False))
    assert runs.team_ids == {1}
    assert team_filter(v, A.RUN_SAVED_QUERIES, RUNNABLE_BY_OBSERVERS).team_ids == {1, 2}
    assert team_filter(viewer(None), A.READ_HOSTS).empty


def test_authorize_any_refuses_viewers_who_may_do_it_nowhere() -> None:
    assert authorize_any(viewer(teams={4: Role.OBSERVER}), A.READ_HOSTS).team_ids == {4}
    with pytest.raises(PermissionDenied):
        authorize_any(viewer(Role.GITOPS), A.READ_HOSTS)
    with pytest.raises(PermissionDenied, match="only admins"):
        authorize(viewer(Role.MAINTAINER), A.WRITE_USERS, GLOBAL, "only admins")


def test_every_check_is_recorded_even_a_denial() -> None:
    with track() as check:
        assert not check.checked
        with pytest.raises(PermissionDenied):
            authorize(viewer(Role.OBSERVER), A.WRITE_HOSTS, GLOBAL)
        assert check.checked
    with track() as check:
        authorize_none("public")
        assert check.checked
    authorize_none("outside a request nothing is recorded, and nothing fails")


# ----------------------------------------------------------------------------------------------
# The backstop on REST routes

router = rest_router()


class Body(StrictBody):
    n: int


@router.get("/forgot")
async def forgot() -> Response:
    return json_response({"secret": "leaked"})


@router.get("/forgot-then-missing")
async def forgot_then_missing() -> Response:
    raise NotFound("Host 1 was not found")  # existence told before any check


@router.get("/denied")
async def denied() -> Response:
    raise PermissionDenied("forbidden")


@router.post("/checked")
async def checked(body: Body) -> Response:
    authorize(viewer(Role.ADMIN), A.WRITE_HOSTS, GLOBAL)
    if body.n == 0:
        raise NotFound("nothing")
    return json_response({"n": body.n})


@router.get("/public")
async def public() -> Response:
    authorize_none("test")
    return json_response({})


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


async def test_an_answer_without_a_check_is_a_logged_500(
        client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    for path in ("/forgot", "/forgot-then-missing"):
        caplog.clear()
        r = await client.get(path)
        assert r.status_code == 500 and "leaked" not in r.text and "found" not in r.text
        assert r.json()["message"] == "Internal Server Error"
        lines = [rec.getMessage() for rec in caplog.records if rec.name == "fleet.authz"]
        assert lines == [f"GET {path} answered without an authorization check "
                         f"(endpoint {path[1:].replace('-', '_')}): 500 instead"]


async def test_refusals_and_checked_answers_pass_unchanged(client: httpx.AsyncClient) -> None:
    assert (await client.get("/denied")).status_code == 403
    assert (await client.post("/checked", json={"n": "x"})).status_code == 422  # FastAPI's
    assert (await client.get("/public", params={"x": 1})).status_code == 400  # unknown param
    assert (await client.post("/checked", json={"n": 0})).status_code == 404
    assert (await client.post("/checked", json={"n": 2})).json() == {"n": 2}
    assert (await client.get("/public")).status_code == 200
