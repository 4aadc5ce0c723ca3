"""Labels against a real server, simulated agents and fleetctl: a dynamic label applied with
`fleetctl apply -f` and one created over REST gain exactly the matching hosts after the next
label refresh, a manual label holds exactly its listed hosts, and a live query by label
reaches only the label's hosts."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from osquery_perf import SimulatedAgent
from tests.e2e.conftest import Fleetctl
from tests.e2e.test_live_query import (
    PASSWORD,
    TEMPLATES,
    bring_online,
    live_query,
    make_agents,
    setup_fleet,
    tls_client,
)

pytestmark = pytest.mark.e2e

SPECS = """\
apiVersion: v1
kind: label
spec:
  name: Macs
  description: every macOS host
  query: SELECT 1 FROM os_version WHERE platform = 'darwin'
  label_membership_type: dynamic
---
apiVersion: v1
kind: label
spec:
  name: Pilot
  label_membership_type: manual
  hosts:
    - {pilot}
"""


def hostname(agent: SimulatedAgent) -> str:
    return str(agent.host.host_details()["system_info"]["hostname"])


def label_hosts(fleetctl: Fleetctl, label: str) -> set[str]:
    r = fleetctl.run("get", "hosts", "--label", label, "--json")
    assert r.returncode == 0, r.stderr
    return {json.loads(line)["spec"]["hostname"] for line in r.stdout.splitlines() if line}


async def test_labels_from_fleetctl_and_rest_target_exactly_their_hosts(
        server_overrides: dict[str, Any], start_server: Any, fleetctl: Fleetctl,
        tmp_path: Path) -> None:
    server = start_server({**server_overrides, "osquery.label_update_interval": "1s"}, "--dev")
    secret = setup_fleet(fleetctl, server)
    async with tls_client(server) as client:
        agents = make_agents(server, secret, client, 6)
        await bring_online(agents)
        by_platform = {t: {hostname(a) for i, a in enumerate(agents) if i % 3 == n}
                       for n, t in enumerate(TEMPLATES)}
        pilot = hostname(agents[0])

        specs = tmp_path / "labels.yml"
        specs.write_text(SPECS.format(pilot=pilot))
        r = fleetctl.run("apply", "-f", str(specs))
        assert r.returncode == 0, r.stderr
        assert r.stdout == "[+] applied 2 labels\n"
        with server.client() as c:
            token = c.post("/api/v1/fleet/login", json={
                "email": "admin@example.com", "password": PASSWORD}).json()["token"]
            r = c.post("/api/latest/fleet/labels", headers={"Authorization": f"Bearer {token}"},
                       json={"name": "Windows by REST", "platform": "windows",
                             "query": "SELECT 1 FROM os_version"})
            assert r.status_code == 200, r.text

        # The next label refresh (every second here) evaluates both dynamic labels.
        deadline = time.monotonic() + 60
        while True:
            for agent in agents:
                await agent.distributed_cycle()
            if label_hosts(fleetctl, "Macs") == by_platform["macos"] and \
                    label_hosts(fleetctl, "Windows by REST") == by_platform["windows"]:
                break
            assert time.monotonic() < deadline, "labels not evaluated within a minute"
        assert label_hosts(fleetctl, "Pilot") == {pilot}
        assert label_hosts(fleetctl, "macOS") == by_platform["macos"]  # a built-in

        r = fleetctl.run("get", "labels")
        assert r.returncode == 0 and "Macs" in r.stdout and "All Hosts" in r.stdout
        r = fleetctl.run("get", "label", "Pilot")
        assert r.returncode == 0 and "kind: label" in r.stdout and pilot in r.stdout

        rc, results, err = await live_query(
            fleetctl, agents, "--labels", "Macs", "--query",
            "SELECT version FROM osquery_info", "--exit")
        assert rc == 0, err
        assert {res["host"] for res in results} == by_platform["macos"]

        r = fleetctl.run("delete", "-f", str(specs))
        assert r.returncode == 0, r.stderr
        r = fleetctl.run("get", "label", "Macs")
        assert r.returncode == 1 and "not found" in r.stderr.lower()
