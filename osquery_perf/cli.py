"""``osquery-perf``: run many simulated osquery agents against a Fleet server.

Flags keep Fleet's osquery-perf names; both ``--flag`` and Go-style ``-flag`` are accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import re
import resource
import signal
import ssl
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from osquery_perf import software
from osquery_perf.agent import API_PREFIX, SimulatedAgent
from osquery_perf.scheduler import Ticker
from osquery_perf.stats import ENDPOINTS, FleetStats, Histogram
from osquery_perf.templates import ALIASES, TEMPLATES, make_host, resolve_template
from osquery_perf.transport import ConnectionPool, Endpoint, HTTPConnection, Transport

STATUS_EVERY = 5.0
# Collect young objects far less often than CPython's default (700, 10, 10): the hot path
# allocates a few short-lived objects per request, and thousands of sleeping hosts keep
# long-lived ones that full collections would otherwise re-scan again and again.
GC_THRESHOLDS = (20_000, 20, 20)
FREEZE_EVERY = 1_000  # hosts: move start-up allocations out of the collector's sight
BEHIND_AFTER = 1.0  # a distributed round starting this late (seconds) counts as behind
SHORT = {"enroll": "enroll", "config": "config", "distributed_read": "read",
         "distributed_write": "write", "log": "log"}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|us|µs|ns|h|m|s)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds from ``10s``, ``1m``, ``500ms``, ``1h30m`` (Go style) or plain ``2.5``."""
    text = text.strip()
    with contextlib.suppress(ValueError):
        value = float(text)
        if value >= 0:
            return value
        raise argparse.ArgumentTypeError(f"negative duration: {text!r}")
    if not text or _DURATION.sub("", text):
        raise argparse.ArgumentTypeError(
            f"invalid duration {text!r} (use e.g. 10s, 1m, 500ms, 1h30m or seconds)")
    return sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(text))


def parse_templates(spec: str, host_count: int | None) -> list[str]:
    """Template of each host index: ``a,b`` alternates over ``host_count`` hosts; ``a:3,b:7``
    gives exact counts (interleaved so enrollment mixes platforms)."""
    if host_count is not None and host_count < 1:
        raise ValueError(f"--host_count must be at least 1 (got {host_count})")
    entries = [e.strip() for e in spec.split(",") if e.strip()]
    if not entries:
        raise ValueError("--os_templates is empty")
    counted = [":" in e for e in entries]
    if any(counted) and not all(counted):
        raise ValueError("--os_templates: give a count for every template or for none")
    if not all(counted):
        names = [resolve_template(e).name for e in entries]
        return [names[i % len(names)] for i in range(10 if host_count is None else host_count)]
    remaining: dict[str, int] = {}
    for entry in entries:
        name, _, count = entry.partition(":")
        if not count.isdigit():
            raise ValueError(f"--os_templates: bad count in {entry!r}")
        canonical = resolve_template(name.strip()).name
        remaining[canonical] = remaining.get(canonical, 0) + int(count)
    total = sum(remaining.values())
    if total < 1:
        raise ValueError("--os_templates: the counts add up to no host")
    if host_count is not None and host_count != total:
        raise ValueError(f"--host_count {host_count} != {total} hosts from --os_templates")
    plan: list[str] = []
    while len(plan) < total:
        for name, left in remaining.items():
            if left:
                plan.append(name)
                remaining[name] = left - 1
    return plan


