"""In-process cache of the hosts that check in, keyed by node key.

At 10-second check-ins nearly every agent request is "who is this node key, is anything
due?". Answering that from memory is what keeps the hot path free of SQL. Entries expire
after a jittered TTL as a safety net; changes made by any instance are announced on the
broker (see `ServiceContext.host_changed`) and drop the entry everywhere within moments.
"""

from __future__ import annotations

import calendar
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

TTL_SECONDS = 600.0


@dataclass
class CachedHost:
    """The slice of a host row the agent endpoints need on every request."""

    id: int
    node_key: str
    osquery_host_id: str
    hostname: str
    platform: str
    team_id: int | None
    detail_updated_at: float  # unix seconds
    label_updated_at: float
    refetch_requested: bool
    distributed_interval: int
    config_tls_refresh: int
    logger_tls_period: int
    # What people see the host as (computer_name, else hostname), as in GET /hosts/{id}.
    display_name: str = ""
    expires: float = field(default=0.0, compare=False)

    @classmethod
    def from_row(cls, row: Any) -> CachedHost:
        return cls(
            id=row.id, node_key=row.node_key, osquery_host_id=row.osquery_host_id,
            hostname=row.hostname, platform=row.platform, team_id=row.team_id,
            detail_updated_at=unix_seconds(row.detail_updated_at),
            label_updated_at=unix_seconds(row.label_updated_at),
            refetch_requested=bool(row.refetch_requested),
            distributed_interval=row.distributed_interval,
            config_tls_refresh=row.config_tls_refresh,
            logger_tls_period=row.logger_tls_period,
            display_name=row.computer_name or row.hostname,
        )

    def apply(self, columns: Mapping[str, Any]) -> None:
        """Bring the entry up to date with host columns this instance just wrote."""
        for name, value in columns.items():
            if name in _TIMESTAMPS:
                setattr(self, name, unix_seconds(value))
            elif name in _COLUMNS:
                setattr(self, name, value)
        if "computer_name" in columns:  # system_info: it comes with the hostname
            self.display_name = columns["computer_name"] or self.hostname


_TIMESTAMPS = frozenset({"detail_updated_at", "label_updated_at"})
_COLUMNS = frozenset({"hostname", "platform", "team_id", "refetch_requested",
                      "distributed_interval", "config_tls_refresh", "logger_tls_period"})


def unix_seconds(value: Any) -> float:
    """Unix seconds of a naive UTC datetime (how the store returns timestamps)."""
    return calendar.timegm(value.timetuple()) + value.microsecond / 1e6


class HostCache:
    def __init__(self, ttl: float = TTL_SECONDS) -> None:
        self._ttl = ttl
        self._by_key: dict[str, CachedHost] = {}
        self._key_by_id: dict[int, str] = {}

    def get(self, node_key: str) -> CachedHost | None:
        host = self._by_key.get(node_key)
        if host is None:
            return None
        if host.expires < time.monotonic():
            self._drop(host)
            return None
        return host

    def put(self, host: CachedHost) -> None:
        old = self._key_by_id.get(host.id)
        if old is not None and old != host.node_key:
            self._by_key.pop(old, None)
        host.expires = time.monotonic() + self._ttl * random.uniform(0.9, 1.1)
        self._by_key[host.node_key] = host
        self._key_by_id[host.id] = host.node_key

    def invalidate(self, host_id: int) -> None:
        key = self._key_by_id.pop(host_id, None)
        if key is not None:
            self._by_key.pop(key, None)

    def clear(self) -> None:
        self._by_key.clear()
        self._key_by_id.clear()

    def _drop(self, host: CachedHost) -> None:
        self._by_key.pop(host.node_key, None)
        self._key_by_id.pop(host.id, None)

    def __len__(self) -> int:
        return len(self._by_key)
