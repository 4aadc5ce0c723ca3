"""`fleetctl query` (alias `report`): run a live query and stream results per host.

Flow: create a campaign with `POST /queries/run_by_identifiers`, then follow it on the
results websocket (`auth`, then `select_campaign`) and print one JSON line per host.
Progress goes to stderr so stdout stays machine-readable.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import ClientConnection, connect

from fleetctl.client import LOGIN_HINT, APIError, FleetClient
from fleetctl.context import load_context
from fleetctl.errors import CLIError

NO_HOSTS_TARGETED = (
    "No hosts targeted. Make sure you provide a valid hostname, UUID, or serial number. "
    "Learn more about host identifiers: https://fleetdm.com/learn-more-about/host-identifiers"
)
# Server errors after which the campaign keeps streaming; every other error ends it.
TRANSIENT_ERRORS = ("error retrieving target counts",)
_POLL_SECONDS = 0.25
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
                 "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds from a Go-style duration (`10s`, `1m30s`, `1h`); a bare number means seconds."""
    text = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    if not text or _DURATION_PART.sub("", text):
        raise CLIError(f"invalid --timeout {text!r}: use a duration such as 10s, 5m or 1h")
    return sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(text))


def _split(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


class Progress:
    """The `N% responded ...` status line on stderr.

    On a terminal it is redrawn in place; elsewhere (pipes, CI logs) each change is its own
    line so the log stays readable.
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.last = ""
        self.drawn = False

    def show(self, message: str) -> None:
        if not self.enabled or message == self.last:
            return
        if self.tty:
            pad = " " * max(0, len(self.last) - len(message))
            sys.stderr.write("\r" + message + pad)
        else:
            sys.stderr.write(message + "\n")
        sys.stderr.flush()
        self.last = message
        self.drawn = True

    def clear(self) -> None:
        """Wipe the in-place line so a result or error is not printed on top of it."""
        if self.enabled and self.tty and self.drawn:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self.last = ""

    def done(self) -> None:
        if self.enabled and self.tty and self.drawn and self.last:
            sys.stderr.write("\n")
            sys.stderr.flush()


@dataclass
class Campaign:
    """What the websocket has told us so far about one live query campaign."""

    total: int | None = None
    online: int = 0
    responded: set[Any] = field(default_factory=set)

    def message(self) -> str:
        total = self.total or 0
        count = len(self.responded)
        pct_total = 100 * count / total if total else 0
        # As in Go fleetctl, the online percentage is of online hosts that responded.
        pct_online = 100 * count / self.online if self.online else 0
        return (f"{pct_total:.0f}% responded ({pct_online:.0f}% online) | "
                f"{count}/{total} targeted hosts ({count}/{self.online} online)")

    def unanswered(self) -> str:
        """Who is still missing, for the timeout line."""
        if self.total is None:
            return "the server had not reported the targeted hosts yet"
        count = len(self.responded)
        online = max(0, self.online - count)
        return (f"{self.total - count} of {self.total} targeted hosts did not respond "
                f"({online} online, {self.total - count - online} offline)")

    def finished(self, stop_at_online: bool) -> bool:
        if self.total is None:
            return False
        count = len(self.responded)
        return count >= self.total or (stop_at_online and count >= self.online)


def run_query(args: argparse.Namespace) -> int:
    if not args.hosts and not args.labels:
        raise CLIError("No hosts or labels targeted. Please provide either --hosts or --labels.")
    if args.query and args.query_name:
        raise CLIError("--query and --query-name must not be provided together")
    if not args.query and not args.query_name:
        raise CLIError("Query must be specified with --query or --query-name")
    timeout = parse_duration(args.timeout) if args.timeout else 0.0

    with FleetClient(load_context(args.config, args.context), debug=args.debug) as client:
        query_id = None
        if args.query_name:
            query_id = _lookup_query_id(client, args.query_name, args.team)
        campaign_id = _create_campaign(
            client, args.query or None, query_id, _split(args.hosts), _split(args.labels)
        )
        return _follow(client, campaign_id, args, timeout)


def _lookup_query_id(client: FleetClient, name: str, team: int | None) -> int:
    try:
        queries = client.list_queries(name, team)
    except APIError as exc:
        if exc.status == 404:
            raise CLIError(f"Query '{name}' not found") from None
        raise
    for query in queries:
        if query.get("name") == name:
            return int(query["id"])
    raise CLIError(f"Query '{name}' not found")


def _create_campaign(
    client: FleetClient, sql: str | None, query_id: int | None, hosts: list[str],
    labels: list[str],
) -> int:
    try:
        result = client.run_live_query_by_identifiers(sql, query_id, hosts, labels)
    except APIError as exc:
        if "no hosts targeted" in exc.reason.lower():
            raise CLIError(NO_HOSTS_TARGETED) from None
        if exc.status in (400, 422):
            raise CLIError(exc.reason) from None
        raise CLIError(f"create live query: {exc}") from None
    try:
        return int(result["campaign"]["id"])
    except (KeyError, TypeError, ValueError):
        raise CLIError("create live query: the server returned no campaign id") from None


def _connect(client: FleetClient) -> ClientConnection:
    url = client.live_results_url()
    client.log(f"WS connect {url}")
    try:
        return connect(
            url,
            ssl=client.ssl if urlsplit(url).scheme == "wss" else None,
            additional_headers=client.ctx.custom_headers or None,
            open_timeout=45,
            max_size=None,
        )
    except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
        reason = str(exc) or type(exc).__name__
        raise CLIError(
            f"could not connect to {client.address} for live query results: {reason}"
        ) from None


def _follow(client: FleetClient, campaign_id: int, args: argparse.Namespace,
            timeout: float) -> int:
    state = Campaign()
    progress = Progress(enabled=not args.quiet)
    deadline = time.monotonic() + timeout if timeout > 0 else None
    with _connect(client) as ws:
        try:
            ws.send(json.dumps({"type": "auth", "data": {"token": client.ctx.token}}))
            ws.send(json.dumps({"type": "select_campaign",
                                "data": {"campaign_id": campaign_id}}))
            while not state.finished(args.exit):
                wait = _POLL_SECONDS
                if deadline is not None:
                    wait = min(wait, deadline - time.monotonic())
                    if wait <= 0:
                        progress.done()
                        print(f"Stopped by timeout: {state.unanswered()}", file=sys.stderr)
                        return 1
                try:
                    raw = ws.recv(timeout=wait)
                except TimeoutError:
                    continue
                _handle(client, raw, state, progress, args.pretty)
                if state.total is not None:
                    progress.show(state.message())
        except ConnectionClosed:
            progress.done()
            raise CLIError(
                "the server closed the live query connection before all hosts responded"
            ) from None
        except KeyboardInterrupt:
            progress.done()
            return 130
    progress.done()
    return 0


def _handle(client: FleetClient, raw: str | bytes, state: Campaign, progress: Progress,
            pretty: bool) -> None:
    try:
        message = json.loads(raw)
        kind, data = message["type"], message.get("data")
    except (ValueError, TypeError, KeyError):
        progress.clear()
        print(f"Error talking to server: malformed message {raw!r:.200}", file=sys.stderr)
        return
    client.log(f"WS message {kind}")
    if kind == "totals" and isinstance(data, dict):
        state.total = int(data.get("count") or 0)
        state.online = int(data.get("online") or 0)
    elif kind == "status":
        return  # progress is computed from the distinct hosts seen, not the server's tally
    elif kind == "result" and isinstance(data, dict):
        _print_result(data, state, progress, pretty)
    elif kind == "error":
        text = str(data)
        progress.clear()
        if any(marker in text for marker in TRANSIENT_ERRORS):
            print(f"Error talking to server: {text}", file=sys.stderr)
            return
        progress.done()
        if text == "unauthorized":
            raise CLIError(f"live query: unauthorized. {LOGIN_HINT}")
        raise CLIError(f"live query: {text}")
    else:
        progress.clear()
        print(f"Error talking to server: unknown msg type {kind}", file=sys.stderr)


def _print_result(data: dict[str, Any], state: Campaign, progress: Progress,
                  pretty: bool) -> None:
    host = data.get("host") or {}
    host_key = host.get("id", host.get("hostname"))
    if host_key in state.responded:
        return  # a host can deliver the same result twice; report it once
    state.responded.add(host_key)
    name = host.get("hostname") or host.get("display_name") or str(host_key)
    rows = [dict(sorted(row.items())) for row in data.get("rows") or [] if isinstance(row, dict)]
    out: dict[str, Any] = {"host": name, "rows": rows}
    if data.get("error"):
        out["error"] = data["error"]
    progress.clear()
    if pretty:
        print(json.dumps(out, indent=2, ensure_ascii=False), flush=True)
    else:
        print(json.dumps(out, separators=(",", ":"), ensure_ascii=False), flush=True)
    if data.get("error"):
        print(f"Error from {name}: {data['error']}", file=sys.stderr)
