"""In-process broker for single-instance deployments (no Redis configured) and for tests.

Everything lives in dicts owned by one asyncio event loop, so nothing here is shared between
processes: run several Fleet instances only with the Redis broker. The observable behaviour
(return values, TTLs, lock semantics) mirrors `redis.py` so that callers cannot tell them apart.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from time import monotonic

from fleet.broker.base import LiveQueryStore, Locks, MessageBus, RateLimits

# Same lifetime as the Redis keys, so a forgotten campaign disappears on both backends.
QUERY_TTL_SECONDS = 7 * 24 * 3600


@dataclass(slots=True)
class _Campaign:
    sql: str
    hosts: set[int]
    expires_at: float


class MemoryLiveQueryStore:
    """Campaigns with their outstanding hosts; expiry is checked lazily on every read."""

    def __init__(self) -> None:
        self._campaigns: dict[int, _Campaign] = {}

    def _live(self) -> dict[int, _Campaign]:
        now = monotonic()
        for campaign_id in [c for c, v in self._campaigns.items() if v.expires_at <= now]:
            del self._campaigns[campaign_id]
        return self._campaigns

    async def run_query(self, campaign_id: int, sql: str, host_ids: Sequence[int]) -> None:
        if any(h < 0 for h in host_ids):
            raise ValueError("host ids must be non-negative")
        self._campaigns[campaign_id] = _Campaign(
            sql, set(host_ids), monotonic() + QUERY_TTL_SECONDS
        )

    async def stop_query(self, campaign_id: int) -> None:
        self._campaigns.pop(campaign_id, None)

    async def queries_for_host(self, host_id: int) -> dict[int, str]:
        return {c: v.sql for c, v in self._live().items() if host_id in v.hosts}

    async def query_completed_by_host(self, campaign_id: int, host_id: int) -> None:
        campaign = self._live().get(campaign_id)
        if campaign is not None:
            campaign.hosts.discard(host_id)

    async def active_campaigns(self) -> list[int]:
        return sorted(self._live())


class _MemorySubscription:
    def __init__(self, queue: asyncio.Queue[bytes]) -> None:
        self._queue = queue

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            yield await self._queue.get()


class MemoryMessageBus:
    """Fan-out to unbounded per-subscriber queues: a slow reader never blocks a publisher."""

    def __init__(self) -> None:
        self._subscribers: dict[str, set[asyncio.Queue[bytes]]] = {}

    async def publish(self, channel: str, payload: bytes) -> int:
        queues = self._subscribers.get(channel, set())
        for queue in queues:
            queue.put_nowait(payload)
        return len(queues)

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[_MemorySubscription]:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._subscribers.setdefault(channel, set()).add(queue)
        try:
            yield _MemorySubscription(queue)
        finally:
            queues = self._subscribers[channel]
            queues.discard(queue)
            if not queues:
                del self._subscribers[channel]


class MemoryLocks:
    """Owner + deadline per lock name, with the same take-or-extend rule as the Redis locks."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[str, float]] = {}

    async def acquire(self, name: str, owner: str, ttl_seconds: float) -> bool:
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        now = monotonic()
        held = self._held.get(name)
        if held is not None and held[0] != owner and held[1] > now:
            return False
        self._held[name] = (owner, now + ttl_seconds)
        return True

    async def release(self, name: str, owner: str) -> None:
        held = self._held.get(name)
        if held is not None and held[0] == owner:
            del self._held[name]


class MemoryRateLimits:
    """GCRA over a dict of theoretical arrival times (seconds, monotonic clock)."""

    MAX_KEYS = 10_000

    def __init__(self, clock: Callable[[], float] = monotonic) -> None:
        self._clock = clock
        self._tat: dict[str, float] = {}

    async def hit(self, key: str, per_minute: int, burst: int) -> int:
        interval = 60.0 / per_minute
        now = self._clock()
        tat = max(self._tat.get(key, now), now) + interval
        wait = tat - now - interval * (burst + 1)
        if wait > 0:
            return math.ceil(wait)
        self._tat[key] = tat
        if len(self._tat) > self.MAX_KEYS:  # forget buckets that are full again
            self._tat = {k: t for k, t in self._tat.items() if t > now}
        return 0


class MemoryBroker:
    """The in-process `Broker`: only valid while a single Fleet instance serves the fleet."""

    def __init__(self) -> None:
        self.live: LiveQueryStore = MemoryLiveQueryStore()
        self.bus: MessageBus = MemoryMessageBus()
        self.locks: Locks = MemoryLocks()
        self.limits: RateLimits = MemoryRateLimits()

    @property
    def kind(self) -> str:
        return "memory"

    async def ping(self) -> None:
        """Always reachable: the state lives in this process."""

    async def close(self) -> None:
        """Nothing to release; open subscriptions end when their context managers exit."""
