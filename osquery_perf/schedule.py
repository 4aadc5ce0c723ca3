"""Scheduled queries from the config (``schedule`` and ``packs``) and their log lines.

Follows osquery's scheduler: packs are filtered by platform, version, shard and discovery;
intervals are splayed ±10 % (stable per host and query); a query runs when the clock crosses
a multiple of its splayed interval. Differential results are logged in event format (one
line per changed row, removed before added), snapshots as one ``snapshot`` line.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from typing import Any

import orjson

from osquery_perf.logs import calendar_time
from osquery_perf.queries import discovery_has_rows
from osquery_perf.tables import Ctx
from osquery_perf.templates import Row

DEFAULT_INTERVAL = 3_600  # --schedule_default_interval
MAX_INTERVAL = 604_800
SPLAY_PERCENT = 10  # --schedule_splay_percent


@dataclass(slots=True)
class ScheduledQuery:
    name: str
    sql: str
    configured_interval: int
    interval: int  # splayed
    snapshot: bool
    removed: bool
    counter: int = 0
    previous: dict[int, Row] | None = None  # row hash -> row, for differentials
    last_tick: float | None = None


def check_platform(spec: Any, family: str) -> bool:
    """osquery's ``checkPlatform`` against this build platform."""
    if not isinstance(spec, str) or not spec or spec == "null":
        return True
    if "any" in spec or "all" in spec:
        return True
    if family == "linux" and any(p in spec for p in ("linux", "ubuntu", "centos")):
        return True
    if "posix" in spec and family != "windows":
        return True
    return family in spec


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for part in version.split("."):
        digits = "".join(c for c in part if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def _version_ok(spec: Any, version: str) -> bool:
    return not isinstance(spec, str) or not spec or _version_tuple(version) >= _version_tuple(spec)


def _machine_shard(hostname: str) -> int:
    return hashlib.sha1(hostname.encode()).digest()[0] * 100 // 255


def _shard_ok(spec: Any, hostname: str) -> bool:
    if not isinstance(spec, int) or isinstance(spec, bool) or not 0 < spec < 100:
        return True
    return _machine_shard(hostname) <= spec


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def splay(interval: int, key: str) -> int:
    """A stable value in ``interval ± SPLAY_PERCENT %`` (osquery persists its splay)."""
    spread = interval * SPLAY_PERCENT // 100
    if spread == 0:
        return interval
    low = max(1, interval - spread)
    return low + zlib.crc32(key.encode()) % (interval + spread - low + 1)


class Schedule:
    """The active scheduled queries of one agent, keyed by their logged name."""

    __slots__ = ("queries",)

    def __init__(self) -> None:
        self.queries: dict[str, ScheduledQuery] = {}

    def load(self, config: dict[str, Any], ctx: Ctx, delimiter: str) -> None:
        """Replace the schedule, keeping diff state of queries whose SQL did not change."""
        new: dict[str, ScheduledQuery] = {}
        schedule = config.get("schedule")
        if isinstance(schedule, dict):
            for name, spec in schedule.items():
                self._add(new, str(name), spec, ctx)
        packs = config.get("packs")
        if isinstance(packs, dict):
            for pack_name, pack in packs.items():
                if not isinstance(pack, dict) or not self._pack_active(pack, ctx):
                    continue
                queries = pack.get("queries")
                if isinstance(queries, dict):
                    for name, spec in queries.items():
                        full = f"pack{delimiter}{pack_name}{delimiter}{name}"
                        self._add(new, full, spec, ctx)
        self.queries = new

    @staticmethod
    def _pack_active(pack: dict[str, Any], ctx: Ctx) -> bool:
        host = ctx.host
        if not (check_platform(pack.get("platform"), host.family)
                and _version_ok(pack.get("version"), host.osquery_version)
                and _shard_ok(pack.get("shard"), host.hostname)):
            return False
        discovery = pack.get("discovery")
        if isinstance(discovery, list):
            return all(isinstance(q, str) and discovery_has_rows(q, ctx) for q in discovery)
        return True

    def _add(self, new: dict[str, ScheduledQuery], name: str, spec: Any, ctx: Ctx) -> None:
        if name in new or not isinstance(spec, dict):
            return
        sql = spec.get("query")
        interval = _as_int(spec.get("interval", DEFAULT_INTERVAL))
        if not isinstance(sql, str) or not sql or interval is None:
            return
        if not 1 <= interval <= MAX_INTERVAL:
            return
        host = ctx.host
        if not (check_platform(spec.get("platform"), host.family)
                and _version_ok(spec.get("version"), host.osquery_version)
                and _shard_ok(spec.get("shard"), host.hostname)):
            return
        snapshot = spec.get("snapshot") is True
        removed = spec.get("removed") is not False
        old = self.queries.get(name)
        if old and old.sql == sql and old.configured_interval == interval:
            old.snapshot, old.removed = snapshot, removed
            new[name] = old
        else:
            new[name] = ScheduledQuery(name, sql, interval, splay(interval, host.uuid + name),
                                       snapshot, removed)

    def due(self, now: float) -> list[ScheduledQuery]:
        """Queries whose splayed interval boundary was crossed since the previous tick."""
        due = []
        for query in self.queries.values():
            last = now - 1 if query.last_tick is None else query.last_tick
            query.last_tick = now
            if now // query.interval > last // query.interval:
                due.append(query)
        return due


def result_lines(
    query: ScheduledQuery,
    rows: list[Row],
    *,
    host_identifier: str,
    now: float,
    decorations: Row,
) -> list[dict[str, Any]]:
    """Log lines for one execution; updates the query's diff state and counter."""
    base: dict[str, Any] = {
        "name": query.name, "hostIdentifier": host_identifier,
        "calendarTime": calendar_time(now), "unixTime": int(now), "epoch": 0, "counter": 0,
        "numerics": False,
    }
    if decorations:
        base["decorations"] = decorations
    if query.snapshot:
        return [{**base, "snapshot": rows, "action": "snapshot"}]
    current = {hash(orjson.dumps(r, option=orjson.OPT_SORT_KEYS)): r for r in rows}
    previous = query.previous
    query.previous = current
    if previous is None:
        removed: list[Row] = []
        added = list(current.values())
    else:
        added = [r for k, r in current.items() if k not in previous]
        removed = [r for k, r in previous.items() if k not in current]
        if not added and not removed:
            return []
    if not query.removed:
        removed = []
    base["counter"] = query.counter
    query.counter += 1
    lines = [{**base, "columns": r, "action": "removed"} for r in removed]
    lines += [{**base, "columns": r, "action": "added"} for r in added]
    return lines