def build_parser() -> argparse.ArgumentParser:
    templates = ", ".join(sorted(TEMPLATES))
    aliases = ", ".join(f"{k}={v}" for k, v in ALIASES.items())
    parser = argparse.ArgumentParser(
        prog="osquery-perf",
        description="Simulate many osquery agents (TLS remote protocol) against a Fleet server.",
        epilog="Durations accept 10s, 1m, 500ms, 1h30m or plain seconds. "
        "Ctrl-C (SIGINT/SIGTERM) stops cleanly and prints a summary.",
    )

    def add(name: str, **kwargs: object) -> None:
        parser.add_argument(f"--{name}", f"-{name}", **kwargs)  # type: ignore[arg-type]

    add("server_url", default="https://localhost:8080", help="Fleet base URL")
    add("enroll_secret", default="",
        help="enroll secret sent by every host (required; see `fleetctl get enroll_secret`)")
    add("host_count", type=int, default=None, help="number of hosts (default 10)")
    add("start_period", type=parse_duration, default=10.0,
        help="spread host start-up evenly over this duration (default 10s)")
    add("os_templates", default="ubuntu,macos,windows",
        help="comma list of OS templates: 'ubuntu,macos' alternates them over --host_count "
        "hosts; 'ubuntu_22.04:5,macos:3' gives exact counts (the total is the host count). "
        f"Templates: {templates}; aliases: {aliases}")
    add("query_interval", type=parse_duration, default=10.0,
        help="distributed read interval (default 10s; config options override it)")
    add("config_interval", type=parse_duration, default=60.0,
        help="config refresh interval (default 1m)")
    add("logger_tls_period", type=parse_duration, default=10.0,
        help="log flush period (default 10s; config options override it)")
    add("logger_tls_max_lines", type=int, default=1024,
        help="max lines per log request (at least 1)")
    tls = parser.add_mutually_exclusive_group()
    tls.add_argument("--tls_server_certs", "-tls_server_certs", metavar="PEM",
                     help="CA bundle to verify the server with (default: system store)")
    tls.add_argument("--insecure", "-insecure", action="store_true",
                     help="skip TLS verification")
    add("gzip_logs", action="store_true", help="gzip log requests (--logger_tls_compress)")
    add("connections", type=int, default=0,
        help="0 = one connection per host; N = one shared pool of N connections")
    add("node_key_file", type=Path, default=None,
        help="load node keys from (one per line, by host index) and save them on exit")
    add("only_already_enrolled", action="store_true",
        help="run only hosts that have a node key in --node_key_file")
    add("seed", type=int, default=None, help="host data seed (default: current time)")
    add("policy_pass_prob", type=float, default=0.9,
        help="share of policies passing (SELECT 1 always passes, SELECT 0 always fails)")
    add("software_churn_interval", type=parse_duration, default=software.CHURN.interval,
        help="every host reports a few packages at another version this often "
        "(default 1h; 0: never)")
    add("software_churn_count", type=int, default=software.CHURN.count,
        help="packages changed each time (default 2)")
    add("api_prefix", default=API_PREFIX, help=f"osquery API prefix (default {API_PREFIX})")
    add("duration", type=parse_duration, default=0.0,
        help="stop after this long (default 0: run until SIGINT/SIGTERM); the exit status "
        "is 1 if no host enrolled")
    add("json_summary", type=Path, default=None, metavar="PATH",
        help="write the final summary as JSON to PATH")
    add("status_interval", type=parse_duration, default=STATUS_EVERY,
        help=f"seconds between status lines (default {STATUS_EVERY:g}s)")
    return parser


def make_ssl_context(ca_bundle: str | None, insecure: bool) -> ssl.SSLContext:
    """One context shared by every connection: TLS 1.2+ with osquery's ECDHE+AES-GCM suites.
    Each connection keeps its TLS session and resumes it when it reconnects.

    ``insecure`` loads no CA certificates at all: with OpenSSL 3 a loaded system store
    costs ~0.25 ms per handshake even when nothing is verified."""
    if insecure:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(cafile=ca_bundle)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("ECDHE+AESGCM")
    return ctx


def load_node_keys(path: Path | None) -> list[str]:
    if path is None or not path.exists():
        return []
    return path.read_text().splitlines()


