"""Software inventory on both backends: a host's list stored as the difference from what is
stored (bounded statements, nothing written when unchanged), host counts from the job, the
REST lists and the host detail's software."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from fleet.service import ingest, software_writer
from fleet.service import software as software_service
from fleet.service.context import ServiceContext
from fleet.service.software_writer import SoftwareWriter
from fleet.store import hosts as host_store
from fleet.store import software as store
from fleet.store.schema import (
    host_software_installed_paths,
    hosts,
    software,
    software_titles,
)
from tests import factories
from tests.integration.conftest import Api, assert_error
from tests.integration.test_agent_endpoints import agent, enroll

__all__ = ["agent"]  # the fixture, imported for the tests below


def deb(name: str, version: str = "1.0") -> dict[str, str]:
    return {"name": name, "version": version, "source": "deb_packages", "extension_id": "",
            "extension_for": "", "release": "", "vendor": "", "arch": "",
            "installed_path": ""}


def npm(name: str, version: str, path: str) -> dict[str, str]:
    return {**deb(name, version), "source": "npm_packages", "installed_path": path}


class Statements:
    """The SQL statements a block sends (and which of them write)."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    @property
    def writes(self) -> list[str]:
        return [s for s in self.sent
                if s.lstrip().split(None, 1)[0].upper() in ("INSERT", "UPDATE", "DELETE")]


@contextlib.contextmanager
def statements(ctx: ServiceContext) -> Iterator[Statements]:
    seen = Statements()

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.sent.append(statement)

    engine = ctx.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def sync(ctx: ServiceContext, host_id: int, rows: Sequence[dict[str, str]]) -> None:
    """Store a list as the agent path does: through the batch writer, then wait for it."""
    await ctx.software.submit(host_id, rows)
    await ctx.software.idle()


async def stored(ctx: ServiceContext, host_id: int) -> dict[str, tuple[str, ...]]:
    """The host's software as {name@version: its installed paths}."""
    async with ctx.db.connect() as conn:
        items = await store.host_software_list(conn, host_id)
    return {f"{i.software.name}@{i.software.version}": i.installed_paths for i in items}


async def table_count(ctx: ServiceContext, table: sa.Table) -> int:
    async with ctx.db.connect() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(table)))
                   .scalar_one())


async def test_ingest_adds_removes_and_changes_only_the_difference(
        ctx: ServiceContext) -> None:
    host = await factories.host(ctx)
    other = await factories.host(ctx)
    first = [deb("bash", "5.1"), deb("curl", "7.81"), npm("left-pad", "1.3", "/usr/lib/a"),
             npm("left-pad", "1.3", "/usr/lib/b")]
    await sync(ctx, host.id, first)
    assert await stored(ctx, host.id) == {
        "bash@5.1": (), "curl@7.81": (), "left-pad@1.3": ("/usr/lib/a", "/usr/lib/b")}
    # A second host with the same packages links to the same shared rows.
    await sync(ctx, other.id, first[:2])
    assert await table_count(ctx, software) == 3
    assert await table_count(ctx, software_titles) == 3
    async with ctx.db.connect() as conn:
        updated = (await conn.execute(sa.select(hosts.c.software_updated_at)
                                      .where(hosts.c.id == host.id))).scalar_one()
    assert updated is not None

    # curl upgraded, bash removed, a path moved, vim added.
    second = [deb("curl", "8.0"), npm("left-pad", "1.3", "/usr/lib/b"),
              npm("left-pad", "1.3", "/opt/c"), deb("vim", "9.0")]
    await sync(ctx, host.id, second)
    assert await stored(ctx, host.id) == {
        "curl@8.0": (), "left-pad@1.3": ("/opt/c", "/usr/lib/b"), "vim@9.0": ()}
    assert await stored(ctx, other.id) == {"bash@5.1": (), "curl@7.81": ()}
    # The curl title has both versions.
    async with ctx.db.connect() as conn:
        curl_titles = (await conn.execute(
            sa.select(sa.func.count(sa.distinct(software.c.title_id)))
            .where(software.c.name == "curl"))).scalar_one()
    assert curl_titles == 1
    # An empty (successful) list removes everything, paths included.
    await sync(ctx, host.id, [])
    assert await stored(ctx, host.id) == {}
    async with ctx.db.connect() as conn:
        left = (await conn.execute(sa.select(sa.func.count()).select_from(
            host_software_installed_paths).where(
            host_software_installed_paths.c.host_id == host.id))).scalar_one()
    assert left == 0


