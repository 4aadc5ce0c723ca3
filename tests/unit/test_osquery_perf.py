"""SimulatedAgent against a fake in-process osquery TLS server (no network)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import gzip
import json
import ssl
import threading
from collections import defaultdict, deque
from collections.abc import AsyncIterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from fleet.tls import ensure_dev_certificate
from osquery_perf import Answer, SimulatedAgent, make_host, run_sql
from osquery_perf.cli import Behind, build_parser, make_ssl_context, parse_duration, parse_templates
from osquery_perf.cli import main as cli_main
from osquery_perf.scheduler import Ticker
from osquery_perf.stats import ENDPOINTS, FleetStats, Histogram
from osquery_perf.tables import Ctx
from osquery_perf.templates import TEMPLATES
from osquery_perf.transport import ConnectionPool, Endpoint, HTTPConnection

NOW = 1_717_171_717.0
BASE = "https://fleet.test"
NODE_KEY = "nk-1"


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    raw: bytes

    @property
    def body(self) -> dict[str, Any]:
        data = self.raw
        if self.headers.get("content-encoding") == "gzip":
            data = gzip.decompress(data)
        parsed = orjson.loads(data)
        assert isinstance(parsed, dict)
        return parsed


Reply = tuple[int, bytes]


def reply(body: Any = None, status: int = 200) -> Reply:
    return status, b"" if body is None else orjson.dumps(body)


class FakeServer:
    """Minimal osquery TLS server: records requests, replies from per-path scripts."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.scripts: dict[str, deque[Reply]] = defaultdict(deque)
        self.defaults: dict[str, Reply] = {
            "/api/osquery/enroll": reply({"node_key": NODE_KEY}),
            "/api/osquery/config": reply({"options": {"distributed_interval": 10}}),
            "/api/osquery/distributed/read": reply({"queries": {}}),
            "/api/osquery/distributed/write": reply({}),
            "/api/osquery/log": reply({}),
        }
        self.seen: dict[str, asyncio.Event] = defaultdict(asyncio.Event)

    def script(self, path: str, *replies: Reply) -> None:
        self.scripts["/api/osquery" + path].extend(replies)

    def to(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == "/api/osquery" + path]

    def paths(self) -> list[str]:
        return [r.path.removeprefix("/api/osquery") for r in self.requests]

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http" and scope["method"] == "POST"
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.requests.append(Request(path, headers, raw))
        script = self.scripts[path]
        status, body = script.popleft() if script else self.defaults[path]
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
        self.seen[path].set()


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
async def client(server: FakeServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=server)) as c:
        yield c


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def make_agent(client: httpx.AsyncClient, template: str = "ubuntu", index: int = 0,
               **kwargs: Any) -> SimulatedAgent:
    host = make_host(template, index, 42, now=NOW, osquery_version="5.23.1")
    kwargs.setdefault("clock", Clock())
    return SimulatedAgent(BASE, "s3cret", host, client, **kwargs)


async def enrolled(client: httpx.AsyncClient, template: str = "ubuntu",
                   **kwargs: Any) -> SimulatedAgent:
    agent = make_agent(client, template, **kwargs)
    assert await agent.enroll()
    return agent


def read_reply(queries: dict[str, str], **extra: Any) -> Reply:
    return reply({"queries": queries, **extra})


# --- templates -----------------------------------------------------------------------------------
def test_templates_are_deterministic_and_realistic() -> None:
    for name in TEMPLATES:
        a, b = make_host(name, 7, 1, now=NOW), make_host(name, 7, 1, now=NOW)
        assert a.host_details() == b.host_details()
        assert a.software_rows() == b.software_rows()
        assert 200 <= len(a.software_rows()) <= 1000
        assert a.uuid != make_host(name, 8, 1, now=NOW).uuid
        assert a.uuid != make_host(name, 7, 2, now=NOW).uuid
        assert a.osquery_version.startswith("5.")
        for row in a.software_rows() + list(a.users):
            assert all(isinstance(v, str) for v in row.values())


# --- enroll --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("template", "platform_type", "platform"),
                         [("ubuntu", "9", "ubuntu"), ("macos", "21", "darwin"),
                          ("windows", "2", "windows")])
async def test_enroll_body_shape(server: FakeServer, client: httpx.AsyncClient, template: str,
                                 platform_type: str, platform: str) -> None:
    agent = make_agent(client, template)
    assert await agent.enroll()
    assert agent.node_key == NODE_KEY and agent.enrolled
    (req,) = server.requests
    body = req.body
    assert set(body) == {"enroll_secret", "host_identifier", "platform_type", "host_details"}
    assert body["enroll_secret"] == "s3cret"
    assert body["platform_type"] == platform_type
    assert body["host_identifier"] == agent.host.host_identifier
    details = body["host_details"]
    assert set(details) == {"os_version", "osquery_info", "platform_info", "system_info"}
    for table in details.values():
        assert table and all(isinstance(v, str) for v in table.values())
    assert details["os_version"]["platform"] == platform
    assert details["osquery_info"]["config_valid"] == "0"
    assert details["system_info"]["uuid"] == agent.host.uuid
    assert "authorization" not in req.headers
    assert req.headers["user-agent"] == "osquery/5.23.1"


async def test_enroll_accepts_id_and_reports_failure(server: FakeServer,
                                                     client: httpx.AsyncClient) -> None:
    server.script("/enroll", reply({"node_invalid": True, "error": "bad secret"}),
                  reply({"id": "from-id"}))
    agent = make_agent(client)
    assert not await agent.enroll()
    assert agent.node_key is None and agent.stats.errors["enroll"] == 1
    assert await agent.enroll()
    assert agent.node_key == "from-id"


async def test_node_key_in_body_and_header(server: FakeServer, client: httpx.AsyncClient) -> None:
    agent = make_agent(client)
    assert await agent.fetch_config()  # enrolls first, like getNodeKey()
    assert server.paths() == ["/enroll", "/config"]
    req = server.to("/config")[0]
    assert req.body == {"node_key": NODE_KEY}
    assert req.headers["authorization"] == f"NodeKey {NODE_KEY}"
    assert req.headers["content-type"] == "application/json"


async def test_old_agents_send_node_key_only_in_body(server: FakeServer,
                                                     client: httpx.AsyncClient) -> None:
    host = make_host("ubuntu", 0, 42, now=NOW, osquery_version="5.22.1")
    agent = SimulatedAgent(BASE, "s3cret", host, client)
    assert await agent.fetch_config()
    req = server.to("/config")[0]
    assert req.body["node_key"] == NODE_KEY and "authorization" not in req.headers


