"""Shared plumbing of the benchmarks: machine facts, backends, pinned server processes."""

from __future__ import annotations

import os
import platform
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
BIN = Path(sys.executable).parent
MYSQL_ADDRESS = os.environ.get("FLEET_TEST_MYSQL_ADDRESS", "127.0.0.1:3306")
MYSQL_USER = os.environ.get("FLEET_TEST_MYSQL_USERNAME", "root")
REDIS_ADDRESS = os.environ.get("FLEET_TEST_REDIS_ADDRESS", "127.0.0.1:6379")
REDIS_BENCH_DB = 15
ENROLL_SECRET = "benchsecret"


def machine() -> dict[str, Any]:
    model = ""
    with open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with open("/proc/meminfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("MemTotal"):
                mem_kb = int(line.split()[1])
    return {"cpu": model, "cores": os.cpu_count(), "memory_gib": round(mem_kb / 2**20, 1),
            "python": platform.python_version(), "kernel": platform.release()}


def pinned(core: int, argv: list[str]) -> list[str]:
    """Pin to one core when taskset exists (it does on Linux)."""
    return ["taskset", "-c", str(core), *argv] if shutil.which("taskset") else argv


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc."""
    with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) * 1024
    return 0


@dataclass
class Backend:
    """A fresh database (and Redis db) for one benchmark row."""

    name: str  # "mysql" (MySQL + Redis) or "sqlite" (embedded)
    workdir: Path
    database: str = field(default_factory=lambda: "fleet_bench_" + secrets.token_hex(3))

    def __post_init__(self) -> None:
        if self.name == "mysql":
            self._mysql(f"CREATE DATABASE {self.database} CHARACTER SET utf8mb4")
            subprocess.run(["redis-cli", "-n", str(REDIS_BENCH_DB), "flushdb"], check=True,
                           capture_output=True)

    def _mysql(self, sql: str) -> None:
        host, _, port = MYSQL_ADDRESS.rpartition(":")
        subprocess.run(["mysql", "-h", host, "-P", port, "-u", MYSQL_USER, "-e", sql],
                       check=True)

    def env(self) -> dict[str, str]:
        if self.name == "mysql":
            return {"FLEET_MYSQL_ADDRESS": MYSQL_ADDRESS, "FLEET_MYSQL_USERNAME": MYSQL_USER,
                    "FLEET_MYSQL_DATABASE": self.database, "FLEET_REDIS_ADDRESS": REDIS_ADDRESS,
                    "FLEET_REDIS_DATABASE": str(REDIS_BENCH_DB)}
        return {"FLEET_SQLITE_PATH": str(self.workdir / "fleet.db")}

    def label(self) -> str:
        return "MySQL + Redis" if self.name == "mysql" else "embedded (SQLite)"

    def count(self, sql: str) -> int:
        """The integer a `SELECT COUNT(...)` of the server's database answers."""
        if self.name == "mysql":
            host, _, port = MYSQL_ADDRESS.rpartition(":")
            out = subprocess.run(["mysql", "-h", host, "-P", port, "-u", MYSQL_USER, "-N",
                                  "-e", sql, self.database], check=True, capture_output=True,
                                 text=True).stdout
            return int(out.split()[0])
        import sqlite3

        with sqlite3.connect(f"file:{self.workdir / 'fleet.db'}?mode=ro", uri=True) as conn:
            return int(conn.execute(sql).fetchone()[0])

    def drop(self) -> None:
        if self.name == "mysql":
            self._mysql(f"DROP DATABASE IF EXISTS {self.database}")


@dataclass
class Server:
    """A `fleet serve` (or any ASGI app under uvicorn) pinned to one core."""

    argv: list[str]
    env: dict[str, str]
    port: int
    cafile: str
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self, health_path: str = "/healthz") -> Server:
        self._fh = open(self.log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(self.argv, env={**os.environ, **self.env},
                                     stdout=self._fh, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited; see {self.log}")
            try:
                r = httpx.get(f"https://localhost:{self.port}{health_path}", verify=False,
                              timeout=2)
                if r.status_code < 500:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server did not start; see {self.log}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._fh.close()


def fleet_server(backend: Backend, workdir: Path, port: int, cert: Path, key: Path,
                 core: int = 0) -> Server:
    env = {**backend.env(), "FLEET_SERVER_ADDRESS": f"127.0.0.1:{port}",
           "FLEET_SERVER_CERT": str(cert), "FLEET_SERVER_KEY": str(key),
           "FLEET_PACKAGING_GLOBAL_ENROLL_SECRET": ENROLL_SECRET,
           "FLEET_LOGGING_DISABLE_BANNER": "true",
           "FLEET_FILESYSTEM_RESULT_LOG_FILE": str(workdir / "osquery_result"),
           "FLEET_FILESYSTEM_STATUS_LOG_FILE": str(workdir / "osquery_status")}
    argv = pinned(core, [str(BIN / "fleet"), "serve", "--dev"])
    return Server(argv, env, port, str(cert), workdir / f"fleet-{port}.log")


def bare_server(workdir: Path, port: int, cert: Path, key: Path, core: int = 0) -> Server:
    argv = pinned(core, [sys.executable, "-m", "uvicorn", "bench.bare_asgi:app",
                         "--host", "127.0.0.1", "--port", str(port), "--ssl-certfile", str(cert),
                         "--ssl-keyfile", str(key), "--no-access-log", "--log-level", "warning",
                         "--no-proxy-headers", "--no-server-header"])
    return Server(argv, {}, port, str(cert), workdir / f"bare-{port}.log")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