async def test_unchanged_list_writes_nothing_and_statements_are_bounded(
        ctx: ServiceContext) -> None:
    host = await factories.host(ctx)
    rows = [npm(f"pkg-{i}", f"{i}.0", f"/opt/pkg-{i}") for i in range(1000)]
    with statements(ctx) as first:
        await sync(ctx, host.id, rows)
    # Links, paths, software_updated_at; titles and versions created.
    assert len(first.writes) == 5 and len(first.sent) <= 11, first.sent
    with statements(ctx) as again:
        await sync(ctx, host.id, rows)
    assert again.sent == []  # the list this process stored last: recognised by its digest
    # Another instance (or this one after a restart) compares it with what is stored: one
    # read, and one lookup of the shared rows' ids, which it then remembers; no write.
    other = SoftwareWriter(ctx.db, ctx.hosts_changed)
    for order, reads in ((rows[::-1], 2), (rows[::2] + rows[1::2], 1)):  # order: no change
        with statements(ctx) as elsewhere:
            await other.submit(host.id, order)
            await other.idle()
        assert elsewhere.writes == [] and len(elsewhere.sent) == reads, elsewhere.sent
    # Five packages no host had before replace five others: the worst case, every kind of
    # statement once (read; look up, create titles and versions, look up again; lock the
    # host; link, unlink; add and drop paths; software_updated_at), whatever the length.
    changed = rows[5:] + [npm(f"new-{i}", "1", f"/opt/new-{i}") for i in range(5)]
    with statements(ctx) as churn:
        await sync(ctx, host.id, changed)
    assert len(churn.sent) <= 12, churn.sent
    assert len(await stored(ctx, host.id)) == 1000


async def test_a_batch_of_hosts_costs_the_statements_of_one(ctx: ServiceContext) -> None:
    """Lists queued together are written together: the statements do not grow with the
    number of hosts, and each host gets exactly its own list."""
    host_ids = [(await factories.host(ctx)).id for _ in range(30)]
    with statements(ctx) as batch:
        for n, host_id in enumerate(host_ids):
            await ctx.software.submit(
                host_id, [deb("curl", "8"), npm(f"only-{n}", "1", f"/opt/only-{n}")])
        await ctx.software.idle()
    assert len(batch.sent) <= 11, batch.sent
    for n, host_id in enumerate(host_ids):
        assert await stored(ctx, host_id) == {"curl@8": (), f"only-{n}@1": (f"/opt/only-{n}",)}


async def test_a_newer_list_replaces_a_queued_one_and_a_full_queue_waits(
        ctx: ServiceContext, monkeypatch: pytest.MonkeyPatch) -> None:
    host = await factories.host(ctx)
    others = [(await factories.host(ctx)).id for _ in range(3)]
    monkeypatch.setattr(ctx.software, "capacity", 2)
    await ctx.software.submit(host.id, [deb("old")])
    await ctx.software.submit(host.id, [deb("new")])  # replaces, no wait
    await ctx.software.submit(others[0], [deb("a")])
    # The queue is full (two hosts): the next host waits until the drain takes a batch.
    await ctx.software.submit(others[1], [deb("b")])
    await ctx.software.idle()
    assert await stored(ctx, host.id) == {"new@1.0": ()}
    assert await stored(ctx, others[1]) == {"b@1.0": ()}


