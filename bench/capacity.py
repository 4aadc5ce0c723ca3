"""Capacity benchmark: how many osquery hosts does one server core hold?

`fleet serve` runs pinned to core 0 (MySQL + Redis, then the embedded default as a second
row); `osquery-perf` runs pinned to core 1 at Fleet's default intervals (distributed 10 s,
config 60 s, logs 10 s) and the host count rises step by step until p99 latency passes
500 ms, errors pass 0.1 %, or hosts fall behind their check-in interval. In the same run, on
the same core, a closed-loop load measures the ceiling of a bare ASGI handler that only
answers `{"queries":{}}` and of our idle `distributed/read`.

    .venv/bin/pip install -e '.[bench]' && .venv/bin/python bench/capacity.py

Results: bench/results/capacity.json, capacity.md and capacity.png (`--output` renames them).
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from bench.harness import (  # noqa: E402
    BIN,
    ENROLL_SECRET,
    RESULTS,
    ROOT,
    Backend,
    Server,
    bare_server,
    cpu_seconds,
    fleet_server,
    free_port,
    machine,
    pinned,
    rss_bytes,
)
from fleet.tls import ensure_dev_certificate  # noqa: E402
from osquery_perf.cli import SHORT, STATUS_EVERY  # noqa: E402
from osquery_perf.stats import ENDPOINTS  # noqa: E402

P99_LIMIT_MS = 500.0
ERROR_LIMIT = 0.001
BEHIND_LIMIT = 0.01  # share of hosts late for their interval by more than a second
# Agents reach the server through a shared pool, as behind a load balancer (one socket per
# host would need 20,000+ file descriptors on both sides of this one machine).
CONNECTIONS = 512
# A realistic schedule, so result logs flow as in production: (name, SQL, interval, logging).
SCHEDULE = (
    ("osquery_info", "SELECT * FROM osquery_info", 60, "snapshot"),
    ("uptime", "SELECT * FROM uptime", 300, "snapshot"),
    ("listening_ports", "SELECT pid, port, protocol FROM listening_ports", 600, "differential"),
)
PASSWORD = "bench-Password-1!"
# New hosts per second while a step starts: enrollment (a few writes per host) is measured
# apart from the steady state this benchmark is about.
ENROLL_RATE = 100.0
# After the last new host started and every host's first software list was stored (the
# server writes them behind the requests, at its own pace: bench/software_ingest.py measures
# that): rounds slowed by the enroll burst finish, so the measured window sees the steady
# state.
SETTLE_SECONDS = 40.0
SOFTWARE_BACKLOG_LIMIT = 1200.0  # seconds to wait for the lists before measuring anyway


def software_backlog(backend: Backend, hosts: int) -> float:
    """Seconds until `hosts` hosts have their software list stored (-1 past the limit)."""
    start = time.monotonic()
    while time.monotonic() - start < SOFTWARE_BACKLOG_LIMIT:
        if backend.count("SELECT COUNT(software_updated_at) FROM hosts") >= hosts:
            return round(time.monotonic() - start, 1)
        time.sleep(2.0)
    return -1.0


def run_step(server: Server, backend: Backend, hosts: int, keys: Path, workdir: Path, *,
             measure: float, new_hosts: int, software: bool) -> dict[str, Any]:
    """Run `hosts` simulated agents; measure the server over the steady window."""
    # Hosts start in index order across the start period, the new ones last, so new hosts
    # arrive at hosts / start_period per second.
    start_period = max(10.0, hosts / ENROLL_RATE) if new_hosts else 10.0
    # An upper bound: osquery-perf is stopped (SIGTERM, summary written) after the window.
    duration = start_period + SOFTWARE_BACKLOG_LIMIT + SETTLE_SECONDS + measure + 60
    summary_path = workdir / f"summary-{hosts}.json"
    argv = pinned(1, [str(BIN / "osquery-perf"), "--server_url", f"https://localhost:{server.port}",
                      "--enroll_secret", ENROLL_SECRET, "--host_count", str(hosts),
                      "--start_period", f"{start_period}s", "--tls_server_certs", server.cafile,
                      "--os_templates", "ubuntu,macos,windows", "--node_key_file", str(keys),
                      "--seed", "1",
                      "--duration", f"{duration}s", "--json_summary", str(summary_path),
                      "--connections", str(CONNECTIONS)])
    err_path = workdir / f"perf-{hosts}.log"
    with open(err_path, "wb") as err:
        started = time.monotonic()
        proc = subprocess.Popen(argv, stdout=err, stderr=subprocess.STDOUT)
        time.sleep(start_period)
        backlog = software_backlog(backend, hosts) if software else 0.0
        time.sleep(SETTLE_SECONDS)
        warmup = time.monotonic() - started
        cpu_a, t_a = cpu_seconds(server.pid), time.monotonic()
        perf_a = cpu_seconds(proc.pid)
        time.sleep(measure)
        # Read before it exits: whether the load generator was the limit of the step.
        perf_b, t_perf = cpu_seconds(proc.pid), time.monotonic()
        cpu_b, t_b = cpu_seconds(server.pid), time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    rss = rss_bytes(server.pid)
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    # The summary keeps the figures of every status line (one per STATUS_EVERY seconds).
    lines = [i for i in summary.get("intervals", []) if i["t_s"] > warmup]
    window = max(len(lines), 1)
    rates = {SHORT[e]: sum(i["requests_per_s"][e] for i in lines) / window for e in ENDPOINTS}
    requests_total = sum(rates.values())
    errors = sum(i["errors"] for i in lines)
    served = requests_total * STATUS_EVERY * window or 1
    return {
        "hosts": hosts,
        "software_backlog_s": backlog,
        "server_cpu_percent": round(100 * (cpu_b - cpu_a) / (t_b - t_a), 1),
        "perf_cpu_percent": round(100 * (perf_b - perf_a) / (t_perf - t_a), 1),
        "rss_mib": round(rss / 2**20, 1),
        "rss_mib_per_1000_hosts": round(rss / 2**20 / hosts * 1000, 2),
        "requests_per_second": round(requests_total, 1),
        "rates": {k: round(v, 1) for k, v in rates.items()},
        "p50_ms": max((i["p50_ms"] for i in lines), default=0.0),
        "p99_ms": max((i["p99_ms"] for i in lines), default=0.0),
        "error_rate": errors / served,
        "behind_max": max((i["behind_hosts"] for i in lines), default=0),
        "behind_median": sorted(i["behind_hosts"] for i in lines)[len(lines) // 2]
        if lines else 0,
        "per_endpoint": summary.get("latency_ms", {}),
        "perf_exit": proc.returncode,
    }


def passes(step: dict[str, Any]) -> tuple[bool, str]:
    if step["p99_ms"] > P99_LIMIT_MS:
        return False, f"p99 {step['p99_ms']:.0f} ms > {P99_LIMIT_MS:.0f} ms"
    if step["error_rate"] > ERROR_LIMIT:
        return False, f"errors {step['error_rate']:.2%} > {ERROR_LIMIT:.1%}"
    if step["behind_median"] > BEHIND_LIMIT * step["hosts"]:
        return False, f"{step['behind_median']:.0f} hosts behind their interval"
    return True, "ok"


def ceiling(server: Server, path: str, body: bytes, seconds: float) -> dict[str, Any]:
    """Closed-loop requests/s of `server` (client on core 1) and the server's CPU use."""
    cpu_a, t_a = cpu_seconds(server.pid), time.monotonic()
    out = subprocess.run(
        pinned(1, [sys.executable, "-m", "bench.closed_loop", "--port", str(server.port),
                   "--path", path, "--body", body.decode(), "--seconds", str(seconds),
                   "--cafile", server.cafile]),
        capture_output=True, text=True, check=True, cwd=ROOT)
    cpu_b, t_b = cpu_seconds(server.pid), time.monotonic()
    result = json.loads(out.stdout)
    result["server_cpu_percent"] = round(100 * (cpu_b - cpu_a) / (t_b - t_a), 1)
    # Requests per second of server CPU: comparable even when the client, not the server,
    # was the limit of a run.
    result["per_core"] = round(result["rate"] / max(result["server_cpu_percent"], 1) * 100)
    return result


