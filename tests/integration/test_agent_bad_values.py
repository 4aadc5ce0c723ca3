"""Values osquery would never send, in enroll host_details and detail-query rows: the agent
gets a 2xx/4xx, never a 500, and what is stored fits its column."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa

from fleet.broker.base import results_channel
from fleet.core.agent_values import MAX_DEPTH
from fleet.service.context import ServiceContext
from fleet.store.hosts import FLOAT_MAX
from fleet.store.schema import hosts, max_chars
from tests.integration.test_agent_endpoints import HOST_DETAILS, SECRET, agent

__all__ = ["agent"]  # the fixture, imported for the tests below

ODD = [2**70, -2**70, 1e308, float("inf"), "inf", "nan", [1, "a"], {"k": "v"}, True, None,
       "\ud800", "a\udfffb", "x" * 300_000, "9" * 40]


async def _post(agent: httpx.AsyncClient, path: str, body: dict[str, Any]) -> httpx.Response:
    """Sent as the stdlib writes it: lone surrogates escaped, infinities as literals."""
    return await agent.post(path, content=json.dumps(body).encode(),
                            headers={"Content-Type": "application/json"})


async def _host(ctx: ServiceContext) -> Any:
    async with ctx.db.connect() as conn:
        return (await conn.execute(sa.select(hosts))).first()


@pytest.mark.parametrize("value", ODD, ids=repr)
async def test_odd_enroll_values_never_500(ctx: ServiceContext, agent: httpx.AsyncClient,
                                           value: Any) -> None:
    details = {table: {column: value for column in row} for table, row in HOST_DETAILS.items()}
    r = await _post(agent, "/api/osquery/enroll", {
        "enroll_secret": SECRET, "host_identifier": "odd-host", "host_details": details})
    assert r.status_code < 500, r.text


@pytest.mark.parametrize("value", ODD, ids=repr)
async def test_odd_detail_rows_never_500(ctx: ServiceContext, agent: httpx.AsyncClient,
                                         value: Any) -> None:
    r = await agent.post("/api/osquery/enroll", json={
        "enroll_secret": SECRET, "host_identifier": "host-1", "host_details": HOST_DETAILS})
    node_key = r.json()["node_key"]
    queries = {f"fleet_detail_query_{table}": [{column: value for column in row}]
               for table, row in HOST_DETAILS.items()}
    r = await _post(agent, "/api/osquery/distributed/write", {
        "node_key": node_key, "queries": queries, "statuses": {}})
    assert r.status_code < 500, r.text


async def test_huge_host_identifier_is_cut_to_its_column(ctx: ServiceContext,
                                                        agent: httpx.AsyncClient) -> None:
    r = await agent.post("/api/osquery/enroll", json={
        "enroll_secret": SECRET, "host_identifier": "h" * 300_000,
        "host_details": HOST_DETAILS})
    assert r.status_code == 200, r.text
    row = await _host(ctx)
    assert row.osquery_host_id == "h" * max_chars(hosts.c.osquery_host_id)


async def test_live_answer_survives_junk_in_the_same_write(ctx: ServiceContext,
                                                           agent: httpx.AsyncClient) -> None:
    r = await agent.post("/api/osquery/enroll", json={
        "enroll_secret": SECRET, "host_identifier": "host-1", "host_details": HOST_DETAILS})
    node_key = r.json()["node_key"]
    name = "fleet_distributed_query_77"
    async with ctx.broker.bus.subscribe(results_channel(77)) as sub:
        r = await _post(agent, "/api/osquery/distributed/write", {
            "node_key": node_key,
            "queries": {"fleet_detail_query_system_info": [{"physical_memory": "9" * 40,
                                                             "hostname": ["not", "text"]}],
                        name: [{"text": "a\udfffb", "big": 2**70, "list": [1]}]},
            "statuses": {name: 0}, "stats": {name: {"wall_time": 2**70}}})
        assert r.status_code == 200, r.text
        result = orjson.loads(await asyncio.wait_for(anext(aiter(sub)), 10))
    row = result["rows"][0]
    assert row["text"] == "a\ufffdb" and row["big"] == str(2**70) and "list" not in row
    host = await _host(ctx)
    assert host.memory == 2**63 - 1  # clamped to the BIGINT column
    assert host.hostname == ""  # a non-text value counts as a missing column


async def test_log_lines_with_unencodable_values_are_written(
        ctx: ServiceContext, agent: httpx.AsyncClient) -> None:
    r = await agent.post("/api/osquery/enroll", json={
        "enroll_secret": SECRET, "host_identifier": "host-1", "host_details": HOST_DETAILS})
    node_key = r.json()["node_key"]
    r = await _post(agent, "/api/osquery/log", {
        "node_key": node_key, "log_type": "status",
        "data": [{"message": "bad \ud800 text", "severity": 2**70}]})
    assert r.status_code == 200, r.text
    line = Path(ctx.cfg.filesystem.status_log_file).read_text().strip()
    assert json.loads(line) == {"message": "bad \ufffd text", "severity": str(2**70)}


@pytest.mark.parametrize("suffix", [str(2**63), str(2**70), "-7", " 7", "7_0", "\u0663", "0"])
async def test_live_query_names_with_impossible_ids_are_ignored(
        ctx: ServiceContext, agent: httpx.AsyncClient, suffix: str) -> None:
    """A campaign id beyond 64 bits (or not plain digits) names no campaign: the answer is
    skipped, the rest of the write is stored."""
    r = await agent.post("/api/osquery/enroll", json={
        "enroll_secret": SECRET, "host_identifier": "host-1", "host_details": HOST_DETAILS})
    node_key = r.json()["node_key"]
    name = f"fleet_distributed_query_{suffix}"
    r = await agent.post("/api/osquery/distributed/write", json={
        "node_key": node_key, "statuses": {name: 0},
        "queries": {name: [{"a": "1"}],
                    "fleet_detail_query_uptime": [{"total_seconds": "60"}]}})
    assert r.status_code == 200, r.text
    assert (await _host(ctx)).uptime == 60 * 10**9


async def test_values_are_coerced_to_their_columns_with_one_warning(
        ctx: ServiceContext, agent: httpx.AsyncClient,
        caplog: pytest.LogCaptureFixture) -> None:
    """Numbers where osquery sends strings are converted, what cannot be a column value is
    dropped (one warning per request naming host, query and column), the rest is stored
    clamped to its column."""
    details = {**HOST_DETAILS, "system_info": {
        **HOST_DETAILS["system_info"], "hostname": "web-\ud800", "cpu_logical_cores": 8,
        "physical_memory": 2**70, "hardware_serial": ["not", "text"], "cpu_brand": {"k": 1}}}
    caplog.set_level(logging.WARNING)
    r = await _post(agent, "/api/osquery/enroll", {
        "enroll_secret": SECRET, "host_identifier": "host-1", "host_details": details})
    assert r.status_code == 200, r.text
    node_key = r.json()["node_key"]
    warnings = [rec.getMessage() for rec in caplog.records if rec.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "host-1" in warnings[0]
    assert "system_info.cpu_brand, system_info.hardware_serial" in warnings[0]
    host = await _host(ctx)
    assert (host.hostname, host.cpu_logical_cores, host.memory, host.hardware_serial,
            host.cpu_brand) == ("web-\ufffd", 8, 2**63 - 1, "", "")

    caplog.clear()
    r = await _post(agent, "/api/osquery/distributed/write", {
        "node_key": node_key, "statuses": {},
        "queries": {
            "fleet_detail_query_disk_space_unix": [{
                "gigs_disk_space_available": "inf", "percent_disk_space_available": "nan",
                "gigs_total_disk_space": 1e308}],
            "fleet_detail_query_uptime": [{"total_seconds": 2**70}],
            "fleet_detail_query_osquery_info": [{"version": ["5.1"]}, "not a row"]}})
    assert r.status_code == 200, r.text
    warnings = [rec.getMessage() for rec in caplog.records if rec.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert f"host {host.id} (host-1)" in warnings[0]
    assert "fleet_detail_query_osquery_info.<row>, fleet_detail_query_osquery_info.version" \
        in warnings[0]
    host = await _host(ctx)
    assert (host.gigs_disk_space_available, host.percent_disk_space_available) == (0.0, 0.0)
    assert host.gigs_total_disk_space == pytest.approx(FLOAT_MAX, rel=1e-6)
    assert host.uptime == 2**63 - 1
    assert host.osquery_version == "5.23.1"  # a row left with no column changes nothing


async def test_nesting_deeper_than_orjson_writes_is_cut(
        ctx: ServiceContext, agent: httpx.AsyncClient) -> None:
    """1,000 levels parse (orjson reads 1,024) but cannot be written back (255) or walked
    recursively: past agent_values.MAX_DEPTH a value becomes null; the answer still goes out."""
    r = await agent.post("/api/osquery/enroll", json={
        "enroll_secret": SECRET, "host_identifier": "host-1", "host_details": HOST_DETAILS})
    node_key = r.json()["node_key"].encode()
    deep = b"[" * 1000 + b"]" * 1000
    name = b"fleet_distributed_query_5"
    async with ctx.broker.bus.subscribe(results_channel(5)) as sub:
        r = await agent.post("/api/osquery/distributed/write", content=b'{"node_key": "%s", '
                             b'"queries": {"%s": [{"a": "1", "b": %s}]}, "statuses": {"%s": 0}, '
                             b'"stats": {"%s": %s}}' % (node_key, name, deep, name, name, deep))
        assert r.status_code == 200, r.text
        result = orjson.loads(await asyncio.wait_for(anext(aiter(sub)), 10))
    assert result["rows"][0]["a"] == "1" and "b" not in result["rows"][0]
    r = await agent.post("/api/osquery/log", content=b'{"node_key": "%s", "log_type": "status", '
                         b'"data": [{"message": "m", "deep": %s}]}' % (node_key, deep))
    assert r.status_code == 200, r.text
    line = json.loads(Path(ctx.cfg.filesystem.status_log_file).read_text())
    assert line["message"] == "m"
    depth, value = 0, line["deep"]
    while isinstance(value, list) and value:
        depth, value = depth + 1, value[0]
    assert depth == MAX_DEPTH - 1 and value is None


@pytest.mark.parametrize(("status", "reason"), [
    (True, "a boolean"), (1.5, "a fraction"), ({"k": 1}, "an object"), (None, "null"),
    ("\u00b2", "'\u00b2'"), ("x" * 300_000, "'" + "x" * 64 + "...'"), ("@DEEP@", "an array")])
async def test_a_status_that_is_not_a_number_fails_that_query_only(
        ctx: ServiceContext, agent: httpx.AsyncClient, caplog: pytest.LogCaptureFixture,
        status: Any, reason: str) -> None:
    """The live query gets this host's error (with the reason), the other live answer of
    the same write arrives, and the agent gets a 200: nothing it sent is lost."""
    r = await agent.post("/api/osquery/enroll", json={
        "enroll_secret": SECRET, "host_identifier": "host-1", "host_details": HOST_DETAILS})
    bad, good = "fleet_distributed_query_78", "fleet_distributed_query_79"
    body = json.dumps({"node_key": r.json()["node_key"],
                       "queries": {bad: [{"a": "1"}], good: [{"b": "2"}]},
                       "statuses": {bad: status, good: 0}}).encode()
    async with ctx.broker.bus.subscribe(results_channel(78)) as bad_results, \
            ctx.broker.bus.subscribe(results_channel(79)) as good_results:
        r = await agent.post("/api/osquery/distributed/write",
                             content=body.replace(b'"@DEEP@"', b"[" * 1000 + b"]" * 1000))
        assert r.status_code == 200, r.text
        failed = orjson.loads(await asyncio.wait_for(anext(aiter(bad_results)), 10))
        answered = orjson.loads(await asyncio.wait_for(anext(aiter(good_results)), 10))
    assert failed["error"] == f"invalid status for {bad}: {reason}"
    assert [row["a"] for row in failed["rows"]] == ["1"]
    assert [row["b"] for row in answered["rows"]] == ["2"] and not answered.get("error")
    assert sum("invalid status" in rec.getMessage() for rec in caplog.records) == 1


async def test_numeric_string_statuses_of_any_length(ctx: ServiceContext,
                                                    agent: httpx.AsyncClient) -> None:
    """Old agents send statuses as strings: thousands of digits are still a failure, and
    zeros of any length a success."""
    r = await agent.post("/api/osquery/enroll", json={
        "enroll_secret": SECRET, "host_identifier": "host-1", "host_details": HOST_DETAILS})
    node_key = r.json()["node_key"]
    r = await agent.post("/api/osquery/distributed/write", json={
        "node_key": node_key, "statuses": {"fleet_detail_query_uptime": "0" * 5000,
                                           "fleet_detail_query_osquery_info": "9" * 5000},
        "queries": {"fleet_detail_query_uptime": [{"total_seconds": "60"}],
                    "fleet_detail_query_osquery_info": [{"version": "9.9.9"}]}})
    assert r.status_code == 200, r.text
    host = await _host(ctx)
    assert (host.uptime, host.osquery_version) == (60 * 10**9, "5.23.1")
