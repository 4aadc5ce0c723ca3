"""fleetctl against a fake Fleet server: what users see, and what the server receives.

The fake is a small Starlette app (REST endpoints plus the live-query websocket) served by
uvicorn on a random local port in a background thread. fleetctl runs in-process through
`fleetctl.cli.main(argv)`, so stdout/stderr are captured with capsys.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from fleet.tls import ensure_dev_certificate
from fleetctl.cli import main
from fleetctl.live import NO_HOSTS_TARGETED, parse_duration
from fleetctl.specs import KINDS, KINDS_BY_NAME

REPO = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "tok-admin"
OBSERVER_TOKEN = "tok-observer"
REST_ONLY_TOKEN = "tok-rest-only"  # accepted by REST, refused by the websocket
RESET_TOKEN = "tok-reset"  # a user an admin required a new password of
SCHEDULES = ("cleanups_then_aggregation", "usage_statistics")
ENV_VARS = ("ADDRESS", "EMAIL", "TOKEN", "INSECURE", "ROOTCA", "URL_PREFIX", "CUSTOM_HEADER",
            "PASSWORD", "NAME", "ORG_NAME", "CONFIG", "CONTEXT", "HOSTS", "LABELS", "QUERY",
            "QUERYNAME", "TIMEOUT", "NEW_PASSWORD")


def envelope(status: int, message: str, reason: str, **headers: str) -> JSONResponse:
    body = {"message": message, "errors": [{"name": "base", "reason": reason}], "uuid": "u-1"}
    return JSONResponse(body, status_code=status, headers=headers)


def make_host(n: int) -> dict[str, Any]:
    return {
        "id": n, "uuid": f"uuid-{n}", "hostname": f"host{n}", "display_name": f"host{n}",
        "display_text": f"host{n}", "platform": "ubuntu", "osquery_version": "5.12.1",
        "status": "online" if n % 2 else "offline",
    }


@dataclass
class FakeFleet:
    """Just enough of Fleet for fleetctl, recording every request it gets."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    ws_received: list[dict[str, Any]] = field(default_factory=list)
    ws_headers: list[dict[str, str]] = field(default_factory=list)
    hosts: list[dict[str, Any]] = field(default_factory=list)
    query_specs: list[dict[str, Any]] = field(default_factory=list)
    secrets: list[dict[str, Any]] = field(default_factory=list)
    setup_done: bool = False
    campaigns: dict[int, str] = field(default_factory=dict)
    pending_schedules: set[str] = field(default_factory=set)

    def reset(self) -> None:
        self.requests.clear()
        self.ws_received.clear()
        self.ws_headers.clear()
        self.hosts = [make_host(1), make_host(2)]
        self.query_specs = [
            {"name": "uptime", "description": "Host uptime", "query": "SELECT * FROM uptime;",
             "team": "", "interval": 3600, "observer_can_run": True,
             "automations_enabled": False, "platform": "", "min_osquery_version": "",
             "logging": "snapshot", "discard_data": False},
            {"name": "users", "description": "", "query": "SELECT *\nFROM users;", "team": "",
             "interval": 0, "observer_can_run": False, "automations_enabled": False,
             "platform": "linux", "min_osquery_version": "", "logging": "snapshot",
             "discard_data": False},
        ]
        self.secrets = [{"secret": "s3cr3t", "created_at": "2024-01-02T03:04:05Z",
                         "team_id": None}]
        self.setup_done = False
        self.campaigns.clear()
        self.pending_schedules.clear()

    def bodies(self, path: str) -> list[Any]:
        return [r["body"] for r in self.requests if r["path"].endswith(path)]

    async def record(self, request: Request) -> Any:
        raw = await request.body()
        body = json.loads(raw) if raw else None
        self.requests.append({
            "method": request.method, "path": request.url.path,
            "query": dict(request.query_params), "headers": dict(request.headers), "body": body,
        })
        return body

    @staticmethod
    def caller(request: Request) -> str | None:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        return {ADMIN_TOKEN: "admin", OBSERVER_TOKEN: "observer",
                REST_ONLY_TOKEN: "admin", RESET_TOKEN: "reset"}.get(token)

    def app(self) -> Starlette:
        def authed(handler: Any) -> Any:
            async def endpoint(request: Request) -> Response:
                body = await self.record(request)
                role = self.caller(request)
                if role is None:
                    return envelope(401, "Authentication required", "Authentication required")
                if role == "reset" and not request.url.path.endswith("password_reset"):
                    return envelope(403, "Permission Denied", "password reset required")
                result: Response = await handler(request, body, role)
                return result
            return endpoint

        async def setup(request: Request) -> Response:
            body = await self.record(request)
            if self.setup_done:
                return envelope(404, "Resource Not Found", "not found")
            self.setup_done = True
            return JSONResponse({
                "admin": {"id": 1, "email": body["admin"]["email"], "global_role": "admin"},
                "org_info": body["org_info"], "server_url": body["server_url"],
                "osquery_enroll_secret": "s3cr3t", "token": ADMIN_TOKEN,
            })

        async def login(request: Request) -> Response:
            body = await self.record(request)
            if body["email"] == "busy@example.com":
                return envelope(429, "limit exceeded, retry after: 30s",
                                "limit exceeded, retry after: 30s", **{"Retry-After": "30"})
            if body == {"email": "admin@example.com", "password": "p@ssw0rd!"}:
                return JSONResponse({"user": {"id": 1, "email": body["email"],
                                              "force_password_reset": False},
                                     "token": ADMIN_TOKEN, "available_teams": []})
            if body == {"email": "new@example.com", "password": "temp0rary!pass"}:
                return JSONResponse({"user": {"id": 2, "email": body["email"],
                                              "force_password_reset": True},
                                     "token": RESET_TOKEN, "available_teams": []})
            return envelope(401, "Authentication failed", "Authentication failed")

        async def logout(request: Request, body: Any, role: str) -> Response:
            return JSONResponse({})

        async def perform_reset(request: Request, body: Any, role: str) -> Response:
            if role != "reset":
                return envelope(400, "Bad request", "user does not require password reset")
            if len(body["new_password"]) < 12:
                return envelope(422, "Validation Failed", "Password does not meet required "
                                "criteria: Must include 12 characters, at least 1 number (e.g. "
                                "0 - 9), and at least 1 symbol (e.g. &*#).")
            return JSONResponse({"user": {"id": 2, "force_password_reset": False}})

        async def list_hosts(request: Request, body: Any, role: str) -> Response:
            page, per_page = int(request.query_params["page"]), int(
                request.query_params["per_page"])
            return JSONResponse({"hosts": self.hosts[page * per_page:(page + 1) * per_page]})

        async def host_by_identifier(request: Request, body: Any, role: str) -> Response:
            ident = request.path_params["identifier"]
            for host in self.hosts:
                if ident in (host["hostname"], host["uuid"]):
                    return JSONResponse({"host": host})
            return envelope(404, "Resource Not Found", "Host doesn't exist.")

        async def query_specs(request: Request, body: Any, role: str) -> Response:
            if request.method == "POST":
                if role != "admin":
                    return envelope(403, "Permission Denied", "forbidden")
                return JSONResponse({})
            return JSONResponse({"specs": self.query_specs})

        async def query_spec(request: Request, body: Any, role: str) -> Response:
            for spec in self.query_specs:
                if spec["name"] == request.path_params["name"]:
                    return JSONResponse({"specs": spec})
            return envelope(404, "Resource Not Found", "query not found")

        async def enroll_secret(request: Request, body: Any, role: str) -> Response:
            if request.method == "POST":
                return JSONResponse({})
            return JSONResponse({"spec": {"secrets": self.secrets}})

        async def list_queries(request: Request, body: Any, role: str) -> Response:
            term = request.query_params.get("query", "")
            found = [{"id": i + 10, "name": s["name"], "query": s["query"]}
                     for i, s in enumerate(self.query_specs) if term in s["name"]]
            return JSONResponse({"queries": found})

        async def run_by_identifiers(request: Request, body: Any, role: str) -> Response:
            unknown = [lbl for lbl in body["selected"]["labels"] if lbl != "All Hosts"]
            if unknown:
                return envelope(400, "Bad request",
                                f"Invalid label name(s): {', '.join(unknown)}.")
            names = {h["hostname"] for h in self.hosts}
            if not body["selected"]["labels"] and not names & set(body["selected"]["hosts"]):
                return envelope(400, "Bad request", "no hosts targeted")
            campaign_id = 40 + len(self.campaigns)
            self.campaigns[campaign_id] = body["query"] or "saved"
            return JSONResponse({"campaign": {"id": campaign_id, "query_id": 7, "status": 0,
                                              "user_id": 1}})

        async def trigger(request: Request, body: Any, role: str) -> Response:
            name = request.query_params.get("name", "")
            if role != "admin":
                return envelope(403, "Permission Denied", "forbidden")
            if name not in SCHEDULES:
                return envelope(404, "Resource Not Found", "invalid name; supported trigger "
                                f"names are {', '.join(SCHEDULES)}")
            if name in self.pending_schedules:
                return envelope(409, "Conflict", f"conflicts with current status of {name} "
                                "schedule: triggered run started 1.2s ago")
            self.pending_schedules.add(name)
            return JSONResponse({})

        async def results(ws: WebSocket) -> None:
            self.ws_headers.append(dict(ws.headers))
            await ws.accept()
            auth = await ws.receive_json()
            self.ws_received.append(auth)
            if auth["data"]["token"] != ADMIN_TOKEN:
                await fail(ws, "unauthorized")
                return
            select = await ws.receive_json()
            self.ws_received.append(select)
            scenario = self.campaigns.get(select["data"]["campaign_id"])
            if scenario is None or "gone" in scenario:
                await fail(ws, "cannot find campaign for ID 0")
                return
            hang = "hang" in scenario
            await ws.send_json({"type": "totals", "data": {
                "count": 3 if hang else 2, "online": 2, "offline": 1 if hang else 0,
                "missing_in_action": 0}})
            await ws.send_json({"type": "status", "data": {
                "expected_results": 2, "actual_results": 0, "status": "pending"}})
            for host_id, extra in ((1, {}), (1, {}), (2, {"error": "no such table: nope"})):
                host = {"id": host_id, "hostname": f"host{host_id}",
                        "display_name": f"host{host_id}"}
                rows = [] if extra else [{"total_seconds": "42", "host_hostname": "host1",
                                          "host_display_name": "host1"}]
                await ws.send_json({"type": "result", "data": {
                    "distributed_query_execution_id": 40, "host": host, "rows": rows, **extra}})
            await ws.send_json({"type": "status", "data": {
                "expected_results": 2, "actual_results": 2, "status": "finished"}})
            try:
                while True:  # stay open until fleetctl hangs up, as Fleet does
                    await ws.receive_text()
            except WebSocketDisconnect:
                return

        api = "/api/latest/fleet"
        routes = [
            Route("/api/v1/setup", setup, methods=["POST"]),
            Route(f"{api}/login", login, methods=["POST"]),
            Route(f"{api}/logout", authed(logout), methods=["POST"]),
            Route(f"{api}/perform_required_password_reset", authed(perform_reset),
                  methods=["POST"]),
            Route(f"{api}/hosts", authed(list_hosts)),
            Route(f"{api}/hosts/identifier/{{identifier}}", authed(host_by_identifier)),
            Route(f"{api}/spec/queries", authed(query_specs), methods=["GET", "POST"]),
            Route(f"{api}/spec/queries/{{name}}", authed(query_spec)),
            Route(f"{api}/spec/enroll_secret", authed(enroll_secret), methods=["GET", "POST"]),
            Route(f"{api}/queries", authed(list_queries)),
            Route(f"{api}/queries/run_by_identifiers", authed(run_by_identifiers),
                  methods=["POST"]),
            Route(f"{api}/trigger", authed(trigger), methods=["POST"]),
            WebSocketRoute(f"{api}/results/websocket", results),
        ]
        return Starlette(routes=[Mount("/prefix", routes=list(routes)), *routes])