async def test_a_deleted_host_gets_no_software(ctx: ServiceContext) -> None:
    host = await factories.host(ctx)
    async with ctx.db.begin() as conn:
        await conn.execute(hosts.delete().where(hosts.c.id == host.id))
    await sync(ctx, host.id, [deb("bash")])
    assert await stored(ctx, host.id) == {}


async def test_last_opened_at_is_stored_and_updated(ctx: ServiceContext) -> None:
    host = await factories.host(ctx, platform="darwin")
    app = {"name": "Safari", "version": "17.4", "source": "apps",
           "bundle_identifier": "com.apple.Safari", "extension_id": "", "extension_for": "",
           "vendor": "", "last_opened_at": "1700000000.5",
           "installed_path": "/Applications/Safari.app"}
    await sync(ctx, host.id, [app])
    async with ctx.db.connect() as conn:
        [item] = await store.host_software_list(conn, host.id)
    assert item.last_opened_at is not None and item.last_opened_at.year == 2023
    assert item.software.bundle_identifier == "com.apple.Safari"
    with statements(ctx) as opened:
        await sync(ctx, host.id, [{**app, "last_opened_at": "1700000600"}])
    assert len(opened.writes) == 2, opened.writes  # last_opened_at, software_updated_at


async def test_software_detail_query_through_the_agent(ctx: ServiceContext,
                                                       agent: httpx.AsyncClient) -> None:
    node_key = await enroll(agent)
    r = await agent.post("/api/osquery/distributed/read", json={"node_key": node_key})
    assert "SELECT" in r.json()["queries"]["fleet_detail_query_software_linux"]
    write = {"node_key": node_key,
             "queries": {"fleet_detail_query_software_linux": [deb("bash"), deb("zsh")]},
             "statuses": {"fleet_detail_query_software_linux": 0}}
    r = await agent.post("/api/osquery/distributed/write", json=write)
    assert r.status_code == 200
    host = ctx.host_cache.get(node_key)
    assert host is not None
    await ctx.software.idle()
    assert set(await stored(ctx, host.id)) == {"bash@1.0", "zsh@1.0"}
    with statements(ctx) as again:
        await agent.post("/api/osquery/distributed/write", json=write)
        await ctx.software.idle()
    assert not [s for s in again.writes if "software" in s], again.writes
    # A failed software query keeps what is stored.
    await agent.post("/api/osquery/distributed/write", json={
        "node_key": node_key, "queries": {"fleet_detail_query_software_linux": []},
        "statuses": {"fleet_detail_query_software_linux": 1}, "messages": {
            "fleet_detail_query_software_linux": "no such table: deb_packages"}})
    await ctx.software.idle()
    assert len(await stored(ctx, host.id)) == 2


async def seeded(api: Api) -> list[int]:
    """Three hosts: curl 8 on all, bash on two, vim on one; counts refreshed."""
    ctx = api.ctx
    host_ids = [(await factories.host(ctx)).id for _ in range(3)]
    await sync(ctx, host_ids[0], [deb("curl", "8"), deb("bash", "5"), deb("vim", "9")])
    await sync(ctx, host_ids[1], [deb("curl", "8"), deb("bash", "5")])
    await sync(ctx, host_ids[2], [deb("curl", "8"), deb("curl", "7")])
    assert await software_service.refresh_counts(ctx) == 4
    return host_ids


