"""Live-query benchmark: how fast do answers from N online hosts reach the watcher?

Two `fleet serve` processes share MySQL + Redis. Half of the simulated hosts check in on
each; the campaign is created and watched (websocket) on the first. For N = 1,000 / 5,000 /
10,000 online hosts it reports the time from `POST /api/latest/fleet/queries/run` to the
first, half and all results, and how many results were lost or duplicated (must be 0).

    .venv/bin/pip install -e '.[bench]' && .venv/bin/python bench/livequery.py

Results: bench/results/livequery.json and livequery.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import websockets  # noqa: E402

from bench.harness import (  # noqa: E402
    BIN,
    ENROLL_SECRET,
    RESULTS,
    Backend,
    Server,
    fleet_server,
    free_port,
    machine,
)
from fleet.tls import ensure_dev_certificate  # noqa: E402

DISTRIBUTED_INTERVAL = 10.0
PASSWORD = "bench-Password-1!"


def start_agents(server: Server, hosts: int, offset: int, workdir: Path) -> subprocess.Popen[bytes]:
    """osquery-perf for `hosts` hosts (seeded apart by `offset`) against one server."""
    log = open(workdir / f"perf-{server.port}-{hosts}.log", "wb")  # noqa: SIM115
    return subprocess.Popen(
        [str(BIN / "osquery-perf"), "--server_url", f"https://localhost:{server.port}",
         "--enroll_secret", ENROLL_SECRET, "--host_count", str(hosts), "--seed", str(offset),
         "--start_period", f"{max(10, hosts // 300)}s", "--tls_server_certs", server.cafile,
         "--query_interval", f"{DISTRIBUTED_INTERVAL:.0f}s"],
        stdout=log, stderr=subprocess.STDOUT)


def stop_agents(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGINT)
    for proc in procs:
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


async def wait_online(api: httpx.AsyncClient, token: str, hosts: int, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    online = 0
    while time.monotonic() < deadline:
        r = await api.get("/api/latest/fleet/hosts/count", params={"status": "online"},
                          headers={"Authorization": f"Bearer {token}"})
        if r.status_code != 200:
            raise RuntimeError(f"GET hosts/count: {r.status_code} {r.text}")
        online = r.json()["count"]
        if online >= hosts:
            return
        await asyncio.sleep(1)
    raise RuntimeError(f"only {online}/{hosts} hosts came online")


async def one_campaign(server: Server, api: httpx.AsyncClient, token: str, label_id: int,
                       expected: int, limit_s: float) -> dict[str, Any]:
    tls = ssl.create_default_context(cafile=server.cafile)
    t0 = time.monotonic()
    r = await api.post("/api/latest/fleet/queries/run",
                       headers={"Authorization": f"Bearer {token}"},
                       json={"query": "SELECT * FROM osquery_info",
                             "selected": {"labels": [label_id]}})
    r.raise_for_status()
    campaign_id = r.json()["campaign"]["id"]
    print(f"  campaign {campaign_id} started for {expected} hosts", flush=True)
    arrivals: list[float] = []
    hosts_seen: set[int] = set()
    duplicates = 0
    url = f"wss://localhost:{server.port}/api/latest/fleet/results/websocket"
    async with websockets.connect(url, ssl=tls, max_size=None) as ws:
        await ws.send(json.dumps({"type": "auth", "data": {"token": token}}))
        await ws.send(json.dumps({"type": "select_campaign",
                                  "data": {"campaign_id": campaign_id}}))
        deadline = t0 + limit_s
        while len(hosts_seen) < expected and time.monotonic() < deadline:
            try:
                raw = await asyncio.wait_for(ws.recv(), deadline - time.monotonic())
            except TimeoutError:
                break
            msg = json.loads(raw)
            if msg["type"] != "result":
                continue
            host_id = msg["data"]["host"]["id"]
            if host_id in hosts_seen:
                duplicates += 1
                continue
            hosts_seen.add(host_id)
            arrivals.append(time.monotonic() - t0)
    received = len(arrivals)

    def at(fraction: float) -> float | None:
        index = max(0, int(expected * fraction) - 1)
        return round(arrivals[index], 2) if received > index else None

    return {"hosts": expected, "campaign_id": campaign_id, "first_s": at(1 / expected),
            "half_s": at(0.5), "p90_s": at(0.9), "p99_s": at(0.99), "all_s": at(1.0),
            "received": received, "lost": expected - received, "duplicated": duplicates}


async def measure(servers: list[Server], workdir: Path, sizes: list[int],
                  limit_s: float) -> list[dict[str, Any]]:
    first = servers[0]
    verify = ssl.create_default_context(cafile=first.cafile)
    async with httpx.AsyncClient(base_url=f"https://localhost:{first.port}", verify=verify,
                                 timeout=60) as api:
        r = await api.post("/api/v1/setup", json={
            "admin": {"admin": True, "email": "bench@example.com", "name": "Bench",
                      "password": PASSWORD, "password_confirmation": PASSWORD},
            "org_info": {"org_name": "Bench"}, "server_url": str(api.base_url)})
        r.raise_for_status()
        token = r.json()["token"]
        rows: list[dict[str, Any]] = []
        for n in sizes:
            procs = [start_agents(s, n // len(servers), i * 100_000 + n, workdir)
                     for i, s in enumerate(servers)]
            try:
                expected = (n // len(servers)) * len(servers)
                await wait_online(api, token, expected, limit_s=300)
                r = await api.get("/api/latest/fleet/hosts/count",
                                  headers={"Authorization": f"Bearer {token}"})
                label_id = await all_hosts_label(api, token)
                row = await one_campaign(first, api, token, label_id, r.json()["count"],
                                         limit_s)
            finally:
                stop_agents(procs)
            print(f"  {row['hosts']:6d} hosts: first {row['first_s']} s, half {row['half_s']} s,"
                  f" 90% {row['p90_s']} s, 99% {row['p99_s']} s, all {row['all_s']} s,"
                  f" lost {row['lost']}, duplicated {row['duplicated']}",
                  flush=True)
            rows.append(row)
            await delete_all_hosts(api, token)
        return rows


async def all_hosts_label(api: httpx.AsyncClient, token: str) -> int:
    r = await api.get("/api/latest/fleet/hosts", params={"per_page": 1},
                      headers={"Authorization": f"Bearer {token}"})
    host_id = r.json()["hosts"][0]["id"]
    r = await api.get(f"/api/latest/fleet/hosts/{host_id}",
                      headers={"Authorization": f"Bearer {token}"})
    return int(next(lbl["id"] for lbl in r.json()["host"]["labels"]
                    if lbl["name"] == "All Hosts"))


async def delete_all_hosts(api: httpx.AsyncClient, token: str) -> None:
    """Start the next size from an empty fleet so every host in it is online."""
    r = await api.post("/api/latest/fleet/hosts/delete", json={"filters": {}},
                       headers={"Authorization": f"Bearer {token}"})
    r.raise_for_status()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,5000,10000")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="give up on a campaign after this many seconds")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    report: dict[str, Any] = {"machine": machine(),
                              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                              "distributed_interval_s": DISTRIBUTED_INTERVAL}
    print(f"machine: {report['machine']}", flush=True)
    with tempfile.TemporaryDirectory(prefix="fleet-livequery-") as tmp:
        workdir = Path(tmp)
        cert, key, _ = ensure_dev_certificate(workdir / "tls")
        backend = Backend("mysql", workdir)
        servers = [fleet_server(backend, workdir, free_port(), cert, key, core=i).start()
                   for i in range(2)]
        try:
            report["rows"] = asyncio.run(measure(servers, workdir, sizes, args.timeout))
        finally:
            for s in servers:
                s.stop()
            backend.drop()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "livequery.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["# Live query latency (MySQL + Redis, two server processes)", "",
             f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores. "
             f"Hosts check in every {DISTRIBUTED_INTERVAL:.0f} s; half on each server; "
             f"watched on the first. Run {report['date']}.", "",
             "| online hosts | first result s | half s | 90 % s | 99 % s | all s | lost | "
             "duplicated |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['hosts']} | {r['first_s']} | {r['half_s']} | {r['p90_s']} | "
              f"{r['p99_s']} | {r['all_s']} | "
              f"{r['lost']} | {r['duplicated']} |" for r in report["rows"]]
    (RESULTS / "livequery.md").write_text("\n".join(lines) + "\n")
    print((RESULTS / "livequery.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