async def fail(ws: WebSocket, message: str) -> None:
    """Send an error, then let fleetctl hang up (within a deadline) before closing: closed
    at once, the close can reach fleetctl before the error, and the test would see which
    message won the race instead of how fleetctl reports the error."""
    await ws.send_json({"type": "error", "data": message})
    try:
        async with asyncio.timeout(10):
            while True:
                await ws.receive_text()
    except WebSocketDisconnect:
        return
    except TimeoutError:
        await ws.close()


def serve(app: Starlette, certfile: str | None = None, keyfile: str | None = None
          ) -> Iterator[int]:
    """Run `app` on a random local port in a thread until the generator is closed."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    uv = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off",
                                       ssl_certfile=certfile, ssl_keyfile=keyfile))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while True:  # poll until the server accepts connections
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            if uv.started:
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, "fake Fleet server did not start"
        time.sleep(0.02)
    yield port
    uv.should_exit = True
    thread.join(timeout=5)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[FakeFleet, str]]:
    fake = FakeFleet()
    fake.reset()
    for port in serve(fake.app()):
        yield fake, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The fake behind HTTPS with a self-signed certificate for 127.0.0.1."""
    cert_file, key_file, _ = ensure_dev_certificate(tmp_path_factory.mktemp("tls"))
    fake = FakeFleet()
    fake.reset()
    for port in serve(fake.app(), certfile=str(cert_file), keyfile=str(key_file)):
        yield f"https://127.0.0.1:{port}", cert_file


