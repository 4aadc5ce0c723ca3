"""Hosts through the REST API: list filters, pagination, status, count, lookups, delete.

Hosts are enrolled 60 days ago unless a test says otherwise (so none is "new"), and have
the seen time each test gives, so each test controls the timestamps the status rules use.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

import httpx
import sqlalchemy as sa

from fleet.service.context import ServiceContext
from fleet.service.hostcache import CachedHost
from fleet.store.db import utcnow
from fleet.store.schema import HOST_CHILD_TABLES, hosts, label_membership, labels
from tests import factories
from tests.integration.conftest import Api, assert_error
from tests.integration.test_agent_endpoints import agent, enroll

__all__ = ["agent"]  # the fixture, imported for the tests below

LONG_AGO = dt.timedelta(days=60)


async def old_host(ctx: ServiceContext, **fields: Any) -> CachedHost:
    """A host enrolled 60 days ago (unless `created` says when)."""
    fields.setdefault("created", utcnow() - LONG_AGO)
    return await factories.host(ctx, **fields)


async def add_host(ctx: ServiceContext, **fields: Any) -> int:
    """The id of a new `old_host`."""
    return (await old_host(ctx, **fields)).id


async def hostnames(api: Api, **params: Any) -> list[str]:
    r = await api.request("GET", "/hosts", params=params)
    assert r.status_code == 200, r.text
    return [h["hostname"] for h in r.json()["hosts"]]


async def count(api: Api, **params: Any) -> int:
    r = await api.request("GET", "/hosts/count", params=params)
    assert r.status_code == 200, r.text
    return int(r.json()["count"])


async def test_host_json_has_fleet_fields(admin_api: Api) -> None:
    now = utcnow()
    host_id = await add_host(admin_api.ctx, seen=now, hostname="web-1", computer_name="Web",
                             memory=8 << 30, cpu_logical_cores=4, primary_ip="10.0.0.5")
    [host] = (await admin_api.request("GET", "/hosts")).json()["hosts"]
    assert host["id"] == host_id and host["hostname"] == "web-1"
    assert host["display_name"] == host["display_text"] == "Web"
    assert host["status"] == "online" and host["memory"] == 8 << 30
    assert host["team_id"] is None and host["team_name"] is None
    assert host["issues"] == {"failing_policies_count": 0, "critical_vulnerabilities_count": 0,
                              "total_issues_count": 0}
    assert host["mdm"]["enrollment_status"] is None and host["mdm"]["name"] == ""
    assert host["last_restarted_at"] is None  # no uptime reported yet
    assert host["refetch_requested"] is False
    assert host["seen_time"].endswith("Z") and host["created_at"].endswith("Z")
    assert dt.datetime.fromisoformat(host["seen_time"]).replace(tzinfo=None) == now
    assert "node_key" not in host
    for field in ("detail_updated_at", "label_updated_at", "policy_updated_at",
                  "last_enrolled_at", "uuid", "platform", "osquery_version", "os_version",
                  "uptime", "hardware_serial", "primary_mac", "public_ip",
                  "distributed_interval", "config_tls_refresh", "logger_tls_period",
                  "gigs_disk_space_available", "percent_disk_space_available",
                  "gigs_total_disk_space", "cpu_brand", "platform_like", "code_name"):
        assert field in host, field


# Fleet's documented Host object (GET /hosts, /hosts/{id}; DETAIL_FIELDS on single hosts only).
DOCUMENTED_HOST_FIELDS = {
    "id", "team_id", "team_name", "created_at", "updated_at", "detail_updated_at",
    "label_updated_at", "policy_updated_at", "last_enrolled_at", "seen_time",
    "refetch_requested", "hostname", "display_name", "display_text", "computer_name", "uuid",
    "platform", "platform_like", "os_version", "build", "code_name", "osquery_version",
    "cpu_type", "cpu_subtype", "cpu_brand", "cpu_physical_cores", "cpu_logical_cores",
    "memory", "hardware_vendor", "hardware_model", "hardware_version", "hardware_serial",
    "uptime", "primary_ip", "primary_mac", "public_ip", "distributed_interval",
    "config_tls_refresh", "logger_tls_period", "gigs_disk_space_available",
    "percent_disk_space_available", "gigs_total_disk_space", "software_updated_at",
    "status", "issues", "mdm", "last_restarted_at", "orbit_version", "fleet_desktop_version",
    "scripts_enabled"}


DETAIL_FIELDS = {"labels", "software", "users", "batteries", "pack_stats", "policies"}


async def test_host_json_is_the_documented_field_set(admin_api: Api) -> None:
    """The API chooses the Host object's fields, not the table: its internal columns
    (node_key, osquery_host_id, and any added later) never appear."""
    host_id = (await factories.host(admin_api.ctx, seen=utcnow())).id
    [listed] = (await admin_api.request("GET", "/hosts")).json()["hosts"]
    single = (await admin_api.request("GET", f"/hosts/{host_id}")).json()["host"]
    assert set(listed) == DOCUMENTED_HOST_FIELDS
    assert set(single) == DOCUMENTED_HOST_FIELDS | DETAIL_FIELDS
    assert {k: v for k, v in single.items() if k not in DETAIL_FIELDS} == listed
    assert set(hosts.c.keys()) - DOCUMENTED_HOST_FIELDS == {"node_key", "osquery_host_id"}


async def test_display_name_order_after_and_low_disk_space(admin_api: Api) -> None:
    """Fleet's UI default sort (display_name: computer name, else hostname), keyset paging
    with `after`, and the low disk space filter."""
    ctx = admin_api.ctx
    await add_host(ctx, hostname="zeta", computer_name="Alpha", gigs_disk_space_available=5)
    await add_host(ctx, hostname="beta", gigs_disk_space_available=50)
    await add_host(ctx, hostname="gamma", computer_name="", gigs_disk_space_available=9)
    assert await hostnames(admin_api, order_key="display_name") == ["zeta", "beta", "gamma"]
    assert await hostnames(admin_api, order_key="display_name",
                           order_direction="desc") == ["gamma", "beta", "zeta"]
    assert await hostnames(admin_api, order_key="hostname", after="beta") == ["gamma", "zeta"]
    assert await hostnames(admin_api, order_key="gigs_disk_space_available",
                           order_direction="desc", after="9") == ["zeta"]
    assert sorted(await hostnames(admin_api, low_disk_space=10)) == ["gamma", "zeta"]
    assert await count(admin_api, low_disk_space=6) == 1
    for params, name in (({"after": "x"}, "after"),
                         ({"order_key": "memory", "after": "lots"}, "after"),
                         ({"order_key": "seen_time", "after": "yesterday"}, "after"),
                         ({"low_disk_space": 0}, "low_disk_space"),
                         ({"low_disk_space": 101}, "low_disk_space"),
                         ({"label_id": "one"}, "label_id")):
        assert_error(await admin_api.request("GET", "/hosts", params=params), 400,
                     "Bad request", name)


async def test_label_id_filters_list_and_count(admin_api: Api) -> None:
    ctx = admin_api.ctx
    ids = [await add_host(ctx, hostname=f"h{i}") for i in range(3)]
    async with ctx.db.begin() as conn:
        inserted = (await conn.execute(sa.insert(labels).values(
            name="picked", description="", query="", platform="", label_type="regular",
            label_membership_type="manual", created_at=utcnow(), updated_at=utcnow()))
        ).inserted_primary_key
        assert inserted is not None
        label_id = inserted[0]
        await conn.execute(sa.insert(label_membership), [
            {"label_id": label_id, "host_id": h, "created_at": utcnow()} for h in ids[1:]])
    assert await hostnames(admin_api, label_id=label_id) == ["h1", "h2"]
    assert await count(admin_api, label_id=label_id) == 2
    assert await count(admin_api, label_id=label_id + 1000) == 0


async def test_host_summary_counts(admin_api: Api) -> None:
    ctx = admin_api.ctx
    now = utcnow()
    await add_host(ctx, hostname="u1", platform="ubuntu", seen=now, created=now,
                   gigs_disk_space_available=3)
    await add_host(ctx, hostname="c1", platform="centos", seen=now - dt.timedelta(days=40))
    await add_host(ctx, hostname="m1", platform="darwin", seen=now - dt.timedelta(hours=2),
                   gigs_disk_space_available=80)
    r = await admin_api.request("GET", "/host_summary", params={"low_disk_space": 10})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["totals_hosts_count"] == 3 and body["online_count"] == 1
    assert body["offline_count"] == 2 and body["mia_count"] == 1
    assert body["missing_30_days_count"] == 1 and body["new_count"] == 1
    assert body["all_linux_count"] == 2 and body["low_disk_space_count"] == 2
    assert body["platforms"] == [{"platform": "centos", "hosts_count": 1},
                                 {"platform": "darwin", "hosts_count": 1},
                                 {"platform": "ubuntu", "hosts_count": 1}]
    assert any(lb["name"] == "All Hosts" for lb in body["builtin_labels"])
    linux = (await admin_api.request("GET", "/host_summary",
                                     params={"platform": "linux"})).json()
    assert linux["totals_hosts_count"] == 2 and linux["low_disk_space_count"] is None
    assert_error(await admin_api.request("GET", "/host_summary",
                                         params={"low_disk_space": "lots"}),
                 400, "Bad request", "low_disk_space")


async def test_hosts_report_csv(admin_api: Api) -> None:
    ctx = admin_api.ctx
    for i in range(5):
        await add_host(ctx, hostname=f"r{i}", hardware_serial=f"S{i}", platform="ubuntu")
    r = await admin_api.request("GET", "/hosts/report", params={
        "format": "csv", "columns": "hostname,hardware_serial,status",
        "order_key": "hostname", "order_direction": "desc"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == ["hostname", "hardware_serial", "status"]
    assert [row[:2] for row in rows[1:]] == [[f"r{i}", f"S{i}"] for i in range(4, -1, -1)]
    full = list(csv.reader(io.StringIO((await admin_api.request(
        "GET", "/hosts/report", params={"format": "csv", "query": "r3"})).text)))
    assert "display_name" in full[0] and len(full) == 2
    for params, name in (({"format": "csv", "columns": "hostname,node_key"}, "columns"),
                         ({"format": "json"}, "format"), ({}, "format")):
        assert_error(await admin_api.request("GET", "/hosts/report", params=params), 400,
                     "Bad request", name)


async def test_pagination_and_ordering(admin_api: Api) -> None:
    ctx = admin_api.ctx
    base = utcnow()
    for i in range(25):
        await add_host(ctx, hostname=f"h{i:02d}", seen=base - dt.timedelta(minutes=i))
    assert len(await hostnames(admin_api)) == 25
    assert len(await hostnames(admin_api, page=0)) == 20  # page alone: 20 per page
    assert await hostnames(admin_api, page=1, per_page=10, order_key="hostname") == [
        f"h{i:02d}" for i in range(10, 20)]
    assert await hostnames(admin_api, per_page=3, order_key="hostname",
                           order_direction="desc") == ["h24", "h23", "h22"]
    assert await hostnames(admin_api, per_page=2, order_key="seen_time") == ["h24", "h23"]
    assert await hostnames(admin_api, page=9, per_page=10) == []
    for params, name in (({"per_page": 0}, "per_page"), ({"page": -1}, "page"),
                         ({"order_direction": "desc"}, "order_direction"),
                         ({"order_key": "node_key"}, "order_key"),
                         ({"order_key": "id", "order_direction": "up"}, "order_direction"),
                         ({"page": "x"}, "page"), ({"status": "sleepy"}, "status")):
        r = await admin_api.request("GET", "/hosts", params=params)
        assert_error(r, 400, "Bad request", name)


async def test_query_searches_hostname_uuid_serial_and_ip(admin_api: Api) -> None:
    ctx = admin_api.ctx
    await add_host(ctx, hostname="mac-alice", uuid="U-1", hardware_serial="C02XYZ",
                   primary_ip="192.168.1.10")
    await add_host(ctx, hostname="linux_bob", uuid="U-2", hardware_serial="PF1ABC",
                   primary_ip="10.1.2.3")
    assert await hostnames(admin_api, query="alice") == ["mac-alice"]
    assert await hostnames(admin_api, query="U-2") == ["linux_bob"]
    assert await hostnames(admin_api, query="c02x") == ["mac-alice"]  # case-insensitive
    assert await hostnames(admin_api, query="10.1.2") == ["linux_bob"]
    assert await hostnames(admin_api, query="x_b") == ["linux_bob"]  # `_` is literal
    assert await hostnames(admin_api, query="%") == []
    assert await count(admin_api, query="U-") == 2


async def test_status_filters_match_status_field(admin_api: Api) -> None:
    ctx = admin_api.ctx
    now = utcnow()
    old = now - dt.timedelta(days=60)
    await add_host(ctx, hostname="online", seen=now - dt.timedelta(seconds=30))
    # 10 s interval + 60 s buffer: seen 80 s ago is offline, though a 300 s host would not be.
    await add_host(ctx, hostname="offline", seen=now - dt.timedelta(seconds=80))
    await add_host(ctx, hostname="slow", seen=now - dt.timedelta(seconds=80),
                   distributed_interval=300, config_tls_refresh=300)
    await add_host(ctx, hostname="missing", seen=now - dt.timedelta(days=31))
    await add_host(ctx, hostname="new", seen=now, created=now - dt.timedelta(hours=2))
    # Never seen: its created_at counts as the seen time.
    await add_host(ctx, hostname="never-seen", created=old)

    expect = {"online": ["online", "slow", "new"],
              "offline": ["offline", "missing", "never-seen"],
              "missing": ["missing", "never-seen"], "mia": ["missing", "never-seen"],
              "new": ["new"]}
    for status, names in expect.items():
        assert sorted(await hostnames(admin_api, status=status)) == sorted(names), status
        assert await count(admin_api, status=status) == len(names), status
    listed = (await admin_api.request("GET", "/hosts")).json()["hosts"]
    statuses = {h["hostname"]: h["status"] for h in listed}
    assert {n for n, s in statuses.items() if s == "online"} == set(expect["online"])
    assert await hostnames(admin_api, status="online", order_key="hostname",
                           per_page=1, page=1) == ["online"]


async def test_count_with_label_and_get_host_with_labels(admin_api: Api) -> None:
    ctx = admin_api.ctx
    a = await add_host(ctx, hostname="a", seen=utcnow())
    b = await add_host(ctx, hostname="b")
    await add_host(ctx, hostname="c")
    linux = await factories.label(ctx, "Linux boxes", [a, b])
    await factories.label(ctx, "Empty", [])
    assert await count(admin_api) == 3
    assert await count(admin_api, label_id=linux) == 2
    assert await count(admin_api, label_id=linux, status="online") == 1
    assert await count(admin_api, label_id=linux, query="b") == 1

    r = await admin_api.request("GET", f"/hosts/{a}")
    assert r.status_code == 200
    host = r.json()["host"]
    assert host["hostname"] == "a" and host["status"] == "online"
    assert [lb["name"] for lb in host["labels"]] == ["All Hosts", "Linux boxes"]
    assert host["labels"][1]["id"] == linux
    assert set(host["labels"][1]) >= {"label_type", "label_membership_type", "query"}
    assert_error(await admin_api.request("GET", "/hosts/999999"), 404, "Resource Not Found")


async def test_get_host_by_identifier(admin_api: Api) -> None:
    ctx = admin_api.ctx
    host_id = await add_host(ctx, hostname="db-1", uuid="UUID-DB", hardware_serial="SN-DB",
                             osquery_host_id="osq-db")
    for identifier in ("db-1", "UUID-DB", "SN-DB", "osq-db"):
        r = await admin_api.request("GET", f"/hosts/identifier/{identifier}")
        assert r.status_code == 200, identifier
        assert r.json()["host"]["id"] == host_id
        assert [lb["name"] for lb in r.json()["host"]["labels"]] == ["All Hosts"]
    assert_error(await admin_api.request("GET", "/hosts/identifier/nope"), 404,
                 "Resource Not Found")


async def test_refetch_asks_the_host_for_everything_again(admin_api: Api,
                                                          agent: httpx.AsyncClient) -> None:
    ctx = admin_api.ctx
    node_key = await enroll(agent)
    first = (await agent.post("/api/osquery/distributed/read",
                              json={"node_key": node_key})).json()["queries"]
    answered = {"node_key": node_key, "queries": {name: [] for name in first},
                "statuses": {name: 0 for name in first}}
    assert (await agent.post("/api/osquery/distributed/write", json=answered)).status_code == 200
    idle = (await agent.post("/api/osquery/distributed/read", json={"node_key": node_key}))
    assert idle.json()["queries"] == {}
    host = ctx.host_cache.get(node_key)
    assert host is not None

    _, observer = await admin_api.user("observer")  # reading the host is enough, as Fleet
    r = await admin_api.request("POST", f"/hosts/{host.id}/refetch", token=observer)
    assert r.status_code == 200 and r.json() == {}
    detail = (await admin_api.request("GET", f"/hosts/{host.id}")).json()["host"]
    assert detail["refetch_requested"] is True
    again = (await agent.post("/api/osquery/distributed/read",
                              json={"node_key": node_key})).json()["queries"]
    assert set(again) == set(first)  # every detail and label query
    assert (await agent.post("/api/osquery/distributed/write", json=answered)).status_code == 200
    detail = (await admin_api.request("GET", f"/hosts/{host.id}")).json()["host"]
    assert detail["refetch_requested"] is False
    assert_error(await admin_api.request("POST", "/hosts/999999/refetch"), 404,
                 "Resource Not Found")


async def test_delete_host_needs_maintainer_and_removes_everything(admin_api: Api) -> None:
    ctx = admin_api.ctx
    cached = await old_host(ctx, seen=utcnow())
    host_id = cached.id
    keep = await add_host(ctx, seen=utcnow())
    label_id = await factories.label(ctx, "L", [host_id, keep])
    ctx.host_cache.put(cached)

    _, observer = await admin_api.user("observer")
    _, maintainer = await admin_api.user("maintainer")
    assert (await admin_api.request("GET", "/hosts", token=observer)).status_code == 200
    assert_error(await admin_api.request("DELETE", f"/hosts/{host_id}", token=observer), 403,
                 "Permission Denied")
    r = await admin_api.request("DELETE", f"/hosts/{host_id}", token=maintainer)
    assert r.status_code == 200 and r.json() == {}
    assert ctx.host_cache.get(cached.node_key) is None
    async with ctx.db.connect() as conn:
        for table, column in ((hosts, hosts.c.id),
                              *((t, t.c.host_id) for t in HOST_CHILD_TABLES)):
            left = (await conn.execute(sa.select(sa.func.count()).select_from(table)
                                       .where(column == host_id))).scalar()
            assert left == 0, table.name
        kept = (await conn.execute(sa.select(label_membership.c.host_id).where(
            label_membership.c.label_id == label_id))).scalars().all()
    assert kept == [keep]
    assert_error(await admin_api.request("DELETE", f"/hosts/{host_id}"), 404,
                 "Resource Not Found")


async def test_bulk_delete_by_ids_and_by_filters(admin_api: Api) -> None:
    ctx = admin_api.ctx
    now = utcnow()
    cached = await old_host(ctx, seen=now, hostname="web-a")
    a = cached.id
    b = await add_host(ctx, seen=now, hostname="web-b")
    db_host = await add_host(ctx, seen=now, hostname="db-1")
    gone = await add_host(ctx, seen=now - dt.timedelta(days=1), hostname="old-1")
    labelled = await add_host(ctx, seen=now, hostname="lab-1")
    label_id = await factories.label(ctx, "Lab", [labelled])
    ctx.host_cache.put(cached)

    _, observer = await admin_api.user("observer")
    assert_error(await admin_api.request("POST", "/hosts/delete", token=observer,
                                         json={"ids": [a]}), 403, "Permission Denied")
    # Unknown ids are skipped; the known one is gone, with its cache entry.
    r = await admin_api.request("POST", "/hosts/delete", json={"ids": [a, 999_999]})
    assert r.status_code == 200 and r.json() == {}
    assert ctx.host_cache.get(cached.node_key) is None
    assert "web-a" not in await hostnames(admin_api)
    for filters, removed in (({"query": "web"}, "web-b"), ({"status": "offline"}, "old-1"),
                             ({"label_id": label_id}, "lab-1")):
        r = await admin_api.request("POST", "/hosts/delete", json={"filters": filters})
        assert r.status_code == 200, r.text
        assert removed not in await hostnames(admin_api)
    assert await hostnames(admin_api) == ["db-1"]
    # `{}` filters select every host.
    r = await admin_api.request("POST", "/hosts/delete", json={"filters": {}})
    assert r.status_code == 200 and await count(admin_api) == 0
    async with ctx.db.connect() as conn:
        for table in HOST_CHILD_TABLES:
            left = (await conn.execute(sa.select(sa.func.count()).select_from(table).where(
                table.c.host_id.in_([a, b, db_host, gone, labelled])))).scalar()
            assert left == 0, table.name


async def test_bulk_delete_rejects_ambiguous_requests(admin_api: Api) -> None:
    host_id = await add_host(admin_api.ctx, seen=utcnow())
    for body, message in (({"ids": [host_id], "filters": {}}, "Bad request"),
                          ({}, "Bad request"),
                          ({"filters": {"status": "online", "label_id": 1}}, "Bad request")):
        assert_error(await admin_api.request("POST", "/hosts/delete", json=body), 400, message)
    r = await admin_api.request("POST", "/hosts/delete", json={"ids": ["1"]})
    assert r.status_code == 422, r.text
    r = await admin_api.request("POST", "/hosts/delete", json={"filters": {"status": "asleep"}})
    assert r.status_code == 422, r.text
    assert await count(admin_api) == 1


async def test_hostname_sort_ignores_case_on_both_backends(admin_api: Api) -> None:
    for name in ("beta", "Alpha", "alpha", "Gamma"):
        await add_host(admin_api.ctx, hostname=name)
    assert await hostnames(admin_api, order_key="hostname") == ["Alpha", "alpha", "beta",
                                                                "Gamma"]
    assert await hostnames(admin_api, order_key="hostname", order_direction="desc") == [
        "Gamma", "beta", "alpha", "Alpha"]


async def test_pages_far_past_the_end_are_empty(admin_api: Api) -> None:
    await add_host(admin_api.ctx)
    assert await hostnames(admin_api, page=2**62, per_page=2**62) == []