async def test_node_invalid_clears_key_and_next_step_reenrolls(
        server: FakeServer, client: httpx.AsyncClient) -> None:
    agent = await enrolled(client)
    server.script("/distributed/read", reply({"node_invalid": True}, status=401))
    server.script("/enroll", reply({"node_key": "nk-2"}))
    result = await agent.distributed_cycle()
    assert not result.read_ok and agent.node_key is None
    assert await agent.fetch_config()
    assert server.paths() == ["/enroll", "/distributed/read", "/enroll", "/config"]
    assert server.to("/config")[0].body["node_key"] == "nk-2"


async def test_string_node_invalid_is_not_honoured(server: FakeServer,
                                                   client: httpx.AsyncClient) -> None:
    agent = await enrolled(client)
    server.script("/config", reply({"node_invalid": "true"}))
    assert await agent.fetch_config()
    assert agent.node_key == NODE_KEY


@pytest.mark.parametrize("bad", [reply({"error": "rate limited"}), (502, b"<html>bad</html>")])
async def test_error_key_and_non_json_fail_even_on_any_status(
        server: FakeServer, client: httpx.AsyncClient, bad: Reply) -> None:
    agent = await enrolled(client)
    server.script("/config", bad)
    assert not await agent.fetch_config()
    assert agent.stats.errors["config"] == 1 and agent.node_key == NODE_KEY


async def test_status_code_ignored_and_empty_body_is_empty_object(
        server: FakeServer, client: httpx.AsyncClient) -> None:
    agent = await enrolled(client)
    server.script("/config", reply({}, status=500), (200, b""))
    assert await agent.fetch_config()
    assert await agent.fetch_config()
    assert agent.config == {}


# --- config and schedule -----------------------------------------------------------------------
CONFIG = {
    "options": {"pack_delimiter": "/", "distributed_interval": 15, "logger_tls_period": 7},
    "decorators": {"load": ["SELECT uuid AS host_uuid FROM system_info;",
                            "SELECT hostname AS hostname FROM system_info;"]},
    "schedule": {"uptime": {"query": "SELECT * FROM uptime;", "interval": 60,
                            "snapshot": True}},
    "packs": {
        "Global": {"queries": {
            "users": {"query": "SELECT username, uid FROM users;", "interval": 60},
            "missing": {"query": "SELECT * FROM nope;", "interval": 60},
        }},
        "macos-only": {"platform": "darwin", "queries": {
            "apps": {"query": "SELECT name FROM apps;", "interval": 60}}},
        "win-discovery": {"discovery": ["SELECT 1 FROM os_version WHERE platform='windows';"],
                          "queries": {"progs": {"query": "SELECT 1", "interval": 60}}},
    },
}


async def test_config_options_and_schedule_logs(server: FakeServer,
                                                client: httpx.AsyncClient) -> None:
    server.defaults["/api/osquery/config"] = reply(CONFIG)
    agent = await enrolled(client)
    assert await agent.fetch_config()
    assert agent.distributed_interval == 15 and agent.logger_tls_period == 7
    assert agent.host.osquery_info["config_valid"] == "1"
    assert set(agent.schedule.queries) == {"uptime", "pack/Global/users", "pack/Global/missing"}

    assert agent.tick_schedule(NOW) == []  # nothing due yet
    ran = agent.tick_schedule(NOW + 130)
    assert sorted(ran) == ["pack/Global/missing", "pack/Global/users", "uptime"]
    lines = [orjson.loads(x) for x in agent.logs.results]
    snapshot = [x for x in lines if x["name"] == "uptime"]
    events = [x for x in lines if x["name"] == "pack/Global/users"]
    assert len(snapshot) == 1 and snapshot[0]["action"] == "snapshot"
    assert set(snapshot[0]["snapshot"][0]) == {"days", "hours", "minutes", "seconds",
                                               "total_seconds"}
    assert len(events) == len(agent.host.users) and {x["action"] for x in events} == {"added"}
    for line in lines:
        assert line["hostIdentifier"] == agent.host.host_identifier
        assert line["unixTime"] == int(NOW + 130) and line["epoch"] == 0
        assert line["counter"] == 0 and line["numerics"] is False
        assert line["calendarTime"].endswith(" UTC")
        assert line["decorations"] == {"host_uuid": agent.host.uuid,
                                       "hostname": agent.host.system_info["hostname"]}
    assert all(set(e["columns"]) == {"username", "uid"} for e in events)
    statuses = [orjson.loads(x) for x in agent.logs.statuses]
    assert {"hostIdentifier", "calendarTime", "unixTime", "severity", "filename", "line",
            "message", "version"} <= set(statuses[0])
    assert any(s["severity"] == 2 and "no such table: nope" in s["message"] for s in statuses)

    # unchanged differential results log nothing on the next run
    before = len(agent.logs.results)
    agent.tick_schedule(NOW + 400)
    names = [orjson.loads(x)["name"] for x in agent.logs.results[before:]]
    assert names == ["uptime"]


# --- distributed ---------------------------------------------------------------------------------
DETAIL_COLUMNS = {
    "os_version": {"name", "version", "major", "minor", "patch", "build", "platform",
                   "platform_like", "codename", "arch"},
    "osquery_info": {"pid", "uuid", "instance_id", "version", "config_hash", "config_valid",
                     "extensions", "build_platform", "build_distro", "start_time", "watcher",
                     "platform_mask"},
    "system_info": {"hostname", "uuid", "cpu_type", "cpu_subtype", "cpu_brand",
                    "cpu_physical_cores", "cpu_logical_cores", "cpu_sockets", "cpu_microcode",
                    "physical_memory", "hardware_vendor", "hardware_model", "hardware_version",
                    "hardware_serial", "board_vendor", "board_model", "board_version",
                    "board_serial", "computer_name", "local_hostname"},
    "uptime": {"days", "hours", "minutes", "seconds", "total_seconds"},
    "osquery_flags": {"name", "value"},
    "network_interface_unix": {"address", "mac"},
    "disk_space_unix": {"percent_disk_space_available", "gigs_disk_space_available",
                        "gigs_total_disk_space"},
    "users": {"uid", "username", "type", "groupname", "shell"},
    "software_linux": {"name", "version", "source", "vendor", "arch", "installed_path"},
}


