"""``osquery-perf``: run many simulated osquery agents against a Fleet server.

Flags keep Fleet's osquery-perf names; both ``--flag`` and Go-style ``-flag`` are accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import ssl
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from osquery_perf.agent import API_PREFIX, SimulatedAgent
from osquery_perf.stats import ENDPOINTS, Histogram, percentile
from osquery_perf.templates import ALIASES, TEMPLATES, make_host, resolve_template

STATUS_EVERY = 5.0
REQUEST_TIMEOUT = 16.0  # osquery's fixed per-request deadline
KEEPALIVE = 3_600.0  # --tls_session_timeout: osquery keeps its connection for an hour
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
    add("enroll_secret", default="", help="enroll secret sent by every host")
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
    add("logger_tls_max_lines", type=int, default=1024, help="max lines per log request")
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
    add("api_prefix", default=API_PREFIX, help=f"osquery API prefix (default {API_PREFIX})")
    return parser


def make_ssl_context(ca_bundle: str | None, insecure: bool) -> ssl.SSLContext:
    """One context shared by every client: TLS 1.2+ with osquery's ECDHE+AES-GCM suites."""
    ctx = ssl.create_default_context(cafile=ca_bundle)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("ECDHE+AESGCM")
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def make_client(ctx: ssl.SSLContext, connections: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections,
                          keepalive_expiry=KEEPALIVE)
    return httpx.AsyncClient(verify=ctx, limits=limits, timeout=REQUEST_TIMEOUT,
                             follow_redirects=True)


def load_node_keys(path: Path | None) -> list[str]:
    if path is None or not path.exists():
        return []
    return path.read_text().splitlines()


