"""End-to-end harness: real `fleet serve` processes over TLS, fleetctl as a subprocess."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from tests.conftest import backend_overrides

START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_certificate(directory: Path, kind: str = "ecdsa") -> tuple[Path, Path]:
    """A self-signed localhost certificate (ECDSA P-256 or RSA 2048) and its key."""
    key: Any = ec.generate_private_key(ec.SECP256R1()) if kind == "ecdsa" else \
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / f"{kind}.crt", directory / f"{kind}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def fleet_env(overrides: Mapping[str, Any]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    for key, value in overrides.items():
        env["FLEET_" + key.replace(".", "_").upper()] = str(value)
    return env


def run_fleet(args: list[str], overrides: Mapping[str, Any],
              timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fleet.cli", *args], env=fleet_env(overrides),
                          capture_output=True, text=True, timeout=timeout)


@dataclass
class FleetServer:
    """One `fleet serve` process; its output goes to `log_path`."""

    overrides: dict[str, Any]
    log_path: Path
    ca: Path | None
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.ca else "http"
        return f"{scheme}://localhost:{self.port}"

    def start(self, *extra: str, wait: bool = True) -> FleetServer:
        overrides = dict(self.overrides, **{"server.address": f"127.0.0.1:{self.port}"})
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fleet.cli", "serve", *extra], env=fleet_env(overrides),
            stdout=self._log, stderr=subprocess.STDOUT)
        if wait:
            self.wait_healthy()
        return self

    def client(self, **kwargs: Any) -> httpx.Client:
        verify = ssl.create_default_context(cafile=str(self.ca)) if self.ca else False
        return httpx.Client(base_url=self.url, verify=verify, **kwargs)

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"fleet serve exited {self.proc.returncode}:\n{self.log}")
            try:
                with self.client(timeout=2) as c:
                    if c.get("/healthz").status_code == 200:
                        return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"fleet serve did not become healthy:\n{self.log}")

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()


ADMIN_PASSWORD = "correct-Horse-battery-1!"


def setup_admin(c: httpx.Client) -> tuple[dict[str, str], str]:
    """First-run setup of admin@example.com: (auth headers, global enroll secret)."""
    r = c.post("/api/v1/setup", json={
        "admin": {"admin": True, "email": "admin@example.com", "name": "Admin",
                  "password": ADMIN_PASSWORD, "password_confirmation": ADMIN_PASSWORD},
        "org_info": {"org_name": "Acme"}, "server_url": "https://localhost"})
    assert r.status_code == 200, r.text
    auth = {"Authorization": f"Bearer {r.json()['token']}"}
    r = c.get("/api/latest/fleet/spec/enroll_secret", headers=auth)
    return auth, str(r.json()["spec"]["secrets"][0]["secret"])


@pytest.fixture
def server_overrides(backend: str, tmp_path: Path, db_name: str,
                     redis_flushed: None) -> dict[str, Any]:
    """Configuration of a migrated-at-start server on the backend under test."""
    cert, key = make_certificate(tmp_path)
    overrides = backend_overrides(backend, tmp_path, db_name)
    overrides.update({
        "server.cert": cert, "server.key": key,
        "filesystem.result_log_file": tmp_path / "osquery_result",
        "filesystem.status_log_file": tmp_path / "osquery_status",
        "auth.bcrypt_cost": 4, "logging.disable_banner": "true",
    })
    return overrides


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Any]:
    """Factory: start_server(overrides, *flags) -> running FleetServer, stopped afterwards."""
    servers: list[FleetServer] = []

    def start(overrides: dict[str, Any], *flags: str, wait: bool = True) -> FleetServer:
        ca = Path(overrides["server.cert"]) if overrides.get("server.tls", True) not in \
            (False, "false") and overrides.get("server.cert") else None
        server = FleetServer(overrides=overrides, ca=ca,
                             log_path=tmp_path / f"fleet-{len(servers)}.log")
        servers.append(server)
        return server.start(*flags, wait=wait)

    yield start
    for server in servers:
        server.stop()


@dataclass
class Fleetctl:
    config_path: Path

    def run(self, *args: str, env: Mapping[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "fleetctl", *args, "--config", str(self.config_path)],
            capture_output=True, text=True, timeout=timeout,
            env={**os.environ, **(env or {})})

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "fleetctl", *args, "--config", str(self.config_path)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def fleetctl(tmp_path: Path) -> Fleetctl:
    return Fleetctl(tmp_path / "fleetctl-config")
