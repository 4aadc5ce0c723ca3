"""`GET/PATCH /config` on both backends: defaults, merging, refusals that change nothing,
and the settings the server acts on (detail query features and overrides, host expiry)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from fleet.service import host_admin
from fleet.store.db import utcnow
from fleet.store.schema import hosts
from tests import factories
from tests.integration.conftest import Api, assert_error
from tests.integration.test_agent_endpoints import agent, enroll

__all__ = ["agent"]  # the fixture, imported for the tests below


async def config(api: Api, token: str | None = None) -> dict[str, Any]:
    r = await api.request("GET", "/config", token=token)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_every_user_reads_the_whole_document_with_defaults(admin_api: Api) -> None:
    _, observer = await admin_api.user("observer")
    doc = await config(admin_api, observer)
    assert doc["org_info"] == {"org_name": "Acme", "org_logo_url": "",
                               "org_logo_url_light_background": "", "contact_url": ""}
    assert doc["server_settings"]["server_url"] == "https://fleet.example.com"
    assert doc["server_settings"]["query_report_cap"] == 1000
    assert doc["host_expiry_settings"] == {"host_expiry_enabled": False,
                                           "host_expiry_window": 0}
    assert doc["features"] == {"enable_host_users": True, "enable_software_inventory": True,
                               "additional_queries": None, "detail_query_overrides": {}}
    assert doc["license"]["tier"] == "free"
    assert doc["update_interval"]["osquery_detail"] == 3600 * 1_000_000_000
    assert doc["logging"]["result"]["plugin"] == "filesystem"


async def test_patch_merges_and_returns_the_whole_document(admin_api: Api) -> None:
    r = await admin_api.request("PATCH", "/config", json={
        "org_info": {"contact_url": "https://help.example.com"},
        "host_expiry_settings": {"host_expiry_enabled": True, "host_expiry_window": 30},
        "host_settings": {"enable_host_users": False},  # the section's pre-4.20 name
    })
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["org_info"]["org_name"] == "Acme"  # kept
    assert doc["org_info"]["contact_url"] == "https://help.example.com"
    assert doc["host_expiry_settings"] == {"host_expiry_enabled": True,
                                           "host_expiry_window": 30}
    assert doc["features"]["enable_host_users"] is False
    assert doc["features"]["enable_software_inventory"] is True
    assert "host_settings" not in doc
    assert await config(admin_api) == doc
    # A map of the user's own keys is replaced whole, not merged.
    for queries in ({"a": "SELECT 1", "b": "SELECT 2"}, {"c": "SELECT 3"}):
        r = await admin_api.request("PATCH", "/config",
                                    json={"features": {"additional_queries": queries}})
        assert r.json()["features"]["additional_queries"] == queries


@pytest.mark.parametrize(("patch", "status", "name"), [
    ({"no_such_section": {}}, 400, "no_such_section"),
    ({"features": {"enable_everything": True}}, 400, "features.enable_everything"),
    ({"features": {"enable_host_users": "true"}}, 422, "features.enable_host_users"),
    ({"host_expiry_settings": {"host_expiry_window": 2**40}}, 422,
     "host_expiry_settings.host_expiry_window"),
    ({"host_expiry_settings": {"host_expiry_enabled": True}}, 422,
     "host_expiry_settings.host_expiry_window"),
    ({"server_settings": {"server_url": "ftp://x"}}, 422, "server_settings.server_url"),
    ({"org_info": {"org_name": "\ud800"}}, 422, "org_info.org_name"),
    ({"features": {"additional_queries": {"x": ""}}}, 422, "features.additional_queries"),
    ({"org_info": "Acme"}, 422, "org_info"),
])
async def test_a_patch_it_does_not_fully_understand_changes_nothing(
        admin_api: Api, patch: dict[str, Any], status: int, name: str) -> None:
    before = await config(admin_api)
    # Every refused patch also carries a valid change, which must not be applied either.
    body = {"org_info": {"contact_url": "https://changed.example.com"}, **patch}
    # json.dumps escapes a lone surrogate, which httpx's encoder refuses to send.
    r = await admin_api.request("PATCH", "/config", content=json.dumps(body))
    assert r.status_code == status, r.text
    assert r.json()["errors"][0]["name"] == name
    assert await config(admin_api) == before


async def test_only_admins_and_gitops_change_it(admin_api: Api) -> None:
    for role in ("observer", "maintainer"):
        _, token = await admin_api.user(role)
        assert_error(await admin_api.request("PATCH", "/config", token=token,
                                             json={"org_info": {"org_name": "X"}}),
                     403, "Permission Denied")
    _, gitops = await admin_api.user("gitops", api_only=True)
    r = await admin_api.request("PATCH", "/config", token=gitops,
                                json={"org_info": {"org_name": "GitOps Inc"}})
    assert r.status_code == 200 and r.json()["org_info"]["org_name"] == "GitOps Inc"


async def detail_queries_asked(agent: httpx.AsyncClient, node_key: str) -> dict[str, str]:
    r = await agent.post("/api/osquery/distributed/read", json={"node_key": node_key})
    return {name.removeprefix("fleet_detail_query_"): sql
            for name, sql in r.json()["queries"].items()
            if name.startswith("fleet_detail_query_")}


async def test_features_decide_which_detail_queries_are_asked(
        admin_api: Api, agent: httpx.AsyncClient) -> None:
    node_key = await enroll(agent)
    asked = await detail_queries_asked(agent, node_key)
    assert {"software_linux", "uptime", "os_version"} <= set(asked)
    r = await admin_api.request("PATCH", "/config", json={"features": {
        "enable_software_inventory": False,
        "detail_query_overrides": {"uptime": None, "os_version": "SELECT 42 AS answer"}}})
    assert r.status_code == 200, r.text
    asked = await detail_queries_asked(agent, node_key)  # still due: nothing was answered
    assert "software_linux" not in asked and "uptime" not in asked
    assert asked["os_version"] == "SELECT 42 AS answer"
    assert "system_info" in asked


async def test_host_expiry_deletes_hosts_not_seen_within_the_window(admin_api: Api) -> None:
    ctx = admin_api.ctx
    now = utcnow()
    stale = await factories.host(ctx, created=now - dt.timedelta(days=9),
                                 seen=now - dt.timedelta(days=8))
    never_seen = await factories.host(ctx, created=now - dt.timedelta(days=9))
    recent = await factories.host(ctx, created=now - dt.timedelta(days=9),
                                  seen=now - dt.timedelta(days=1))
    assert await host_admin.expire_hosts(ctx) == 0  # expiry is off by default
    r = await admin_api.request("PATCH", "/config", json={"host_expiry_settings": {
        "host_expiry_enabled": True, "host_expiry_window": 7}})
    assert r.status_code == 200, r.text
    assert await host_admin.expire_hosts(ctx) == 2
    async with ctx.db.connect() as conn:
        left = (await conn.execute(sa.select(hosts.c.id))).scalars().all()
    assert left == [recent.id]
    assert stale.id not in left and never_seen.id not in left