def save_node_keys(path: Path, keys: list[str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(k + "\n" for k in keys))
    os.replace(tmp, path)


@dataclass
class Report:
    """Aggregates agent counters for the periodic status line and the final summary."""

    started: float = field(default_factory=time.monotonic)
    last: float = field(default_factory=time.monotonic)
    last_requests: Counter[str] = field(default_factory=Counter)
    last_errors: int = 0
    histogram: Histogram = field(default_factory=Histogram)

    def status_line(self, agents: list[SimulatedAgent], online_window: float) -> str:
        now, wall = time.monotonic(), time.time()
        requests: Counter[str] = Counter()
        errors = 0
        window: list[float] = []
        enrolled = online = 0
        for agent in agents:
            requests.update(agent.stats.requests)
            errors += sum(agent.stats.errors.values())
            window += agent.stats.drain_latencies()
            enrolled += agent.enrolled
            online += agent.enrolled and wall - agent.stats.last_success <= online_window
        for value in window:
            self.histogram.add(value)
        window.sort()
        elapsed = max(now - self.last, 1e-9)
        rates = " ".join(
            f"{SHORT[e]} {(requests[e] - self.last_requests[e]) / elapsed:.1f}" for e in ENDPOINTS)
        line = (
            f"[{now - self.started:7.0f}s] hosts {enrolled}/{len(agents)} enrolled, "
            f"{online} online | req/s {rates} | errors {errors - self.last_errors} "
            f"(total {errors}) | p50 {percentile(window, 50) * 1000:.0f}ms "
            f"p99 {percentile(window, 99) * 1000:.0f}ms"
        )
        self.last, self.last_requests, self.last_errors = now, requests, errors
        return line

    def summary(self, agents: list[SimulatedAgent]) -> str:
        requests: Counter[str] = Counter()
        errors: Counter[str] = Counter()
        last_errors: Counter[str] = Counter()
        for agent in agents:
            requests.update(agent.stats.requests)
            errors.update(agent.stats.errors)
            if agent.stats.last_error:
                last_errors[agent.stats.last_error] += 1
            for value in agent.stats.drain_latencies():
                self.histogram.add(value)
        h = self.histogram
        elapsed = time.monotonic() - self.started
        by_endpoint = ", ".join(f"{SHORT[e]} {requests[e]}" for e in ENDPOINTS)
        error_text = ", ".join(f"{k} {v}" for k, v in sorted(errors.items())) or "none"
        if last_errors:
            reason, hosts = last_errors.most_common(1)[0]
            error_text += f"\n  most common last error ({hosts} hosts): {reason}"
        return (
            f"osquery-perf: ran {elapsed:.0f}s, {sum(a.enrolled for a in agents)}/{len(agents)} "
            f"hosts enrolled\n  requests: {sum(requests.values())} ({by_endpoint})\n"
            f"  errors: {error_text}\n"
            f"  latency: p50 {h.percentile(50) * 1000:.1f}ms p90 {h.percentile(90) * 1000:.1f}ms "
            f"p99 {h.percentile(99) * 1000:.1f}ms max {h.max * 1000:.1f}ms"
        )


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to ``seconds``; True if ``stop`` was set meanwhile."""
    if seconds <= 0:
        await asyncio.sleep(0)
        return stop.is_set()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


async def run_fleet(args: argparse.Namespace, plan: list[str], seed: int) -> str:
    """Start the hosts, report every few seconds until SIGINT/SIGTERM, return the summary."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)

    keys = load_node_keys(args.node_key_file)
    keys += [""] * (len(plan) - len(keys))
    indices = [i for i in range(len(plan)) if keys[i] or not args.only_already_enrolled]
    ctx = make_ssl_context(args.tls_server_certs, args.insecure)
    shared = make_client(ctx, args.connections) if args.connections > 0 else None
    clients = [shared] if shared else []
    agents: list[SimulatedAgent] = []
    started: list[int] = []
    tasks: list[asyncio.Task[None]] = []
    report = Report()
    online_window = min(args.query_interval, args.config_interval) + 60

    async def reporter() -> None:
        while not await _wait(stop, STATUS_EVERY):
            print(report.status_line(agents, online_window), file=sys.stderr, flush=True)

    reporting = asyncio.ensure_future(reporter())
    print(f"osquery-perf: {len(indices)} hosts, seed {seed}, server {args.server_url}",
          file=sys.stderr, flush=True)
    gap = args.start_period / max(1, len(indices))
    t0 = time.monotonic()
    for n, i in enumerate(indices):
        if stop.is_set():
            break
        client = shared or make_client(ctx, 1)
        if not shared:
            clients.append(client)
        agent = SimulatedAgent(
            args.server_url, args.enroll_secret, make_host(plan[i], i, seed), client,
            node_key=keys[i] or None, gzip_logs=args.gzip_logs,
            policy_pass_prob=args.policy_pass_prob,
            logger_tls_max_lines=args.logger_tls_max_lines, api_prefix=args.api_prefix,
        )
        agents.append(agent)
        started.append(i)
        tasks.append(asyncio.ensure_future(agent.run(
            stop, config_interval=args.config_interval, query_interval=args.query_interval,
            logger_tls_period=args.logger_tls_period)))
        if await _wait(stop, t0 + (n + 1) * gap - time.monotonic()):
            break
    await stop.wait()
    for result in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(result, Exception):
            print(f"osquery-perf: host failed: {result!r}", file=sys.stderr)
    reporting.cancel()
    await asyncio.gather(reporting, return_exceptions=True)
    for client in clients:
        await client.aclose()
    if args.node_key_file is not None:
        for i, agent in zip(started, agents, strict=True):
            keys[i] = agent.node_key or ""
        save_node_keys(args.node_key_file, keys)
    return report.summary(agents)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        plan = parse_templates(args.os_templates, args.host_count)
    except ValueError as exc:
        parser.error(str(exc))
    if args.only_already_enrolled and args.node_key_file is None:
        parser.error("--only_already_enrolled needs --node_key_file")
    if args.connections < 0:
        parser.error("--connections must be >= 0")
    seed = int(time.time()) if args.seed is None else args.seed
    summary = asyncio.run(run_fleet(args, plan, seed))
    print(summary, file=sys.stderr)
    return 0
