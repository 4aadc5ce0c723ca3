"""Operating the server: migrations gate, health checks, TLS variants."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import free_port, make_certificate, run_fleet

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("backend", ["mysql", "sqlite"])
def test_serve_refuses_unmigrated_database_until_prepare_db(
        server_overrides: dict[str, Any], start_server: Any) -> None:
    server = start_server(server_overrides, wait=False)
    assert server.proc.wait(timeout=60) == 1
    assert "not initialized" in server.log and "prepare db" in server.log

    first = run_fleet(["prepare", "db", "--no-prompt"], server_overrides)
    assert first.returncode == 0, first.stderr
    assert "Migrations completed." in first.stdout
    again = run_fleet(["prepare", "db", "--no-prompt"], server_overrides)
    assert again.returncode == 0 and "already completed" in again.stdout

    server = start_server(server_overrides)  # waits for /healthz 200
    with server.client() as c:
        assert c.get("/healthz?check=mysql").status_code == 200


def _redis(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True,
                          text=True).stdout.strip() == "PONG":
            return proc
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("redis-server did not start")


def _poll_status(client: httpx.Client, path: str, expected: int) -> None:
    deadline = time.monotonic() + 30
    status = None
    while time.monotonic() < deadline:
        status = client.get(path).status_code
        if status == expected:
            return
        time.sleep(0.1)
    raise AssertionError(f"{path} stayed {status}, expected {expected}")


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")
@pytest.mark.parametrize("backend", ["mysql"])
def test_healthz_follows_redis_outage_without_restart(server_overrides: dict[str, Any],
                                                      start_server: Any) -> None:
    port = free_port()
    redis_proc = _redis(port)
    try:
        overrides = dict(server_overrides, **{"redis.address": f"127.0.0.1:{port}",
                                              "redis.database": 0})
        server = start_server(overrides, "--dev")
        with server.client(timeout=10) as c:
            assert c.get("/healthz?check=redis").status_code == 200
            assert c.get("/healthz?check=bogus").status_code == 400
            redis_proc.terminate()
            redis_proc.wait(timeout=10)
            _poll_status(c, "/healthz?check=redis", 500)
            assert c.get("/healthz?check=mysql").status_code == 200
            # A plain probe is answered from the health monitor: it follows within a few
            # seconds, and the outage is one log line however often the balancer probes.
            _poll_status(c, "/healthz", 500)
            lines = server.log.count("health check redis failed")
            for _ in range(20):
                assert c.get("/healthz").status_code == 500
            assert server.log.count("health check redis failed") == lines, server.log
            redis_proc = _redis(port)
            _poll_status(c, "/healthz?check=redis", 200)
            _poll_status(c, "/healthz", 200)
            assert c.get("/healthz?check=mysql&check=redis").status_code == 200
            assert server.log.count("health check redis passes again") == 1, server.log
    finally:
        redis_proc.terminate()
        redis_proc.wait(timeout=10)


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("kind", ["ecdsa", "rsa"])
def test_tls_with_ecdsa_and_rsa_certificates(server_overrides: dict[str, Any],
                                             start_server: Any, tmp_path: Path,
                                             kind: str) -> None:
    cert, key = make_certificate(tmp_path, kind)
    server = start_server(dict(server_overrides, **{"server.cert": cert, "server.key": key}),
                          "--dev")
    with server.client() as c:
        assert c.get("/version").json()["version"]
        r = c.post("/api/osquery/enroll", json={"enroll_secret": "--invalid--"})
        assert r.status_code == 401 and r.json()["node_invalid"] is True


@pytest.mark.parametrize("backend", ["sqlite"])
def test_plain_http_behind_proxy_and_url_prefix(server_overrides: dict[str, Any],
                                                start_server: Any) -> None:
    server = start_server(dict(server_overrides, **{"server.tls": "false",
                                                    "server.url_prefix": "/fleet"}), "--dev",
                          wait=False)
    deadline = time.monotonic() + 60
    while True:
        try:
            r = httpx.get(f"http://localhost:{server.port}/fleet/healthz")
            if r.status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, server.log
        time.sleep(0.1)
    assert httpx.get(f"http://localhost:{server.port}/healthz").status_code == 404
    r = httpx.post(f"http://localhost:{server.port}/fleet/api/osquery/enroll",
                   json={"enroll_secret": "x"})
    assert r.status_code == 401


@pytest.mark.parametrize("backend", ["sqlite"])
def test_bad_config_value_names_the_option(server_overrides: dict[str, Any]) -> None:
    r = run_fleet(["serve", "--osquery_host_identifier", "bogus"], server_overrides)
    assert r.returncode == 1
    assert "osquery.host_identifier" in r.stderr


@pytest.mark.parametrize("backend", ["sqlite", "mysql"])
def test_hostile_agent_input_leaves_the_server_running(server_overrides: dict[str, Any],
                                                       start_server: Any) -> None:
    import gzip

    server = start_server(server_overrides, "--dev")
    bomb = gzip.compress(b"[" + b"0," * (32 << 20) + b"0]")
    bodies: list[tuple[dict[str, Any], int]] = [
        ({"content": b""}, 400), ({"content": b"{nope"}, 400),
        ({"json": {"node_key": ["wrong", "type"]}}, 400),
        ({"content": b"a" * (10 << 20)}, 413),
        ({"content": bomb, "headers": {"Content-Encoding": "gzip"}}, 413),
    ]
    with server.client(timeout=30) as c:
        for path in ("enroll", "config", "distributed/read", "distributed/write", "log"):
            for kwargs, status in bodies:
                if path == "enroll" and "json" in kwargs:
                    status = 401  # no valid secret: re-enroll is the agent's only move
                r = c.post(f"/api/osquery/{path}", **kwargs)
                assert r.status_code == status, (path, r.text)
                assert r.json()["error"]
        assert c.get("/healthz").status_code == 200
    assert server.proc.poll() is None
