"""The whole product end to end: TLS server, simulated agents, fleetctl."""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from osquery_perf import SimulatedAgent, make_host
from tests.e2e.conftest import Fleetctl, FleetServer

pytestmark = pytest.mark.e2e

PASSWORD = "correct-Horse-battery-1!"
VITALS = ("hostname", "uuid", "platform", "platform_like", "os_version", "osquery_version",
          "cpu_brand", "cpu_physical_cores", "cpu_logical_cores", "memory", "hardware_vendor",
          "hardware_model", "uptime", "primary_ip", "primary_mac", "public_ip", "seen_time")
TEMPLATES = ("ubuntu", "macos", "windows")


def setup_fleet(fleetctl: Fleetctl, server: FleetServer) -> str:
    """Create the admin with fleetctl; returns the global enroll secret."""
    r = fleetctl.run("config", "set", "--address", server.url, "--rootca", str(server.ca))
    assert r.returncode == 0, r.stderr
    r = fleetctl.run("setup", "--email", "admin@example.com", "--name", "Admin",
                     "--password", PASSWORD, "--org-name", "Acme")
    assert r.returncode == 0, r.stdout + r.stderr
    r = fleetctl.run("get", "enroll_secret", "--json")
    assert r.returncode == 0, r.stderr
    spec = json.loads(r.stdout.strip().splitlines()[0])["spec"]
    return str(spec["secrets"][0]["secret"])


def user_with_pending_reset(server: FleetServer, email: str) -> str:
    """A session token of a new admin-created user, who must set a new password first (an
    admin-created user is flagged for a reset until they do)."""
    with server.client() as c:
        admin = c.post("/api/v1/fleet/login", json={"email": "admin@example.com",
                                                    "password": PASSWORD}).json()["token"]
        r = c.post("/api/latest/fleet/users/admin", headers={"Authorization": f"Bearer {admin}"},
                   json={"email": email, "name": "New", "password": PASSWORD,
                         "global_role": "admin"})
        assert r.status_code == 200 and r.json()["user"]["force_password_reset"] is True
        return str(c.post("/api/v1/fleet/login", json={"email": email,
                                                      "password": PASSWORD}).json()["token"])


def make_agents(server: FleetServer, secret: str, client: httpx.AsyncClient,
                count: int) -> list[SimulatedAgent]:
    return [SimulatedAgent(server.url, secret, make_host(TEMPLATES[i % 3], i, seed=7), client)
            for i in range(count)]


def tls_client(server: FleetServer) -> httpx.AsyncClient:
    assert server.ca is not None
    return httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(server.ca)),
                             timeout=30, limits=httpx.Limits(max_connections=20))


async def bring_online(agents: list[SimulatedAgent]) -> None:
    """osquery's start-up order: enroll, config, first distributed round (host vitals)."""
    assert all(await asyncio.gather(*(a.enroll() for a in agents)))
    assert all(await asyncio.gather(*(a.fetch_config() for a in agents)))
    rounds = await asyncio.gather(*(a.distributed_cycle() for a in agents))
    assert all(any(n.startswith("fleet_detail_query_") for n in r.answered) for r in rounds)


async def live_query(fleetctl: Fleetctl, agents: list[SimulatedAgent], *args: str,
                     deadline: float = 120) -> tuple[int, list[dict[str, Any]], str]:
    """Run `fleetctl query` while the agents keep checking in; returns (rc, results, err)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fleetctl", "query", *args, "--config",
        str(fleetctl.config_path), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    communicate = asyncio.ensure_future(proc.communicate())
    loop = asyncio.get_running_loop()
    stop_at = loop.time() + deadline
    while not communicate.done():
        assert loop.time() < stop_at, "fleetctl query did not finish"
        await asyncio.gather(*(a.distributed_cycle() for a in agents))
        await asyncio.wait({communicate}, timeout=0.5)  # the agents' check-in interval
    out, err = communicate.result()
    results = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
    return proc.returncode or 0, results, err.decode()


def assert_one_result_per_host(results: list[dict[str, Any]], hostnames: set[str]) -> None:
    seen = [r["host"] for r in results]
    assert len(seen) == len(set(seen)), "duplicate results"
    assert set(seen) == hostnames, "lost results"
    for r in results:
        assert r["rows"] and r["rows"][0]["version"], r
        assert r["rows"][0]["host_hostname"] == r["host"]


async def test_fifty_agents_vitals_and_live_query_over_tls(
        server_overrides: dict[str, Any], start_server: Any, fleetctl: Fleetctl) -> None:
    server = start_server(server_overrides, "--dev")
    secret = setup_fleet(fleetctl, server)
    async with tls_client(server) as client:
        agents = make_agents(server, secret, client, 50)
        await bring_online(agents)

        r = fleetctl.run("get", "hosts", "--json")
        assert r.returncode == 0, r.stderr
        hosts = [json.loads(line)["spec"] for line in r.stdout.splitlines() if line.strip()]
        assert len(hosts) == 50
        system_infos = [a.host.host_details()["system_info"] for a in agents]
        by_name = {info["hostname"]: info for info in system_infos}
        for host in hosts:
            missing = [f for f in VITALS if host.get(f) in (None, "", 0)]
            assert not missing, (host["hostname"], missing)
            assert host["status"] == "online"
            reported = by_name[host["hostname"]]  # what the agent's system_info said
            assert (host["uuid"], host["hardware_serial"], host["memory"]) == (
                reported["uuid"], reported["hardware_serial"], int(reported["physical_memory"]))
        table = fleetctl.run("get", "hosts")
        assert table.returncode == 0 and hosts[0]["uuid"] in table.stdout

        rc, results, err = await live_query(
            fleetctl, agents, "--labels", "All Hosts", "--query",
            "SELECT * FROM osquery_info", "--exit")
        assert rc == 0, err
        assert_one_result_per_host(results, {h["hostname"] for h in hosts})
        assert "50/50 targeted hosts" in err  # the live progress line


@pytest.mark.parametrize("backend", ["mysql"])
async def test_campaign_on_one_instance_gets_results_from_agents_on_another(
        server_overrides: dict[str, Any], start_server: Any, fleetctl: Fleetctl,
        tmp_path: Path) -> None:
    first = start_server(server_overrides, "--dev")
    second = start_server(server_overrides)
    secret = setup_fleet(fleetctl, first)  # fleetctl (and its websocket) talk to the first
    async with tls_client(second) as client:  # the agents only to the second
        agents = make_agents(second, secret, client, 20)
        await bring_online(agents)
        names = {a.host.host_details()["system_info"]["hostname"] for a in agents}
        rc, results, err = await live_query(
            fleetctl, agents, "--hosts", ",".join(sorted(names)), "--query",
            "SELECT version FROM osquery_info")
        assert rc == 0, err
        assert_one_result_per_host(results, names)


async def test_results_websocket_refuses_user_with_pending_password_reset(
        server_overrides: dict[str, Any], start_server: Any, fleetctl: Fleetctl) -> None:
    server = start_server(server_overrides, "--dev")
    setup_fleet(fleetctl, server)
    token = user_with_pending_reset(server, "new@example.com")
    assert server.ca is not None
    tls = ssl.create_default_context(cafile=str(server.ca))
    url = server.url.replace("https://", "wss://") + "/api/latest/fleet/results/websocket"
    async with websockets.connect(url, ssl=tls) as ws:
        await ws.send(json.dumps({"type": "auth", "data": {"token": token}}))
        await ws.send(json.dumps({"type": "select_campaign", "data": {"campaign_id": 1}}))
        assert json.loads(await ws.recv()) == {"type": "error", "data": "unauthorized"}