async def test_versions_and_titles_lists(admin_api: Api) -> None:
    await seeded(admin_api)
    r = await admin_api.request("GET", "/software/versions")
    body = r.json()
    assert r.status_code == 200 and body["count"] == 4 and body["counts_updated_at"]
    assert [(s["name"], s["version"], s["hosts_count"]) for s in body["software"]][:2] == \
        [("curl", "8", 3), ("bash", "5", 2)]
    first = body["software"][0]
    assert first["vulnerabilities"] == [] and first["generated_cpe"] == "" \
        and first["source"] == "deb_packages"
    r = await admin_api.request("GET", "/software/versions", params={
        "order_key": "name", "order_direction": "asc", "per_page": 2, "page": 1})
    page = r.json()
    assert [s["name"] for s in page["software"]] == ["curl", "vim"]  # bash, curl first
    assert page["meta"] == {"has_next_results": False, "has_previous_results": True}
    r = await admin_api.request("GET", "/software/versions",
                                params={"query": "vi", "per_page": 1})
    assert [s["name"] for s in r.json()["software"]] == ["vim"]
    assert r.json()["meta"]["has_next_results"] is False
    one = await admin_api.request("GET", f"/software/versions/{first['id']}")
    assert one.json()["software"]["hosts_count"] == 3

    r = await admin_api.request("GET", "/software/titles")
    titles = r.json()
    assert titles["count"] == 3
    curl = titles["software_titles"][0]
    assert (curl["name"], curl["hosts_count"], curl["versions_count"]) == ("curl", 3, 2)
    assert {v["version"]: v["hosts_count"] for v in curl["versions"]} == {"7": 1, "8": 3}
    one = await admin_api.request("GET", f"/software/titles/{curl['id']}")
    assert one.json()["software_title"]["counts_updated_at"]


async def test_software_bad_params_and_missing(admin_api: Api) -> None:
    for path in ("/software/versions", "/software/titles"):
        assert_error(await admin_api.request("GET", path, params={"order_key": "cvss"}),
                     400, "Bad request", "order_key")
        assert_error(await admin_api.request("GET", path, params={"per_page": 0}),
                     400, "Bad request", "per_page")
    assert_error(await admin_api.request("GET", "/software/versions/999"), 404,
                 "Resource Not Found")
    assert_error(await admin_api.request("GET", "/software/titles/999"), 404,
                 "Resource Not Found")


async def test_counts_come_from_the_job_not_the_request(admin_api: Api) -> None:
    host_ids = await seeded(admin_api)
    await sync(admin_api.ctx, host_ids[1], [])
    r = await admin_api.request("GET", "/software/versions", params={"query": "bash"})
    assert r.json()["software"][0]["hosts_count"] == 2  # until the next run
    await software_service.refresh_counts(admin_api.ctx)
    r = await admin_api.request("GET", "/software/versions", params={"query": "bash"})
    assert r.json()["software"][0]["hosts_count"] == 1


async def test_host_detail_software_and_exclude_software(admin_api: Api) -> None:
    host_id = (await seeded(admin_api))[0]
    host = (await admin_api.request("GET", f"/hosts/{host_id}")).json()["host"]
    assert [(s["name"], s["version"]) for s in host["software"]] == \
        [("bash", "5"), ("curl", "8"), ("vim", "9")]
    assert set(host["software"][0]) == {
        "id", "name", "version", "source", "browser", "bundle_identifier", "generated_cpe",
        "vulnerabilities", "installed_paths", "last_opened_at"}
    assert host["software_updated_at"]
    bare = (await admin_api.request("GET", f"/hosts/{host_id}",
                                    params={"exclude_software": "true"})).json()["host"]
    assert "software" not in bare


async def test_host_list_filters_by_software(admin_api: Api) -> None:
    """`software_version_id` / `software_title_id` (and Fleet's older `software_id`) on
    `GET /hosts` and `/hosts/count`."""
    ctx = admin_api.ctx
    host_ids = [(await factories.host(ctx)).id for _ in range(3)]
    await sync(ctx, host_ids[0], [deb("curl", "8")])
    await sync(ctx, host_ids[1], [deb("curl", "7")])
    async with ctx.db.connect() as conn:
        version_id, title_id = (await conn.execute(
            sa.select(software.c.id, software.c.title_id)
            .where(software.c.version == "8"))).one()

    async def listed(**params: int) -> list[int]:
        r = await admin_api.request("GET", "/hosts", params={**params, "order_key": "id"})
        assert r.status_code == 200, r.text
        count = (await admin_api.request("GET", "/hosts/count", params=params)).json()
        ids = [h["id"] for h in r.json()["hosts"]]
        assert count["count"] == len(ids)
        return ids

    assert await listed(software_version_id=version_id) == [host_ids[0]]
    assert await listed(software_id=version_id) == [host_ids[0]]
    assert await listed(software_title_id=title_id) == host_ids[:2]
    assert await listed(software_title_id=title_id, software_version_id=version_id) == [
        host_ids[0]]
    assert await listed(software_version_id=version_id + 999) == []
    assert_error(await admin_api.request("GET", "/hosts", params={"software_title_id": "x"}),
                 400, "Bad request", "software_title_id")


