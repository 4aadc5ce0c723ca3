"""Software ingestion benchmark: N hosts' first full software lists arriving within a minute.

`fleet serve` runs pinned to core 0; this process (pinned to core 1) enrolls N simulated hosts
(osquery-perf's ubuntu/macos/windows templates, 200-1,000 packages each from the shared
catalogues), then sends each host's `fleet_detail_query_software_<platform>` answer in one
`distributed/write`, spread evenly over `--window` seconds, and reports the check-in latency
(p50/p99), errors and the rows the inventory tables hold. A second round sends the same lists
again and reports what it wrote: hosts whose `software_updated_at` moved (it moves exactly when
a host's software rows are written) and the change in every inventory table's row count.

    .venv/bin/python bench/software_ingest.py --hosts 10000 --backends mysql

Results: bench/results/software_ingest.json and .md (`--output` renames them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import orjson  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from bench.harness import (  # noqa: E402
    ENROLL_SECRET,
    MYSQL_ADDRESS,
    MYSQL_USER,
    RESULTS,
    Backend,
    cpu_seconds,
    fleet_server,
    free_port,
    machine,
    rss_bytes,
)
from fleet import config  # noqa: E402
from fleet.store.db import create_database  # noqa: E402
from fleet.store.schema import (  # noqa: E402
    host_software,
    host_software_installed_paths,
    hosts,
    software,
    software_titles,
)
from fleet.tls import ensure_dev_certificate  # noqa: E402
from osquery_perf import software as perf_software  # noqa: E402
from osquery_perf.templates import HostData, make_host  # noqa: E402

TEMPLATES = ("ubuntu", "macos", "windows")
QUERY = {"linux": "software_linux", "darwin": "software_macos", "windows": "software_windows"}
CONNECTIONS = 256
TABLES = (software, software_titles, host_software, host_software_installed_paths)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def enroll_all(client: httpx.AsyncClient, url: str, fleet: list[HostData]) -> list[str]:
    gate = asyncio.Semaphore(CONNECTIONS)

    async def one(host: HostData) -> str:
        async with gate:
            r = await client.post(f"{url}/api/osquery/enroll", content=orjson.dumps({
                "enroll_secret": ENROLL_SECRET, "host_identifier": host.host_identifier,
                "platform_type": host.platform_type, "host_details": host.host_details()}))
            r.raise_for_status()
            return str(r.json()["node_key"])

    return await asyncio.gather(*(one(h) for h in fleet))


async def software_round(client: httpx.AsyncClient, url: str, fleet: list[HostData],
                         keys: list[str], window: float, now: float) -> dict[str, Any]:
    """Every host's software answer once, started evenly over `window` seconds."""
    latencies: list[float] = []
    errors = 0
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    gap = window / max(1, len(fleet))

    async def one(i: int, host: HostData) -> None:
        nonlocal errors
        delay = t0 + i * gap - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        name = "fleet_detail_query_" + QUERY[host.family]
        body = orjson.dumps({"node_key": keys[i],
                             "queries": {name: perf_software.rows(host, now)},
                             "statuses": {name: 0}, "messages": {}})
        start = loop.time()
        try:
            r = await client.post(f"{url}/api/osquery/distributed/write", content=body)
            if r.status_code != 200:
                errors += 1
        except httpx.HTTPError:
            errors += 1
        latencies.append((loop.time() - start) * 1000)

    await asyncio.gather(*(one(i, h) for i, h in enumerate(fleet)))
    return {"seconds": round(loop.time() - t0, 1), "errors": errors,
            "p50_ms": round(percentile(latencies, 0.50), 1),
            "p99_ms": round(percentile(latencies, 0.99), 1),
            "max_ms": round(max(latencies, default=0.0), 1)}


async def inventory(cfg: config.Config) -> dict[str, Any]:
    """Row counts of the inventory tables and each host's software_updated_at."""
    db = create_database(cfg)
    try:
        async with db.connect() as conn:
            counts = {t.name: int((await conn.execute(
                sa.select(sa.func.count()).select_from(t))).scalar_one()) for t in TABLES}
            updated = {r.id: r.software_updated_at for r in await conn.execute(
                sa.select(hosts.c.id, hosts.c.software_updated_at))}
    finally:
        await db.close()
    return {"rows": counts, "updated": updated}


