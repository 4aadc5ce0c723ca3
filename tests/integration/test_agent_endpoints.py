"""The osquery agent endpoints, on both backends, as an osqueryd would see them."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa
from starlette.applications import Starlette

from fleet.agent import routes
from fleet.agent.routes import AgentFrontDoor
from fleet.broker import BrokerUnavailable
from fleet.logdest.filesystem import FilesystemDestination
from fleet.service import families
from fleet.service.context import ServiceContext
from fleet.service.families import Answer, HostWrite, Query
from fleet.service.hostcache import CachedHost
from fleet.store.schema import host_seen_times, hosts, label_membership
from tests import factories

SECRET = "s3cretEnroll"

HOST_DETAILS = {
    "os_version": {"name": "Ubuntu", "version": "22.04.4 LTS (Jammy Jellyfish)", "major": "22",
                   "minor": "4", "patch": "0", "platform": "ubuntu", "platform_like": "debian",
                   "codename": "jammy", "arch": "x86_64", "build": ""},
    "osquery_info": {"version": "5.23.1", "instance_id": "inst-1", "uuid": "UUID-1"},
    "system_info": {"hostname": "web-01.corp.example", "uuid": "UUID-1",
                    "cpu_brand": "Intel(R) Xeon(R) CPU", "cpu_physical_cores": "4",
                    "cpu_logical_cores": "8", "physical_memory": "8589934592",
                    "hardware_vendor": "QEMU", "hardware_model": "Standard PC",
                    "hardware_serial": "SER-1", "computer_name": "web-01"},
}


@pytest.fixture
async def agent(ctx: ServiceContext) -> AsyncIterator[httpx.AsyncClient]:
    await factories.enroll_secret(ctx, SECRET)
    app = AgentFrontDoor(ctx, Starlette())
    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 4242))
    async with httpx.AsyncClient(transport=transport, base_url="https://fleet.test") as client:
        yield client


async def enroll(client: httpx.AsyncClient, identifier: str = "host-1",
                 details: dict[str, Any] | None = None) -> str:
    r = await client.post("/api/osquery/enroll", json={
        "enroll_secret": SECRET, "host_identifier": identifier, "platform_type": "9",
        "host_details": HOST_DETAILS if details is None else details})
    assert r.status_code == 200, r.text
    return str(r.json()["node_key"])


async def count(ctx: ServiceContext, table: sa.Table) -> int:
    async with ctx.db.connect() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar())


async def host_row(ctx: ServiceContext) -> Any:
    async with ctx.db.connect() as conn:
        return (await conn.execute(sa.select(hosts))).one()


async def test_enroll_creates_host_with_vitals(ctx: ServiceContext,
                                               agent: httpx.AsyncClient) -> None:
    node_key = await enroll(agent)
    assert len(node_key) == 32  # base64 of 24 random bytes
    host = await host_row(ctx)
    assert host.osquery_host_id == "host-1"
    assert (host.hostname, host.platform, host.osquery_version) == \
        ("web-01.corp.example", "ubuntu", "5.23.1")
    assert host.os_version == "Ubuntu 22.04.4 LTS"
    assert (host.cpu_logical_cores, host.memory, host.hardware_serial) == (8, 8589934592, "SER-1")
    assert await count(ctx, label_membership) == 1  # "All Hosts"
    # Enrolling counts as being seen; the time reaches the table with the next batch.
    assert await ctx.seen.flush(ctx.db) == 1
    assert await count(ctx, host_seen_times) == 1
    # The intervals of the config are stored at enrollment: the first config fetch has
    # nothing left to write.
    assert (host.distributed_interval, host.config_tls_refresh, host.logger_tls_period) == \
        (10, 0, 10)
    before = ctx.db.statement_count
    r = await agent.post("/api/osquery/config", json={"node_key": node_key})
    assert r.status_code == 200
    assert ctx.db.statement_count == before


async def test_enroll_cuts_over_long_values_to_the_column(ctx: ServiceContext,
                                                        agent: httpx.AsyncClient) -> None:
    long_name = "h" * 300
    details = {**HOST_DETAILS, "system_info": {**HOST_DETAILS["system_info"],
                                               "hostname": long_name}}
    node_key = await enroll(agent, details=details)
    assert (await host_row(ctx)).hostname == long_name[:255]
    # The cached host the first check-in is served from agrees with the row.
    cached = ctx.host_cache.get(node_key)
    assert cached is not None and cached.hostname == long_name[:255]


async def test_enroll_failures_are_node_invalid_and_write_nothing(
        ctx: ServiceContext, agent: httpx.AsyncClient) -> None:
    for body in ({"enroll_secret": "wrong", "host_identifier": "h"},
                 {"enroll_secret": "", "host_identifier": "h"},
                 {"host_identifier": "h"}):
        r = await agent.post("/api/v1/osquery/enroll", json=body)
        assert r.status_code == 401
        assert r.json()["node_invalid"] is True and r.json()["error"]
    assert await count(ctx, hosts) == 0


async def test_reenroll_keeps_host_and_revokes_old_key(ctx: ServiceContext,
                                                       agent: httpx.AsyncClient) -> None:
    first = await enroll(agent)
    r = await agent.post("/api/osquery/config", json={"node_key": first})
    assert r.status_code == 200
    second = await enroll(agent)
    assert second != first
    assert await count(ctx, hosts) == 1
    r = await agent.post("/api/osquery/config", json={"node_key": first})
    assert r.status_code == 401 and r.json()["node_invalid"] is True
    r = await agent.post("/api/osquery/config", json={"node_key": second})
    assert r.status_code == 200


async def test_enroll_cooldown(ctx: ServiceContext, agent: httpx.AsyncClient) -> None:
    ctx.cfg = ctx.cfg.with_overrides({"osquery.enroll_cooldown": 3600.0})
    await enroll(agent)
    r = await agent.post("/api/osquery/enroll", json={
        "enroll_secret": SECRET, "host_identifier": "host-1", "host_details": HOST_DETAILS})
    assert r.status_code == 401 and "enrolling too often" in r.json()["error"]


@pytest.mark.parametrize(("mode", "expected"), [
    ("provided", "host-1"), ("instance", "inst-1"), ("uuid", "UUID-1"),
    ("hostname", "web-01.corp.example")])
async def test_host_identifier_modes(ctx: ServiceContext, agent: httpx.AsyncClient,
                                     mode: str, expected: str) -> None:
    ctx.cfg = ctx.cfg.with_overrides({"osquery.host_identifier": mode})
    await enroll(agent)
    assert (await host_row(ctx)).osquery_host_id == expected


async def test_config_has_fleet_defaults_and_global_pack(ctx: ServiceContext,
                                                         agent: httpx.AsyncClient) -> None:
    await factories.query(ctx, name="uptime", query="SELECT * FROM uptime",
                          schedule_interval=300, logging_type="snapshot")
    node_key = await enroll(agent)
    r = await agent.post("/api/osquery/config", headers={"Authorization": f"NodeKey {node_key}"},
                         json={})
    assert r.status_code == 200
    cfg = r.json()
    assert cfg["options"]["distributed_interval"] == 10
    assert cfg["options"]["pack_delimiter"] == "/"
    assert cfg["packs"]["Global"]["queries"]["uptime"] == {
        "query": "SELECT * FROM uptime", "interval": 300, "platform": "", "version": "",
        "snapshot": True}
    host = await host_row(ctx)
    assert (host.distributed_interval, host.logger_tls_period) == (10, 10)


class NotDueFamily:
    """A registered family that is never due: an idle check-in must not even ask it."""

    prefix = "fleet_test_query_"

    def due(self, ctx: ServiceContext, host: CachedHost, now: float) -> bool:
        return host.label_updated_at > now  # from the cached host, as a real family

    async def queries(self, ctx: ServiceContext, host: CachedHost) -> Mapping[str, Query]:
        raise AssertionError("queries of a family that is not due")

    async def ingest(self, ctx: ServiceContext, host: CachedHost,
                     answers: Mapping[str, Answer], write: HostWrite) -> None:
        raise AssertionError("nothing was asked")


async def test_detail_queries_then_nothing_due_without_sql(
        ctx: ServiceContext, agent: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(families, "REGISTRY",
                        families.Registry((*families.REGISTRY, NotDueFamily())))
    node_key = await enroll(agent)
    r = await agent.post("/api/osquery/distributed/read", json={"node_key": node_key})
    body = r.json()
    names = set(body["queries"])
    assert {"fleet_detail_query_os_version", "fleet_detail_query_system_info",
            "fleet_detail_query_network_interface_unix"} <= names
    assert "fleet_detail_query_network_interface_windows" not in names
    assert set(body["discovery"]) == names  # a discovery entry for every query
    assert "accelerate" not in body  # hostname and platform came with enrollment
    # The built-in labels are asked too; answering them makes labels not due either.
    label_queries = {n for n in names if n.startswith("fleet_label_query_")}
    assert label_queries

    r = await agent.post("/api/osquery/distributed/write", headers={
        "X-Forwarded-For": "198.51.100.7, 10.0.0.1"}, json={
        "node_key": node_key,
        "queries": {
            **{name: [{"1": "1"}] for name in label_queries},
            "fleet_detail_query_uptime": [{"total_seconds": "3600"}],
            "fleet_detail_query_network_interface_unix": [
                {"address": "10.0.0.5", "mac": "52:54:00:12:34:56"}],
            "fleet_detail_query_disk_space_unix": "",
            "fleet_detail_query_osquery_flags": [
                {"name": "distributed_interval", "value": "10"},
                {"name": "config_refresh", "value": "60"}],
        },
        "statuses": {"fleet_detail_query_uptime": 0,
                     "fleet_detail_query_network_interface_unix": "0",
                     "fleet_detail_query_disk_space_unix": 0,
                     "fleet_detail_query_osquery_flags": 0},
        "messages": {}})
    assert r.status_code == 200 and r.json() == {}
    host = await host_row(ctx)
    assert host.uptime == 3600 * 10**9
    assert (host.primary_ip, host.primary_mac, host.public_ip) == \
        ("10.0.0.5", "52:54:00:12:34:56", "198.51.100.7")
    assert host.config_tls_refresh == 60
    assert host.detail_updated_at > host.created_at

    before = ctx.db.statement_count
    for _ in range(3):
        r = await agent.post("/api/osquery/distributed/read", json={"node_key": node_key})
        assert r.json() == {"queries": {}, "discovery": {}}
    assert ctx.db.statement_count == before, "an idle distributed/read must run no SQL"


async def test_accelerate_until_hostname_known(ctx: ServiceContext,
                                               agent: httpx.AsyncClient) -> None:
    node_key = await enroll(agent, details={})
    r = await agent.post("/api/osquery/distributed/read", json={"node_key": node_key})
    assert r.json()["accelerate"] == 10


async def test_public_ip_falls_back_to_peer_address(ctx: ServiceContext,
                                                    agent: httpx.AsyncClient) -> None:
    node_key = await enroll(agent)
    r = await agent.post("/api/osquery/distributed/write", json={
        "node_key": node_key,
        "queries": {"fleet_detail_query_network_interface_unix": []},
        "statuses": {"fleet_detail_query_network_interface_unix": 0}})
    assert r.status_code == 200
    assert (await host_row(ctx)).public_ip == "203.0.113.9"


async def test_logs_written_one_json_object_per_line(ctx: ServiceContext,
                                                     agent: httpx.AsyncClient) -> None:
    node_key = await enroll(agent)
    status = [{"hostIdentifier": "host-1", "severity": 0, "message": "hello"},
              {"hostIdentifier": "host-1", "severity": 2, "message": "bad"}]
    results = [{"name": "pack/Global/uptime", "hostIdentifier": "host-1", "action": "snapshot",
                "snapshot": [{"total_seconds": "5"}]},
               {"not": "a result"}]
    r = await agent.post("/api/osquery/log", json={"node_key": node_key, "log_type": "status",
                                                    "data": status})
    assert r.status_code == 200 and r.json() == {}
    r = await agent.post("/api/osquery/log", content=gzip.compress(
        httpx.Request("POST", "/", json={"node_key": node_key, "log_type": "result",
                                         "data": results}).content),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert r.status_code == 200
    status_lines = Path(ctx.cfg.filesystem.status_log_file).read_bytes().splitlines()
    assert [orjson.loads(line) for line in status_lines] == status
    result_lines = Path(ctx.cfg.filesystem.result_log_file).read_bytes().splitlines()
    assert [orjson.loads(line) for line in result_lines] == results[:1]


async def test_log_destination_failure_is_413(ctx: ServiceContext, agent: httpx.AsyncClient,
                                              tmp_path: Path) -> None:
    node_key = await enroll(agent)
    blocked = tmp_path / "not-a-file"
    blocked.mkdir()
    ctx.result_log = FilesystemDestination(str(blocked))
    r = await agent.post("/api/osquery/log", json={
        "node_key": node_key, "log_type": "result",
        "data": [{"name": "q", "hostIdentifier": "h"}]})
    assert r.status_code == 413 and "error" in r.json()


async def test_broker_outage_is_503_so_the_agent_resends(
        ctx: ServiceContext, agent: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    node_key = await enroll(agent)

    async def unavailable(*_args: Any) -> int:
        raise BrokerUnavailable("redis: connection refused")

    monkeypatch.setattr(ctx.broker.bus, "publish", unavailable)
    r = await agent.post("/api/osquery/distributed/write", json={
        "node_key": node_key, "queries": {"fleet_distributed_query_7": [{"a": "1"}]},
        "statuses": {"fleet_distributed_query_7": 0}})
    assert r.status_code == 503
    assert "connection refused" in r.json()["error"]
    assert "Traceback" not in caplog.text


async def test_enrollment_storm_beyond_the_slots_gets_a_fast_503(
        ctx: ServiceContext, agent: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Enrollments past the limit wait for a slot, and give up with 503 (osquery backs off
    and retries) rather than queueing past the agent's own timeout."""
    ctx.cfg = ctx.cfg.with_overrides({"osquery.max_concurrent_enrollments": 1})
    monkeypatch.setattr(routes, "ENROLL_WAIT_SECONDS", 0.2)
    app = AgentFrontDoor(ctx, Starlette())
    release = asyncio.Event()
    real_enroll = routes.enrollment.enroll

    async def slow_enroll(*args: Any, **kwargs: Any) -> str:
        await release.wait()
        return await real_enroll(*args, **kwargs)

    monkeypatch.setattr(routes.enrollment, "enroll", slow_enroll)
    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 4242))
    async with httpx.AsyncClient(transport=transport, base_url="https://fleet.test") as client:
        first = asyncio.ensure_future(enroll(client, "host-1"))
        await asyncio.sleep(0.05)
        r = await client.post("/api/osquery/enroll", json={
            "enroll_secret": SECRET, "host_identifier": "host-2", "host_details": {}})
        assert r.status_code == 503 and "retry later" in r.json()["error"]
        release.set()
        assert await first
        assert await enroll(client, "host-2")  # the slot is free again
    assert await count(ctx, hosts) == 2