async def test_detail_queries_answered_with_expected_columns(
        server: FakeServer, client: httpx.AsyncClient) -> None:
    agent = await enrolled(client)
    queries = {f"fleet_detail_query_{n}": "SELECT whatever" for n in DETAIL_COLUMNS}
    queries["fleet_detail_query_kubequery_info"] = "SELECT * FROM kubernetes_info"
    server.script("/distributed/read", read_reply(queries))
    result = await agent.distributed_cycle()
    assert result.read_ok and result.write_ok
    assert result.answered == tuple(sorted(queries))
    write = server.to("/distributed/write")[0].body
    assert write["node_key"] == NODE_KEY
    for field in ("queries", "statuses", "messages", "stats"):
        assert set(write[field]) == set(queries)
    for name, columns in DETAIL_COLUMNS.items():
        rows = write["queries"][f"fleet_detail_query_{name}"]
        assert rows, name
        for row in rows:
            assert columns <= set(row), name
            assert all(isinstance(v, str) for v in row.values()), name
    assert write["queries"]["fleet_detail_query_kubequery_info"] == []
    assert set(write["statuses"].values()) == {0}
    assert set(write["stats"]["fleet_detail_query_uptime"]) == {
        "wall_time_ms", "user_time", "system_time", "memory"}
    flags = {r["name"]: r["value"] for r in write["queries"]["fleet_detail_query_osquery_flags"]}
    assert set(flags) == {"distributed_interval", "config_tls_refresh", "config_refresh",
                          "logger_tls_period"}
    software = write["queries"]["fleet_detail_query_software_linux"]
    assert 200 <= len(software) <= 1000


async def test_labels_and_policies(server: FakeServer, client: httpx.AsyncClient) -> None:
    agent = await enrolled(client)
    policies = {f"fleet_policy_query_{i}": "SELECT 1 FROM os_version WHERE x" for i in range(60)}
    queries = {"fleet_label_query_3": "SELECT 1", "fleet_label_query_4": "SELECT 1 FROM apps",
               "fleet_label_query_5": "SELECT 1 FROM os_version WHERE platform = 'darwin' "
               "OR platform = 'ubuntu'", "fleet_label_query_6": "select 0;",
               "fleet_label_query_7": "SELECT 1 FROM os_version WHERE platform = 'darwin'",
               "fleet_no_policies_wildcard":
               "SELECT 1", "fleet_policy_query_900": "SELECT 0",
               "fleet_policy_query_901": "select 1;", **policies}
    server.script("/distributed/read", read_reply(queries), read_reply(queries))
    await agent.distributed_cycle()
    await agent.distributed_cycle()
    first, second = (r.body["queries"] for r in server.to("/distributed/write"))
    assert first == second  # deterministic per host and policy
    # Labels are answered from the (ubuntu) host's tables: `apps` is no table there.
    assert first["fleet_label_query_3"] == first["fleet_label_query_5"] == [{"1": "1"}]
    assert first["fleet_label_query_6"] == first["fleet_label_query_7"] == []
    statuses = server.to("/distributed/write")[0].body["statuses"]
    assert statuses["fleet_label_query_4"] != 0 and statuses["fleet_label_query_3"] == 0
    assert first["fleet_no_policies_wildcard"] == [{"1": "1"}]
    assert first["fleet_policy_query_900"] == [] and first["fleet_policy_query_901"]
    passing = sum(bool(first[n]) for n in policies)
    assert 40 <= passing < 60


async def test_discovery_honoured(server: FakeServer, client: httpx.AsyncClient) -> None:
    agent = await enrolled(client)  # ubuntu
    queries = {"a": "SELECT 1", "win": "SELECT name FROM programs", "lin": "SELECT 1",
               "orbit": "SELECT * FROM orbit_info", "opaque": "SELECT 1", "plain": "SELECT 1"}
    discovery = {
        "a": "SELECT 1",
        "win": "SELECT 1 FROM os_version WHERE platform='windows';",
        "lin": "SELECT 1 FROM os_version WHERE platform = 'ubuntu'",
        "orbit": "SELECT 1 FROM osquery_registry WHERE active = true AND registry = 'table' "
                 "AND name = 'orbit_info'",
        "opaque": "SELECT 1 FROM some_extension_table WHERE weird(x) OR y",
    }
    server.script("/distributed/read", read_reply(queries, discovery=discovery))
    result = await agent.distributed_cycle()
    assert result.answered == ("a", "lin", "opaque", "plain")
    write = server.to("/distributed/write")[0].body
    for field in ("queries", "statuses", "messages", "stats"):
        assert "win" not in write[field] and "orbit" not in write[field]


async def test_invalid_discovery_rejects_whole_read(server: FakeServer,
                                                    client: httpx.AsyncClient) -> None:
    agent = await enrolled(client)
    server.script("/distributed/read",
                  read_reply({"a": "SELECT 1"}, discovery={"a": "SELECT 1", "b": 5}))
    result = await agent.distributed_cycle()
    assert result.read_ok and result.answered == () and result.write_ok is None
    assert not server.to("/distributed/write")


async def test_live_queries(server: FakeServer, client: httpx.AsyncClient) -> None:
    agent = await enrolled(client)
    queries = {
        "fleet_distributed_query_41": "SELECT version, build_platform FROM osquery_info;",
        "fleet_distributed_query_42": "SELECT * FROM no_such_table;",
        "fleet_distributed_query_43": "SELECT 1",
        "fleet_distributed_query_44": "SELECT * FROM processes",
        "fleet_distributed_query_45": "SELECT name, version FROM deb_packages LIMIT 5",
        "fleet_distributed_query_46": "SELECT * FROM apps",  # not a Linux table
        "fleet_distributed_query_47": "SELECT * FROM listening_ports",
        "fleet_distributed_query_48": "SELECT address FROM interface_addresses",
        "fleet_distributed_query_49": "SELECT unix_time FROM time",
    }
    server.script("/distributed/read", read_reply(queries))
    await agent.distributed_cycle()
    write = server.to("/distributed/write")[0].body
    rows, statuses, messages = write["queries"], write["statuses"], write["messages"]
    assert rows["fleet_distributed_query_41"] == [{"version": "5.23.1",
                                                   "build_platform": "linux"}]
    assert rows["fleet_distributed_query_42"] == []
    assert statuses["fleet_distributed_query_42"] == 1
    assert messages["fleet_distributed_query_42"] == "no such table: no_such_table"
    assert rows["fleet_distributed_query_43"] == [{"1": "1"}]
    assert len(rows["fleet_distributed_query_44"]) > 5
    assert {"pid", "name", "path"} <= set(rows["fleet_distributed_query_44"][0])
    assert len(rows["fleet_distributed_query_45"]) == 5
    assert set(rows["fleet_distributed_query_45"][0]) == {"name", "version"}
    assert statuses["fleet_distributed_query_46"] == 1
    assert rows["fleet_distributed_query_47"] and rows["fleet_distributed_query_48"]
    assert agent.host.primary_ip in {r["address"] for r in rows["fleet_distributed_query_48"]}
    assert rows["fleet_distributed_query_49"] == [{"unix_time": str(int(NOW))}]
    assert messages["fleet_distributed_query_41"] == "" and statuses[
        "fleet_distributed_query_41"] == 0
    errors = [orjson.loads(x) for x in agent.logs.statuses]
    assert any("no such table: no_such_table" in e["message"] and e["severity"] == 2
               for e in errors)