def db_config(backend: Backend) -> config.Config:
    if backend.name == "mysql":
        return config.from_mapping({"mysql.address": MYSQL_ADDRESS,
                                    "mysql.username": MYSQL_USER,
                                    "mysql.database": backend.database})
    return config.from_mapping({"sqlite.path": str(backend.workdir / "fleet.db")})


async def bench_backend(name: str, n: int, window: float, workdir: Path, cert: Path,
                        key: Path) -> dict[str, Any]:
    backend = Backend(name, workdir)
    server = fleet_server(backend, workdir, free_port(), cert, key).start()
    url = f"https://localhost:{server.port}"
    fleet = [make_host(TEMPLATES[i % 3], i, seed=1) for i in range(n)]
    packages = sum(len(h.software_index) + len(h.unique_software) for h in fleet)
    tls = ssl.create_default_context(cafile=str(cert))
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    try:
        async with httpx.AsyncClient(verify=tls, limits=limits, timeout=120) as client:
            keys = await enroll_all(client, url, fleet)
            now = time.time()
            cpu_a, t_a = cpu_seconds(server.pid), time.monotonic()
            first = await software_round(client, url, fleet, keys, window, now)
            cpu_b, t_b = cpu_seconds(server.pid), time.monotonic()
            before = await inventory(db_config(backend))
            # The same lists again (same instant: no churn period has passed).
            again = await software_round(client, url, fleet, keys, window, now)
            after = await inventory(db_config(backend))
        moved = sum(1 for h, at in after["updated"].items() if before["updated"].get(h) != at)
        return {
            "backend": backend.label(), "hosts": n, "packages_sent": packages,
            "first_round": {**first,
                            "server_cpu_percent": round(100 * (cpu_b - cpu_a) / (t_b - t_a), 1),
                            "rows": before["rows"]},
            "unchanged_round": {**again, "hosts_written": moved,
                                "rows_changed": {t: after["rows"][t] - before["rows"][t]
                                                 for t in before["rows"]}},
            "rss_mib": round(rss_bytes(server.pid) / 2**20, 1),
        }
    finally:
        server.stop()
        backend.drop()


def write_reports(report: dict[str, Any], name: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    m = report["machine"]
    lines = [f"# Software ingestion ({report['date']})", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Python "
             f"{m['python']}; server pinned to core 0, load to core 1.", "",
             f"Each host's first full software list in one `distributed/write`, "
             f"{report['hosts']} hosts spread over {report['window_s']:.0f} s; then the same "
             "lists again.", "",
             "| backend | hosts | packages | p50 ms | p99 ms | errors | server CPU % | "
             "host_software rows | software rows | unchanged: hosts written | "
             "unchanged: rows changed | unchanged p99 ms |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        f, u = row["first_round"], row["unchanged_round"]
        lines.append(
            f"| {row['backend']} | {row['hosts']} | {row['packages_sent']} | {f['p50_ms']} | "
            f"{f['p99_ms']} | {f['errors']} | {f['server_cpu_percent']} | "
            f"{f['rows']['host_software']} | {f['rows']['software']} | {u['hosts_written']} | "
            f"{sum(abs(v) for v in u['rows_changed'].values())} | {u['p99_ms']} |")
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default="mysql,sqlite")
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--window", type=float, default=60.0,
                        help="seconds over which the lists arrive")
    parser.add_argument("--output", default="software_ingest")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the server logs and database files here")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    report: dict[str, Any] = {"machine": machine(), "hosts": args.hosts,
                              "window_s": args.window,
                              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    with tempfile.TemporaryDirectory(prefix="fleet-software-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        cert, key, _ = ensure_dev_certificate(workdir / "tls")
        report["rows"] = [asyncio.run(bench_backend(name, args.hosts, args.window, workdir,
                                                    cert, key))
                          for name in args.backends.split(",")]
    write_reports(report, args.output)
    print((RESULTS / f"{args.output}.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
