"""Fuzzing the osquery endpoints on both backends: no generated body gets a 5xx.

Hypothesis generates the bodies (every agent endpoint; valid and invalid node keys; every
JSON type, NaN/Infinity literals, integers beyond 64 bits, huge floats, lone surrogates and
over-long strings where osquery sends strings; gzip or not) from a fixed seed, so a CI run is
reproducible and bounded. They are all sent to one server built by `fleet.server.create_app`,
which afterwards must still enroll a host, hand it a live query and deliver its answer.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleet.broker.base import results_channel
from fleet.core import detail_queries
from fleet.server import create_app
from fleet.service.context import ServiceContext
from tests import factories
from tests.integration.test_agent_endpoints import HOST_DETAILS, SECRET

EXAMPLES = 1200
HUGE = "h" * 300_000


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


# Nesting as deep as orjson accepts (1024) and deeper, in members that are walked; KEY is
# replaced by the valid node key.
KEY = b"@node_key@"
DEEP = [b'{"node_key": "%s", "stats": {"fleet_distributed_query_1": %s}, "queries": '
        b'{"fleet_distributed_query_1": [{"a": %s}]}}' % (KEY, nested(1000), nested(1000)),
        b'{"node_key": "%s", "log_type": "status", "data": %s}' % (KEY, nested(1020)),
        b'{"node_key": "%s", "enroll_secret": "%s", "host_details": {"system_info": %s}}'
        % (KEY, SECRET.encode(), nested(1020)),
        b"[" * 100_000]

# Where osquery sends a string, the fuzzer sends anything.
odd_scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-2**70, max_value=2**70),
    st.sampled_from([2**63, -2**63 - 1, 2**64, 2**31, -2**31 - 1, 10**400, 1e308, -1e308,
                     1e39, 5e-324]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["inf", "-inf", "nan", "1e400", "-1e400", "-1", "0x1f", "", " 7 ", "\ud800",
                     "a\udfffb", "\udc80\ud800", "\x00", "\U0001f600", "9" * 40, "-" + "9" * 30,
                     "1.5e308", "3.5e38", "9" * 5000, "\u00b2", "\u0663", HUGE]),
    st.text(max_size=20),
)
odd_values = st.recursive(
    odd_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=6)
# A column value: mostly something a column could hold (numbers as text, too), else junk.
column_value = st.one_of(
    st.from_regex(r"-?[0-9]{1,30}(\.[0-9]{1,5})?(e[0-9]{1,3})?", fullmatch=True),
    st.text(max_size=12), odd_scalars, odd_scalars, odd_values)

COLUMNS = sorted({
    "name", "version", "major", "minor", "patch", "build", "platform", "platform_like",
    "codename", "extra", "instance_id", "uuid", "hostname", "computer_name", "cpu_type",
    "cpu_subtype", "cpu_brand", "cpu_physical_cores", "cpu_logical_cores", "physical_memory",
    "hardware_vendor", "hardware_model", "hardware_version", "hardware_serial",
    "total_seconds", "value", "address", "mac", "gigs_disk_space_available",
    "percent_disk_space_available", "gigs_total_disk_space"})
FLAG_NAMES = ["distributed_interval", "config_tls_refresh", "config_refresh",
              "logger_tls_period"]
DETAIL_NAMES = [detail_queries.PREFIX + q.name for q in detail_queries.CATALOG]

# Rows with osquery's column names (and the odd stranger), values of any type.
row = st.dictionaries(st.sampled_from(COLUMNS) | st.text(max_size=3),
                      column_value | st.sampled_from(FLAG_NAMES), max_size=8)
flag_row = st.fixed_dictionaries({"name": st.sampled_from(FLAG_NAMES) | odd_scalars,
                                  "value": column_value})
rows = st.one_of(st.lists(row | flag_row, max_size=3), st.lists(odd_values, max_size=2),
                 odd_scalars)
host_details = st.one_of(
    st.dictionaries(st.sampled_from([*detail_queries.ENROLL_DETAILS, "other"]),
                    row | odd_values, max_size=4),
    odd_values)
live_query_names = st.builds(
    lambda n: f"fleet_distributed_query_{n}",
    st.integers(min_value=-5, max_value=5) | st.sampled_from([2**31, 2**63, 2**70, "x", ""]))
query_names = st.one_of(st.sampled_from(DETAIL_NAMES), st.sampled_from(DETAIL_NAMES),
                        live_query_names, st.text(max_size=10))
statuses = st.dictionaries(query_names, st.sampled_from([0, 0, 1, "0", "1"]) | odd_values,
                           max_size=4)


@dataclass
class Case:
    path: str
    body: Any
    gzip: bool
    node_key: str  # "valid", "invalid", "header", "odd" (a non-string), "none"
    ascii_json: bool
    extra: dict[str, Any] = field(default_factory=dict)

    def encode(self, valid_key: str) -> tuple[bytes, dict[str, str]]:
        body = self.body
        headers = {"Content-Type": "application/json"}
        if isinstance(body, dict):
            body = dict(body)
            if self.node_key == "valid":
                body["node_key"] = valid_key
            elif self.node_key == "invalid":
                body["node_key"] = "not-a-node-key"
            elif self.node_key == "header":
                headers["Authorization"] = f"NodeKey {valid_key}"
            elif self.node_key == "odd":
                body["node_key"] = self.extra.get("odd_key")
        if isinstance(body, bytes):  # not JSON at all, or too deep for the stdlib to write
            raw = body.replace(KEY, valid_key.encode())
        else:
            # The stdlib writes what osquery never would: NaN, huge integers, lone
            # surrogates (escaped, or as invalid UTF-8 when not ASCII-only).
            text = json.dumps(body, allow_nan=True, ensure_ascii=self.ascii_json)
            raw = text.encode("utf-8", "surrogatepass")
        if self.gzip:
            raw = gzip.compress(raw)
            headers["Content-Encoding"] = "gzip"
        return raw, headers


def _bodies() -> st.SearchStrategy[tuple[str, Any]]:
    enroll = st.fixed_dictionaries({}, optional={
        "enroll_secret": st.just(SECRET) | odd_values,
        "host_identifier": odd_values,
        "platform_type": odd_values,
        "host_details": host_details})
    enroll_valid_secret = st.fixed_dictionaries(
        {"enroll_secret": st.just(SECRET), "host_identifier": st.text(max_size=12) | odd_values,
         "host_details": host_details})
    write = st.fixed_dictionaries(
        {"queries": st.dictionaries(query_names, rows, min_size=1, max_size=5)},
        optional={"statuses": statuses, "messages": st.dictionaries(query_names, odd_values,
                                                                    max_size=3),
                  "stats": st.dictionaries(query_names, odd_values, max_size=3)})
    odd_write = st.fixed_dictionaries({}, optional={
        "queries": st.dictionaries(query_names, rows, max_size=4) | odd_values,
        "statuses": statuses | odd_values,
        "messages": st.dictionaries(query_names, odd_values, max_size=3) | odd_values,
        "stats": st.dictionaries(query_names, odd_values, max_size=3) | odd_values})
    result_item = st.fixed_dictionaries(
        {"name": st.sampled_from(["pack/Global/q", "q", "pack/other/q"]) | odd_scalars},
        optional={"hostIdentifier": odd_values, "snapshot": rows, "columns": row,
                  "action": odd_values, "unixTime": odd_scalars, "decorations": row})
    status_item = st.dictionaries(
        st.sampled_from(["severity", "message", "filename", "line", "hostIdentifier"]),
        odd_values, min_size=1)
    log = st.one_of(
        st.fixed_dictionaries({"log_type": st.just("result"),
                               "data": st.lists(result_item | odd_values, min_size=1,
                                                max_size=4)}),
        st.fixed_dictionaries({"log_type": st.just("status"),
                               "data": st.lists(status_item | odd_values, min_size=1,
                                                max_size=4)}),
        st.fixed_dictionaries({}, optional={
            "log_type": st.sampled_from(["status", "result"]) | odd_values,
            "data": st.lists(result_item | odd_values, max_size=4) | odd_values}))
    paths = st.sampled_from(["/api/osquery/enroll", "/api/osquery/config",
                             "/api/osquery/distributed/read", "/api/osquery/distributed/write",
                             "/api/v1/osquery/distributed/write", "/api/osquery/log"])
    return st.one_of(
        st.tuples(st.just("/api/osquery/enroll"), enroll_valid_secret),
        st.tuples(st.just("/api/osquery/enroll"), enroll | odd_values),
        st.tuples(st.sampled_from(["/api/osquery/config", "/api/osquery/distributed/read"]),
                  st.dictionaries(st.text(max_size=5), odd_values, max_size=2)),
        st.tuples(st.just("/api/osquery/distributed/write"), write),
        st.tuples(st.just("/api/v1/osquery/distributed/write"), write),
        st.tuples(st.just("/api/osquery/distributed/write"), odd_write),
        st.tuples(st.just("/api/osquery/log"), log),
        st.tuples(st.just("/api/osquery/log"), log),
        # Whatever else an agent path may receive: JSON that is not an object, deep
        # nesting, bytes that are not JSON.
        st.tuples(paths, odd_values | st.sampled_from(DEEP) | st.binary(max_size=40)),
    )


@functools.cache
def generate_cases() -> list[Case]:
    """EXAMPLES cases, the same ones on every run (derandomized, no example database);
    generated when the test runs, not when it is collected."""
    cases: list[Case] = []

    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(path_body=_bodies(), use_gzip=st.booleans(),
           node_key=st.sampled_from(["valid", "valid", "valid", "header", "invalid", "odd",
                                     "none"]),
           odd_key=odd_values, ascii_json=st.booleans())
    def collect(path_body: tuple[str, Any], use_gzip: bool, node_key: str, odd_key: Any,
                ascii_json: bool) -> None:
        path, body = path_body
        cases.append(Case(path, body, use_gzip, node_key, ascii_json, {"odd_key": odd_key}))

    collect()
    return cases



@pytest.fixture
async def client(ctx: ServiceContext) -> AsyncIterator[httpx.AsyncClient]:
    """An agent's view of the whole production app."""
    await factories.enroll_secret(ctx, SECRET)
    transport = httpx.ASGITransport(app=create_app(ctx), client=("203.0.113.9", 4242))
    async with httpx.AsyncClient(transport=transport, base_url="https://fleet.test") as c:
        yield c


