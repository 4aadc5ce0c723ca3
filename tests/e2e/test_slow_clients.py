"""Slow and oversized clients against a real `fleet serve` over TLS: idle, slowloris, slow-body,
never-handshaking and header-flooding connections and silent websockets are cut at their
`server.*` limits, and an agent enrolls and checks in while they are held open."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect as ws_connect

from tests.e2e.conftest import FleetServer, setup_admin

pytestmark = pytest.mark.e2e

LIMITS = {"server.read_header_timeout": "1s", "server.read_timeout": "1s",
          "server.tls_handshake_timeout": "1s", "server.idle_timeout": "2s",
          "server.websocket_auth_timeout": "1s"}
CUT = 6.0  # seconds: every limit above is 1-2 s; an uncut connection would last minutes


def _tls(server: FleetServer) -> ssl.SSLContext:
    assert server.ca is not None
    return ssl.create_default_context(cafile=str(server.ca))


def _connect(server: FleetServer, handshake: bool = True) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=CUT * 2)
    if not handshake:
        return sock
    return _tls(server).wrap_socket(sock, server_hostname="localhost")


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (b"" if it just closes or resets)."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, ssl.SSLError):
        pass
    return data


def _setup(server: FleetServer) -> str:
    """The first admin; returns the global enroll secret."""
    with server.client(timeout=10) as c:
        return setup_admin(c)[1]


def _agent_checks_in(server: FleetServer, secret: str) -> None:
    """Enroll, config and distributed read, each on a fresh connection."""
    with server.client(timeout=10) as c:
        r = c.post("/api/osquery/enroll", json={"enroll_secret": secret,
                                                "host_identifier": "agent-1"})
        assert r.status_code == 200, r.text
        node_key = r.json()["node_key"]
    with server.client(timeout=10) as c:
        assert c.post("/api/osquery/config", json={"node_key": node_key}).status_code == 200
    with server.client(timeout=10) as c:
        r = c.post("/api/osquery/distributed/read", json={"node_key": node_key})
        assert r.status_code == 200 and "queries" in r.json(), r.text


class _Held:
    """Bad connections, each on its own thread, recording when and how the server cut it."""

    def __init__(self) -> None:
        self.outcomes: list[tuple[str, float, bytes]] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def hold(self, kind: str, sock: socket.socket, drip: bytes = b"",
             every: float = 0.25) -> None:
        def run() -> None:
            start = time.monotonic()
            if drip:  # one byte at a time, never finishing
                try:
                    for byte in drip:
                        sock.sendall(bytes([byte]))
                        time.sleep(every)
                except OSError:
                    pass
            data = _read_until_closed(sock)
            sock.close()
            with self._lock:
                self.outcomes.append((kind, time.monotonic() - start, data))

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self._threads.append(thread)

    def join(self) -> list[tuple[str, float, bytes]]:
        for thread in self._threads:
            thread.join(timeout=CUT * 3)
        assert not any(t.is_alive() for t in self._threads), "a bad connection was never cut"
        return self.outcomes


def test_slow_and_idle_connections_are_cut_while_an_agent_checks_in(
        server_overrides: dict[str, Any], start_server: Any) -> None:
    server = start_server(dict(server_overrides, **LIMITS), "--dev")
    secret = _setup(server)
    held = _Held()
    for _ in range(20):
        held.hold("no handshake", _connect(server, handshake=False))
    for _ in range(20):
        held.hold("silent", _connect(server))
    for _ in range(20):
        held.hold("slowloris", _connect(server),
                  drip=b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 100)
    for _ in range(10):
        sock = _connect(server)
        sock.sendall(b"POST /api/osquery/config HTTP/1.1\r\nHost: localhost\r\n"
                     b"Content-Length: 1000\r\n\r\n{")
        held.hold("slow body", sock, drip=b'"node_key": "' + b"k" * 100)
    idle = []
    for _ in range(10):  # answered once, then idle on keep-alive
        sock = _connect(server)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        idle.append(sock)
        held.hold("idle keep-alive", sock)

    _agent_checks_in(server, secret)  # while all 80 are open

    outcomes = held.join()
    assert len(outcomes) == 80
    for kind, seconds, data in outcomes:
        assert seconds < CUT, (kind, seconds)
        if kind in ("silent", "slowloris"):
            assert data.startswith(b"HTTP/1.1 408 "), (kind, data)
        else:  # cut without a response: mid-handshake, mid-body, or idle between requests
            assert not data.startswith(b"HTTP/1.1 408"), (kind, data)
    _agent_checks_in(server, secret)
    log = server.log
    assert "server.read_header_timeout" in log and "server.read_timeout" in log, log
    assert log.count("server.read_header_timeout") <= 2, log  # throttled, not one per socket
    assert "Traceback" not in log, log


def _raw_request(server: FleetServer, head: bytes) -> bytes:
    sock = _connect(server)
    try:
        sock.sendall(head)
    except OSError:
        pass  # the server may answer and close before it has read everything
    data = _read_until_closed(sock)
    sock.close()
    return data


def test_oversized_headers_get_431_and_normal_requests_still_work(
        server_overrides: dict[str, Any], start_server: Any) -> None:
    server = start_server(dict(server_overrides, **{"server.max_header_bytes": 8192,
                                                    "server.max_header_count": 20}), "--dev")
    secret = _setup(server)
    ok = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
    big = ok + b"X-Big: " + b"b" * 20000 + b"\r\n\r\n"
    huge = ok + b"X-Huge: " + b"h" * (1 << 20) + b"\r\n\r\n"  # 1 MiB, arrives in many reads
    many = ok + b"".join(b"X-%d: v\r\n" % i for i in range(2000)) + b"\r\n"
    long_url = b"GET /healthz?" + b"u" * 20000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n"
    for head in (big, huge, many, long_url):
        response = _raw_request(server, head)
        assert response.startswith(b"HTTP/1.1 431 "), response[:200]
    fine = ok + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 200) for i in range(15)) + b"\r\n"
    assert _raw_request(server, fine).startswith(b"HTTP/1.1 200")
    _agent_checks_in(server, secret)
    assert server.log.count("server.max_header_bytes") == 1, server.log  # throttled
    assert "Traceback" not in server.log, server.log


def test_connection_cap_refuses_with_503_and_one_line(
        server_overrides: dict[str, Any], start_server: Any) -> None:
    cap = 40
    server = start_server(dict(server_overrides, **{"server.max_connections": cap,
                                                    "server.read_header_timeout": "3s"}), "--dev")
    secret = _setup(server)
    _agent_checks_in(server, secret)
    held = [_connect(server) for _ in range(cap - 5)]  # silent, below the cap
    _agent_checks_in(server, secret)  # the agent still gets in beside them
    held += [_connect(server) for _ in range(5)]  # now at the cap
    refused = [_connect(server) for _ in range(10)]
    for sock in refused:
        response = _read_until_closed(sock)
        assert response.startswith(b"HTTP/1.1 503 "), response
        assert b"retry-after: 5" in response.lower(), response
        sock.close()
    assert server.log.count("server.max_connections") == 1, server.log
    assert "40 open" in server.log or "39 open" in server.log, server.log
    # The silent ones hit the header deadline and free their places.
    for sock in held:
        assert _read_until_closed(sock).startswith(b"HTTP/1.1 408 ")
        sock.close()
    _agent_checks_in(server, secret)
    assert "Traceback" not in server.log, server.log


def test_unauthenticated_websocket_is_closed(server_overrides: dict[str, Any],
                                            start_server: Any) -> None:
    server = start_server(dict(server_overrides, **LIMITS), "--dev")
    secret = _setup(server)
    url = f"wss://localhost:{server.port}/api/latest/fleet/results/websocket"
    started = time.monotonic()
    with ws_connect(url, ssl=_tls(server)) as ws:
        message = json.loads(ws.recv(timeout=CUT))
        assert message == {"type": "error", "data": "authentication timed out"}
        with pytest.raises(Exception):  # noqa: B017 - closed, whichever way websockets says it
            ws.recv(timeout=CUT)
    assert time.monotonic() - started < CUT
    _agent_checks_in(server, secret)


def test_plain_http_clients_still_work_without_tls(server_overrides: dict[str, Any],
                                                   start_server: Any) -> None:
    overrides = dict(server_overrides, **LIMITS, **{"server.tls": "false"})
    server = start_server(overrides, "--dev")
    with httpx.Client(base_url=server.url, timeout=10) as c:
        assert c.get("/healthz").status_code == 200
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=CUT * 2)
    started = time.monotonic()
    assert _read_until_closed(sock).startswith(b"HTTP/1.1 408 ")
    assert time.monotonic() - started < CUT
