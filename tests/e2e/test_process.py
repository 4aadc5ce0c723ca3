"""The `fleet serve` process: start-up order and refusals, a prompt stop, help and config
output, `prepare db` on a missing MySQL database, security headers over real TLS."""

from __future__ import annotations

import json
import secrets
import signal
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from tests.conftest import MYSQL_ADDRESS, _mysql_admin
from tests.e2e.conftest import ADMIN_PASSWORD as PASSWORD
from tests.e2e.conftest import FleetServer, free_port, run_fleet, setup_admin

pytestmark = pytest.mark.e2e

DEADLINE = 30.0  # seconds: far below the waits the tests rule out (30 s TLS close, 10 min poll)


def _wait_for(predicate: Any, what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _idle_keepalive_connection(server: FleetServer) -> ssl.SSLSocket:
    """A TLS connection that made one request and now just stays open."""
    assert server.ca is not None
    tls = ssl.create_default_context(cafile=str(server.ca))
    sock = tls.wrap_socket(socket.create_connection(("127.0.0.1", server.port)),
                           server_hostname="localhost")
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    return sock


def _stop(server: FleetServer) -> None:
    """SIGTERM; the process must be gone well before DEADLINE."""
    assert server.proc is not None
    server.proc.send_signal(signal.SIGTERM)
    server.proc.wait(timeout=DEADLINE)


# ----------------------------------------------------------------------------------------------
# Start-up


@pytest.mark.parametrize("backend", ["sqlite"])
def test_banner_is_printed_once_the_server_answers(server_overrides: dict[str, Any],
                                                   start_server: Any) -> None:
    server = start_server(dict(server_overrides, **{"logging.disable_banner": "false"}),
                          "--dev", wait=False)
    _wait_for(lambda: "is serving https://" in server.log, "the banner")
    with server.client(timeout=10) as c:
        assert c.get("/healthz").status_code == 200  # first try: no retry needed


@pytest.mark.parametrize("backend", ["sqlite"])
def test_taken_port_exits_1_with_one_line_and_no_banner(
        server_overrides: dict[str, Any]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = run_fleet(["serve", "--dev"], dict(server_overrides, **{
            "server.address": f"127.0.0.1:{port}", "logging.disable_banner": "false"}))
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        f"Failed to start: cannot listen on 127.0.0.1:{port}: Address already in use "
        "(another process is listening on that port)"]
    assert "is serving" not in r.stdout


@pytest.mark.parametrize("backend", ["sqlite"])
def test_second_embedded_instance_on_the_same_database_is_refused(
        server_overrides: dict[str, Any], start_server: Any) -> None:
    first = start_server(server_overrides, "--dev")
    r = run_fleet(["serve", "--dev"], dict(server_overrides,
                                           **{"server.address": f"127.0.0.1:{free_port()}"}))
    assert r.returncode == 1, r.stdout + r.stderr
    [line] = r.stderr.strip().splitlines()
    database = Path(server_overrides["sqlite.path"]).resolve()
    assert line.startswith(f"Failed to start: the embedded database {database} is in use by "
                           f"another fleet serve (pid {first.proc.pid}, serving 127.0.0.1:")
    assert "--sqlite_path" in line
    with first.client() as c:
        assert c.get("/healthz").status_code == 200
    _stop(first)  # the lock goes with the process: the database can be served again
    start_server(server_overrides, "--dev")


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("cost", ["3", "32"])
def test_bcrypt_cost_out_of_range_is_refused(server_overrides: dict[str, Any],
                                             cost: str) -> None:
    r = run_fleet(["serve", "--dev", "--auth_bcrypt_cost", cost], server_overrides)
    assert r.returncode == 1
    assert r.stderr.strip() == ("Failed to load config: invalid value for auth.bcrypt_cost "
                                f"(from flag --auth_bcrypt_cost): {cost} is out of range "
                                "(allowed: 4 to 31)")


def test_help_and_config_dump_are_readable(tmp_path: Path) -> None:
    r = run_fleet(["serve", "--help"], {})
    assert r.returncode == 0
    text = " ".join(r.stdout.split())
    for needle in ("--mysql_address HOST:PORT", "--server_address HOST:PORT",
                   "--session_duration DURATION", "(default 120h)", "--server_tls [BOOL]",
                   "--auth_bcrypt_cost INT", "bcrypt cost of password hashes (4 to 31)",
                   "--sqlite_path PATH", "--server_shutdown_timeout DURATION"):
        assert needle in text, needle
    dump = run_fleet(["config_dump"], {"osquery.detail_update_interval": "90m"})
    assert dump.returncode == 0, dump.stderr
    values = yaml.safe_load(dump.stdout)
    assert values["session"]["duration"] == "120h"
    assert values["osquery"]["detail_update_interval"] == "1h30m"
    assert values["redis"]["connect_timeout"] == "5s"
    path = tmp_path / "dumped.yml"
    path.write_text(dump.stdout)
    again = run_fleet(["config_dump", "--config", str(path)], {})
    assert again.returncode == 0 and again.stdout == dump.stdout


# ----------------------------------------------------------------------------------------------
# Stop


@pytest.mark.parametrize("backend", ["sqlite"])
def test_sigterm_does_not_wait_for_idle_keepalive_connections(
        server_overrides: dict[str, Any], start_server: Any) -> None:
    # A drain deadline far beyond DEADLINE: only dropping idle connections makes the stop fast.
    server = start_server(dict(server_overrides, **{"server.shutdown_timeout": "10m"}), "--dev")
    idle = [_idle_keepalive_connection(server) for _ in range(5)]
    _stop(server)
    for sock in idle:
        assert sock.recv(1) == b""  # closed by the server
        sock.close()
    assert "Traceback" not in server.log and "in flight" not in server.log


@pytest.mark.parametrize("backend", ["sqlite", "mysql"])
def test_sigterm_drains_then_closes_a_long_poll_a_websocket_and_idle_connections(
        server_overrides: dict[str, Any], start_server: Any) -> None:
    server = start_server(dict(server_overrides, **{"server.shutdown_timeout": "2s",
                                                    "live_query_rest_period": "10m"}), "--dev")
    with server.client(timeout=30) as c:
        auth, secret = setup_admin(c)
        node_key = c.post("/api/osquery/enroll", json={
            "enroll_secret": secret, "host_identifier": "h1"}).json()["node_key"]
        [host] = c.get("/api/latest/fleet/hosts", headers=auth).json()["hosts"]
        query_id = c.post("/api/latest/fleet/queries", headers=auth, json={
            "name": "long poll", "query": "SELECT 'long poll'"}).json()["query"]["id"]
        campaign = c.post("/api/latest/fleet/queries/run", headers=auth, json={
            "query": "SELECT 'websocket'", "selected": {"hosts": [host["id"]]}}).json()

    # A synchronous live query the host never answers: the request stays in flight.
    outcome: list[Any] = []

    def long_poll() -> None:
        with server.client(timeout=DEADLINE * 2) as poll:
            try:
                outcome.append(poll.post(f"/api/latest/fleet/queries/{query_id}/run",
                                         headers=auth, json={"host_ids": [host["id"]]}))
            except httpx.HTTPError as exc:
                outcome.append(exc)

    poller = threading.Thread(target=long_poll, daemon=True)
    poller.start()

    def query_pending() -> bool:
        with server.client(timeout=10) as c:
            r = c.post("/api/osquery/distributed/read", json={"node_key": node_key})
            return "SELECT 'long poll'" in r.json()["queries"].values()

    _wait_for(query_pending, "the long-poll's live query to reach the host")
    assert server.ca is not None
    url = f"wss://localhost:{server.port}/api/latest/fleet/results/websocket"
    with ws_connect(url, ssl=ssl.create_default_context(cafile=str(server.ca))) as ws:
        ws.send(json.dumps({"type": "auth", "data": {"token": auth["Authorization"][7:]}}))
        ws.send(json.dumps({"type": "select_campaign",
                            "data": {"campaign_id": campaign["campaign"]["id"]}}))
        assert json.loads(ws.recv(timeout=10))["type"] in ("totals", "status")
        idle = [_idle_keepalive_connection(server) for _ in range(3)]

        _stop(server)
        with pytest.raises(ConnectionClosed):
            while True:
                ws.recv(timeout=10)
    poller.join(timeout=DEADLINE)
    assert outcome and not isinstance(outcome[0], httpx.Response)  # cut at the deadline
    for sock in idle:
        assert sock.recv(1) == b""
        sock.close()
    assert "1 request(s) still running after 2s, cancelled" in server.log, server.log
    assert "Traceback" not in server.log, server.log


# ----------------------------------------------------------------------------------------------
# MySQL database creation


@pytest.fixture
def missing_database(backend: str, db_name: str) -> Any:
    name = db_name + "_new"
    yield name
    import asyncio

    asyncio.run(_mysql_admin(f"DROP DATABASE IF EXISTS {name}"))


@pytest.mark.parametrize("backend", ["mysql"])
def test_prepare_db_creates_a_missing_mysql_database(server_overrides: dict[str, Any],
                                                     missing_database: str,
                                                     start_server: Any) -> None:
    overrides = dict(server_overrides, **{"mysql.database": missing_database})
    r = run_fleet(["serve"], overrides)
    assert r.returncode == 1
    assert "`fleet prepare db` creates it" in r.stderr and "Traceback" not in r.stderr
    r = run_fleet(["prepare", "db", "--no-prompt"], overrides)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        f"Created the MySQL database {missing_database} at {MYSQL_ADDRESS} (utf8mb4).",
        "Migrations completed."]
    start_server(overrides)  # migrated: serves without --dev


