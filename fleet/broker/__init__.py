"""Broker backends: Redis when configured (several instances), otherwise in-process."""

from typing import Unpack

from fleet.broker.base import (
    CACHE_INVALIDATION_CHANNEL,
    Broker,
    BrokerUnavailable,
    LiveQueryStore,
    Locks,
    MessageBus,
    Subscription,
    results_channel,
)
from fleet.broker.memory import MemoryBroker
from fleet.broker.redis import RedisBroker, RedisOptions

__all__ = [
    "CACHE_INVALIDATION_CHANNEL",
    "Broker",
    "BrokerUnavailable",
    "LiveQueryStore",
    "Locks",
    "MemoryBroker",
    "MessageBus",
    "RedisBroker",
    "RedisOptions",
    "Subscription",
    "create_broker",
    "results_channel",
]


async def create_broker(*, redis_address: str, **redis_options: Unpack[RedisOptions]) -> Broker:
    """Fleet's rule: an empty `redis.address` means a single instance with in-memory state."""
    if not redis_address:
        return MemoryBroker()
    return await RedisBroker.connect(address=redis_address, **redis_options)