async def test_failed_write_is_merged_into_next_write(server: FakeServer,
                                                      client: httpx.AsyncClient) -> None:
    agent = await enrolled(client)
    server.script("/distributed/read", read_reply({"q1": "SELECT 1"}),
                  read_reply({"q2": "SELECT 1"}))
    server.script("/distributed/write", reply({"error": "db down"}))
    first = await agent.distributed_cycle()
    assert first.write_ok is False and agent.has_unsent_results
    second = await agent.distributed_cycle()
    assert second.write_ok is True and second.answered == ("q2",)
    writes = [r.body for r in server.to("/distributed/write")]
    assert set(writes[0]["queries"]) == {"q1"}
    for field in ("queries", "statuses", "messages", "stats"):
        assert set(writes[1][field]) == {"q1", "q2"}
    third = await agent.distributed_cycle()  # nothing pending, nothing written
    assert third.write_ok is None and len(server.to("/distributed/write")) == 2


async def test_read_failure_still_writes_unsent_results(server: FakeServer,
                                                        client: httpx.AsyncClient) -> None:
    agent = await enrolled(client)
    server.script("/distributed/read", read_reply({"q1": "SELECT 1"}), (503, b"unavailable"))
    server.script("/distributed/write", (503, b"unavailable"))
    await agent.distributed_cycle()
    result = await agent.distributed_cycle()
    assert not result.read_ok and result.write_ok
    assert set(server.to("/distributed/write")[1].body["queries"]) == {"q1"}


@pytest.mark.parametrize(("accelerate", "expected"),
                         [(60, True), ("60", False), (True, False), (0, False)])
async def test_accelerate_must_be_an_integer(server: FakeServer, client: httpx.AsyncClient,
                                             accelerate: Any, expected: bool) -> None:
    clock = Clock()
    agent = await enrolled(client, clock=clock)
    server.script("/distributed/read", read_reply({"x": "SELECT 1"}, accelerate=accelerate))
    result = await agent.distributed_cycle()
    assert result.answered == ("x",)
    assert result.accelerated is expected
    clock.now += 61
    assert not agent.accelerated


# --- logs ----------------------------------------------------------------------------------------
def _fill(agent: SimulatedAgent, results: int, statuses: int) -> None:
    for i in range(results):
        agent.logs.add_result({"name": "pack/Global/q", "columns": {"i": str(i)},
                               "action": "added"})
    for i in range(statuses):
        agent.logs.add_status({"message": f"status {i}", "severity": 0})


async def test_log_batches_at_most_1024_results_first(server: FakeServer,
                                                      client: httpx.AsyncClient) -> None:
    agent = await enrolled(client)
    _fill(agent, 2500, 30)
    while len(agent.logs):
        await agent.flush_logs()
    logs = server.to("/log")
    assert [r.body["log_type"] for r in logs] == ["result", "result", "result", "status"]
    assert [len(r.body["data"]) for r in logs] == [1024, 1024, 452, 30]
    data = [line["columns"]["i"] for r in logs[:3] for line in r.body["data"]]
    assert data == [str(i) for i in range(2500)]
    for r in logs:
        assert r.body["node_key"] == NODE_KEY
        assert r.headers["authorization"] == f"NodeKey {NODE_KEY}"
        assert all(isinstance(line, dict) for line in r.body["data"])


async def test_statuses_fill_what_results_leave(server: FakeServer,
                                                client: httpx.AsyncClient) -> None:
    agent = await enrolled(client)
    _fill(agent, 1000, 100)
    result = await agent.flush_logs()
    assert (result.results_sent, result.statuses_sent) == (1000, 24)
    assert [len(r.body["data"]) for r in server.to("/log")] == [1000, 24]


async def test_gzip_logs(server: FakeServer, client: httpx.AsyncClient) -> None:
    agent = await enrolled(client, gzip_logs=True)
    _fill(agent, 3, 2)
    result = await agent.flush_logs()
    assert (result.results_sent, result.statuses_sent, result.failures) == (3, 2, 0)
    for req in server.to("/log"):
        assert req.headers["content-encoding"] == "gzip"
        assert req.raw[:2] == b"\x1f\x8b"
        assert req.body["node_key"] == NODE_KEY
    assert [len(r.body["data"]) for r in server.to("/log")] == [3, 2]


@pytest.mark.parametrize("failure", [
    reply({"error": "something broke"}),
    (413, b"Request Entity Too Large"),
    (200, b"not json"),
    reply({"node_invalid": True}, status=401),
])
async def test_logs_kept_after_failure_and_resent(server: FakeServer, client: httpx.AsyncClient,
                                                  failure: Reply) -> None:
    agent = await enrolled(client)
    _fill(agent, 5, 0)
    server.script("/log", failure)
    result = await agent.flush_logs()
    assert result.failures == 1 and len(agent.logs.results) == 5
    result = await agent.flush_logs()  # one failure: retry on the next period
    assert result.results_sent == 5 and not agent.logs.results
    first, second = server.to("/log")
    assert first.body["data"] == second.body["data"]


async def test_log_backoff_grows_quadratically(server: FakeServer,
                                               client: httpx.AsyncClient) -> None:
    agent = await enrolled(client)
    _fill(agent, 1, 0)
    server.script("/log", reply({"error": "x"}), reply({"error": "x"}))
    await agent.flush_logs()  # 1st failure: retried at the next check
    await agent.flush_logs()  # 2nd failure: the next 2² - 1 = 3 checks skip results
    _fill(agent, 0, 1)
    for _ in range(3):
        result = await agent.flush_logs()
        assert result.results_sent == 0
    logs = server.to("/log")
    assert [r.body["log_type"] for r in logs] == ["result", "result", "status"]  # independent
    result = await agent.flush_logs()
    assert result.results_sent == 1 and len(server.to("/log")) == 4


# --- run loop ------------------------------------------------------------------------------------
async def test_run_follows_osquery_startup_order(server: FakeServer,
                                                 client: httpx.AsyncClient) -> None:
    server.script("/distributed/read", read_reply({"fleet_detail_query_uptime": "x"}))
    agent = make_agent(client, clock=lambda: NOW)
    agent.logs.add_status({"message": "startup"})
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop, config_interval=3600, query_interval=3600,
                                         logger_tls_period=3600))
    await asyncio.wait_for(server.seen["/api/osquery/distributed/write"].wait(), 5)
    await asyncio.wait_for(server.seen["/api/osquery/log"].wait(), 5)
    stop.set()
    await asyncio.wait_for(task, 5)
    paths = server.paths()
    assert paths[:2] == ["/enroll", "/config"]
    assert sorted(paths[2:]) == ["/distributed/read", "/distributed/write", "/log"]
    assert agent.stats.requests["enroll"] == 1 and agent.enrolled
    assert agent.stats.latencies and not agent.stats.errors


