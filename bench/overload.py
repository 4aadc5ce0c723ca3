"""Overload: hosts checking in every second, about twice what one server core sustains.

What an operator needs from an overloaded instance: `/healthz` keeps answering in
milliseconds (a load balancer would otherwise drop the instance), excess agent requests get
a fast 503 (osquery backs off and retries) rather than a 500 or a queue, memory stays
bounded, and once the load drops everything recovers.

`fleet serve` runs pinned to core 0, `osquery-perf` to core 1: the hosts enroll at the
default 10 s intervals, then check in at 1 s intervals for `--overload` seconds, then at 10 s
again for `--recover` seconds (same hosts, already enrolled). A thread probes `/healthz`
every 100 ms throughout and the server's RSS is sampled every second. Every 500 the server
answers is logged with a traceback (agent front door and REST catch-all alike), so the count
of those lines in the server log is the count of 5xx other than 503.

Like osqueryd, osquery-perf takes `distributed_interval` and `logger_tls_period` from the
config the server sends, so the overload phase first sets both to 1 s in the agent options
(written to the app config in the database, as `PATCH /config` will once the app-config API
exists; the server's config cache picks it up within 5 s), and the recovery phase sets them
back to 10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from bench.harness import (  # noqa: E402
    BIN,
    ENROLL_SECRET,
    RESULTS,
    Backend,
    Server,
    fleet_server,
    free_port,
    machine,
    pinned,
    rss_bytes,
)
from fleet import config  # noqa: E402
from fleet.core.agent_options import DEFAULT_AGENT_OPTIONS  # noqa: E402
from fleet.service.configcache import CACHE_SECONDS as CONFIG_CACHE_SECONDS  # noqa: E402
from fleet.store import app_config as app_config_store  # noqa: E402
from fleet.store.db import create_database  # noqa: E402
from fleet.tls import ensure_dev_certificate  # noqa: E402
from osquery_perf.stats import percentile  # noqa: E402

CONNECTIONS = 512
PROBE_EVERY = 0.1
PROBE_TIMEOUT = 5.0
# Time for the hosts to enroll (about 200 a second per core) before the overload starts, so
# the overload phase measures check-ins rather than an enrollment storm.
ENROLL_SECONDS = 70.0


class Probe(threading.Thread):
    """GET /healthz every 100 ms; records (phase, latency seconds, status or 0 on failure)."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.phase = "idle"
        self.samples: list[tuple[str, float, int]] = []
        self.rss: list[tuple[str, int]] = []
        self.pid = 0
        self._halt = threading.Event()

    def run(self) -> None:
        url = f"https://localhost:{self.port}/healthz"
        next_rss = 0.0
        with httpx.Client(verify=False, timeout=PROBE_TIMEOUT) as client:
            while not self._halt.is_set():
                start = time.monotonic()
                try:
                    status = client.get(url).status_code
                except httpx.HTTPError:
                    status = 0
                self.samples.append((self.phase, time.monotonic() - start, status))
                if self.pid and start >= next_rss:
                    self.rss.append((self.phase, rss_bytes(self.pid)))
                    next_rss = start + 1.0
                self._halt.wait(max(0.0, PROBE_EVERY - (time.monotonic() - start)))

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def figures(self, phase: str) -> dict[str, Any]:
        lat = sorted(s[1] * 1000 for s in self.samples if s[0] == phase)
        bad = sum(1 for s in self.samples if s[0] == phase and s[2] != 200)
        rss = [r for p, r in self.rss if p == phase]
        return {"probes": len(lat), "not_200": bad,
                "p50_ms": round(percentile(lat, 50), 1), "p99_ms": round(percentile(lat, 99), 1),
                "max_ms": round(lat[-1], 1) if lat else 0.0,
                "rss_mib_max": round(max(rss) / 2**20, 1) if rss else 0.0}


def set_agent_intervals(backend: Backend, seconds: int) -> None:
    """Agent options with both check-in intervals at `seconds`, in the server's database."""
    overrides = {}
    for name, value in backend.env().items():
        section, _, option = name.removeprefix("FLEET_").lower().partition("_")
        overrides[f"{section}.{option}"] = value

    async def write() -> None:
        db = create_database(config.from_mapping(overrides))
        try:
            async with db.begin() as conn:
                doc = await app_config_store.get_app_config(conn)
                options = copy.deepcopy(doc.get("agent_options") or DEFAULT_AGENT_OPTIONS)
                options["config"]["options"].update(distributed_interval=seconds,
                                                    logger_tls_period=seconds)
                await app_config_store.save_app_config(conn, dict(doc, agent_options=options))
        finally:
            await db.close()

    asyncio.run(write())
    time.sleep(CONFIG_CACHE_SECONDS + 1)  # every server instance has reloaded it