def save_node_keys(path: Path, keys: list[str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(k + "\n" for k in keys))
    os.replace(tmp, path)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def raise_fd_limit() -> int:
    """Raise the soft open-files limit to the hard one (Go does this at start-up too)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft


@dataclass
class Behind:
    """Hosts whose distributed rounds slip: a round is late when it starts more than
    ``BEHIND_AFTER`` after the previous start plus the interval (a slow round or a busy
    client), or is still waiting that long."""

    hosts: int = 0  # behind during the last interval
    late_max: float = 0.0  # last interval, seconds
    late_mean: float = 0.0  # last interval, per round, seconds
    run_max_hosts: int = 0
    run_late_max: float = 0.0
    run_late_sum: float = 0.0
    run_rounds: int = 0

    def scan(self, agents: list[SimulatedAgent], now: float | None) -> None:
        """Fold the hosts' lateness since the last scan; ``now`` (loop time) also counts
        hosts still waiting past their due time (None once the hosts have stopped)."""
        hosts, late_max, late_sum, rounds = 0, 0.0, 0.0, 0
        for agent in agents:
            worst = agent.late_max
            due = agent.distributed_due
            if now is not None and due and now - due > worst:
                worst = now - due
            if worst > BEHIND_AFTER:
                hosts += 1
            if worst > late_max:
                late_max = worst
            late_sum += agent.late_sum
            rounds += agent.late_rounds
            agent.late_max = agent.late_sum = 0.0
            agent.late_rounds = 0
        self.hosts, self.late_max = hosts, late_max
        self.late_mean = late_sum / rounds if rounds else 0.0
        self.run_max_hosts = max(self.run_max_hosts, hosts)
        self.run_late_max = max(self.run_late_max, late_max)
        self.run_late_sum += late_sum
        self.run_rounds += rounds


@dataclass
class Report:
    """Aggregates the run's counters for the periodic status line and the final summary."""

    stats: FleetStats
    endpoint: Endpoint | None = None
    started: float = field(default_factory=time.monotonic)
    last: float = field(default_factory=time.monotonic)
    cpu_start: float = field(default_factory=cpu_seconds)
    last_cpu: float = field(default_factory=cpu_seconds)
    last_requests: Counter[str] = field(default_factory=Counter)
    last_errors: int = 0
    behind: Behind = field(default_factory=Behind)
    latency: dict[str, Histogram] = field(
        default_factory=lambda: {e: Histogram() for e in ENDPOINTS})
    intervals: list[dict[str, Any]] = field(default_factory=list)  # one per status line
    settings: dict[str, Any] = field(default_factory=dict)

    def _drain(self) -> Histogram:
        """Fold this interval's latencies into the run's; return the interval's (all
        endpoints)."""
        window = Histogram()
        for name, hist in self.stats.drain_latency().items():
            self.latency[name].merge(hist)
            window.merge(hist)
        return window

    def status_line(self, agents: list[SimulatedAgent], online_window: float,
                    loop_now: float) -> str:
        now, wall, cpu = time.monotonic(), time.time(), cpu_seconds()
        requests = Counter(self.stats.requests)
        errors = sum(self.stats.errors.values())
        enrolled = online = 0
        for agent in agents:
            if agent.node_key:
                enrolled += 1
                if wall - agent.stats.last_success <= online_window:
                    online += 1
        self.behind.scan(agents, loop_now)
        window = self._drain()
        elapsed = max(now - self.last, 1e-9)
        rates = " ".join(
            f"{SHORT[e]} {(requests[e] - self.last_requests[e]) / elapsed:.1f}" for e in ENDPOINTS)
        b = self.behind
        cpu_pct = 100 * (cpu - self.last_cpu) / elapsed
        self.intervals.append({
            "t_s": round(now - self.started, 1), "enrolled": enrolled, "online": online,
            "requests_per_s": {e: round((requests[e] - self.last_requests[e]) / elapsed, 1)
                               for e in ENDPOINTS},
            "errors": errors - self.last_errors,
            "p50_ms": round(window.percentile(50) * 1000, 2),
            "p99_ms": round(window.percentile(99) * 1000, 2),
            "behind_hosts": b.hosts, "late_max_s": round(b.late_max, 3),
            "late_mean_s": round(b.late_mean, 4), "cpu_pct": round(cpu_pct, 1)})
        line = (
            f"[{now - self.started:7.0f}s] hosts {enrolled}/{len(agents)} enrolled, "
            f"{online} online | req/s {rates} | errors {errors - self.last_errors} "
            f"(total {errors}) | p50 {window.percentile(50) * 1000:.0f}ms "
            f"p99 {window.percentile(99) * 1000:.0f}ms | behind {b.hosts} "
            f"(late max {b.late_max:.1f}s mean {b.late_mean:.2f}s) | "
            f"cpu {cpu_pct:.0f}%"
        )
        self.last, self.last_requests, self.last_errors, self.last_cpu = (
            now, requests, errors, cpu)
        return line

    def summary(self, agents: list[SimulatedAgent]) -> dict[str, Any]:
        """The final figures (also written by ``--json_summary``)."""
        self._drain()
        self.behind.scan(agents, None)  # the hosts have stopped: nobody is overdue
        requests = {e: self.stats.requests[e] for e in ENDPOINTS}
        errors = dict(sorted(self.stats.errors.items()))
        last_errors = Counter(a.stats.last_error for a in agents if a.stats.last_error)
        everything = Histogram()
        latency: dict[str, dict[str, float]] = {}
        for name, hist in self.latency.items():
            everything.merge(hist)
            latency[name] = _percentiles(hist)
        latency["all"] = _percentiles(everything)
        elapsed = time.monotonic() - self.started
        b = self.behind
        out: dict[str, Any] = {
            "settings": self.settings,
            "duration_s": round(elapsed, 3),
            "hosts": {"started": len(agents), "enrolled": sum(a.enrolled for a in agents)},
            "requests": requests,
            "requests_total": sum(requests.values()),
            "requests_per_s": round(sum(requests.values()) / elapsed, 1) if elapsed else 0.0,
            "errors": errors,
            "errors_total": sum(errors.values()),
            "latency_ms": latency,
            "behind": {"threshold_s": BEHIND_AFTER, "max_hosts": b.run_max_hosts,
                       "last_hosts": b.hosts, "max_lateness_s": round(b.run_late_max, 3),
                       "mean_lateness_s": round(b.run_late_sum / b.run_rounds, 4)
                       if b.run_rounds else 0.0},
            "client_cpu_s": round(cpu_seconds() - self.cpu_start, 3),
        }
        if last_errors:
            reason, hosts = last_errors.most_common(1)[0]
            out["most_common_last_error"] = {"reason": reason, "hosts": hosts}
        if self.endpoint is not None:
            ep = self.endpoint
            out["connections"] = {"opened": ep.connects, "tls_resumed": ep.resumed,
                                  "connect_failures": ep.connect_failures,
                                  "resends": ep.resends}
        out["intervals"] = self.intervals
        return out


def _percentiles(hist: Histogram) -> dict[str, float]:
    return {"count": hist.count, "p50": round(hist.percentile(50) * 1000, 2),
            "p90": round(hist.percentile(90) * 1000, 2),
            "p99": round(hist.percentile(99) * 1000, 2), "max": round(hist.max * 1000, 2)}


def format_summary(summary: dict[str, Any]) -> str:
    requests = summary["requests"]
    by_endpoint = ", ".join(f"{SHORT[e]} {requests[e]}" for e in ENDPOINTS)
    error_text = ", ".join(f"{k} {v}" for k, v in summary["errors"].items()) or "none"
    if "most_common_last_error" in summary:
        last = summary["most_common_last_error"]
        error_text += f"\n  most common last error ({last['hosts']} hosts): {last['reason']}"
    lat = summary["latency_ms"]["all"]
    behind = summary["behind"]
    hosts = summary["hosts"]
    text = (
        f"osquery-perf: ran {summary['duration_s']:.0f}s, {hosts['enrolled']}/{hosts['started']} "
        f"hosts enrolled\n  requests: {summary['requests_total']} ({by_endpoint}), "
        f"{summary['requests_per_s']:.0f}/s\n"
        f"  errors: {error_text}\n"
        f"  latency: p50 {lat['p50']:.1f}ms p90 {lat['p90']:.1f}ms "
        f"p99 {lat['p99']:.1f}ms max {lat['max']:.1f}ms\n"
        f"  behind (>{behind['threshold_s']:g}s late): max {behind['max_hosts']} hosts, "
        f"lateness max {behind['max_lateness_s']:.1f}s mean {behind['mean_lateness_s']:.2f}s\n"
        f"  client CPU: {summary['client_cpu_s']:.1f}s"
    )
    if "connections" in summary:
        c = summary["connections"]
        text += (f"\n  connections: {c['opened']} opened ({c['tls_resumed']} TLS resumed), "
                 f"{c['connect_failures']} failed, {c['resends']} re-sent requests")
    return text


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to ``seconds``; True if ``stop`` was set meanwhile."""
    if seconds <= 0:
        await asyncio.sleep(0)
        return stop.is_set()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


async def run_fleet(args: argparse.Namespace, plan: list[str], seed: int) -> dict[str, Any]:
    """Start the hosts, report every few seconds until SIGINT/SIGTERM or ``--duration``,
    return the summary."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    if args.duration > 0:
        loop.call_later(args.duration, stop.set)

    keys = load_node_keys(args.node_key_file)
    keys += [""] * (len(plan) - len(keys))
    indices = [i for i in range(len(plan)) if keys[i] or not args.only_already_enrolled]
    ctx = make_ssl_context(args.tls_server_certs, args.insecure)
    endpoint = Endpoint(args.server_url, ctx)
    pool = ConnectionPool(endpoint, args.connections) if args.connections > 0 else None
    stats = FleetStats()
    ticker = Ticker(loop)
    agents: list[SimulatedAgent] = []
    started: list[int] = []
    tasks: list[asyncio.Task[None]] = []
    report = Report(stats, endpoint, settings={
        "server_url": args.server_url, "host_count": len(indices), "seed": seed,
        "start_period_s": args.start_period, "query_interval_s": args.query_interval,
        "config_interval_s": args.config_interval,
        "logger_tls_period_s": args.logger_tls_period, "connections": args.connections,
        "os_templates": args.os_templates})
    online_window = min(args.query_interval, args.config_interval) + 60

    async def reporter() -> None:
        while not await _wait(stop, args.status_interval):
            print(report.status_line(agents, online_window, loop.time()), file=sys.stderr,
                  flush=True)
            if agents and len(agents) == len(indices) and all(
                    a.enroll_refused and not a.node_key for a in agents):
                print("osquery-perf: the server refused every host's enrollment; stopping "
                      "(check --enroll_secret)", file=sys.stderr, flush=True)
                stop.set()

    reporting = asyncio.ensure_future(reporter())
    print(f"osquery-perf: {len(indices)} hosts, seed {seed}, server {args.server_url}",
          file=sys.stderr, flush=True)
    gap = args.start_period / max(1, len(indices))
    t0 = loop.time()
    for n, i in enumerate(indices):
        delay = t0 + n * gap - loop.time()
        if delay > 0:
            if await _wait(stop, delay):
                break
        else:  # behind schedule: still let the running hosts (and the reporter) run
            await asyncio.sleep(0)
            if stop.is_set():
                break
        transport: Transport = pool or HTTPConnection(endpoint)
        agent = SimulatedAgent(
            args.server_url, args.enroll_secret, make_host(plan[i], i, seed), transport,
            node_key=keys[i] or None, gzip_logs=args.gzip_logs,
            policy_pass_prob=args.policy_pass_prob,
            logger_tls_max_lines=args.logger_tls_max_lines, api_prefix=args.api_prefix,
            shared=stats, sleep=ticker.sleep,
        )
        agents.append(agent)
        started.append(i)
        tasks.append(asyncio.ensure_future(agent.run(
            stop, config_interval=args.config_interval, query_interval=args.query_interval,
            logger_tls_period=args.logger_tls_period)))
        if len(agents) % FREEZE_EVERY == 0:
            gc.freeze()
    # Host data lives for the whole run: keep full collections from re-scanning it.
    gc.freeze()
    await stop.wait()
    for result in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(result, Exception):
            print(f"osquery-perf: host failed: {result!r}", file=sys.stderr)
    reporting.cancel()
    await asyncio.gather(reporting, return_exceptions=True)
    summary = report.summary(agents)
    ticker.close()
    await endpoint.close()
    if args.node_key_file is not None:
        for i, agent in zip(started, agents, strict=True):
            keys[i] = agent.node_key or ""
        save_node_keys(args.node_key_file, keys)
    return summary


def _run(coro: Any) -> Any:
    """Run on uvloop when it is installed (it is, with uvicorn[standard])."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        plan = parse_templates(args.os_templates, args.host_count)
    except ValueError as exc:
        parser.error(str(exc))
    if not args.enroll_secret:
        parser.error("--enroll_secret is required (print it with: fleetctl get enroll_secret)")
    if args.logger_tls_max_lines < 1:
        parser.error(f"--logger_tls_max_lines must be at least 1 (got "
                     f"{args.logger_tls_max_lines})")
    if args.only_already_enrolled and args.node_key_file is None:
        parser.error("--only_already_enrolled needs --node_key_file")
    if args.connections < 0:
        parser.error("--connections must be >= 0")
    if args.status_interval <= 0:
        parser.error("--status_interval must be > 0")
    seed = int(time.time()) if args.seed is None else args.seed
    software.configure(args.software_churn_interval, args.software_churn_count)
    try:
        Endpoint(args.server_url)
    except ValueError as exc:
        parser.error(str(exc))
    limit = raise_fd_limit()
    gc.set_threshold(*GC_THRESHOLDS)
    hosts = len(plan)
    if args.connections == 0 and hosts + 64 > limit:
        print(f"osquery-perf: warning: {hosts} hosts need about {hosts} sockets but the "
              f"open-files limit is {limit} (raise it, or use --connections N)", file=sys.stderr)
    summary = _run(run_fleet(args, plan, seed))
    print(format_summary(summary), file=sys.stderr)
    if args.json_summary is not None:
        args.json_summary.write_text(json.dumps(summary, indent=2) + "\n")
    if summary["hosts"]["enrolled"] == 0:
        print("osquery-perf: no host enrolled", file=sys.stderr)
        return 1
    return 0