async def enroll(client: httpx.AsyncClient, identifier: str) -> str:
    r = await client.post("/api/osquery/enroll", json={
        "enroll_secret": SECRET, "host_identifier": identifier, "host_details": HOST_DETAILS})
    assert r.status_code == 200, r.text
    return str(r.json()["node_key"])


def describe(case: Case) -> str:
    text = repr(case)
    return text if len(text) < 600 else text[:600] + "..."


async def test_no_agent_request_gets_a_5xx(ctx: ServiceContext,
                                           client: httpx.AsyncClient) -> None:
    from fleet.core.authz import Role
    from fleet.service import campaigns

    node_key = await enroll(client, "fuzz-host")
    failures: list[str] = []
    statuses: dict[int, int] = {}
    cases = generate_cases()
    for case in cases:
        content, headers = case.encode(node_key)
        r = await client.post(case.path, content=content, headers=headers)
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
        if r.status_code >= 500:
            failures.append(f"{r.status_code} {r.text[:200]} for {describe(case)}")
        else:
            assert "error" in r.json() or r.status_code == 200, r.text
        if r.status_code == 200 and case.path.endswith("/enroll"):
            node_key_new = r.json()["node_key"]
            assert isinstance(node_key_new, str)
        # A re-enrollment under the fuzz host's identifier revokes its key: take a new one.
        if r.status_code == 401 and case.node_key in ("valid", "header"):
            node_key = await enroll(client, "fuzz-host")
    assert not failures, f"{len(failures)} of {len(cases)} requests failed:\n" + \
        "\n".join(failures[:10])
    assert statuses.get(200, 0) > len(cases) // 5, statuses  # the fuzzer got through

    # Afterwards the server still does its job: enroll, check in, answer a live query.
    fresh = await enroll(client, "after-fuzz")
    r = await client.post("/api/osquery/distributed/read", json={"node_key": fresh})
    assert r.status_code == 200 and r.json()["queries"]
    host = ctx.host_cache.get(fresh)
    assert host is not None
    admin = await factories.user(ctx, Role.ADMIN)
    campaign = await campaigns.create(ctx, admin, sql="SELECT 42 AS answer", query_id=None,
                                      host_ids=[host.id])
    name = f"fleet_distributed_query_{campaign.id}"
    r = await client.post("/api/osquery/distributed/read", json={"node_key": fresh})
    assert r.json()["queries"][name] == "SELECT 42 AS answer"
    async with ctx.broker.bus.subscribe(results_channel(campaign.id)) as sub:
        r = await client.post("/api/osquery/distributed/write", json={
            "node_key": fresh, "queries": {name: [{"answer": "42"}]}, "statuses": {name: 0}})
        assert r.status_code == 200, r.text
        result = orjson.loads(await asyncio.wait_for(anext(aiter(sub)), 10))
    assert result["host"]["id"] == host.id
    assert [{k: v for k, v in row.items() if k == "answer"} for row in result["rows"]] == \
        [{"answer": "42"}]