# --- CLI -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "seconds"), [
    ("10s", 10), ("1m", 60), ("500ms", 0.5), ("1h30m", 5400), ("2.5", 2.5), ("0", 0)])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "ten", "10x", "-1", "5s garbage"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration(text)


def test_parse_templates() -> None:
    assert parse_templates("ubuntu,macos", 5) == [
        "ubuntu_22.04", "macos_14.1.2", "ubuntu_22.04", "macos_14.1.2", "ubuntu_22.04"]
    assert len(parse_templates("windows", None)) == 10
    plan = parse_templates("ubuntu_24.04:3,macos:1", None)
    assert sorted(plan) == ["macos_14.1.2", "ubuntu_24.04", "ubuntu_24.04", "ubuntu_24.04"]
    assert plan[:2] == ["ubuntu_24.04", "macos_14.1.2"]
    assert parse_templates("ubuntu:2,ubuntu_22.04:1", 3) == ["ubuntu_22.04"] * 3
    for bad, count in (("ubuntu:2,macos", None), ("nope", None), ("ubuntu:x", None),
                       ("ubuntu:2", 5), (" , ", None)):
        with pytest.raises(ValueError):
            parse_templates(bad, count)


def test_cli_arguments() -> None:
    args = build_parser().parse_args([
        "--server_url", "https://fleet:8080", "-enroll_secret", "abc", "--host_count", "3",
        "--start_period", "1m", "--query_interval", "500ms", "--config_interval", "2m",
        "--logger_tls_period", "5", "--insecure", "--gzip_logs", "--connections", "8",
        "--node_key_file", "/tmp/keys", "--only_already_enrolled", "--seed", "7",
    ])
    assert args.server_url == "https://fleet:8080" and args.enroll_secret == "abc"
    assert (args.start_period, args.query_interval, args.config_interval,
            args.logger_tls_period) == (60, 0.5, 120, 5)
    assert args.insecure and args.gzip_logs and args.connections == 8 and args.seed == 7
    assert args.only_already_enrolled and str(args.node_key_file) == "/tmp/keys"
    defaults = build_parser().parse_args([])
    assert (defaults.host_count, defaults.start_period, defaults.query_interval,
            defaults.config_interval, defaults.logger_tls_period, defaults.connections) == (
        None, 10, 10, 60, 10, 0)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--insecure", "--tls_server_certs", "ca.pem"])


def test_histogram_percentiles() -> None:
    h = Histogram()
    for ms in range(1, 1001):
        h.add(ms / 1000)
    assert h.percentile(50) == pytest.approx(0.5, rel=0.03)
    assert h.percentile(99) == pytest.approx(0.99, rel=0.03)
    assert h.max == 1.0


# --- fast transport (raw TLS server) -------------------------------------------------------------
@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    cert, key, _ = ensure_dev_certificate(tmp_path_factory.mktemp("tls"))
    return cert, key


def http_reply(body: bytes, *extra: str, status: str = "200 OK",
               version: str = "HTTP/1.1") -> bytes:
    head = f"{version} {status}\r\ncontent-type: application/json\r\n"
    if not any(h.lower().startswith(("transfer-encoding", "content-length")) for h in extra):
        head += f"content-length: {len(body)}\r\n"
    return (head + "".join(h + "\r\n" for h in extra) + "\r\n").encode() + body


CLOSE, HANG = "close", "hang"  # script actions: drop the connection / never answer


@dataclass
class RawRequest:
    connection: int
    path: str
    headers: dict[str, str]
    body: bytes


class RawServer:
    """HTTP/1.1 over TLS, one request at a time per connection; replies come from a script
    of raw bytes or actions, else a default by path."""

    def __init__(self) -> None:
        self.url = ""
        self.requests: list[RawRequest] = []
        self.script: deque[Any] = deque()
        self.connections = 0
        self.resumed = 0
        self.transports: list[asyncio.BaseTransport] = []

    def default(self, path: str) -> bytes:
        body = {"/api/osquery/enroll": {"node_key": NODE_KEY},
                "/api/osquery/distributed/read": {"queries": {}}}.get(path, {})
        return http_reply(orjson.dumps(body))


class _RawProtocol(asyncio.Protocol):
    def __init__(self, server: RawServer) -> None:
        self.server = server
        self.buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.server.connections += 1
        self.number = self.server.connections
        self.server.transports.append(transport)
        self.server.resumed += bool(transport.get_extra_info("ssl_object").session_reused)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:
            lines = self.buf[:end].decode().split("\r\n")
            headers = {k.strip().lower(): v.strip()
                       for k, _, v in (line.partition(":") for line in lines[1:])}
            length = int(headers.get("content-length", "0"))
            if len(self.buf) < end + 4 + length:
                return
            body, self.buf = self.buf[end + 4: end + 4 + length], self.buf[end + 4 + length:]
            path = lines[0].split(" ")[1]
            self.server.requests.append(RawRequest(self.number, path, headers, body))
            action = self.server.script.popleft() if self.server.script else None
            if action == CLOSE:
                self.transport.close()
                return
            if action == HANG:
                continue
            if isinstance(action, tuple):  # (reply, CLOSE): answer, then close
                self.transport.write(action[0])  # type: ignore[attr-defined]
                self.transport.close()
                return
            self.transport.write(action or self.server.default(path))  # type: ignore


@pytest.fixture
async def raw_server(tls_files: tuple[Path, Path]) -> AsyncIterator[RawServer]:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*tls_files)
    raw = RawServer()
    server = await asyncio.get_running_loop().create_server(
        lambda: _RawProtocol(raw), "127.0.0.1", 0, ssl=ctx)
    raw.url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    yield raw
    server.close()
    for transport in raw.transports:
        transport.close()
    await server.wait_closed()


def fast_endpoint(raw: RawServer, tls_files: tuple[Path, Path],
                  timeout: float = 16.0) -> Endpoint:
    return Endpoint(raw.url, make_ssl_context(str(tls_files[0]), False), timeout=timeout)


def fast_agent(raw: RawServer, transport: Any, index: int = 0, **kwargs: Any) -> SimulatedAgent:
    host = make_host("ubuntu", index, 42, now=NOW, osquery_version="5.23.1")
    return SimulatedAgent(raw.url, "s3cret", host, transport, clock=Clock(), **kwargs)