ENDPOINTS = ["/api/osquery/enroll", "/api/osquery/config", "/api/osquery/distributed/read",
             "/api/osquery/distributed/write", "/api/osquery/log",
             "/api/v1/osquery/distributed/read"]


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_bad_input_gets_4xx_and_writes_nothing(ctx: ServiceContext,
                                                     agent: httpx.AsyncClient,
                                                     path: str) -> None:
    node_key = await enroll(agent)
    writes_before = await count(ctx, hosts)
    bomb = gzip.compress(b"{" + b" " * (64 << 20) + b"}")
    cases: list[tuple[dict[str, Any], int]] = [
        ({"content": b""}, 400),
        ({"content": b"{not json"}, 400),
        ({"content": b"[1, 2, 3]"}, 400),
        ({"content": b"x" * (10 << 20)}, 413),
        ({"content": bomb, "headers": {"Content-Encoding": "gzip"}}, 413),
        ({"content": b"\x1f\x8bnot gzip", "headers": {"Content-Encoding": "gzip"}}, 400),
    ]
    if not path.endswith("enroll"):
        cases += [
            ({"json": {"node_key": "unknown"}}, 401),
            ({"json": {"node_key": 12345}}, 400),
            ({"json": {}}, 401),
        ]
    for kwargs, expected in cases:
        r = await agent.post(path, **kwargs)
        assert r.status_code == expected, (kwargs.get("json"), r.text)
        assert "error" in r.json()
        if expected == 401:
            assert r.json()["node_invalid"] is True
    assert await count(ctx, hosts) == writes_before
    # The process and the agent still work afterwards.
    r = await agent.post("/api/osquery/distributed/read", json={"node_key": node_key})
    assert r.status_code == 200


async def test_wrong_field_types(ctx: ServiceContext, agent: httpx.AsyncClient) -> None:
    node_key = await enroll(agent)
    for path, body in [
        ("/api/osquery/distributed/write", {"node_key": node_key, "queries": []}),
        ("/api/osquery/distributed/write", {"node_key": node_key, "queries": {},
                                            "statuses": []}),
        ("/api/osquery/log", {"node_key": node_key, "log_type": "result", "data": "x"}),
        ("/api/osquery/log", {"node_key": node_key, "log_type": "bogus", "data": []}),
        ("/api/osquery/enroll", {"enroll_secret": SECRET, "host_details": []}),
    ]:
        r = await agent.post(path, json=body)
        assert r.status_code == 400, (path, body, r.text)
        assert r.json()["error"]