@pytest.fixture
def fake(server: tuple[FakeFleet, str], monkeypatch: pytest.MonkeyPatch) -> FakeFleet:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    server[0].reset()
    return server[0]


@pytest.fixture
def address(server: tuple[FakeFleet, str]) -> str:
    return server[1]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return tmp_path / "dotfleet" / "config"


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture
def fleetctl(capsys: pytest.CaptureFixture[str], config: Path) -> Any:
    def run(*argv: str) -> Run:
        code = main([*argv, "--config", str(config)])
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)
    return run


@pytest.fixture
def logged_in(fleetctl: Any, address: str, fake: FakeFleet) -> Any:
    assert fleetctl("config", "set", "--address", address, "--token", ADMIN_TOKEN).code == 0
    fake.requests.clear()
    return fleetctl


def read_config(config: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(config.read_text())
    return data


# --- version and config -------------------------------------------------------------------

def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == "fleetctl - version 0.1.0\n"
    assert main(["version"]) == 0
    assert capsys.readouterr().out == "fleetctl - version 0.1.0\n"


def test_python_dash_m_entry_point() -> None:
    proc = subprocess.run([sys.executable, "-m", "fleetctl", "--version"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert proc.stdout == "fleetctl - version 0.1.0\n"


def test_config_set_writes_private_yaml_and_get_reads_it(fleetctl: Any, config: Path) -> None:
    res = fleetctl("config", "set", "--address", "https://fleet.example.com:8412",
                   "--email", "a@example.com", "--token", "sekret-token", "--tls-skip-verify",
                   "--url-prefix", "/fleet", "--custom-header", "X-One:1",
                   "--custom-header", "X-Two: two")
    assert res.code == 0, res.err
    assert res.out.splitlines() == [
        '[+] Set the address config key to "https://fleet.example.com:8412" in the "default" '
        "context",
        '[+] Set the email config key to "a@example.com" in the "default" context',
        '[+] Set the token config key to "<redacted>" in the "default" context',
        '[+] Set the tls-skip-verify config key to "true" in the "default" context',
        '[+] Set the url-prefix config key to "/fleet" in the "default" context',
        '[+] Set the custom-headers config key to [X-One:1 X-Two:two] in the "default" context',
    ]
    assert "sekret-token" not in res.out
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700
    assert read_config(config) == {"contexts": {"default": {
        "address": "https://fleet.example.com:8412", "email": "a@example.com",
        "token": "sekret-token", "tls-skip-verify": True, "rootca": "", "url-prefix": "/fleet",
        "custom-headers": {"X-One": "1", "X-Two": "two"},
    }}}

    assert fleetctl("config", "get", "address").out == (
        "  default.address => https://fleet.example.com:8412\n")
    assert fleetctl("config", "get", "tls-skip-verify").out == (
        "  default.tls-skip-verify => true\n")
    assert fleetctl("config", "get", "custom-headers").out == (
        "  default.custom-headers => map[X-One:1 X-Two:two]\n")

    res = fleetctl("config", "set", "--context", "staging", "--address", "http://x:1")
    assert res.out.splitlines() == [
        '[+] Context "staging" not found, creating it with default values',
        '[+] Set the address config key to "http://x:1" in the "staging" context',
    ]
    assert set(read_config(config)["contexts"]) == {"default", "staging"}
    assert fleetctl("--context", "staging", "config", "get", "address").out == (
        "  staging.address => http://x:1\n")


def test_values_beginning_with_a_dash_are_values(fleetctl: Any, config: Path, address: str,
                                                 fake: FakeFleet) -> None:
    """Go's flag package takes the next word as a valued flag's value; tokens (URL-safe
    base64) and passwords may begin with a dash."""
    assert fleetctl("config", "set", "--token", "-Ab3-token", "--address", address).code == 0
    assert read_config(config)["contexts"]["default"]["token"] == "-Ab3-token"
    res = fleetctl("login", "--email", "admin@example.com", "--password", "-p@ssw0rd!")
    assert "Authentication failed" in res.err  # the fake knows another password
    assert fake.bodies("/login") == [{"email": "admin@example.com", "password": "-p@ssw0rd!"}]


def test_config_set_reads_environment(fleetctl: Any, config: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADDRESS", "https://env.example.com")
    monkeypatch.setenv("INSECURE", "true")
    assert fleetctl("config", "set").code == 0
    ctx = read_config(config)["contexts"]["default"]
    assert ctx["address"] == "https://env.example.com"
    assert ctx["tls-skip-verify"] is True


def test_config_set_rootca_stores_an_absolute_path(fleetctl: Any, config: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".fleet-dev").mkdir()
    (tmp_path / ".fleet-dev" / "fleet-dev.crt").write_text("cert")
    monkeypatch.chdir(tmp_path)
    res = fleetctl("config", "set", "--rootca", ".fleet-dev/fleet-dev.crt")
    assert res.code == 0, res.err
    absolute = str(tmp_path / ".fleet-dev" / "fleet-dev.crt")
    assert res.out == (f'[+] Set the rootca config key to "{absolute}" in the "default" '
                       "context\n")
    assert read_config(config)["contexts"]["default"]["rootca"] == absolute

    res = fleetctl("config", "set", "--rootca", "missing.crt")
    assert res.code == 1
    assert res.err == f"Error: --rootca missing.crt: no such file ({tmp_path / 'missing.crt'})\n"
    assert read_config(config)["contexts"]["default"]["rootca"] == absolute


def test_relative_rootca_from_an_old_config_explains_itself(fleetctl: Any, config: Path,
                                                            address: str) -> None:
    config.parent.mkdir(mode=0o700)
    config.write_text(yaml.safe_dump({"contexts": {"default": {
        "address": address, "token": ADMIN_TOKEN, "rootca": "certs/ca.crt"}}}))
    res = fleetctl("get", "hosts")
    assert res.code == 1
    assert res.err.startswith("Error: reading root CA certs/ca.crt: ")
    assert res.err.endswith("(a relative path is read from the current directory; store an "
                            "absolute one with: fleetctl config set --rootca /path/to/ca.crt)\n")


def test_config_get_rejects_unknown_key(fleetctl: Any) -> None:
    res = fleetctl("config", "get", "password")
    assert res.code == 2
    assert "invalid choice: 'password'" in res.err


def test_commands_explain_missing_address_and_token(fleetctl: Any, address: str,
                                                    fake: FakeFleet) -> None:
    res = fleetctl("get", "hosts")
    assert res.code == 1
    assert res.err == ("Error: set the Fleet API address with: fleetctl config set "
                       "--address https://localhost:8080\n")
    fleetctl("config", "set", "--address", address)
    res = fleetctl("get", "hosts")
    assert res.code == 1
    assert res.err == "Error: Token missing. Please log in with: fleetctl login\n"
    res = fleetctl("get", "hosts", "--context", "nope")
    assert res.code == 1
    assert 'context "nope" is not found' in res.err
    assert fake.requests == []


def test_connection_error_names_the_address(fleetctl: Any) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    fleetctl("config", "set", "--address", dead, "--token", "t")
    res = fleetctl("get", "hosts")
    assert res.code == 1
    assert res.err.startswith(f"Error: could not connect to {dead}: ")
    assert len(res.err.splitlines()) == 1
    assert "Traceback" not in res.err


# --- setup, login, logout -----------------------------------------------------------------

def test_setup_stores_token_and_refuses_a_second_time(fleetctl: Any, address: str,
                                                       fake: FakeFleet, config: Path) -> None:
    fleetctl("config", "set", "--address", address)
    res = fleetctl("setup", "--email", "admin@example.com", "--name", "Admin",
                   "--password", "p@ssw0rd!", "--org-name", "Acme")
    assert res.code == 0, res.err
    assert res.out == "[+] Fleet setup successful and context configured!\n"
    assert fake.bodies("/api/v1/setup") == [{
        "admin": {"admin": True, "email": "admin@example.com", "name": "Admin",
                  "password": "p@ssw0rd!", "password_confirmation": "p@ssw0rd!"},
        "org_info": {"org_name": "Acme"}, "server_url": address,
    }]
    ctx = read_config(config)["contexts"]["default"]
    assert (ctx["email"], ctx["token"]) == ("admin@example.com", ADMIN_TOKEN)

    res = fleetctl("setup", "--email", "admin@example.com", "--name", "Admin",
                   "--password", "p@ssw0rd!", "--org-name", "Acme")
    assert res.code == 1
    assert res.err == "Error: Fleet has already been setup; log in with: fleetctl login\n"


def test_setup_requires_flags(fleetctl: Any, address: str) -> None:
    fleetctl("config", "set", "--address", address)
    res = fleetctl("setup", "--password", "x")
    assert res.code == 1
    assert res.err == 'Error: Required flags "email, name, org-name" not set\n'


def test_login_and_logout(fleetctl: Any, address: str, fake: FakeFleet, config: Path) -> None:
    fleetctl("config", "set", "--address", address)
    res = fleetctl("login", "--email", "admin@example.com", "--password", "p@ssw0rd!")
    assert res.code == 0, res.err
    assert res.out == "[+] Fleet login successful and context configured!\n"
    assert fake.bodies("/login") == [{"email": "admin@example.com", "password": "p@ssw0rd!"}]
    ctx = read_config(config)["contexts"]["default"]
    assert (ctx["email"], ctx["token"]) == ("admin@example.com", ADMIN_TOKEN)

    res = fleetctl("logout")
    assert res.code == 0, res.err
    assert res.out == "[+] Fleet logout successful and local token cleared!\n"
    logout = [r for r in fake.requests if r["path"].endswith("/logout")]
    assert logout[0]["headers"]["authorization"] == f"Bearer {ADMIN_TOKEN}"
    assert read_config(config)["contexts"]["default"]["token"] == ""


def test_login_from_environment(fleetctl: Any, address: str,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    fleetctl("config", "set", "--address", address)
    monkeypatch.setenv("EMAIL", "admin@example.com")
    monkeypatch.setenv("PASSWORD", "p@ssw0rd!")
    res = fleetctl("login")
    assert res.code == 0, res.err
    assert res.out.splitlines() == [
        "Using value of environment variable $EMAIL as email.",
        "Using value of environment variable $PASSWORD as password.",
        "[+] Fleet login successful and context configured!",
    ]


def test_login_failures(fleetctl: Any, address: str, config: Path) -> None:
    fleetctl("config", "set", "--address", address)
    res = fleetctl("login", "--email", "admin@example.com", "--password", "wrong")
    assert res.code == 1
    assert res.err == "Error: Login failed: Authentication failed\n"
    assert read_config(config)["contexts"]["default"]["token"] == ""

    res = fleetctl("login", "--email", "busy@example.com", "--password", "x")
    assert res.code == 1
    assert res.err == ("Error: Login failed: too many login attempts (limit exceeded, retry "
                       "after: 30s). Retry after 30s.\n")


def test_setup_without_a_terminal_asks_for_the_flag(fleetctl: Any, address: str,
                                                    fake: FakeFleet) -> None:
    fleetctl("config", "set", "--address", address)
    res = fleetctl("setup", "--email", "admin@example.com", "--name", "Admin",
                   "--org-name", "Acme")
    assert res.code == 1
    assert res.err == ("Error: no password given and stdin is not a terminal to prompt on: "
                       "pass --password\n")
    assert fake.bodies("/api/v1/setup") == []


def test_setup_without_a_terminal_has_no_getpass_warning(tmp_path: Path, address: str,
                                                         fake: FakeFleet) -> None:
    config = tmp_path / "config"
    env = {**os.environ, "PYTHONPATH": str(REPO), "ADDRESS": address}
    argv = [sys.executable, "-m", "fleetctl", "--config", str(config)]
    subprocess.run([*argv, "config", "set"], env=env, check=True, capture_output=True,
                   timeout=60)
    proc = subprocess.run([*argv, "setup", "--email", "a@example.com", "--name", "A",
                           "--org-name", "Acme"], env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr == ("Error: no password given and stdin is not a terminal to prompt on: "
                           "pass --password\n")


def test_login_with_required_password_reset_off_a_terminal(fleetctl: Any, address: str,
                                                           fake: FakeFleet,
                                                           config: Path) -> None:
    fleetctl("config", "set", "--address", address)
    res = fleetctl("login", "--email", "new@example.com", "--password", "temp0rary!pass")
    assert res.code == 1
    assert res.out == "[!] An admin requires you to set a new password before using Fleet.\n"
    assert res.err == ("Error: Login failed: a new password is required; run: fleetctl login "
                       "--email new@example.com --new-password '<new password>'\n")
    assert read_config(config)["contexts"]["default"]["token"] == ""

    res = fleetctl("login", "--email", "new@example.com", "--password", "temp0rary!pass",
                   "--new-password", "short")
    assert res.code == 1
    assert res.err == ("Error: Login failed: setting the new password: Password does not meet "
                       "required criteria: Must include 12 characters, at least 1 number (e.g. "
                       "0 - 9), and at least 1 symbol (e.g. &*#).\n")
    assert read_config(config)["contexts"]["default"]["token"] == ""

    fake.requests.clear()
    res = fleetctl("login", "--email", "new@example.com", "--password", "temp0rary!pass",
                   "--new-password", "n3w-passw0rd!")
    assert res.code == 0, res.err
    assert res.out.splitlines() == [
        "[!] An admin requires you to set a new password before using Fleet.",
        "[+] New password set.",
        "[+] Fleet login successful and context configured!",
    ]
    reset = [r for r in fake.requests if r["path"].endswith("perform_required_password_reset")]
    assert [r["body"] for r in reset] == [{"new_password": "n3w-passw0rd!"}]
    assert reset[0]["headers"]["authorization"] == f"Bearer {RESET_TOKEN}"
    ctx = read_config(config)["contexts"]["default"]
    assert (ctx["email"], ctx["token"]) == ("new@example.com", RESET_TOKEN)


def test_login_prompts_for_the_required_new_password(fleetctl: Any, address: str,
                                                     fake: FakeFleet,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    fleetctl("config", "set", "--address", address)
    prompts: list[str] = []
    answers = iter(["n3w-passw0rd!", "n3w-passw0rd!"])

    def getpass(prompt: str) -> str:
        prompts.append(prompt)
        return next(answers)

    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("getpass.getpass", getpass)
    res = fleetctl("login", "--email", "new@example.com", "--password", "temp0rary!pass")
    assert res.code == 0, res.err
    assert prompts == ["New password: ", "Confirm new password: "]
    assert fake.bodies("perform_required_password_reset") == [{"new_password": "n3w-passw0rd!"}]


def test_commands_name_the_reset_command_on_password_reset_required(
        logged_in: Any, fleetctl: Any) -> None:
    fleetctl("config", "set", "--token", RESET_TOKEN, "--email", "new@example.com")
    res = fleetctl("get", "hosts")
    assert res.code == 1
    assert res.err == (
        "Error: could not list hosts: Permission Denied: password reset required (HTTP 403). "
        "An admin requires a new password for this account; set it with: fleetctl login "
        "--email new@example.com --new-password '<new password>'\n")
    res = fleetctl("query", "--hosts", "host1", "--query", "SELECT 1")
    assert res.code == 1
    assert "set it with: fleetctl login --email new@example.com --new-password" in res.err


# --- get ------------------------------------------------------------------------------------

def test_get_hosts_table(logged_in: Any, fake: FakeFleet) -> None:
    res = logged_in("get", "hosts")
    assert res.code == 0, res.err
    assert res.out == (
        "+--------+----------+----------+-----------------+---------+\n"
        "|  UUID  | HOSTNAME | PLATFORM | OSQUERY VERSION | STATUS  |\n"
        "+--------+----------+----------+-----------------+---------+\n"
        "| uuid-1 | host1    | ubuntu   | 5.12.1          | online  |\n"
        "+--------+----------+----------+-----------------+---------+\n"
        "| uuid-2 | host2    | ubuntu   | 5.12.1          | offline |\n"
        "+--------+----------+----------+-----------------+---------+\n"
    )
    req = fake.requests[0]
    assert req["headers"]["authorization"] == f"Bearer {ADMIN_TOKEN}"
    assert req["query"] == {"page": "0", "per_page": "100"}


def test_get_hosts_pages_through_everything(logged_in: Any, fake: FakeFleet) -> None:
    fake.hosts = [make_host(n) for n in range(1, 206)]
    res = logged_in("get", "hosts", "--json")
    assert res.code == 0, res.err
    lines = res.out.splitlines()
    assert len(lines) == 205
    assert json.loads(lines[-1]) == {"kind": "host", "apiVersion": "v1",
                                     "spec": make_host(205)}
    assert [r["query"]["page"] for r in fake.requests] == ["0", "1", "2"]


def test_get_hosts_yaml_and_single_host(logged_in: Any) -> None:
    res = logged_in("get", "hosts", "--yaml")
    docs = [d for d in yaml.safe_load_all(res.out) if d]
    assert res.out.startswith("---\napiVersion: v1\nkind: host\nspec:\n")
    assert [d["spec"]["hostname"] for d in docs] == ["host1", "host2"]

    res = logged_in("get", "host", "uuid-2")
    assert res.code == 0, res.err
    assert yaml.safe_load(res.out) == {"apiVersion": "v1", "kind": "host",
                                       "spec": make_host(2)}
    res = logged_in("get", "hosts", "host1", "--json")
    assert json.loads(res.out)["spec"]["uuid"] == "uuid-1"

    res = logged_in("get", "hosts", "ghost")
    assert res.code == 1
    assert res.err == ("Error: could not get host: Resource Not Found: Host doesn't exist. "
                       "(HTTP 404)\n")


def test_get_queries(logged_in: Any, fake: FakeFleet) -> None:
    res = logged_in("get", "queries")
    assert res.code == 0, res.err
    assert res.out == (
        "+--------+-------------+-----------------------+\n"
        "|  NAME  | DESCRIPTION |         QUERY         |\n"
        "+--------+-------------+-----------------------+\n"
        "| uptime | Host uptime | SELECT * FROM uptime; |\n"
        "+--------+-------------+-----------------------+\n"
        "| users  |             | SELECT *              |\n"
        "|        |             | FROM users;           |\n"
        "+--------+-------------+-----------------------+\n"
    )
    res = logged_in("get", "q", "--json")
    assert [json.loads(line) for line in res.out.splitlines()] == [
        {"kind": "query", "apiVersion": "v1", "spec": spec} for spec in fake.query_specs]

    res = logged_in("get", "query", "users")
    assert res.code == 0, res.err
    assert "  query: |-\n    SELECT *\n    FROM users;\n" in res.out
    assert yaml.safe_load(res.out) == {"apiVersion": "v1", "kind": "query",
                                       "spec": fake.query_specs[1]}
    res = logged_in("get", "queries", "--yaml")
    assert [d["spec"]["name"] for d in yaml.safe_load_all(res.out) if d] == ["uptime", "users"]


def test_get_enroll_secret(logged_in: Any, fake: FakeFleet) -> None:
    res = logged_in("get", "enroll_secret")
    assert res.code == 0, res.err
    assert res.out == (
        "---\napiVersion: v1\nkind: enroll_secret\nspec:\n  secrets:\n"
        "  - created_at: '2024-01-02T03:04:05Z'\n    secret: s3cr3t\n    team_id: null\n"
    )
    res = logged_in("get", "enroll_secrets", "--json")
    assert json.loads(res.out) == {"kind": "enroll_secret", "apiVersion": "v1",
                                   "spec": {"secrets": fake.secrets}}


def test_server_errors_are_one_clear_line(logged_in: Any, fleetctl: Any) -> None:
    fleetctl("config", "set", "--token", "expired")
    res = fleetctl("get", "hosts")
    assert res.code == 1
    assert res.err == (
        "Error: could not list hosts: Authentication required (HTTP 401). Token invalid or "
        "session expired. Please log in with: fleetctl login\n")


# --- apply ------------------------------------------------------------------------------------

SPECS = """\
---
apiVersion: v1
kind: query
spec:
  name: osquery_info
  description: Version info
  query: SELECT * FROM osquery_info;
  interval: 60
---
apiVersion: v1
kind: query
spec:
  name: processes
  query: SELECT * FROM processes;
---
apiVersion: v1
kind: enroll_secret
spec:
  secrets:
  - secret: one
  - secret: two
"""


def test_apply_queries_and_enroll_secrets(logged_in: Any, fake: FakeFleet,
                                          tmp_path: Path) -> None:
    path = tmp_path / "specs.yml"
    path.write_text(SPECS)
    res = logged_in("apply", "-f", str(path))
    assert res.code == 0, res.err
    assert res.out == "[+] applied 2 queries\n[+] applied enroll secrets\n"
    assert fake.bodies("/spec/queries") == [{"specs": [
        {"name": "osquery_info", "description": "Version info",
         "query": "SELECT * FROM osquery_info;", "interval": 60},
        {"name": "processes", "query": "SELECT * FROM processes;"},
    ]}]
    assert fake.bodies("/spec/enroll_secret") == [
        {"spec": {"secrets": [{"secret": "one"}, {"secret": "two"}]}}]


def test_apply_sends_kinds_in_dependency_order(logged_in: Any, fake: FakeFleet,
                                               tmp_path: Path) -> None:
    """`KINDS` order, not file order: a kind's specs go after those it may depend on."""
    path = tmp_path / "specs.yml"
    path.write_text("---\nkind: enroll_secret\nspec: {secrets: [{secret: one}]}\n"
                    "---\nkind: query\nspec: {name: a, query: SELECT 1}\n"
                    "---\nkind: report\nspec: {name: b, query: SELECT 2}\n")
    res = logged_in("apply", "-f", str(path))
    assert res.code == 0, res.err
    assert res.out == "[+] applied 2 queries\n[+] applied enroll secrets\n"
    assert [r["path"].rpartition("/")[2] for r in fake.requests] == ["queries", "enroll_secret"]
    names = [name for kind in KINDS for name in kind.names]
    assert list(KINDS_BY_NAME) == names  # no kind name is claimed twice


def test_apply_dry_run_sends_nothing(logged_in: Any, fake: FakeFleet, tmp_path: Path) -> None:
    path = tmp_path / "specs.yaml"
    path.write_text(SPECS)
    res = logged_in("apply", "-f", str(path), "--dry-run")
    assert res.code == 0, res.err
    assert res.out.startswith("[!] ignoring queries, dry run mode only supported")
    assert fake.requests == []


@pytest.mark.parametrize(("name", "text", "error"), [
    ("specs.json", "{}", "only .yml and .yaml files are supported"),
    ("bad.yml", "kind: [unclosed", "failed to parse"),
    ("empty.yml", "---\n", "no specs found in"),
    ("kindless.yml", "apiVersion: v1\nspec: {name: a}\n", "kindless.yml: document 1:"),
    ("unknown.yml", "---\nkind: query\nspec: {name: a, query: b}\n---\nkind: widget\nspec: {}\n",
     "unknown.yml: document 2:"),
    ("specless.yml", "---\nkind: query\nspec: {name: a, query: b}\n---\nkind: query\n",
     "specless.yml: document 2:"),
])
def test_apply_rejects_bad_files(logged_in: Any, fake: FakeFleet, tmp_path: Path, name: str,
                                 text: str, error: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    res = logged_in("apply", "-f", str(path))
    assert res.code == 1
    assert res.err.startswith("Error: ")
    assert error in res.err
    assert len(res.err.splitlines()) == 1
    assert fake.requests == []


def test_apply_error_messages_name_the_problem(logged_in: Any, tmp_path: Path) -> None:
    path = tmp_path / "x.yml"
    path.write_text("---\nkind: query\nspec: {name: a, query: b}\n---\nkind: widget\nspec: {}\n")
    assert "unknown kind 'widget'" in logged_in("apply", "-f", str(path)).err
    path.write_text("---\nkind: query\n")
    assert "missing 'spec' for kind 'query'" in logged_in("apply", "-f", str(path)).err
    path.write_text("apiVersion: v1\nspec: {}\n")
    assert "missing 'kind'" in logged_in("apply", "-f", str(path)).err


@pytest.mark.parametrize(("spec", "error"), [
    ("{name: x, query: 1}", 'document 2 (kind query, name "x"): spec.query must be a string'),
    ("{name: x, query: q, interval: '60'}",
     'document 2 (kind query, name "x"): spec.interval must be an integer'),
    ("{name: x, query: q, interval: true}",
     'document 2 (kind query, name "x"): spec.interval must be an integer'),
    ("{name: x, query: q, observer_can_run: 'yes'}",
     'document 2 (kind query, name "x"): spec.observer_can_run must be true or false'),
    ("{name: 7, query: q}", "document 2 (kind query): spec.name must be a string"),
    ("{name: x}", 'document 2 (kind query, name "x"): spec.query is required'),
    ("{name: x, query: q, sql: q}",
     'document 2 (kind query, name "x"): unknown field spec.sql (known: name, query, '),
])
def test_apply_type_errors_name_file_document_and_field(logged_in: Any, fake: FakeFleet,
                                                        tmp_path: Path, spec: str,
                                                        error: str) -> None:
    path = tmp_path / "queries.yml"
    path.write_text(f"---\nkind: query\nspec: {{name: ok, query: q}}\n---\nkind: query\n"
                    f"spec: {spec}\n")
    res = logged_in("apply", "-f", str(path))
    assert res.code == 1
    assert res.err.startswith(f"Error: {path}: {error}")
    assert len(res.err.splitlines()) == 1
    assert fake.requests == []


def test_apply_secret_type_error_and_empty_fields(logged_in: Any, fake: FakeFleet,
                                                  tmp_path: Path) -> None:
    path = tmp_path / "secrets.yml"
    path.write_text("kind: enroll_secret\nspec: {secrets: [{secret: 12}]}\n")
    res = logged_in("apply", "-f", str(path))
    assert res.err == (f"Error: {path}: document 1 (kind enroll_secret): "
                       "spec.secrets[0].secret must be a string\n")
    # An empty optional field (`description:`) means "not set", not null.
    path.write_text("kind: query\nspec:\n  name: x\n  query: q\n  description:\n")
    assert logged_in("apply", "-f", str(path)).code == 0
    assert fake.bodies("/spec/queries") == [{"specs": [{"name": "x", "query": "q"}]}]


def test_apply_forbidden(logged_in: Any, fleetctl: Any, tmp_path: Path) -> None:
    fleetctl("config", "set", "--token", OBSERVER_TOKEN)
    path = tmp_path / "specs.yml"
    path.write_text(SPECS)
    res = fleetctl("apply", "-f", str(path))
    assert res.code == 1
    assert res.err == "Error: applying queries: Permission Denied: forbidden (HTTP 403)\n"


# --- trigger --------------------------------------------------------------------------------

def test_trigger_sends_the_schedule_name(logged_in: Any, fake: FakeFleet) -> None:
    res = logged_in("trigger", "--name", "cleanups_then_aggregation")
    assert (res.code, res.err) == (0, "")
    assert res.out == "[+] Sent request to trigger cleanups_then_aggregation schedule\n"
    sent = [(r["method"], r["path"], r["query"], r["body"]) for r in fake.requests]
    assert sent == [("POST", "/api/latest/fleet/trigger",
                     {"name": "cleanups_then_aggregation"}, None)]


def test_trigger_while_a_run_is_pending_or_for_an_unknown_name_says_so(
        logged_in: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Go fleetctl prints the server's reason after `[!]` and exits 0 on 409 and 404."""
    assert logged_in("trigger", "--name", "usage_statistics").code == 0
    res = logged_in("trigger", "--name", "usage_statistics")
    assert (res.code, res.err) == (0, "")
    assert res.out == ("[!] Conflicts with current status of usage_statistics schedule: "
                       "triggered run started 1.2s ago\n")
    res = logged_in("trigger", "--name", "vulns")
    assert (res.code, res.err) == (0, "")
    assert res.out == ("[!] Invalid name; supported trigger names are "
                       "cleanups_then_aggregation, usage_statistics\n")
    monkeypatch.setenv("NAME", "cleanups_then_aggregation")
    res = logged_in("trigger")
    assert res.out == "[+] Sent request to trigger cleanups_then_aggregation schedule\n"


def test_trigger_without_a_name_asks_for_one(logged_in: Any, fake: FakeFleet) -> None:
    res = logged_in("trigger")
    assert (res.code, res.err) == (0, "")
    assert res.out == ("[!] Name must be specified; supported trigger names are "
                       "cleanups_then_aggregation, usage_statistics\n")
    assert fake.requests[0]["query"] == {"name": ""}


def test_trigger_other_errors_fail(logged_in: Any, fleetctl: Any) -> None:
    fleetctl("config", "set", "--token", OBSERVER_TOKEN)
    res = fleetctl("trigger", "--name", "usage_statistics")
    assert (res.code, res.out) == (1, "")
    assert res.err == ("Error: could not trigger the usage_statistics schedule: Permission "
                       "Denied: forbidden (HTTP 403)\n")


# --- live query -------------------------------------------------------------------------------

def test_query_streams_one_line_per_host(logged_in: Any, fake: FakeFleet) -> None:
    res = logged_in("query", "--hosts", "host1,host2", "--query", "SELECT * FROM uptime;")
    assert res.code == 0, res.err
    assert [json.loads(line) for line in res.out.splitlines()] == [
        {"host": "host1", "rows": [{"host_display_name": "host1", "host_hostname": "host1",
                                    "total_seconds": "42"}]},
        {"host": "host2", "rows": [], "error": "no such table: nope"},
    ]
    assert res.out.splitlines()[0] == ('{"host":"host1","rows":[{"host_display_name":"host1",'
                                       '"host_hostname":"host1","total_seconds":"42"}]}')
    err = res.err.splitlines()
    assert "Error from host2: no such table: nope" in err
    assert err[0] == "0% responded (0% online) | 0/2 targeted hosts (0/2 online)"
    assert err[-1] == "100% responded (100% online) | 2/2 targeted hosts (2/2 online)"
    assert fake.bodies("/run_by_identifiers") == [{
        "query": "SELECT * FROM uptime;", "query_id": None,
        "selected": {"hosts": ["host1", "host2"], "labels": []}}]
    assert fake.ws_received == [
        {"type": "auth", "data": {"token": ADMIN_TOKEN}},
        {"type": "select_campaign", "data": {"campaign_id": 40}},
    ]


def test_query_pretty_and_quiet(logged_in: Any) -> None:
    res = logged_in("report", "--labels", "All Hosts", "--query", "SELECT 1", "--pretty",
                    "--quiet")
    assert res.code == 0, res.err
    assert res.out.startswith('{\n  "host": "host1",\n  "rows": [\n')
    assert res.err == "Error from host2: no such table: nope\n"


def test_query_by_name(logged_in: Any, fake: FakeFleet) -> None:
    fake.query_specs.append({"name": "uptime_long", "query": "SELECT 2"})
    res = logged_in("query", "--hosts", "host1", "--query-name", "uptime", "--team", "3")
    assert res.code == 0, res.err
    lookup = [r for r in fake.requests if r["path"].endswith("/fleet/queries")]
    assert lookup[0]["query"] == {"query": "uptime", "team_id": "3"}
    assert fake.bodies("/run_by_identifiers") == [{
        "query": None, "query_id": 10, "selected": {"hosts": ["host1"], "labels": []}}]

    res = logged_in("query", "--hosts", "host1", "--report-name", "uptim")
    assert res.code == 1
    assert res.err == "Error: Query 'uptim' not found\n"


def test_query_exit_when_online_hosts_answered(logged_in: Any) -> None:
    res = logged_in("query", "--hosts", "host1", "--query", "SELECT 'hang'", "--exit")
    assert res.code == 0, res.err
    assert res.err.splitlines()[-1] == (
        "67% responded (100% online) | 2/3 targeted hosts (2/2 online)")


def test_query_timeout(logged_in: Any) -> None:
    started = time.monotonic()
    res = logged_in("query", "--hosts", "host1", "--query", "SELECT 'hang'", "--timeout",
                    "300ms")
    assert res.code == 1
    assert res.err.splitlines()[-1] == (
        "Stopped by timeout: 1 of 3 targeted hosts did not respond (0 online, 1 offline)")
    assert len(res.out.splitlines()) == 2
    res = logged_in("query", "--hosts", "host1", "--query", "SELECT 'hang'", "--timeout",
                    "300ms", "--quiet")
    assert res.code == 1
    assert res.err.splitlines()[-1] == (
        "Stopped by timeout: 1 of 3 targeted hosts did not respond (0 online, 1 offline)")
    assert "responded" not in res.err  # --quiet drops the progress lines, not the reason
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(("argv", "error"), [
    (["--query", "SELECT 1"], "No hosts or labels targeted"),
    (["--hosts", "host1"], "Query must be specified with --query or --query-name"),
    (["--hosts", "host1", "--query", "x", "--query-name", "y"], "must not be provided together"),
    (["--labels", "nope,All Hosts", "--query", "x"], "Invalid label name(s): nope."),
    (["--hosts", "ghost", "--query", "x"], NO_HOSTS_TARGETED),
    (["--hosts", "host1", "--query", "x", "--timeout", "soon"], "invalid --timeout"),
])
def test_query_usage_and_targeting_errors(logged_in: Any, argv: list[str], error: str) -> None:
    res = logged_in("query", *argv)
    assert res.code == 1
    assert res.err.startswith("Error: ")
    assert error in res.err
    assert res.err.count("\n") == 1


def test_query_websocket_errors_are_fatal(logged_in: Any, fleetctl: Any) -> None:
    res = fleetctl("query", "--hosts", "host1", "--query", "SELECT 'gone'")
    assert res.code == 1
    assert res.err.splitlines()[-1] == "Error: live query: cannot find campaign for ID 0"

    fleetctl("config", "set", "--token", REST_ONLY_TOKEN)
    res = fleetctl("query", "--hosts", "host1", "--query", "SELECT 1")
    assert res.code == 1
    assert res.err == ("Error: live query: unauthorized. Please log in with: fleetctl login\n")


def test_url_prefix_custom_headers_and_debug(logged_in: Any, fleetctl: Any, address: str,
                                             fake: FakeFleet) -> None:
    fleetctl("config", "set", "--url-prefix", "/prefix", "--custom-header", "X-Tenant:acme")
    fake.requests.clear()
    res = fleetctl("query", "--hosts", "host1", "--query", "SELECT 1", "--debug", "--quiet")
    assert res.code == 0, res.err
    assert all(r["path"].startswith("/prefix/api/latest/fleet/") for r in fake.requests)
    assert all(r["headers"]["x-tenant"] == "acme" for r in fake.requests)
    assert fake.ws_headers[-1]["x-tenant"] == "acme"
    assert (f"[debug] POST {address}/prefix/api/latest/fleet/queries/run_by_identifiers -> 200"
            in res.err)
    ws_url = address.replace("http", "ws") + "/prefix/api/latest/fleet/results/websocket"
    assert f"[debug] WS connect {ws_url}" in res.err


def test_parse_duration() -> None:
    assert parse_duration("10s") == 10
    assert parse_duration("1m30s") == 90
    assert parse_duration("1h") == 3600
    assert parse_duration("250ms") == pytest.approx(0.25)
    assert parse_duration("0") == 0
    assert parse_duration("5") == 5


def test_fleetctl_does_not_import_the_server() -> None:
    code = ("import sys, fleetctl.cli, fleetctl.live, fleetctl.specs, fleetctl.get, "
            "fleetctl.trigger; "
            "print(any(m == 'fleet' or m.startswith('fleet.') for m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.strip() == "False", proc.stderr


def test_interrupt_exits_cleanly(logged_in: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr("fleetctl.live._create_campaign", interrupted)
    res = logged_in("query", "--hosts", "host1", "--query", "SELECT 1")
    assert res.code == 130
    assert "Traceback" not in res.err



def test_tls_verification_rootca_and_skip_verify(fleetctl: Any, fake: FakeFleet,
                                                 tls_server: tuple[str, Path]) -> None:
    address, cert = tls_server
    fleetctl("config", "set", "--address", address, "--token", ADMIN_TOKEN)
    res = fleetctl("get", "hosts")
    assert res.code == 1
    assert res.err.startswith(f"Error: could not connect to {address}: ")
    assert "CERTIFICATE_VERIFY_FAILED" in res.err

    fleetctl("config", "set", "--rootca", str(cert))
    assert fleetctl("get", "hosts").code == 0
    res = fleetctl("query", "--hosts", "host1", "--query", "SELECT 1", "--quiet")
    assert res.code == 0, res.err
    assert len(res.out.splitlines()) == 2

    fleetctl("config", "set", "--context", "insecure", "--address", address, "--token",
             ADMIN_TOKEN, "--tls-skip-verify")
    res = fleetctl("query", "--context", "insecure", "--hosts", "host1", "--query", "SELECT 1",
                   "--quiet")
    assert res.code == 0, res.err
    assert len(res.out.splitlines()) == 2


def test_label_specs_are_checked_before_sending(tmp_path: Path) -> None:
    from fleetctl.errors import CLIError
    from fleetctl.specs import parse_specs

    path = tmp_path / "labels.yml"
    path.write_text("---\napiVersion: v1\nkind: label\nspec:\n  name: Pilot\n"
                    "  label_membership_type: manual\n  hosts: [a, b]\n  id: 7\n"
                    "---\nkind: label\nspec: {name: Macs, query: SELECT 1}\n")
    (specs,) = parse_specs(str(path)).values()
    assert specs == [{"name": "Pilot", "label_membership_type": "manual", "hosts": ["a", "b"]},
                     {"name": "Macs", "query": "SELECT 1"}]
    for bad, error in (("{name: x, hosts: a}", "spec.hosts must be a list"),
                       ("{name: x, hosts: [1]}", "spec.hosts must be a list of hostnames"),
                       ("{name: x, label_membership_type: sometimes}",
                        "label_membership_type must be dynamic or manual"),
                       ("{query: SELECT 1}", "spec.name is required")):
        path.write_text(f"kind: label\nspec: {bad}\n")
        with pytest.raises(CLIError, match=error):
            parse_specs(str(path))