async def test_fast_transport_one_keepalive_tls_connection(
        raw_server: RawServer, tls_files: tuple[Path, Path]) -> None:
    endpoint = fast_endpoint(raw_server, tls_files)
    agent = fast_agent(raw_server, HTTPConnection(endpoint))
    assert await agent.fetch_config()  # enrolls first
    assert (await agent.distributed_cycle()).read_ok
    assert (await agent.distributed_cycle()).read_ok
    assert [r.path for r in raw_server.requests] == [
        "/api/osquery/enroll", "/api/osquery/config", "/api/osquery/distributed/read",
        "/api/osquery/distributed/read"]
    assert raw_server.connections == 1 and endpoint.connects == 1
    read = raw_server.requests[-1]
    assert read.headers["host"] == raw_server.url.removeprefix("https://")
    assert read.headers["authorization"] == f"NodeKey {NODE_KEY}"
    assert read.headers["user-agent"] == "osquery/5.23.1"
    assert read.headers["content-type"] == "application/json"
    assert orjson.loads(read.body) == {"node_key": NODE_KEY}
    assert not agent.stats.errors and len(agent.stats.latencies) == 4
    await endpoint.close()


CONFIG_BODY = orjson.dumps({"options": {"distributed_interval": 12}})


def _chunked(body: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 7]), body[i:i + 7])
                    for i in range(0, len(body), 7)) + b"0\r\n\r\n"


@pytest.mark.parametrize(("reply_bytes", "reconnects"), [
    (http_reply(_chunked(CONFIG_BODY), "transfer-encoding: chunked"), False),
    (b"HTTP/1.1 100 Continue\r\n\r\n" + http_reply(CONFIG_BODY), False),
    (http_reply(CONFIG_BODY, "Connection: close"), True),
    (http_reply(CONFIG_BODY, version="HTTP/1.0"), True),
    ((b"HTTP/1.1 200 OK\r\n\r\n" + CONFIG_BODY, CLOSE), True),  # close-delimited body
])
async def test_fast_transport_response_framings(
        raw_server: RawServer, tls_files: tuple[Path, Path], reply_bytes: Any,
        reconnects: bool) -> None:
    endpoint = fast_endpoint(raw_server, tls_files)
    agent = fast_agent(raw_server, HTTPConnection(endpoint), node_key=NODE_KEY)
    raw_server.script.append(reply_bytes)
    assert await agent.fetch_config()
    assert agent.config == {"options": {"distributed_interval": 12}}
    assert await agent.distributed_read()
    assert raw_server.connections == (2 if reconnects else 1)
    assert not agent.stats.errors and endpoint.resends == 0
    await endpoint.close()


async def test_fast_transport_resends_once_after_a_dropped_connection(
        raw_server: RawServer, tls_files: tuple[Path, Path]) -> None:
    endpoint = fast_endpoint(raw_server, tls_files)
    agent = fast_agent(raw_server, HTTPConnection(endpoint), node_key=NODE_KEY)
    assert await agent.distributed_read()
    raw_server.script.append(CLOSE)  # stale keep-alive: dropped with the request unanswered
    assert await agent.distributed_read()
    assert len(raw_server.requests) == 3 and raw_server.connections == 2
    assert endpoint.resends == 1 and not agent.stats.errors
    assert raw_server.resumed == 1 and endpoint.resumed == 1  # --tls_session_reuse
    raw_server.script.extend([CLOSE, CLOSE])  # the re-send fails too: one failed request
    assert not await agent.distributed_read()
    assert agent.stats.errors["distributed_read"] == 1
    assert "connection closed" in agent.stats.last_error
    assert await agent.distributed_read()
    await endpoint.close()


async def test_fast_transport_deadline_is_not_retried(
        raw_server: RawServer, tls_files: tuple[Path, Path]) -> None:
    endpoint = fast_endpoint(raw_server, tls_files, timeout=0.3)
    agent = fast_agent(raw_server, HTTPConnection(endpoint), node_key=NODE_KEY)
    raw_server.script.append(HANG)
    assert not await agent.distributed_read()
    assert len(raw_server.requests) == 1 and endpoint.resends == 0
    assert "no response within 0.3s" in agent.stats.last_error
    assert await agent.distributed_read()  # on a new connection
    assert raw_server.connections == 2
    await endpoint.close()


async def test_fast_transport_follows_same_origin_redirects(
        raw_server: RawServer, tls_files: tuple[Path, Path]) -> None:
    endpoint = fast_endpoint(raw_server, tls_files)
    agent = fast_agent(raw_server, HTTPConnection(endpoint), node_key=NODE_KEY)
    raw_server.script.extend([
        http_reply(b"", "Location: /moved/config", status="307 Temporary Redirect"),
        http_reply(CONFIG_BODY)])
    assert await agent.fetch_config()
    first, second = raw_server.requests
    assert (first.path, second.path) == ("/api/osquery/config", "/moved/config")
    assert first.body == second.body  # same method and body
    raw_server.script.append(http_reply(b"", "Location: https://elsewhere.test/x",
                                        status="302 Found"))
    assert not await agent.fetch_config()
    assert "another server" in agent.stats.last_error
    await endpoint.close()


async def test_pool_shares_a_few_connections(raw_server: RawServer,
                                             tls_files: tuple[Path, Path]) -> None:
    endpoint = fast_endpoint(raw_server, tls_files)
    pool = ConnectionPool(endpoint, 2)
    agents = [fast_agent(raw_server, pool, index=i) for i in range(6)]
    assert all(await asyncio.gather(*(a.enroll() for a in agents)))
    assert all(await asyncio.gather(*(a.distributed_read() for a in agents)))
    assert raw_server.connections == 2 and len(raw_server.requests) == 12
    await endpoint.close()


async def test_one_connection_serializes_a_hosts_concurrent_requests(
        raw_server: RawServer, tls_files: tuple[Path, Path]) -> None:
    endpoint = fast_endpoint(raw_server, tls_files)
    agent = fast_agent(raw_server, HTTPConnection(endpoint), node_key=NODE_KEY)
    results = await asyncio.gather(agent.fetch_config(), agent.distributed_read(),
                                   agent.distributed_read())
    assert all(results) and raw_server.connections == 1
    await endpoint.close()


async def test_agent_on_fast_transport_counts_into_fleet_stats(
        raw_server: RawServer, tls_files: tuple[Path, Path]) -> None:
    endpoint = fast_endpoint(raw_server, tls_files)
    stats = FleetStats()
    agent = fast_agent(raw_server, HTTPConnection(endpoint), shared=stats)
    assert await agent.enroll() and await agent.distributed_read()
    raw_server.script.append(http_reply(orjson.dumps({"error": "nope"})))
    assert not await agent.fetch_config()
    assert stats.requests == {"enroll": 1, "distributed_read": 1, "config": 1}
    assert stats.errors == {"config": 1}
    assert stats.latency["enroll"].count == 1 and not agent.stats.latencies
    await endpoint.close()


