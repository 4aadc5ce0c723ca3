"""Values osquery would never send, in enroll host_details and detail-query rows: the agent
gets a 2xx/4xx, never a 500, and what is stored fits its column."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa

from fleet.broker.base import results_channel
from fleet.service.context import ServiceContext
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