@pytest.mark.parametrize("backend", ["mysql"])
def test_prepare_db_says_what_to_run_when_the_user_may_not_create_it(
        server_overrides: dict[str, Any], missing_database: str) -> None:
    import asyncio

    user, password = "fleet_np_" + secrets.token_hex(3), secrets.token_hex(8)
    for host in ("%", "localhost"):
        asyncio.run(_mysql_admin(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY '{password}'"))
    try:
        r = run_fleet(["prepare", "db", "--no-prompt"], dict(server_overrides, **{
            "mysql.database": missing_database, "mysql.username": user,
            "mysql.password": password}))
    finally:
        for host in ("%", "localhost"):
            asyncio.run(_mysql_admin(f"DROP USER IF EXISTS '{user}'@'{host}'"))
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert f"CREATE DATABASE `{missing_database}` CHARACTER SET utf8mb4 " \
           "COLLATE utf8mb4_unicode_ci;" in r.stderr
    assert f"GRANT ALL PRIVILEGES ON `{missing_database}`.* TO '{user}'@'%';" in r.stderr


# ----------------------------------------------------------------------------------------------
# Security headers and logging


@pytest.mark.parametrize("backend", ["sqlite"])
def test_security_headers_over_tls(server_overrides: dict[str, Any],
                                   start_server: Any) -> None:
    server = start_server(server_overrides, "--dev")
    with server.client() as c:
        auth, secret = setup_admin(c)
        login = c.post("/api/v1/fleet/login", json={"email": "admin@example.com",
                                                    "password": PASSWORD})
        for r in (login, c.get("/api/latest/fleet/me", headers=auth), c.get("/healthz")):
            assert r.headers["strict-transport-security"] == "max-age=31536000"
            assert r.headers["cache-control"] == "no-store"
            assert r.headers["x-content-type-options"] == "nosniff"
            assert r.headers["x-frame-options"] == "DENY"
            assert r.headers["referrer-policy"] == "no-referrer"
            assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        enroll = c.post("/api/osquery/enroll", json={"enroll_secret": secret,
                                                     "host_identifier": "h1"})
        assert enroll.status_code == 200
        assert enroll.headers["cache-control"] == "no-store"
        assert enroll.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_no_hsts_without_tls(server_overrides: dict[str, Any], start_server: Any) -> None:
    server = start_server(dict(server_overrides, **{"server.tls": "false"}), "--dev")
    r = httpx.get(f"http://localhost:{server.port}/healthz")
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    assert "strict-transport-security" not in r.headers


@pytest.mark.parametrize("backend", ["sqlite", "mysql"])
def test_debug_logging_is_fleets_own(server_overrides: dict[str, Any],
                                     start_server: Any) -> None:
    server = start_server(server_overrides, "--dev", "--logging_debug")
    with server.client() as c:
        setup_admin(c)
        assert c.post("/api/v1/fleet/login", json={"email": "admin@example.com",
                                                   "password": "nope"}).status_code == 401
    _stop(server)
    log = server.log
    assert "login failed for 'admin@example.com' from 127.0.0.1: wrong password" in log
    for library in ("aiosqlite", "asyncmy", "sqlalchemy", "uvicorn", "httpx", "websockets"):
        assert f"DEBUG {library}" not in log and f"INFO {library}" not in log, library
