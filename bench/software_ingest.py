"""Software ingestion benchmark: N hosts' first full software lists arriving within a minute.

`fleet serve` runs pinned to core 0; this process (pinned to core 1) enrolls N simulated hosts
(osquery-perf's ubuntu/macos/windows templates, 200-1,000 packages each from the shared
catalogues), then sends each host's `fleet_detail_query_software_<platform>` answer in one
`distributed/write`, spread evenly over `--window` seconds, and reports the check-in latency
(p50/p99), errors, how long until every list was stored (the server answers at once and writes
the lists in batches behind the request, so "absorbed" is when the last host's
`software_updated_at` is set) and the rows the inventory tables hold. A second round sends the
same lists again, except that the last host adds one package (a sentinel: lists are written in
arrival order, so once its list is stored the round is), and reports what it wrote: hosts whose
`software_updated_at` moved (it moves exactly when a host's software rows are written; 1, the
sentinel, means the unchanged lists wrote nothing) and the change in every table's row count.

    .venv/bin/python bench/software_ingest.py --hosts 10000 --backends mysql

Results: bench/results/software_ingest.json and .md (`--output` renames them).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import ssl
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

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
from osquery_perf.transport import (  # noqa: E402
    ConnectionPool,
    Endpoint,
    Headers,
    TransportError,
)

TEMPLATES = ("ubuntu", "macos", "windows")
QUERY = {"linux": "software_linux", "darwin": "software_macos", "windows": "software_windows"}
CONNECTIONS = 256
TABLES = (software, software_titles, host_software, host_software_installed_paths)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


HEADERS = Headers({"Content-Type": "application/json", "Accept": "application/json"})


async def enroll_all(client: ConnectionPool, fleet: list[HostData]) -> list[str]:
    async def one(host: HostData) -> str:
        status, body = await client.post("/api/osquery/enroll", orjson.dumps({
            "enroll_secret": ENROLL_SECRET, "host_identifier": host.host_identifier,
            "platform_type": host.platform_type, "host_details": host.host_details()}),
            HEADERS)
        if status != 200:
            raise RuntimeError(f"enroll answered {status}: {body[:200]!r}")
        return str(orjson.loads(body)["node_key"])

    return await asyncio.gather(*(one(h) for h in fleet))


SENTINEL_PACKAGE = {"name": "fleet-bench-sentinel", "version": "1", "source": "deb_packages",
                    "extension_id": "", "extension_for": "", "release": "", "vendor": "",
                    "arch": "", "installed_path": "", "bundle_identifier": "",
                    "last_opened_at": "0"}


def software_bodies(fleet: list[HostData], keys: list[str], now: float,
                    sentinel: bool = False) -> list[bytes]:
    """Every host's `distributed/write` with its software list, serialized ahead so the
    client spends its core on sending (with `sentinel`, the last host's list has one
    package more)."""
    bodies = []
    for i, host in enumerate(fleet):
        name = "fleet_detail_query_" + QUERY[host.family]
        rows = perf_software.rows(host, now)
        if sentinel and i == len(fleet) - 1:
            rows = [*rows, SENTINEL_PACKAGE]
        bodies.append(orjson.dumps({"node_key": keys[i], "queries": {name: rows},
                                    "statuses": {name: 0}, "messages": {}}))
    return bodies


async def software_round(client: ConnectionPool, bodies: list[bytes],
                         window: float) -> dict[str, Any]:
    """Every host's software answer once, started evenly over `window` seconds."""
    latencies: list[float] = []
    errors = 0
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    gap = window / max(1, len(bodies))

    async def one(i: int, body: bytes) -> None:
        nonlocal errors
        delay = t0 + i * gap - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        start = loop.time()
        try:
            status, _ = await client.post("/api/osquery/distributed/write", body, HEADERS)
            if status != 200:
                errors += 1
        except TransportError:
            errors += 1
        latencies.append((loop.time() - start) * 1000)

    await asyncio.gather(*(one(i, b) for i, b in enumerate(bodies)))
    return {"seconds": round(loop.time() - t0, 1), "errors": errors,
            "p50_ms": round(percentile(latencies, 0.50), 1),
            "p99_ms": round(percentile(latencies, 0.99), 1),
            "max_ms": round(max(latencies, default=0.0), 1)}


async def wait_until_stored(cfg: config.Config, want: int, *, limit: float = 900.0,
                            since: datetime.datetime | None = None) -> tuple[float, int]:
    """Poll until `want` hosts have a list stored or were asked to send it again (a batch
    the server gave up on); with `since`, until the last host's software_updated_at is
    after it. The seconds waited (-1 after `limit` seconds) and the hosts asked again."""
    start = time.monotonic()
    db = create_database(cfg)
    again = sa.func.sum(sa.case((hosts.c.refetch_requested, 1), else_=0))
    try:
        while time.monotonic() - start < limit:
            async with db.connect() as conn:
                row = (await conn.execute(sa.select(
                    sa.func.count(hosts.c.software_updated_at), again,
                    sa.func.max(hosts.c.software_updated_at)))).one()
            stored, asked, last = int(row[0]), int(row[1] or 0), row[2]
            done = (stored + asked >= want) if since is None \
                else (last is not None and last > since) or asked > 0
            if done:
                return time.monotonic() - start, asked
            await asyncio.sleep(0.5)
        return -1.0, 0
    finally:
        await db.close()


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
    endpoint = Endpoint(url, tls, timeout=120)
    client = ConnectionPool(endpoint, CONNECTIONS)
    try:
        keys = await enroll_all(client, fleet)
        now = time.time()
        cfg = db_config(backend)
        bodies = software_bodies(fleet, keys, now)
        cpu_a, t_a = cpu_seconds(server.pid), time.monotonic()
        first = await software_round(client, bodies, window)
        waited, first["asked_again"] = await wait_until_stored(cfg, n)
        cpu_b, t_b = cpu_seconds(server.pid), time.monotonic()
        first["absorbed_s"] = round(t_b - t_a, 1) if waited >= 0 else None
        before = await inventory(cfg)
        latest = max((at for at in before["updated"].values() if at), default=None)
        # The same lists again (same instant: no churn period has passed), the last
        # host's with one package more.
        bodies = software_bodies(fleet, keys, now, sentinel=True)
        again = await software_round(client, bodies, window)
        waited, again["asked_again"] = await wait_until_stored(cfg, n, since=latest)
        again["absorbed_s"] = round(waited + again["seconds"], 1)
        after = await inventory(cfg)
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
        for conn in client.idle:
            conn.close()
        await endpoint.close()
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
             "| backend | hosts | packages | p50 ms | p99 ms | errors | all stored after s | "
             "asked again | "
             "server CPU % | host_software rows | software rows | unchanged: hosts written | "
             "unchanged: rows changed | unchanged p99 ms |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        f, u = row["first_round"], row["unchanged_round"]
        lines.append(
            f"| {row['backend']} | {row['hosts']} | {row['packages_sent']} | {f['p50_ms']} | "
            f"{f['p99_ms']} | {f['errors']} | {f['absorbed_s']} | {f['asked_again']} | "
            f"{f['server_cpu_percent']} | "
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
