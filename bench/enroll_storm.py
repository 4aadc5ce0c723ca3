"""Enrollment storm: N new hosts start within a few seconds (a mass deployment, or every
agent of a fleet re-enrolling after its database was restored). How long until all of them
are enrolled and online, and what do the agents see meanwhile?

`fleet serve` runs pinned to core 0 (MySQL + Redis, or the embedded SQLite); `osquery-perf`
on core 1 starts the hosts across `--start_period`, each with its own TLS connection (as
real agents), so every host costs a handshake, an enrollment, a config fetch and a first
detail write.

    .venv/bin/python bench/enroll_storm.py --storms 5000:5,10000:5

Results: bench/results/enroll_storm.json and enroll_storm.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (  # noqa: E402
    BIN,
    ENROLL_SECRET,
    RESULTS,
    Backend,
    fleet_server,
    free_port,
    machine,
    pinned,
)
from fleet.tls import ensure_dev_certificate  # noqa: E402

WATCH_SECONDS = 90


def storm(backend_name: str, hosts: int, start_period: float, workdir: Path, cert: Path,
          key: Path) -> dict[str, Any]:
    backend = Backend(backend_name, workdir)
    server = fleet_server(backend, workdir, free_port(), cert, key).start()
    summary_path = workdir / f"storm-{hosts}.json"
    try:
        argv = pinned(1, [str(BIN / "osquery-perf"), "--server_url",
                          f"https://localhost:{server.port}", "--enroll_secret", ENROLL_SECRET,
                          "--host_count", str(hosts), "--start_period", f"{start_period}s",
                          "--tls_server_certs", server.cafile, "--status_interval", "1s",
                          "--duration", f"{WATCH_SECONDS}s",
                          "--json_summary", str(summary_path)])
        subprocess.run(argv, capture_output=True, check=False)
    finally:
        server.stop()
        backend.drop()
    summary = json.loads(summary_path.read_text())
    # The summary keeps every status interval: the first one with all hosts online.
    all_online = next((round(i["t_s"]) for i in summary["intervals"] if i["online"] >= hosts),
                      None)
    return {"backend": backend.label(), "hosts": hosts, "start_period_s": start_period,
            "all_online_s": all_online,
            "enrolled": summary["hosts"]["enrolled"],
            "failed_requests": summary["errors_total"],
            "most_common_last_error": summary.get("most_common_last_error", {}).get("reason"),
            "enroll_p50_ms": summary["latency_ms"].get("enroll", {}).get("p50"),
            "enroll_p99_ms": summary["latency_ms"].get("enroll", {}).get("p99")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--storms", default="2000:5,5000:5,10000:5",
                        help="comma list of hosts:start_period_seconds")
    parser.add_argument("--backends", default="mysql",
                        help="comma list of mysql (MySQL + Redis) and sqlite")
    args = parser.parse_args()
    report: dict[str, Any] = {"machine": machine(),
                              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                              "rows": []}
    print(f"machine: {report['machine']}", flush=True)
    with tempfile.TemporaryDirectory(prefix="fleet-storm-") as tmp:
        workdir = Path(tmp)
        cert, key, _ = ensure_dev_certificate(workdir / "tls")
        for backend in args.backends.split(","):
            for item in args.storms.split(","):
                hosts, _, period = item.partition(":")
                row = storm(backend, int(hosts), float(period or 5), workdir, cert, key)
                print(f"  {row}", flush=True)
                report["rows"].append(row)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "enroll_storm.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["# Enrollment storm (one server core)", "",
             f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores. Server "
             f"pinned to core 0, osquery-perf to core 1, one TLS connection per host. "
             f"Run {report['date']}.", "",
             "| backend | new hosts | within | all online after | failed requests (retried) | "
             "enroll p50 ms | enroll p99 ms | most common error |",
             "|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        online = f"{r['all_online_s']} s" if r["all_online_s"] is not None else \
            f"not within {WATCH_SECONDS} s ({r['enrolled']} enrolled)"
        lines.append(f"| {r['backend']} | {r['hosts']} | {r['start_period_s']:g} s | {online} | "
                     f"{r['failed_requests']} | {r['enroll_p50_ms']} | {r['enroll_p99_ms']} | "
                     f"{r['most_common_last_error'] or ''} |")
    (RESULTS / "enroll_storm.md").write_text("\n".join(lines) + "\n")
    print((RESULTS / "enroll_storm.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