# --- scheduler -----------------------------------------------------------------------------------
async def test_ticker_wakes_sleepers_in_order_never_early() -> None:
    loop = asyncio.get_running_loop()
    ticker = Ticker(loop, resolution=0.01)
    woke: list[tuple[float, float]] = []

    async def sleeper(delay: float) -> None:
        start = loop.time()
        await ticker.sleep(delay)
        woke.append((delay, loop.time() - start))

    await asyncio.gather(*(sleeper(d) for d in (0.15, 0.05, 0.0, 0.1)))
    assert [d for d, _ in woke] == [0.0, 0.05, 0.1, 0.15]
    assert all(elapsed >= delay - 0.002 for delay, elapsed in woke)
    cancelled = asyncio.ensure_future(ticker.sleep(10))
    cancelled.cancel()
    await asyncio.sleep(0.03)
    assert len(ticker) == 1  # dropped when its slot comes up
    ticker.close()
    assert len(ticker) == 0


# --- CLI run ------------------------------------------------------------------------------------
def test_behind_counts_late_and_overdue_hosts() -> None:
    agents = [make_agent(httpx.AsyncClient()) for _ in range(3)]
    agents[0].distributed_due = 100.0  # on time
    agents[1].distributed_due, agents[1].late_max = 100.0, 2.5  # started a round 2.5 s late
    agents[1].late_sum, agents[1].late_rounds = 2.5, 1
    agents[2].distributed_due = 97.0  # still waiting 3 s past due
    behind = Behind()
    behind.scan(agents, now=100.0)
    assert behind.hosts == 2 and behind.late_max == 3.0 and behind.late_mean == 2.5
    behind.scan(agents, now=100.5)
    assert behind.hosts == 1 and behind.run_max_hosts == 2 and agents[1].late_max == 0


def run_cli(raw: RawServer, tls_files: tuple[Path, Path], *argv: str) -> int:
    """`osquery-perf` in-process against `raw`, served from a loop in another thread."""
    loop = asyncio.new_event_loop()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*tls_files)
    server = loop.run_until_complete(loop.create_server(
        lambda: _RawProtocol(raw), "127.0.0.1", 0, ssl=ctx))
    port = server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    thresholds = gc.get_threshold()
    try:
        return cli_main(["--server_url", f"https://127.0.0.1:{port}",
                         "--tls_server_certs", str(tls_files[0]), *argv])
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        server.close()
        loop.close()


