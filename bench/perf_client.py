"""How many requests per second can ONE client core of osquery-perf drive?

A stub osquery TLS server (raw uvloop protocol, HTTP/1.1 keep-alive, canned answers: node
key on enroll, a small config, ``{"queries":{},"discovery":{}}`` on distributed/read, ``{}``
elsewhere) runs in ``--server_workers`` processes sharing the port with SO_REUSEPORT, all
pinned to core 0. ``osquery-perf`` runs as a separate process pinned to core 1. After a
warm-up (every host started, connected and enrolled) the benchmark samples, over a window:

- the requests answered by the stub (every worker counts into shared memory);
- the client's CPU time (utime + stime from ``/proc``) and the stub's;

and prints the client's requests/s, CPU %, CPU-seconds per 1,000 requests and the implied
ceiling (requests/s one client core could drive at 100 % CPU). If the stub's CPU is near
100 % of core 0 the client was not saturated, which the CPU-per-request figure corrects
for. Figures only: no timed assertions.

Usage::

    .venv/bin/python bench/perf_client.py                      # default scenarios
    .venv/bin/python bench/perf_client.py --hosts 10000 --query_interval 1 --window 20
    .venv/bin/python bench/perf_client.py --connections 64     # shared keep-alive pool
    .venv/bin/python bench/perf_client.py --logs               # one log request per period
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness  # noqa: E402
from bench.harness import cpu_seconds  # noqa: E402
from fleet.tls import ensure_dev_certificate  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SERVER_CORE = 0
CLIENT_CORE = 1
STARTUP_LIMIT = 300.0  # seconds for every host to enroll

READ_BODY = b'{"queries":{},"discovery":{}}'
EMPTY_BODY = b"{}"


def config_body(logs: bool) -> bytes:
    """A small config. With ``logs`` a 1 s snapshot query makes every logger period send one
    result batch (the scheduler only runs queries whose interval elapsed)."""
    config: dict[str, Any] = {"options": {"pack_delimiter": "/"}, "decorators": {}}
    if logs:
        config["schedule"] = {"uptime": {"query": "SELECT * FROM uptime;", "interval": 1,
                                         "snapshot": True}}
    return json.dumps(config, separators=(",", ":")).encode()


# --- machine ---------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    return {**harness.machine(), "openssl": ssl.OPENSSL_VERSION}


def rss_mib(pid: int) -> float:
    return harness.rss_bytes(pid) / 2**20


def make_certificate(directory: Path) -> tuple[Path, Path]:
    cert, key, _ = ensure_dev_certificate(directory)
    return cert, key


# --- the stub server -------------------------------------------------------------------------
def _response(body: bytes) -> bytes:
    return (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)


class StubProtocol(asyncio.Protocol):
    """HTTP/1.1 keep-alive, one request at a time, answers from a table by path."""

    def __init__(self, answers: dict[bytes, bytes], counts: Any, slot: int) -> None:
        self.answers = answers
        self.counts = counts
        self.slot = slot
        self.buf = b""
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # uvloop's SSL transport is no asyncio.Transport

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        transport = self.transport
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buf[:end].lower()
            length = 0
            i = head.find(b"\r\ncontent-length:")
            if i >= 0:
                j = head.find(b"\r\n", i + 2)
                length = int(head[i + 17: j if j >= 0 else end])
            total = end + 4 + length
            if len(buf) < total:
                break
            first = head.find(b" ") + 1
            path = bytes(buf[first: head.find(b" ", first)])
            answer = self.answers.get(path)
            if answer is None:
                if path.endswith(b"/enroll"):
                    self.counts[self.slot * 2 + 1] += 1
                    answer = _response(b'{"node_key":"nk-%d-%d"}' % (
                        os.getpid(), self.counts[self.slot * 2 + 1]))
                else:
                    answer = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"
            transport.write(answer)
            self.counts[self.slot * 2] += 1
            buf = buf[total:]
            if b"\r\nconnection: close" in head:
                transport.close()
                break
        self.buf = buf


def serve(port: int, cert: Path, key: Path, answers: dict[bytes, bytes], counts: Any,
          slot: int, ready: Any) -> None:
    """One stub worker (a forked process), pinned to the server core."""
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {SERVER_CORE})
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(Exception):  # Linux: die with the benchmark process
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: StubProtocol(answers, counts, slot), "127.0.0.1", port, ssl=ctx,
            reuse_port=True, backlog=4096)
        ready.set()
        async with server:
            await server.serve_forever()

    try:
        import uvloop
        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        runner.run(main())


@dataclass
class Stub:
    port: int
    workers: list[Any]
    counts: Any

    def requests(self) -> int:
        return sum(self.counts[i * 2] for i in range(len(self.workers)))

    def enrolls(self) -> int:
        return sum(self.counts[i * 2 + 1] for i in range(len(self.workers)))

    def cpu(self) -> float:
        return sum(cpu_seconds(w.pid) for w in self.workers)

    def stop(self) -> None:
        for w in self.workers:
            w.terminate()
        for w in self.workers:
            w.join(5)


def start_stub(cert: Path, key: Path, workers: int, logs: bool) -> Stub:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    prefix = b"/api/osquery"
    answers = {prefix + b"/config": _response(config_body(logs)),
               prefix + b"/distributed/read": _response(READ_BODY),
               prefix + b"/distributed/write": _response(EMPTY_BODY),
               prefix + b"/log": _response(EMPTY_BODY)}
    mp = multiprocessing.get_context("fork")
    counts = mp.RawArray("q", workers * 2)
    procs = []
    for slot in range(workers):
        ready = mp.Event()
        proc = mp.Process(target=serve, args=(port, cert, key, answers, counts, slot, ready),
                          daemon=True)
        proc.start()
        if not ready.wait(30):
            raise RuntimeError("stub server did not start")
        procs.append(proc)
    return Stub(port, procs, counts)


# --- one scenario ----------------------------------------------------------------------------
@dataclass
class Scenario:
    hosts: int
    query_interval: float
    config_interval: float
    logger_period: float
    connections: int
    start_period: float
    window: float

    logs: bool = False

    @property
    def offered(self) -> float:
        """Requests/s the hosts ask for: reads, config refreshes and (with ``--logs``) a
        result and a status batch per logger period."""
        rate = self.hosts / self.query_interval + self.hosts / self.config_interval
        return rate + (2 * self.hosts / self.logger_period if self.logs else 0.0)


def run_scenario(sc: Scenario, stub: Stub, workdir: Path, logs: bool,
                 extra: Sequence[str]) -> dict[str, Any]:
    summary_path = workdir / f"summary-{sc.hosts}-{sc.connections}.json"
    summary_path.unlink(missing_ok=True)
    settle = max(2 * sc.query_interval, 3.0)  # after the last enroll, before measuring
    duration = STARTUP_LIMIT + settle + sc.window + 2.0  # the client stops itself
    enrolled_before = stub.enrolls()
    argv = [sys.executable, "-m", "osquery_perf",
            "--server_url", f"https://127.0.0.1:{stub.port}", "--insecure",
            "--enroll_secret", "bench", "--host_count", str(sc.hosts), "--seed", "1",
            "--os_templates", "ubuntu,macos,windows",
            "--start_period", str(sc.start_period), "--query_interval", str(sc.query_interval),
            "--config_interval", str(sc.config_interval),
            "--logger_tls_period", str(sc.logger_period),
            "--connections", str(sc.connections),
            "--duration", str(duration), "--json_summary", str(summary_path), *extra]
    if shutil.which("taskset"):
        argv = ["taskset", "-c", str(CLIENT_CORE), *argv]
    log_path = workdir / f"client-{sc.hosts}-{sc.connections}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        started = time.monotonic()
        while stub.enrolls() - enrolled_before < sc.hosts:  # warm-up: every host enrolled
            if proc.poll() is not None:
                raise RuntimeError(f"osquery-perf exited early: {log_path.read_text()[-2000:]}")
            if time.monotonic() - started > STARTUP_LIMIT:
                raise RuntimeError(f"only {stub.enrolls() - enrolled_before} of {sc.hosts} "
                                   f"hosts enrolled within {STARTUP_LIMIT:g}s")
            time.sleep(0.2)
        startup = time.monotonic() - started
        time.sleep(settle)
        t0, r0, c0, s0 = time.monotonic(), stub.requests(), cpu_seconds(proc.pid), stub.cpu()
        time.sleep(sc.window)
        t1, r1, c1, s1 = time.monotonic(), stub.requests(), cpu_seconds(proc.pid), stub.cpu()
        rss = rss_mib(proc.pid)
        proc.send_signal(signal.SIGINT)  # stop now; --duration is only the safety net
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    seconds, requests, client_cpu = t1 - t0, r1 - r0, c1 - c0
    summary: dict[str, Any] = {}
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
    per_1k = client_cpu / requests * 1000 if requests else float("nan")
    return {
        "hosts": sc.hosts, "connections": sc.connections or "per-host",
        "query_interval": sc.query_interval, "offered_rps": round(sc.offered),
        "startup_s": round(startup, 1), "client_rss_mib": round(rss, 1),
        "achieved_rps": round(requests / seconds), "window_s": round(seconds, 1),
        "client_cpu_pct": round(100 * client_cpu / seconds, 1),
        "client_cpu_s_per_1k": round(per_1k, 4),
        "implied_max_rps_per_client_core": round(1000 / per_1k) if requests else 0,
        "stub_cpu_pct": round(100 * (s1 - s0) / seconds, 1),
        # hosts >1 s late in the client's last status interval (the whole-run maximum in
        # the JSON summary also covers the start-up storm)
        "behind_hosts": summary.get("behind", {}).get("last_hosts"),
        "errors": summary.get("errors_total"),
        "connections_opened": summary.get("connections", {}).get("opened"),
        "client_log_tail": [line for line in log_path.read_text().splitlines()
                            if line.startswith("[")][-2:],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", default="5000,19000",
                        help="comma list of host counts (one scenario each)")
    parser.add_argument("--query_interval", type=float, default=1.0)
    parser.add_argument("--config_interval", type=float, default=60.0)
    parser.add_argument("--logger_tls_period", type=float, default=10.0)
    parser.add_argument("--connections", default="0,256",
                        help="comma list of osquery-perf --connections values (0 = one per "
                        "host; this machine's open-files limit caps that at ~19,900 hosts)")
    parser.add_argument("--start_period", type=float, default=None,
                        help="default: hosts / 1000 seconds")
    parser.add_argument("--window", type=float, default=20.0, help="measured seconds")
    parser.add_argument("--server_workers", type=int, default=2)
    parser.add_argument("--logs", action="store_true",
                        help="config schedules a 1 s snapshot query: one log request per "
                        "logger period per host")
    parser.add_argument("--client_arg", action="append", default=[],
                        help="extra osquery-perf argument (repeatable)")
    parser.add_argument("--serve_only", action="store_true",
                        help="only run the stub server (prints its URL) until Ctrl-C")
    parser.add_argument("--keep", type=Path, default=None,
                        help="keep the client logs and JSON summaries in this directory")
    args = parser.parse_args(argv)
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {SERVER_CORE})
    print(f"machine: {json.dumps(machine())}")
    print(f"stub: {args.server_workers} worker(s) on core {SERVER_CORE}; "
          f"client: osquery-perf on core {CLIENT_CORE}")
    with tempfile.TemporaryDirectory(prefix="perf_client-") as tmp:
        workdir = Path(tmp) if args.keep is None else args.keep
        workdir.mkdir(parents=True, exist_ok=True)
        cert, key = make_certificate(workdir)
        stub = start_stub(cert, key, args.server_workers, args.logs)
        if args.serve_only:
            print(f"stub listening on https://127.0.0.1:{stub.port} (Ctrl-C stops)", flush=True)
            signal.signal(signal.SIGTERM, signal.default_int_handler)
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(5)
                    print(f"  {stub.requests()} requests, stub CPU {stub.cpu():.1f}s", flush=True)
            stub.stop()
            return 0
        try:
            scenarios = [(int(c), int(h)) for c in args.connections.split(",")
                         for h in args.hosts.split(",")]
            for connections, hosts in scenarios:
                sc = Scenario(hosts, args.query_interval, args.config_interval,
                              args.logger_tls_period, connections,
                              args.start_period if args.start_period is not None
                              else max(2.0, hosts / 1000), args.window, args.logs)
                row = run_scenario(sc, stub, workdir, args.logs, args.client_arg)
                tail = row.pop("client_log_tail")
                print(json.dumps(row), flush=True)
                print(f"  hosts {row['hosts']} ({row['connections']} connections): "
                      f"{row['achieved_rps']} req/s at "
                      f"{row['client_cpu_pct']}% client CPU -> "
                      f"{row['client_cpu_s_per_1k'] * 1000:.1f} ms CPU per 1,000 requests, "
                      f"implied ceiling {row['implied_max_rps_per_client_core']} req/s per "
                      f"client core (stub CPU {row['stub_cpu_pct']}%)", flush=True)
                for line in tail:
                    print(f"  | {line}")
        finally:
            stub.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
