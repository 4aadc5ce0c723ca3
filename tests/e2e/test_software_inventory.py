"""Software inventory end to end: simulated hosts report their lists, the cleanups schedule
counts them, and `fleetctl get software` shows them."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.e2e.conftest import Fleetctl
from tests.e2e.test_live_query import bring_online, make_agents, setup_fleet, tls_client

pytestmark = pytest.mark.e2e


def _listed(fleetctl: Fleetctl, *args: str) -> list[dict[str, Any]]:
    r = fleetctl.run("get", "software", *args, "--json")
    assert r.returncode == 0, r.stderr
    return [json.loads(line)["spec"] for line in r.stdout.splitlines() if line]


async def test_fleetctl_get_software_after_the_counts_job(
        server_overrides: dict[str, Any], start_server: Any, fleetctl: Fleetctl) -> None:
    server = start_server(server_overrides, "--dev")
    secret = setup_fleet(fleetctl, server)
    async with tls_client(server) as client:
        agents = make_agents(server, secret, client, 3)  # ubuntu, macos, windows
        await bring_online(agents)
    r = fleetctl.run("get", "software")
    assert (r.returncode, r.stdout) == (0, "No software found\n"), r.stderr
    assert fleetctl.run("trigger", "--name", "software_host_counts").returncode == 0
    deadline = time.monotonic() + 60
    while not (versions := _listed(fleetctl, "--versions")):
        assert time.monotonic() < deadline, "the counts job did not run"
        time.sleep(0.5)
    total = sum(len(a.host.software_index) + len(a.host.unique_software) for a in agents)
    assert 600 <= len(versions) <= total
    assert {v["source"] for v in versions} >= {"deb_packages", "apps", "programs"}
    assert all(v["hosts_count"] >= 1 for v in versions)
    titles = _listed(fleetctl)
    assert titles and titles[0]["hosts_count"] >= titles[-1]["hosts_count"]
    r = fleetctl.run("get", "software", "--versions")
    header = r.stdout.splitlines()[1]
    assert [c.strip() for c in header.strip("|").split("|")] == \
        ["NAME", "VERSION", "TYPE", "VULNERABILITIES", "HOSTS"]
