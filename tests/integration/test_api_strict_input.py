"""REST input the endpoints do not take is refused with a 4xx naming it, never ignored:
unknown body keys (an ignored filter key once widened a bulk delete to every host) and
unknown query parameters. Bodies are JSON whatever their Content-Type, as in Fleet."""

from __future__ import annotations

import json

import pytest

from tests.integration.conftest import Api, assert_error
from tests.integration.test_api_hosts import add_host, count


async def test_bulk_delete_with_an_unknown_filter_key_deletes_nothing(admin_api: Api) -> None:
    for _ in range(3):
        await add_host(admin_api.ctx)
    r = await admin_api.request("POST", "/hosts/delete", json={"filters": {"os_name": "macOS"}})
    body = assert_error(r, 400, "Bad request", name="os_name")
    assert body["errors"][0]["reason"] == "unknown filter key: os_name"
    assert await count(admin_api) == 3
    r = await admin_api.request("POST", "/hosts/delete", json={"ids": [], "everything": True})
    assert_error(r, 400, "Bad request", name="everything")
    assert await count(admin_api) == 3


async def test_unknown_body_keys_are_refused(admin_api: Api) -> None:
    r = await admin_api.request("POST", "/queries", json={"name": "q", "query": "SELECT 1",
                                                          "intervall": 60})
    body = assert_error(r, 400, "Bad request", name="intervall")
    assert body["errors"][0]["reason"] == "unknown key: intervall"
    r = await admin_api.request("POST", "/spec/queries", json={
        "specs": [{"name": "q", "query": "SELECT 1", "colour": "red"}]})
    assert_error(r, 400, "Bad request", name="colour")
    r = await admin_api.request("GET", "/queries")
    assert r.status_code == 200 and r.json()["queries"] == []


@pytest.mark.parametrize("path", ["/hosts", "/hosts/count", "/queries", "/users"])
async def test_list_endpoints_refuse_unknown_query_parameters(admin_api: Api, path: str) -> None:
    r = await admin_api.request("GET", path, params={"os_name": "macOS"})
    body = assert_error(r, 400, "Bad request", name="os_name")
    assert body["errors"][0]["reason"] == "unsupported query parameter: os_name"
    r = await admin_api.request("GET", path, params={"page": 0, "per_page": 5, "query": "x"})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("content_type", [None, "application/x-www-form-urlencoded",
                                          "text/plain"])
async def test_bodies_are_json_whatever_the_content_type(api: Api,
                                                         content_type: str | None) -> None:
    await api.setup()
    headers = api.auth(api.admin_token)
    if content_type is not None:
        headers["Content-Type"] = content_type
    r = await api.client.post("/api/v1/fleet/login", headers=headers,
                              content=b'{"email": "admin@example.com", '
                                      b'"password": "correct-horse-1!"}')
    assert r.status_code == 200, r.text
    r = await api.client.post("/api/latest/fleet/queries", headers=headers,
                              content=b'{"name": "curl", "query": "SELECT 1"}')
    assert r.status_code == 200 and r.json()["query"]["name"] == "curl", r.text
    r = await api.client.post("/api/latest/fleet/queries", headers=headers, content=b"name=x")
    assert_error(r, 400, "Bad request")


LONE = "bad\ud800text"


@pytest.mark.parametrize(("method", "path", "body", "field"), [
    ("POST", "/login", {"email": LONE, "password": "x"}, "email"),
    ("POST", "/queries", {"name": LONE, "query": "SELECT 1"}, "name"),
    ("POST", "/queries", {"name": "q", "query": LONE}, "query"),
    ("POST", "/spec/queries", {"specs": [{"name": "q", "query": "SELECT 1",
                                          "description": LONE}]}, "description"),
    ("PATCH", "/users/1", {"position": LONE}, "position"),
    ("POST", "/hosts/delete", {"filters": {"query": LONE}}, "query"),
    ("POST", "/spec/enroll_secret", {"spec": {"secrets": [{"secret": LONE}]}}, "secret"),
])
async def test_lone_surrogates_are_refused(admin_api: Api, method: str, path: str,
                                           body: dict[str, object], field: str) -> None:
    # httpx would refuse to encode a lone surrogate: send the JSON escape as a client can.
    r = await admin_api.request(method, path, content=json.dumps(body).encode())
    reason = assert_error(r, 422, "Validation Failed", name=field)["errors"][0]["reason"]
    assert "unicode" in reason.lower()


@pytest.mark.parametrize(("method", "path", "body", "field"), [
    ("GET", "/hosts?per_page=" + "9" * 30, None, "per_page"),
    ("GET", "/users?page=" + "9" * 20, None, "page"),
    ("GET", "/hosts/" + "9" * 25, None, "host_id"),
    ("DELETE", "/users/" + "9" * 20, None, "user_id"),
    ("GET", "/hosts/count?label_id=" + "9" * 20, None, "label_id"),
])
async def test_integers_beyond_64_bits_in_parameters(admin_api: Api, method: str, path: str,
                                                     body: None, field: str) -> None:
    assert_error(await admin_api.request(method, path), 400, "Bad request", name=field)


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/hosts/delete", {"ids": [2**64]}, "ids"),
    ("/hosts/delete", {"filters": {"label_id": 2**70}}, "label_id"),
    ("/queries/delete", {"ids": [1, 2**63]}, "ids"),
    ("/queries", {"name": "q", "query": "SELECT 1", "interval": 2**40}, "interval"),
])
async def test_integers_beyond_their_column_in_bodies(admin_api: Api, path: str,
                                                      body: dict[str, object],
                                                      field: str) -> None:
    assert_error(await admin_api.request("POST", path, json=body), 422, "Validation Failed",
                 name=field)


@pytest.mark.parametrize(("method", "path", "body", "field"), [
    ("POST", "/queries", {"name": "n" * 256, "query": "SELECT 1"}, "name"),
    ("POST", "/queries", {"name": "q", "query": "SELECT 1", "platform": "p" * 300},
     "platform"),
    ("POST", "/spec/queries", {"specs": [{"name": "q" * 300, "query": "SELECT 1"}]}, "name"),
    ("POST", "/users/admin", {"email": "a@example.com", "name": "N" * 256,
                              "password": "correct-horse-1!"}, "name"),
    ("PATCH", "/users/1", {"position": "p" * 256}, "position"),
])
async def test_over_long_strings_are_refused(admin_api: Api, method: str, path: str,
                                             body: dict[str, object], field: str) -> None:
    assert_error(await admin_api.request(method, path, json=body), 422, "Validation Failed",
                 name=field)
    r = await admin_api.request("GET", "/queries")
    assert r.json()["queries"] == []