def run_agents(server: Server, hosts: int, keys: Path, workdir: Path, seconds: float,
               interval: str, name: str, enrolled: bool) -> dict[str, Any]:
    summary = workdir / f"summary-{name}.json"
    argv = pinned(1, [str(BIN / "osquery-perf"), "--server_url", f"https://localhost:{server.port}",
                      "--enroll_secret", ENROLL_SECRET, "--host_count", str(hosts),
                      "--start_period", "10s", "--tls_server_certs", server.cafile,
                      "--query_interval", interval, "--logger_tls_period", interval,
                      "--node_key_file", str(keys), "--seed", "1",
                      "--duration", f"{seconds}s", "--json_summary", str(summary),
                      "--connections", str(CONNECTIONS)])
    if enrolled:
        argv.append("--only_already_enrolled")
    with open(workdir / f"perf-{name}.log", "wb") as out:
        subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=seconds + 180)
    data = json.loads(summary.read_text()) if summary.exists() else {}
    lines = data.get("intervals", [])
    last = lines[-1] if lines else {}
    return {"requests": sum(data.get("requests", {}).values()),
            "errors": sum(data.get("errors", {}).values()),
            "online_at_end": last.get("online"),
            "errors_last_interval": last.get("errors"),
            "p99_ms_max": max((i["p99_ms"] for i in lines), default=0.0)}


def bench(backend_name: str, hosts: int, overload: float, recover: float,
          workdir: Path, cert: Path, key: Path) -> dict[str, Any]:
    backend = Backend(backend_name, workdir)
    server = fleet_server(backend, workdir, free_port(), cert, key).start()
    probe = Probe(server.port)
    probe.pid = server.pid
    probe.start()
    keys = workdir / f"keys-{backend_name}.txt"
    try:
        time.sleep(3)
        probe.phase = "enroll"  # the hosts enroll at the default intervals first
        enrolled = run_agents(server, hosts, keys, workdir, ENROLL_SECONDS, "10s", "enroll",
                              False)
        set_agent_intervals(backend, 1)
        probe.phase = "overload"
        loaded = run_agents(server, hosts, keys, workdir, overload, "1s", "overload", True)
        set_agent_intervals(backend, 10)
        probe.phase = "recovery"
        recovered = run_agents(server, hosts, keys, workdir, recover, "10s", "recovery", True)
        probe.phase = "after"
        time.sleep(3)
    finally:
        try:
            probe.stop()
        finally:
            server.stop()
            backend.drop()
    log = server.log.read_text(errors="replace")
    return {"backend": backend.label(), "hosts": hosts, "idle": probe.figures("idle"),
            "enroll": {**probe.figures("enroll"), "agents": enrolled},
            "overload": {**probe.figures("overload"), "agents": loaded},
            "recovery": {**probe.figures("recovery"), "agents": recovered},
            "after": probe.figures("after"),
            "server_500s": log.count("Traceback"),
            "overload_log_lines": log.count("max_concurrent_requests")}


def write_reports(report: dict[str, Any], name: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    m = report["machine"]
    lines = ["# Overload (one server core, hosts at 1 s intervals)", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Python "
             f"{m['python']}. Server pinned to core 0, osquery-perf to core 1. Run "
             f"{report['date']}. {report['note']}", "",
             "| backend | hosts | phase | /healthz p50 | p99 | max | not 200 | RSS max MiB "
             "| agent requests | agent errors (503s) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        for phase in ("idle", "enroll", "overload", "recovery", "after"):
            f = row[phase]
            agents = f.get("agents", {})
            lines.append(f"| {row['backend']} | {row['hosts']} | {phase} | {f['p50_ms']} ms | "
                         f"{f['p99_ms']} ms | {f['max_ms']} ms | {f['not_200']} | "
                         f"{f['rss_mib_max']} | {agents.get('requests', '')} | "
                         f"{agents.get('errors', '')} |")
        lines.append(f"| {row['backend']} | | server 500s (tracebacks in its log) | "
                     f"{row['server_500s']} | | | | | | |")
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default="mysql", help="comma list of mysql and sqlite")
    parser.add_argument("--hosts", type=int, default=10000,
                        help="hosts at 1 s intervals (10,000 is about twice the request "
                             "rate one core sustains)")
    parser.add_argument("--overload", type=float, default=60.0, help="seconds at 1 s intervals")
    parser.add_argument("--recover", type=float, default=40.0,
                        help="seconds at 10 s intervals afterwards")
    parser.add_argument("--note", default="", help="free text for the report (e.g. machine load)")
    parser.add_argument("--output", default="overload")
    args = parser.parse_args()
    report: dict[str, Any] = {"machine": machine(), "note": args.note,
                              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    with tempfile.TemporaryDirectory(prefix="fleet-overload-") as tmp:
        workdir = Path(tmp)
        cert, key, _ = ensure_dev_certificate(workdir / "tls")
        report["rows"] = [bench(name, args.hosts, args.overload, args.recover, workdir,
                                cert, key) for name in args.backends.split(",")]
    write_reports(report, args.output)
    print((RESULTS / f"{args.output}.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
