"""The broker interfaces: what the service layer needs from Redis (or its in-process twin).

Four small capabilities, each a Protocol so that `memory.py` and `redis.py` can be swapped
without anything above this package knowing which one runs:

- `LiveQueryStore`: which hosts still owe an answer to which live-query campaign.
- `MessageBus`: fan-out pub/sub (live-query results, cache invalidations).
- `Locks`: leader locks with an owner and a TTL, for periodic jobs.
- `RateLimits`: request budgets shared by every instance (login attempts).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

# Channel on which every instance announces what it changed that other instances cache (host
# rows, agent config), so that they drop those entries; payloads: `ServiceContext._announce`.
CACHE_INVALIDATION_CHANNEL = "fleet:cache:invalidate"


def results_channel(campaign_id: int) -> str:
    """Fleet's pub/sub channel name for the results of one live-query campaign."""
    return f"results_{campaign_id}"


class BrokerUnavailable(Exception):
    """The broker backend could not be reached (Redis down, connection refused, timeout)."""


class LiveQueryStore(Protocol):
    async def run_query(self, campaign_id: int, sql: str, host_ids: Sequence[int]) -> None:
        """Mark `host_ids` as owing an answer to `campaign_id`; visible to all instances."""

    async def stop_query(self, campaign_id: int) -> None:
        """Forget the campaign: no host will be handed its SQL any more."""

    async def queries_for_host(self, host_id: int) -> dict[int, str]:
        """Campaigns (id -> SQL) this host still has to answer. Cheap: a cached active list."""

    async def query_completed_by_host(self, campaign_id: int, host_id: int) -> None:
        """The host's answer was delivered; do not hand it this campaign again."""

    async def active_campaigns(self) -> list[int]:
        """Ids of every campaign currently stored (for cleanup jobs)."""


class Subscription(Protocol):
    def __aiter__(self) -> AsyncIterator[bytes]: ...


class MessageBus(Protocol):
    async def publish(self, channel: str, payload: bytes) -> int:
        """Send to every current subscriber of `channel`; returns how many there were."""

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[Subscription]:
        """Subscribe; the subscription is active once the context manager has been entered."""


class Locks(Protocol):
    async def acquire(self, name: str, owner: str, ttl_seconds: float) -> bool:
        """Take or extend the lock `name` for `owner`; False if someone else holds it."""

    async def release(self, name: str, owner: str) -> None:
        """Release the lock if `owner` holds it."""


class RateLimits(Protocol):
    async def hit(self, key: str, per_minute: int, burst: int) -> int:
        """Count one request against `key` (GCRA: `per_minute` sustained, `burst` more in a
        row); 0 if allowed, else the whole seconds to wait. Refused requests do not count."""


class Broker(Protocol):
    live: LiveQueryStore
    bus: MessageBus
    locks: Locks
    limits: RateLimits

    @property
    def kind(self) -> str:
        """`memory` or `redis`, for logs and /healthz."""

    async def ping(self) -> None:
        """Raise `BrokerUnavailable` when the backend does not answer."""

    async def close(self) -> None: ...