async def test_a_software_list_that_cannot_be_stored_is_asked_again(
        ctx: ServiceContext, agent: httpx.AsyncClient,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch that keeps colliding with other instances' writes (lock conflicts) is given
    up on after its retries: the host's vitals are already stored (the request never waited
    for its software) and its details are asked again at the next check-in."""
    node_key = await enroll(agent)
    await agent.post("/api/osquery/distributed/read", json={"node_key": node_key})

    async def conflicting(*_args: Any) -> None:
        raise OperationalError("INSERT INTO software ...", {},
                               Exception(1213, "Deadlock found when trying to get lock"))

    monkeypatch.setattr(store, "sync_software", conflicting)
    monkeypatch.setattr(software_writer, "ATTEMPTS", 2)
    r = await agent.post("/api/osquery/distributed/write", json={
        "node_key": node_key,
        "queries": {"fleet_detail_query_software_linux": [deb("bash")],
                    "fleet_detail_query_uptime": [{"total_seconds": "3600"}]},
        "statuses": {"fleet_detail_query_software_linux": 0, "fleet_detail_query_uptime": 0}})
    assert r.status_code == 200, r.text
    await ctx.software.idle()
    assert ctx.software.failed == 1
    async with ctx.db.connect() as conn:
        row = (await conn.execute(sa.select(hosts.c.id, hosts.c.uptime)
                                  .where(hosts.c.node_key == node_key))).one()
    assert row.uptime == 3600 * 1_000_000_000
    again = await agent.post("/api/osquery/distributed/read", json={"node_key": node_key})
    assert "fleet_detail_query_software_linux" in again.json()["queries"]
    assert await stored(ctx, row.id) == {}


async def test_vitals_land_when_label_results_keep_conflicting(
        ctx: ServiceContext, agent: httpx.AsyncClient,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Label memberships that keep colliding with other hosts' writes (lock conflicts) do
    not take the host's vitals with them, and its details are asked again at once."""
    node_key = await enroll(agent)
    first = await agent.post("/api/osquery/distributed/read", json={"node_key": node_key})
    label_query = next(q for q in first.json()["queries"] if q.startswith("fleet_label_query_"))

    async def conflicting(*_args: Any) -> None:
        raise OperationalError("INSERT INTO label_membership ...", {},
                               Exception(1213, "Deadlock found when trying to get lock"))

    monkeypatch.setattr(host_store.HostTables, "record_label_results", conflicting)
    monkeypatch.setattr(ingest, "SAVE_ATTEMPTS", 2)
    r = await agent.post("/api/osquery/distributed/write", json={
        "node_key": node_key,
        "queries": {label_query: [{"1": "1"}],
                    "fleet_detail_query_uptime": [{"total_seconds": "3600"}]},
        "statuses": {label_query: 0, "fleet_detail_query_uptime": 0}})
    assert r.status_code == 200, r.text
    async with ctx.db.connect() as conn:
        uptime = (await conn.execute(sa.select(hosts.c.uptime)
                                     .where(hosts.c.node_key == node_key))).scalar_one()
    assert uptime == 3600 * 1_000_000_000
    again = await agent.post("/api/osquery/distributed/read", json={"node_key": node_key})
    assert "fleet_detail_query_uptime" in again.json()["queries"]