def test_cli_duration_and_json_summary(tls_files: tuple[Path, Path], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    summary_path = tmp_path / "summary.json"
    rc = run_cli(RawServer(), tls_files, "--enroll_secret", "s3cret",
                 "--host_count", "4", "--start_period", "0.2", "--query_interval", "0.3",
                 "--duration", "1.6", "--status_interval", "0.5", "--seed", "1",
                 "--json_summary", str(summary_path))
    assert rc == 0
    summary = json.loads(summary_path.read_text())
    assert summary["hosts"] == {"started": 4, "enrolled": 4}
    assert summary["requests"]["enroll"] == 4 and summary["requests"]["config"] == 4
    assert summary["requests"]["distributed_read"] >= 8
    assert summary["errors"] == {} and summary["errors_total"] == 0
    latency = summary["latency_ms"]
    assert set(latency) == {*ENDPOINTS, "all"}
    assert 0 < latency["all"]["count"] <= summary["requests_total"]  # some were in flight
    assert 0 < latency["distributed_read"]["p50"] <= latency["distributed_read"]["p99"]
    assert set(summary["behind"]) == {"threshold_s", "max_hosts", "last_hosts",
                                      "max_lateness_s", "mean_lateness_s"}
    assert summary["client_cpu_s"] > 0 and 1.5 <= summary["duration_s"] < 10
    assert summary["connections"]["opened"] == 4
    assert summary["settings"]["host_count"] == 4 and summary["settings"]["seed"] == 1
    assert summary["intervals"] and {"t_s", "requests_per_s", "behind_hosts",
                                     "cpu_pct"} <= set(summary["intervals"][-1])
    err = capsys.readouterr().err
    status = [line for line in err.splitlines() if line.startswith("[")]
    assert status and "behind" in status[-1] and "req/s" in status[-1]
    assert "4/4 hosts enrolled" in err


async def test_cancelled_request_does_not_leave_its_response_for_the_next(
        raw_server: RawServer, tls_files: tuple[Path, Path]) -> None:
    endpoint = fast_endpoint(raw_server, tls_files)
    agent = fast_agent(raw_server, HTTPConnection(endpoint), node_key=NODE_KEY)
    raw_server.script.append(HANG)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(agent.fetch_config(), 0.2)
    assert await agent.distributed_read()  # a fresh connection, its own answer
    assert raw_server.connections == 2 and not agent.stats.errors
    await endpoint.close()


async def test_requests_after_a_failed_enroll_carry_an_empty_node_key(
        server: FakeServer, client: httpx.AsyncClient) -> None:
    server.script("/enroll", reply({"error": "bad secret"}))
    agent = make_agent(client, gzip_logs=True)
    _fill(agent, 1, 0)
    assert (await agent.flush_logs()).results_sent == 1  # enroll failed, the log still went
    log = server.to("/log")[0]
    assert log.headers["content-encoding"] == "gzip" and "authorization" not in log.headers
    assert log.body["node_key"] == ""


# --- what a newcomer hits -----------------------------------------------------------------------
@pytest.mark.parametrize(("argv", "error"), [
    ([], "--enroll_secret is required (print it with: fleetctl get enroll_secret)"),
    (["--enroll_secret", "s", "--host_count", "0"], "--host_count must be at least 1 (got 0)"),
    (["--enroll_secret", "s", "--host_count", "-3"], "--host_count must be at least 1 (got -3)"),
    (["--enroll_secret", "s", "--os_templates", "ubuntu:0,macos:0"],
     "--os_templates: the counts add up to no host"),
    (["--enroll_secret", "s", "--logger_tls_max_lines", "0"],
     "--logger_tls_max_lines must be at least 1 (got 0)"),
])
def test_cli_refuses_missing_secret_and_counts_below_one(
        argv: list[str], error: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli_main(["--server_url", "https://fleet.test", *argv])
    assert exc.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"osquery-perf: error: {error}"


async def test_refused_enroll_reports_the_server_error(server: FakeServer,
                                                       client: httpx.AsyncClient) -> None:
    server.script("/enroll", reply({"error": "enroll failed: invalid secret",
                                    "node_invalid": True}, status=401), reply({}))
    agent = make_agent(client)
    assert not await agent.enroll()
    assert agent.stats.last_error == "enroll: error: enroll failed: invalid secret"
    assert not await agent.enroll()  # no error text: say what was missing
    assert agent.stats.last_error == "enroll: no node key returned"


class RefusingServer(RawServer):
    """Refuses every enrollment the way Fleet does for a wrong secret."""

    def default(self, path: str) -> bytes:
        if path == "/api/osquery/enroll":
            return http_reply(orjson.dumps({"error": "enroll failed: invalid secret",
                                            "node_invalid": True}), status="401 Unauthorized")
        return super().default(path)


def test_cli_exits_1_when_no_host_enrolled(tls_files: tuple[Path, Path],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    rc = run_cli(RefusingServer(), tls_files, "--enroll_secret", "wrong", "--host_count", "2",
                 "--start_period", "0", "--duration", "0.5", "--status_interval", "10")
    assert rc == 1
    err = capsys.readouterr().err
    assert "0/2 hosts enrolled" in err
    assert ("most common last error (2 hosts): enroll: error: enroll failed: invalid secret"
            in err)
    assert err.splitlines()[-1] == "osquery-perf: no host enrolled"


def test_cli_stops_by_itself_when_every_enrollment_is_refused(
        tls_files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    # --duration is only a safety net here: the run must stop on its own, and say why.
    rc = run_cli(RefusingServer(), tls_files, "--enroll_secret", "wrong", "--host_count", "3",
                 "--start_period", "0", "--duration", "60", "--status_interval", "0.2")
    assert rc == 1
    err = capsys.readouterr().err
    assert ("osquery-perf: the server refused every host's enrollment; stopping (check "
            "--enroll_secret)") in err
    assert "0/3 hosts enrolled" in err
    assert err.splitlines()[-1] == "osquery-perf: no host enrolled"


async def test_refusal_clears_once_the_host_enrolls(server: FakeServer,
                                                    client: httpx.AsyncClient) -> None:
    server.script("/enroll", reply({"error": "busy"}, status=503),
                  reply({"error": "invalid secret", "node_invalid": True}, status=401))
    agent = make_agent(client)
    assert not await agent.enroll() and not agent.enroll_refused  # a 503 is worth retrying
    assert not await agent.enroll() and agent.enroll_refused
    assert await agent.enroll() and not agent.enroll_refused


def ctx_for(template: str = "ubuntu", index: int = 0) -> Ctx:
    return Ctx(make_host(template, index, 42, now=NOW, osquery_version="5.23.1"), NOW, {})


def test_joins_answer_with_the_columns_of_every_table() -> None:
    ctx = ctx_for()
    host = ctx.host
    time_row = run_sql("SELECT * FROM time", ctx).rows[0]
    both = run_sql("select * from time, osquery_info", ctx)
    assert both.status == 0 and both.rows == [{**time_row, **host.osquery_info}]
    assert run_sql("SELECT t.unix_time, o.version AS v FROM time t JOIN osquery_info o",
                   ctx).rows == [{"unix_time": str(int(NOW)), "v": "5.23.1"}]
    assert run_sql("select o.* from time as t cross join osquery_info as o",
                   ctx).rows == [host.osquery_info]
    ports = run_sql("SELECT * FROM listening_ports", ctx).rows
    names = {p["pid"]: p["name"] for p in run_sql("SELECT * FROM processes", ctx).rows}
    expected = [{"name": names[p["pid"]], "port": p["port"]} for p in ports]
    for sql in ("SELECT p.name, l.port FROM processes p JOIN listening_ports l "
                "ON p.pid = l.pid",
                "select p.name, l.port from processes p, listening_ports l where p.pid = l.pid",
                "SELECT name, port FROM processes INNER JOIN listening_ports USING (pid)"):
        assert sorted(run_sql(sql, ctx).rows, key=str) == sorted(expected, key=str), sql
    # A LEFT JOIN keeps the processes without a port, their port columns empty.
    left = run_sql("SELECT p.name, l.port FROM processes p LEFT JOIN listening_ports l "
                   "ON p.pid = l.pid", ctx).rows
    by_pid = {pid: [p["port"] for p in ports if p["pid"] == pid] or [""] for pid in names}
    assert sorted(left, key=str) == sorted(
        ({"name": names[pid], "port": port} for pid, found in by_pid.items() for port in found),
        key=str)
    assert {"name": "bash", "port": ""} in left
    assert run_sql("select count(*) from time, users", ctx).rows == [
        {"count(*)": str(len(host.users))}]
    missing = run_sql("SELECT * FROM time JOIN apps", ctx)  # not a Linux table
    assert (missing.rows, missing.status, missing.message) == ([], 1, "no such table: apps")


@pytest.mark.parametrize(("sql", "message"), [
    ("selec * from time", 'near "selec": syntax error'),
    ("select from time", 'near "from": syntax error'),
    ("select version, from osquery_info", 'near "from": syntax error'),
    ("select a,, b from time", 'near ",": syntax error'),
    ("select * from", "incomplete input"),
    ("select * from time where", "incomplete input"),
    ("select * from time where limit 1", 'near "limit": syntax error'),
    ("select * from , time", 'near ",": syntax error'),
    ("select * from time join", "incomplete input"),
    ("select * from time left osquery_info", 'near "osquery_info": syntax error'),
    ("select 'abc from time", "unrecognized token: \"'abc from time\""),
    ("select count(* from time", "incomplete input"),
    ("select 1)", 'near ")": syntax error'),
    ("select", "incomplete input"),
])
def test_unparseable_sql_fails_with_sqlites_message(sql: str, message: str) -> None:
    assert run_sql(sql, ctx_for()) == Answer([], 1, message)


async def test_syntax_error_is_a_failed_live_query(server: FakeServer,
                                                   client: httpx.AsyncClient) -> None:
    agent = await enrolled(client)
    server.script("/distributed/read", read_reply({
        "fleet_distributed_query_7": "selec * from osquery_info",
        "fleet_distributed_query_8": "select * from time, osquery_info"}))
    await agent.distributed_cycle()
    write = server.to("/distributed/write")[0].body
    assert write["statuses"] == {"fleet_distributed_query_7": 1, "fleet_distributed_query_8": 0}
    assert write["messages"]["fleet_distributed_query_7"] == 'near "selec": syntax error'
    assert write["queries"]["fleet_distributed_query_7"] == []
    row = write["queries"]["fleet_distributed_query_8"][0]
    assert {"unix_time", "version", "build_platform"} <= set(row)


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_etc_hosts_has_loopback_and_the_host(template: str) -> None:
    ctx = ctx_for(template, 5)
    rows = run_sql("SELECT * FROM etc_hosts", ctx).rows
    assert {"address": "127.0.0.1", "hostnames": "localhost"} in rows
    assert {"address": ctx.host.primary_ip, "hostnames": ctx.host.hostname} in rows
    assert all(set(r) == {"address", "hostnames"} for r in rows)


def test_primary_ips_are_unique_per_run() -> None:
    count = 254 * 3 + 10  # crosses several /24 boundaries
    ips = [make_host(("ubuntu", "macos", "windows")[i % 3], i, 1, now=NOW).primary_ip
           for i in range(count)]
    assert len(set(ips)) == count
    assert ips[:2] == ["10.0.0.1", "10.0.0.2"] and ips[254] == "10.0.1.1"
    assert not any(ip.endswith((".0", ".255")) for ip in ips)
