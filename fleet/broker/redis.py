"""Redis-backed broker, shared by every Fleet instance behind the same load balancer.

Keys (all in the configured database, all with a TTL so nothing leaks if a job dies):

- `sql:livequery:{<id>}`: string, the campaign's SQL. EX 604800 (7 days). Written by
  `run_query`, deleted by `stop_query`.
- `livequery:{<id>}`: string used as a bitfield of the hosts that still owe an answer.
  EX 604800. Written by `run_query`, bits cleared by `query_completed_by_host`, deleted by
  `stop_query`.
- `livequery:active`: set of campaign ids. EXPIRE 604800, refreshed by every `run_query`.
  SADD by `run_query`; SREM by `stop_query` and by the active-cache reload (ids whose SQL
  key is gone).
- `locks:<name>`: string, the owner of a leader lock. PX = the lock's ttl. Written by
  `Locks.acquire`, deleted by `Locks.release`.

This is Fleet's layout: the `{<id>}` braces are literal Redis Cluster hash tags keeping both
keys of a campaign in one slot. In the bitfield, host `h` is bit `7 - h % 8` of byte `h // 8`
(MSB first), i.e. what `SETBIT`/`GETBIT` address. `stop_query` deletes both campaign keys.

Pub/sub channels (`results_<id>`, `fleet:cache:invalidate`) hold no keys; every subscription
owns one dedicated connection. Redis pub/sub ignores the database number, so with
`redis.database` N other than 0 every channel is prefixed `db<N>:`: two deployments sharing
a Redis server on different databases (staging next to production) would otherwise receive
each other's live-query results, their campaign ids counting from 1 alike.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from time import monotonic
from typing import Any, Self, TypedDict, Unpack, cast

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.connection import (
    BlockingConnectionPool,
    Connection,
    ConnectionPool,
    SSLConnection,
)
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from fleet.broker.base import (
    BrokerUnavailable,
    LiveQueryStore,
    Locks,
    MessageBus,
    RateLimits,
)

QUERY_TTL_SECONDS = 7 * 24 * 3600
ACTIVE_KEY = "livequery:active"
# How stale this instance's list of active campaigns may be: bounds the delay before a host
# checking in on another instance sees a new campaign, and the SMEMBERS rate per instance.
ACTIVE_CACHE_SECONDS = 1.0
# /healthz and startup must answer fast even when Redis black-holes packets.
PING_TIMEOUT_SECONDS = 2.0
# Idle pooled connections are PINGed before reuse, so a half-dead one is replaced up front.
HEALTH_CHECK_INTERVAL_SECONDS = 30
DEFAULT_PORT = 6379
# What `max_open_conns` 0 ("no limit") means for the pool: Redis' own default maxclients.
UNLIMITED_CONNECTIONS = 10_000

_UNAVAILABLE_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError)

# SETBIT on a missing key would create it without a TTL (e.g. an answer arriving after
# stop_query), so only clear the bit while the campaign still exists.
_CLEAR_BIT = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('SETBIT', KEYS[1], ARGV[1], 0)
end
return 0
"""
_EXTEND_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
# GCRA with the server's clock, so every instance draws on one budget. Times in ms.
_RATE_LIMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval, tolerance = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
tat = tat + interval
local wait = tat - now - tolerance
if wait > 0 then return wait end
redis.call('SET', KEYS[1], tat, 'PX', tat - now)
return 0
"""
_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisOptions(TypedDict, total=False):
    """Connection settings besides the address (Fleet's `redis.*` configuration)."""

    username: str
    password: str
    database: int
    use_tls: bool
    connect_timeout: float
    read_timeout: float
    max_open_conns: int
    conn_wait_timeout: float


@contextmanager
def _unavailable() -> Iterator[None]:
    """Turn network-level failures into the one exception the service layer handles."""
    try:
        yield
    except _UNAVAILABLE_ERRORS as e:
        raise BrokerUnavailable(f"redis: {e}") from e


def _parse_address(address: str) -> tuple[str, int, bool]:
    """`host[:port]` (IPv6 in brackets), maybe `redis://`/`rediss://` (TLS) -> host, port, tls."""
    tls = address.startswith("rediss://")
    address = address.removeprefix("rediss://").removeprefix("redis://").rstrip("/")
    host, sep, port = address.rpartition(":")
    if not sep or host.startswith("[") != host.endswith("]"):  # no port: `host`, `[::1]`
        host, port = address, str(DEFAULT_PORT)
    return host.removeprefix("[").removesuffix("]"), int(port), tls


def _targets_key(campaign_id: int) -> str:
    return f"livequery:{{{campaign_id}}}"


def _sql_key(campaign_id: int) -> str:
    return f"sql:livequery:{{{campaign_id}}}"


def _bitfield(host_ids: Sequence[int]) -> bytes:
    """The GETBIT-compatible bitmap of `host_ids`, built locally to send one SET."""
    if not host_ids:
        return b""
    if min(host_ids) < 0:
        raise ValueError("host ids must be non-negative")
    bits = bytearray(max(host_ids) // 8 + 1)
    for h in host_ids:
        bits[h // 8] |= 0x80 >> (h % 8)
    return bytes(bits)


class RedisLiveQueryStore:
    """Fleet's live-query bookkeeping; `queries_for_host` runs on every distributed/read."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._clear_bit = redis.register_script(_CLEAR_BIT)
        self._active: dict[int, str] = {}
        self._active_loaded_at = float("-inf")
        self._refresh_lock = asyncio.Lock()

    async def run_query(self, campaign_id: int, sql: str, host_ids: Sequence[int]) -> None:
        bits = _bitfield(host_ids)
        with _unavailable():
            async with self._redis.pipeline(transaction=True) as pipe:
                # SQL first: whoever sees a target bit must also find the SQL.
                pipe.set(_sql_key(campaign_id), sql, ex=QUERY_TTL_SECONDS)
                pipe.set(_targets_key(campaign_id), bits, ex=QUERY_TTL_SECONDS)
                pipe.sadd(ACTIVE_KEY, campaign_id)
                pipe.expire(ACTIVE_KEY, QUERY_TTL_SECONDS)
                await pipe.execute()
        # Hosts checking in on this instance need not wait for the next cache refresh.
        self._active[campaign_id] = sql

    async def stop_query(self, campaign_id: int) -> None:
        with _unavailable():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(_targets_key(campaign_id), _sql_key(campaign_id))
                pipe.srem(ACTIVE_KEY, campaign_id)
                await pipe.execute()
        self._active.pop(campaign_id, None)

    async def queries_for_host(self, host_id: int) -> dict[int, str]:
        active = list((await self._active_queries()).items())
        if not active:
            return {}
        with _unavailable():
            async with self._redis.pipeline(transaction=False) as pipe:
                for campaign_id, _ in active:
                    pipe.getbit(_targets_key(campaign_id), host_id)
                bits = await pipe.execute()
        return {c: sql for (c, sql), bit in zip(active, bits, strict=True) if bit}

    async def query_completed_by_host(self, campaign_id: int, host_id: int) -> None:
        with _unavailable():
            await self._clear_bit(keys=[_targets_key(campaign_id)], args=[host_id])

    async def active_campaigns(self) -> list[int]:
        with _unavailable():
            members = await self._redis.smembers(ACTIVE_KEY)
        return sorted(int(m) for m in members)

    async def _active_queries(self) -> dict[int, str]:
        """Active campaign id -> SQL, reloaded from Redis at most every ACTIVE_CACHE_SECONDS."""
        if monotonic() - self._active_loaded_at < ACTIVE_CACHE_SECONDS:
            return self._active
        async with self._refresh_lock:
            # Concurrent check-ins queue here; only the first one pays for the reload.
            started = monotonic()
            if started - self._active_loaded_at < ACTIVE_CACHE_SECONDS:
                return self._active
            with _unavailable():
                ids = sorted(int(m) for m in await self._redis.smembers(ACTIVE_KEY))
                # Not decoded by the client (payloads are bytes), hence the cast.
                sqls = cast(
                    list[bytes | None],
                    await self._redis.mget([_sql_key(c) for c in ids]) if ids else [],
                )
                gone = [c for c, sql in zip(ids, sqls, strict=True) if sql is None]
                if gone:  # expired or half-deleted campaigns: stop asking about them
                    await self._redis.srem(ACTIVE_KEY, *gone)
            self._active = {
                c: sql.decode() for c, sql in zip(ids, sqls, strict=True) if sql is not None
            }
            self._active_loaded_at = started
            return self._active


class _RedisSubscription:
    """One SUBSCRIBEd connection; iterating yields message payloads in publish order."""

    def __init__(self, pubsub: PubSub, read_timeout: float) -> None:
        self._pubsub = pubsub
        self._read_timeout = read_timeout
        self.broken = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        # Silence longer than read_timeout is answered with a PING; a second silence means the
        # connection is dead even if TCP has not noticed (e.g. a network partition).
        pinged = False
        while True:
            try:
                with _unavailable():
                    message = await self._pubsub.get_message(timeout=self._read_timeout)
                    if message is None:
                        if pinged:
                            raise BrokerUnavailable("redis: no reply to PING on subscription")
                        await self._pubsub.ping()
                        pinged = True
                        continue
            except BrokerUnavailable:
                # redis-py would silently reconnect and resubscribe, losing whatever was
                # published meanwhile; callers must know, so this subscription is over.
                self.broken = True
                raise
            pinged = False
            if message["type"] == "message":
                yield message["data"]

    async def wait_for(self, kind: str) -> None:
        """Read until the (un)subscribe confirmation `kind`, dropping anything before it."""
        async with asyncio.timeout(self._read_timeout):
            while True:
                message = await self._pubsub.get_message(timeout=self._read_timeout)
                if message is not None and message["type"] == kind:
                    return


class RedisMessageBus:
    """Redis PUBLISH/SUBSCRIBE; every subscription gets its own connection."""

    def __init__(self, redis: Redis, pubsub_redis: Redis, read_timeout: float,
                 database: int = 0) -> None:
        self._redis = redis
        self._pubsub_redis = pubsub_redis
        self._read_timeout = read_timeout
        self._prefix = f"db{database}:" if database else ""

    async def publish(self, channel: str, payload: bytes) -> int:
        with _unavailable():
            return int(await self._redis.publish(self._prefix + channel, payload))

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[_RedisSubscription]:
        channel = self._prefix + channel
        pubsub = self._pubsub_redis.pubsub()
        subscription = _RedisSubscription(pubsub, self._read_timeout)
        try:
            with _unavailable():
                await pubsub.subscribe(channel)
                # Only after the confirmation is a later PUBLISH guaranteed to reach us.
                await subscription.wait_for("subscribe")
            yield subscription
            # Confirmed UNSUBSCRIBE: a PUBLISH after leaving the context no longer counts us.
            # Skipped on errors: the connection is closed right below anyway.
            with suppress(*_UNAVAILABLE_ERRORS):
                if not subscription.broken:
                    await pubsub.unsubscribe(channel)
                    await subscription.wait_for("unsubscribe")
        finally:
            await pubsub.aclose()


class RedisLocks:
    """Single-instance Redis locks (SET NX PX + owner-checked Lua), keyed `locks:<name>`."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._extend = redis.register_script(_EXTEND_LOCK)
        self._release = redis.register_script(_RELEASE_LOCK)

    async def acquire(self, name: str, owner: str, ttl_seconds: float) -> bool:
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        key, ttl_ms = f"locks:{name}", max(1, round(ttl_seconds * 1000))
        with _unavailable():
            if await self._redis.set(key, owner, nx=True, px=ttl_ms):
                return True
            return bool(await self._extend(keys=[key], args=[owner, ttl_ms]))

    async def release(self, name: str, owner: str) -> None:
        with _unavailable():
            await self._release(keys=[f"locks:{name}"], args=[owner])


class RedisRateLimits:
    def __init__(self, redis: Redis) -> None:
        self._script = redis.register_script(_RATE_LIMIT)

    async def hit(self, key: str, per_minute: int, burst: int) -> int:
        interval = round(60_000 / per_minute)
        with _unavailable():
            wait_ms = int(await self._script(keys=[f"ratelimit:{key}"],
                                             args=[interval, interval * (burst + 1)]))
        return math.ceil(wait_ms / 1000)


class RedisBroker:
    """The shared `Broker`. Build it with `await RedisBroker.connect(address=..., ...)`."""

    def __init__(
        self,
        *,
        address: str,
        username: str = "",
        password: str = "",
        database: int = 0,
        use_tls: bool = False,
        connect_timeout: float = 5.0,
        read_timeout: float = 10.0,
        max_open_conns: int = 0,
        conn_wait_timeout: float = 0.0,
    ) -> None:
        host, port, tls = _parse_address(address)

        def client(retry: Retry, health_check_interval: int, max_connections: int) -> Redis:
            conn_kwargs: dict[str, Any] = {
                "connection_class": SSLConnection if use_tls or tls else Connection,
                "host": host, "port": port, "username": username or None,
                "password": password or None, "db": database,
                "socket_connect_timeout": connect_timeout, "socket_timeout": read_timeout,
                "client_name": "fleet", "retry": retry,
                "health_check_interval": health_check_interval,
            }
            # redis-py's default pool fails a command ("Too many connections") once 100
            # are in use, which a burst of agent writes reaches. Without a limit the pool
            # simply grows to the peak concurrency; with one, commands wait their turn.
            pool: ConnectionPool = (
                BlockingConnectionPool(max_connections=max_connections,
                                       timeout=conn_wait_timeout or read_timeout,
                                       **conn_kwargs)
                if max_connections else
                ConnectionPool(max_connections=UNLIMITED_CONNECTIONS, **conn_kwargs))
            return Redis.from_pool(pool)

        # Commands retry once on a connection error: after a Redis restart every pooled
        # connection is dead, and the retry reconnects it. Timeouts are not retried, since a
        # timed-out PUBLISH may already have been delivered. Idle connections are
        # PINGed before reuse.
        self._redis = client(
            Retry(
                ExponentialWithJitterBackoff(base=0.05, cap=0.5),
                retries=1,
                supported_errors=(RedisConnectionError,),
            ),
            HEALTH_CHECK_INTERVAL_SECONDS,
            max_open_conns,
        )
        # Subscriptions never retry: a transparent resubscribe would hide lost messages. Their
        # liveness is checked by _RedisSubscription's own PINGs instead.
        # Each watcher holds one for as long as it watches, so they are never capped.
        self._pubsub_redis = client(Retry(NoBackoff(), retries=0), 0, 0)
        self.live: LiveQueryStore = RedisLiveQueryStore(self._redis)
        self.bus: MessageBus = RedisMessageBus(self._redis, self._pubsub_redis, read_timeout,
                                               database)
        self.locks: Locks = RedisLocks(self._redis)
        self.limits: RateLimits = RedisRateLimits(self._redis)

    @classmethod
    async def connect(cls, *, address: str, **options: Unpack[RedisOptions]) -> Self:
        """Create the broker and check Redis answers, so a bad address fails at startup."""
        broker = cls(address=address, **options)
        try:
            await broker.ping()
        except BaseException:
            await broker.close()
            raise
        return broker

    @property
    def kind(self) -> str:
        return "redis"

    async def ping(self) -> None:
        try:
            async with asyncio.timeout(PING_TIMEOUT_SECONDS):
                with _unavailable():
                    await self._redis.ping()
        except TimeoutError as e:
            raise BrokerUnavailable("redis: PING timed out") from e

    async def close(self) -> None:
        await self._redis.aclose()
        await self._pubsub_redis.aclose()