def node_key(keys: Path) -> str:
    for line in keys.read_text().splitlines():
        if line.strip():
            return line.split()[-1]
    raise RuntimeError("no enrolled host to authenticate the ceiling run")


def schedule_queries(server: Server, software: bool) -> None:
    """First-run setup, then the global scheduled queries every host will run (and, without
    `software`, the software inventory turned off)."""
    with httpx.Client(base_url=f"https://localhost:{server.port}", verify=server.cafile) as api:
        r = api.post("/api/v1/setup", json={
            "admin": {"admin": True, "email": "bench@example.com", "name": "Bench",
                      "password": PASSWORD, "password_confirmation": PASSWORD},
            "org_info": {"org_name": "Bench"}, "server_url": str(api.base_url)})
        r.raise_for_status()
        headers = {"Authorization": f"Bearer {r.json()['token']}"}
        for name, sql, interval, logging in SCHEDULE:
            api.post("/api/latest/fleet/queries", headers=headers, json={
                "name": name, "query": sql, "interval": interval, "logging": logging,
                "automations_enabled": True}).raise_for_status()
        if not software:
            api.patch("/api/latest/fleet/config", headers=headers, json={
                "features": {"enable_software_inventory": False}}).raise_for_status()


def bench_backend(name: str, steps: list[int], workdir: Path, cert: Path, key: Path,
                  measure: float, ceiling_seconds: float, software: bool) -> dict[str, Any]:
    backend = Backend(name, workdir)
    server = fleet_server(backend, workdir, free_port(), cert, key).start()
    schedule_queries(server, software)
    keys = workdir / f"node-keys-{name}.txt"
    rows: list[dict[str, Any]] = []
    capacity = 0
    try:
        previous = 0
        for hosts in steps:
            step = run_step(server, backend, hosts, keys, workdir, measure=measure,
                            new_hosts=hosts - previous, software=software)
            ok, why = passes(step)
            step["pass"], step["verdict"] = ok, why
            rows.append(step)
            print(f"  {name:6s} {hosts:6d} hosts: {step['requests_per_second']:7.1f} req/s "
                  f"cpu {step['server_cpu_percent']:5.1f}% (perf {step['perf_cpu_percent']}%) "
                  f"p50 {step['p50_ms']:.0f} ms "
                  f"p99 {step['p99_ms']:.0f} ms rss {step['rss_mib']} MiB -> {why}", flush=True)
            if not ok:
                break
            capacity, previous = hosts, hosts
        ours = ceiling(server, "/api/osquery/distributed/read",
                       json.dumps({"node_key": node_key(keys)}).encode(), ceiling_seconds)
    finally:
        server.stop()
        backend.drop()
    return {"backend": backend.label(), "steps": rows, "capacity_hosts_per_core": capacity,
            "idle_read_ceiling": ours}


