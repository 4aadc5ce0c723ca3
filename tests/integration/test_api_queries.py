"""Saved queries and query specs through the REST API, on both backends."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from fleet.core.authz import Role, Viewer
from fleet.service import queries as query_service
from fleet.store.schema import queries
from tests.integration.conftest import Api, assert_error


async def create(api: Api, token: str | None = None, **fields: Any) -> dict[str, Any]:
    r = await api.request("POST", "/queries", token=token,
                          json={"name": "q", "query": "SELECT 1", **fields})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()["query"]
    return body


async def test_create_get_and_defaults(admin_api: Api) -> None:
    q = await create(admin_api, name="uptime", query="SELECT * FROM uptime",
                     description="how long", interval=3600, platform="darwin,linux",
                     logging="differential", observer_can_run=True)
    assert q["id"] > 0 and q["saved"] is True and q["team_id"] is None
    assert (q["name"], q["query"], q["description"], q["interval"], q["platform"],
            q["logging"], q["observer_can_run"]) == (
        "uptime", "SELECT * FROM uptime", "how long", 3600, "darwin,linux", "differential",
        True)
    assert q["author_email"] == "admin@example.com" and q["author_name"] == "Admin"
    assert q["packs"] == [] and q["stats"] == {} and q["created_at"].endswith("Z")
    assert q["automations_enabled"] is False and q["discard_data"] is False
    assert q["min_osquery_version"] == ""

    got = await admin_api.request("GET", f"/queries/{q['id']}")
    assert got.status_code == 200 and got.json()["query"] == q
    assert_error(await admin_api.request("GET", "/queries/424242"), 404, "Resource Not Found")

    plain = await create(admin_api, name="plain")
    assert (plain["interval"], plain["logging"], plain["platform"], plain["description"]) == (
        0, "snapshot", "", "")


async def test_create_validation_and_conflict(admin_api: Api) -> None:
    await create(admin_api, name="dup")
    assert_error(await admin_api.request("POST", "/queries", json={
        "name": "dup", "query": "SELECT 2"}), 409, "Resource Already Exists", "name")
    for fields, name in (({"name": ""}, "name"), ({"query": "  "}, "query"),
                         ({"logging": "sometimes"}, "logging"), ({"interval": -1}, "interval"),
                         ({"platform": "beos"}, "platform"), ({"team_id": 3}, "team_id"),
                         ({"interval": "60"}, "interval"),
                         ({"observer_can_run": 1}, "observer_can_run")):
        r = await admin_api.request("POST", "/queries",
                                    json={"name": "x", "query": "SELECT 1", **fields})
        assert_error(r, 422, "Validation Failed", name)
    assert_error(await admin_api.request("POST", "/queries", json={"name": "x"}), 422,
                 "Validation Failed", "query")


async def test_permissions_observer_reads_maintainer_writes(admin_api: Api) -> None:
    _, observer = await admin_api.user("observer")
    _, maintainer = await admin_api.user("maintainer")
    r = await admin_api.request("POST", "/queries", token=observer,
                                json={"name": "nope", "query": "SELECT 1"})
    assert_error(r, 403, "Permission Denied")
    q = await create(admin_api, token=maintainer, name="mine")
    assert q["author_email"].startswith("maintainer")
    listed = await admin_api.request("GET", "/queries", token=observer)
    assert [x["name"] for x in listed.json()["queries"]] == ["mine"]
    assert (await admin_api.request("GET", f"/queries/{q['id']}", token=observer)
            ).status_code == 200
    for method, path in (("PATCH", f"/queries/{q['id']}"), ("DELETE", f"/queries/id/{q['id']}"),
                         ("DELETE", "/queries/mine")):
        r = await admin_api.request(method, path, token=observer, json={"name": "x"}
                                    if method == "PATCH" else None)
        assert_error(r, 403, "Permission Denied")
    assert (await admin_api.request("DELETE", "/queries/mine", token=maintainer)).json() == {}


async def test_list_filter_order_pagination_meta(admin_api: Api) -> None:
    for name in ("alpha", "beta", "gamma", "delta", "epsilon"):
        await create(admin_api, name=name)
    r = await admin_api.request("GET", "/queries")
    body = r.json()
    assert len(body["queries"]) == 5 and body["count"] == 5
    assert body["meta"] == {"has_next_results": False, "has_previous_results": False}

    r = await admin_api.request("GET", "/queries", params={
        "order_key": "name", "per_page": 2, "page": 0})
    body = r.json()
    assert [q["name"] for q in body["queries"]] == ["alpha", "beta"]
    assert body["meta"] == {"has_next_results": True, "has_previous_results": False}
    assert body["count"] == 5
    r = await admin_api.request("GET", "/queries", params={
        "order_key": "name", "per_page": 2, "page": 2})
    body = r.json()
    assert [q["name"] for q in body["queries"]] == ["gamma"]
    assert body["meta"] == {"has_next_results": False, "has_previous_results": True}

    r = await admin_api.request("GET", "/queries", params={
        "query": "ta", "order_key": "name", "order_direction": "desc"})
    assert [q["name"] for q in r.json()["queries"]] == ["delta", "beta"]
    assert r.json()["count"] == 2
    assert_error(await admin_api.request("GET", "/queries", params={"order_key": "nope"}), 400,
                 "Bad request", "order_key")


async def test_patch_and_deletes(admin_api: Api) -> None:
    a = await create(admin_api, name="a")
    b = await create(admin_api, name="b")
    c = await create(admin_api, name="c")
    r = await admin_api.request("PATCH", f"/queries/{a['id']}", json={
        "name": "a2", "interval": 60, "logging": "differential_ignore_removals",
        "description": None})
    assert r.status_code == 200, r.text
    q = r.json()["query"]
    assert (q["name"], q["interval"], q["logging"], q["query"]) == (
        "a2", 60, "differential_ignore_removals", "SELECT 1")
    assert_error(await admin_api.request("PATCH", f"/queries/{a['id']}", json={"name": "b"}),
                 409, "Resource Already Exists")
    assert_error(await admin_api.request("PATCH", "/queries/9999", json={"name": "z"}), 404,
                 "Resource Not Found")

    assert (await admin_api.request("DELETE", "/queries/a2")).json() == {}
    assert_error(await admin_api.request("DELETE", "/queries/a2"), 404, "Resource Not Found")
    assert (await admin_api.request("DELETE", f"/queries/id/{b['id']}")).json() == {}
    assert_error(await admin_api.request("DELETE", f"/queries/id/{b['id']}"), 404,
                 "Resource Not Found")
    d = await create(admin_api, name="d")
    r = await admin_api.request("POST", "/queries/delete", json={"ids": [c["id"], d["id"], 999]})
    assert r.json() == {"deleted": 2}
    async with admin_api.ctx.db.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(queries))).scalar() == 0


async def test_specs_round_trip_and_upsert_by_name(admin_api: Api) -> None:
    specs = [{"name": "users", "query": "SELECT * FROM users", "description": "who",
              "interval": 300, "platform": "linux", "logging": "differential"},
             {"name": "os", "query": "SELECT * FROM os_version"}]
    r = await admin_api.request("POST", "/spec/queries", json={"specs": specs})
    assert r.status_code == 200 and r.json() == {}
    got = (await admin_api.request("GET", "/spec/queries")).json()["specs"]
    assert [s["name"] for s in got] == ["os", "users"]
    assert got[1] == {"name": "users", "description": "who", "query": "SELECT * FROM users",
                      "team": "", "interval": 300, "observer_can_run": False,
                      "automations_enabled": False, "platform": "linux",
                      "min_osquery_version": "", "logging": "differential",
                      "discard_data": False}
    first_id = (await admin_api.request("GET", "/queries", params={"query": "users"})
                ).json()["queries"][0]["id"]

    # Re-applying overwrites by name; omitted fields go back to their defaults.
    r = await admin_api.request("POST", "/spec/queries", json={"specs": [
        {"name": "users", "query": "SELECT uid FROM users"}]})
    assert r.status_code == 200
    one = (await admin_api.request("GET", "/spec/queries/users")).json()["specs"]
    assert (one["query"], one["interval"], one["logging"], one["description"]) == (
        "SELECT uid FROM users", 0, "snapshot", "")
    listed = (await admin_api.request("GET", "/queries")).json()["queries"]
    assert len(listed) == 2
    assert next(q for q in listed if q["name"] == "users")["id"] == first_id
    assert_error(await admin_api.request("GET", "/spec/queries/nope"), 404,
                 "Resource Not Found")

    bad = [{"name": "x", "query": "SELECT 1"}, {"name": "y", "query": "SELECT 1",
                                                "logging": "bogus"}]
    assert_error(await admin_api.request("POST", "/spec/queries", json={"specs": bad}), 422,
                 "Validation Failed", "logging")
    team = [{"name": "x", "query": "SELECT 1", "team": "Workstations"}]
    assert_error(await admin_api.request("POST", "/spec/queries", json={"specs": team}), 422,
                 "Validation Failed", "team")
    assert len((await admin_api.request("GET", "/spec/queries")).json()["specs"]) == 2


async def test_unsaved_live_queries_are_hidden_but_readable(admin_api: Api) -> None:
    me = (await admin_api.request("GET", "/me")).json()["user"]
    viewer = Viewer(user_id=me["id"], email=me["email"], name=me["name"],
                    global_role=Role.ADMIN)
    query_id = await query_service.create_unsaved_query(admin_api.ctx, viewer, "SELECT 42")
    query = await query_service.get_query(admin_api.ctx, viewer, query_id)
    assert (query.saved, query.query, query.logging) == (False, "SELECT 42", "snapshot")
    assert query.name.startswith("distributed_admin@example.com_")
    body = (await admin_api.request("GET", "/queries")).json()
    assert body["queries"] == [] and body["count"] == 0
    got = await admin_api.request("GET", f"/queries/{query_id}")
    assert got.json()["query"]["saved"] is False
