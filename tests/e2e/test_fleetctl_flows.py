"""fleetctl against a real server: a required password reset and a live query timeout."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import Fleetctl
from tests.e2e.test_live_query import (
    PASSWORD,
    bring_online,
    live_query,
    make_agents,
    setup_fleet,
    tls_client,
    user_with_pending_reset,
)

pytestmark = pytest.mark.e2e

NEW_PASSWORD = "another-Secret-pass-2!"


def test_required_password_reset_from_fleetctl(server_overrides: dict[str, Any],
                                               start_server: Any, fleetctl: Fleetctl) -> None:
    server = start_server(server_overrides, "--dev")
    setup_fleet(fleetctl, server)
    token = user_with_pending_reset(server, "new@example.com")
    reset_command = ("fleetctl login --email new@example.com --new-password "
                     "'<new password>'")

    # Any command with that user's token names the command that fixes it.
    assert fleetctl.run("config", "set", "--email", "new@example.com", "--token",
                        token).returncode == 0
    r = fleetctl.run("get", "hosts")
    assert r.returncode == 1
    assert r.stderr == ("Error: could not list hosts: Permission Denied: password reset "
                        "required (HTTP 403). An admin requires a new password for this "
                        f"account; set it with: {reset_command}\n")

    # Login without a terminal or --new-password says the same, then --new-password sets it.
    login = ("login", "--email", "new@example.com", "--password", PASSWORD)
    r = fleetctl.run(*login)
    assert r.returncode == 1
    assert r.stderr == f"Error: Login failed: a new password is required; run: {reset_command}\n"
    r = fleetctl.run(*login, "--new-password", "too-weak")
    assert r.returncode == 1
    assert "Password does not meet required criteria" in r.stderr
    r = fleetctl.run(*login, "--new-password", NEW_PASSWORD)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-2:] == ["[+] New password set.",
                                          "[+] Fleet login successful and context configured!"]
    r = fleetctl.run("get", "hosts")
    assert (r.returncode, r.stdout) == (0, "No hosts found\n"), r.stderr
    r = fleetctl.run(*login)
    assert r.returncode == 1 and r.stderr.startswith("Error: Login failed: ")
    r = fleetctl.run("login", "--email", "new@example.com", "--password", NEW_PASSWORD)
    assert r.returncode == 0, r.stderr


async def test_query_timeout_with_a_silent_host_exits_non_zero(
        server_overrides: dict[str, Any], start_server: Any, fleetctl: Fleetctl) -> None:
    server = start_server(server_overrides, "--dev")
    secret = setup_fleet(fleetctl, server)
    async with tls_client(server) as client:
        agents = make_agents(server, secret, client, 2)
        await bring_online(agents)
        # Only the first agent keeps checking in, so the second never answers.
        rc, results, err = await live_query(
            fleetctl, agents[:1], "--labels", "All Hosts", "--query",
            "SELECT version FROM osquery_info", "--timeout", "4s")
    assert rc == 1, err
    assert len(results) == 1
    assert err.splitlines()[-1] == (
        "Stopped by timeout: 1 of 2 targeted hosts did not respond (1 online, 0 offline)")