def bare_ceiling(workdir: Path, cert: Path, key: Path, seconds: float) -> dict[str, Any]:
    server = bare_server(workdir, free_port(), cert, key).start(health_path="/")
    try:
        return ceiling(server, "/api/osquery/distributed/read", b'{"node_key":"x"}', seconds)
    finally:
        server.stop()


def write_reports(report: dict[str, Any], name: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    bare = report["bare_asgi_ceiling"]["rate"]
    lines = [
        "# Capacity (one server core)", "",
        f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores, "
        f"{report['machine']['memory_gib']} GiB, Python {report['machine']['python']}. "
        f"Server pinned to core 0, osquery-perf to core 1. Run {report['date']}.", "",
        "Each step is measured once every host's first software list is stored (\"software "
        "backlog\": seconds after the last host started) and the rounds it slowed settled.", "",
        "| backend | hosts | software backlog s | req/s | server CPU | osquery-perf CPU | "
        "p50 ms | p99 ms | errors | RSS MiB/1k hosts | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        for s in row["steps"]:
            lines.append(
                f"| {row['backend']} | {s['hosts']} | {s.get('software_backlog_s', '')} | "
                f"{s['requests_per_second']} | "
                f"{s['server_cpu_percent']}% | {s['perf_cpu_percent']}% | {s['p50_ms']:.0f} | "
                f"{s['p99_ms']:.0f} | "
                f"{s['error_rate']:.3%} | {s['rss_mib_per_1000_hosts']} | {s['verdict']} |")
    bare_core = report["bare_asgi_ceiling"]["per_core"]
    lines += ["", "Ceilings: closed-loop idle `distributed/read` (64 keep-alive TLS connections); "
              "req/s, and req/s per fully used server core.", "",
              "| backend | sustained hosts per core | idle read req/s (per core) | "
              "bare ASGI req/s (per core) | ratio per core |", "|---|---|---|---|---|"]
    for row in report["rows"]:
        ours = row["idle_read_ceiling"]
        lines.append(f"| {row['backend']} | {row['capacity_hosts_per_core']} | "
                     f"{ours['rate']:.0f} ({ours['per_core']}) | {bare:.0f} ({bare_core}) | "
                     f"{ours['per_core'] / bare_core:.0%} |")
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    _plot(report, RESULTS / f"{name}.png")


def _plot(report: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed (pip install -e '.[bench]'); skipping the plot")
        return
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for row in report["rows"]:
        hosts = [s["hosts"] for s in row["steps"]]
        ax1.plot(hosts, [s["p99_ms"] for s in row["steps"]], marker="o",
                 label=f"{row['backend']} p99")
        ax1.plot(hosts, [s["p50_ms"] for s in row["steps"]], marker=".", linestyle="--",
                 label=f"{row['backend']} p50")
        ax2.plot(hosts, [s["server_cpu_percent"] for s in row["steps"]], marker="o",
                 label=row["backend"])
    ax1.axhline(P99_LIMIT_MS, color="red", linewidth=0.8)
    ax1.set(xlabel="simulated hosts", ylabel="latency (ms)", title="Latency vs hosts")
    ax2.set(xlabel="simulated hosts", ylabel="server CPU (% of one core)",
            title="Server CPU vs hosts")
    for ax in (ax1, ax2):
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default="mysql,sqlite",
                        help="comma list of mysql (MySQL + Redis) and sqlite")
    parser.add_argument("--steps", default="2000,5000,10000,15000,20000,25000,30000,40000",
                        help="host counts to try, in order")
    parser.add_argument("--measure", type=float, default=60.0,
                        help="seconds measured per step after warm-up")
    parser.add_argument("--ceiling_seconds", type=float, default=15.0)
    parser.add_argument("--output", default="capacity",
                        help="base name of the result files in bench/results/")
    parser.add_argument("--no_software_inventory", action="store_true",
                        help="turn features.enable_software_inventory off first (the agent "
                             "path without software lists)")
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    report: dict[str, Any] = {"machine": machine(),
                              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                              "limits": {"p99_ms": P99_LIMIT_MS, "error_rate": ERROR_LIMIT,
                                         "behind": BEHIND_LIMIT}}
    print(f"machine: {report['machine']}", flush=True)
    with tempfile.TemporaryDirectory(prefix="fleet-capacity-") as tmp:
        workdir = Path(tmp)
        cert, key, _ = ensure_dev_certificate(workdir / "tls")
        report["bare_asgi_ceiling"] = bare_ceiling(workdir, cert, key, args.ceiling_seconds)
        print(f"  bare ASGI ceiling: {report['bare_asgi_ceiling']['rate']:.0f} req/s",
              flush=True)
        report["software_inventory"] = not args.no_software_inventory
        report["rows"] = [bench_backend(name, steps, workdir, cert, key, args.measure,
                                        args.ceiling_seconds, not args.no_software_inventory)
                          for name in args.backends.split(",")]
    write_reports(report, args.output)
    print((RESULTS / f"{args.output}.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
