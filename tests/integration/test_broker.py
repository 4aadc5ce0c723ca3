"""Broker behaviour, run against both backends so that they cannot drift apart.

Redis tests use database 13 (flushed before and after each test) of FLEET_TEST_REDIS_ADDRESS
(default 127.0.0.1:6379). Without a reachable Redis they are skipped, except under CI=true
where that is a failure.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from time import monotonic
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

import fleet.broker.redis as redis_module
from fleet.broker import (
    Broker,
    BrokerUnavailable,
    MemoryBroker,
    RedisBroker,
    Subscription,
    create_broker,
    results_channel,
)

REDIS_ADDRESS = os.environ.get("FLEET_TEST_REDIS_ADDRESS", "127.0.0.1:6379")
TEST_DB = 13
DEADLINE_SECONDS = 5.0

BrokerFactory = Callable[[], Awaitable[RedisBroker]]


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll `check` until it holds or DEADLINE_SECONDS pass."""
    deadline = monotonic() + DEADLINE_SECONDS
    while not await check():
        if monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def connect_test_broker(address: str = REDIS_ADDRESS) -> RedisBroker:
    return await RedisBroker.connect(
        address=address, database=TEST_DB, connect_timeout=2.0, read_timeout=5.0
    )


@pytest.fixture
async def redis_admin() -> AsyncIterator[Redis]:
    """A plain client on the test database, to inspect what the broker wrote."""
    client = Redis.from_url(
        f"redis://{REDIS_ADDRESS.removeprefix('redis://')}/{TEST_DB}",
        socket_connect_timeout=2.0,
        retry=Retry(NoBackoff(), retries=0),
    )
    try:
        await client.ping()
    except (RedisError, OSError) as e:
        await client.aclose()
        message = f"Redis not reachable at {REDIS_ADDRESS}: {e}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    await client.flushdb()
    yield client
    await client.flushdb()
    await client.aclose()


@pytest.fixture
async def redis_brokers(redis_admin: Redis) -> AsyncIterator[BrokerFactory]:
    """Opens RedisBrokers on the test database (each one a simulated Fleet instance)."""
    opened: list[RedisBroker] = []

    async def open_broker() -> RedisBroker:
        opened.append(await connect_test_broker())
        return opened[-1]

    yield open_broker
    for broker in opened:
        await broker.close()


@pytest.fixture
async def redis_broker(redis_brokers: BrokerFactory) -> RedisBroker:
    return await redis_brokers()


@pytest.fixture(params=["memory", "redis"])
def broker(request: pytest.FixtureRequest) -> Broker:
    """Each backend in turn; Redis setup (and its skip) only happens for the Redis run."""
    if request.param == "memory":
        return MemoryBroker()
    redis_broker: RedisBroker = request.getfixturevalue("redis_broker")
    return redis_broker


async def test_kind_and_ping(broker: Broker) -> None:
    assert broker.kind in {"memory", "redis"}
    await broker.ping()


# --- live queries ------------------------------------------------------------------------


async def test_queries_for_targeted_hosts_only(broker: Broker) -> None:
    targeted = [0, 7, 8, 1000003]
    await broker.live.run_query(42, "SELECT 1", targeted)
    for host_id in targeted:
        assert await broker.live.queries_for_host(host_id) == {42: "SELECT 1"}
    for host_id in [1, 6, 9, 15, 16, 1000002, 1000004, 2000000]:
        assert await broker.live.queries_for_host(host_id) == {}
    assert await broker.live.active_campaigns() == [42]


async def test_several_campaigns_per_host(broker: Broker) -> None:
    await broker.live.run_query(1, "SELECT 'a'", [5, 6])
    await broker.live.run_query(2, "SELECT 'b'", [6])
    assert await broker.live.queries_for_host(6) == {1: "SELECT 'a'", 2: "SELECT 'b'"}
    assert await broker.live.queries_for_host(5) == {1: "SELECT 'a'"}
    assert await broker.live.active_campaigns() == [1, 2]


async def test_completed_host_is_not_asked_again(broker: Broker) -> None:
    await broker.live.run_query(7, "SELECT 2", [3, 8])
    await broker.live.query_completed_by_host(7, 8)
    assert await broker.live.queries_for_host(8) == {}
    assert await broker.live.queries_for_host(3) == {7: "SELECT 2"}


async def test_stop_query_removes_it_for_every_host(broker: Broker) -> None:
    await broker.live.run_query(9, "SELECT 3", [1, 2])
    await broker.live.run_query(10, "SELECT 4", [1])
    await broker.live.stop_query(9)
    assert await broker.live.queries_for_host(1) == {10: "SELECT 4"}
    assert await broker.live.queries_for_host(2) == {}
    assert await broker.live.active_campaigns() == [10]


async def test_negative_host_id_is_rejected(broker: Broker) -> None:
    with pytest.raises(ValueError):
        await broker.live.run_query(1, "SELECT 1", [3, -1])


async def test_redis_layout_and_ttls(redis_brokers: BrokerFactory, redis_admin: Redis) -> None:
    broker = await redis_brokers()
    await broker.live.run_query(5, "SELECT 5", [0, 9])
    assert await redis_admin.get("sql:livequery:{5}") == b"SELECT 5"
    assert await redis_admin.get("livequery:{5}") == bytes([0b1000_0000, 0b0100_0000])
    assert await redis_admin.getbit("livequery:{5}", 9) == 1
    assert await redis_admin.smembers("livequery:active") == {b"5"}
    await broker.locks.acquire("cleanup", "me", 30)
    for key in ["livequery:{5}", "sql:livequery:{5}", "livequery:active", "locks:cleanup"]:
        assert await redis_admin.ttl(key) > 0, key
    assert 0 < await redis_admin.ttl("livequery:{5}") <= 604800

    await broker.live.stop_query(5)
    # A late answer must not resurrect the deleted bitfield as a key without TTL.
    await broker.live.query_completed_by_host(5, 9)
    assert await redis_admin.keys("*livequery:{5}*") == []
    assert await redis_admin.smembers("livequery:active") == set()


async def test_vanished_campaign_is_dropped_from_active_set(
    redis_brokers: BrokerFactory, redis_admin: Redis
) -> None:
    writer, reader = await redis_brokers(), await redis_brokers()
    await writer.live.run_query(8, "SELECT 8", [1])
    await redis_admin.delete("sql:livequery:{8}")  # as if it had expired
    assert await reader.live.queries_for_host(1) == {}
    assert await redis_admin.smembers("livequery:active") == set()


async def test_instances_see_each_others_campaigns(redis_brokers: BrokerFactory) -> None:
    """Two brokers = two Fleet processes: a campaign reaches the other within the 1 s cache."""
    creator, other = await redis_brokers(), await redis_brokers()
    assert await other.live.queries_for_host(3) == {}  # warms `other`'s (empty) cache

    started = monotonic()
    await creator.live.run_query(77, "SELECT 77", [3])

    async def visible() -> bool:
        return await other.live.queries_for_host(3) == {77: "SELECT 77"}

    await eventually(visible, "campaign 77 on the other instance")
    assert monotonic() - started < redis_module.ACTIVE_CACHE_SECONDS + 1.0

    # Stopping deletes the bitfield, so the other instance stops at once despite its cache.
    await creator.live.stop_query(77)
    assert await other.live.queries_for_host(3) == {}
    await other.live.query_completed_by_host(77, 3)  # late answer: harmless
    assert await creator.live.active_campaigns() == []


async def test_no_round_trip_without_active_campaigns(
    redis_brokers: BrokerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = await redis_brokers()
    now = [1000.0]
    monkeypatch.setattr(redis_module, "monotonic", lambda: now[0])
    pool = broker._redis.connection_pool
    checkouts = 0
    get_connection = pool.get_connection

    async def counting_get_connection(*args: Any, **kwargs: Any) -> Any:
        nonlocal checkouts
        checkouts += 1
        return await get_connection(*args, **kwargs)

    monkeypatch.setattr(pool, "get_connection", counting_get_connection)

    assert await broker.live.queries_for_host(1) == {}  # loads the (empty) active list
    assert checkouts == 1  # SMEMBERS only: no MGET for zero campaigns
    for host_id in range(100):
        assert await broker.live.queries_for_host(host_id) == {}
    assert checkouts == 1

    now[0] += redis_module.ACTIVE_CACHE_SECONDS
    assert await broker.live.queries_for_host(1) == {}
    assert checkouts == 2  # one reload per cache period, however many check-ins

    await broker.live.run_query(3, "SELECT 3", [1, 2])
    checkouts = 0
    assert await broker.live.queries_for_host(2) == {3: "SELECT 3"}
    assert checkouts == 1  # cached active list: a single GETBIT pipeline


# --- pub/sub -----------------------------------------------------------------------------


async def test_publish_without_subscribers(broker: Broker) -> None:
    assert await broker.bus.publish(results_channel(1), b"nobody") == 0


async def test_channels_are_per_database(redis_admin: Redis) -> None:
    """Redis pub/sub ignores the database number; the broker does not: a deployment on
    another database of the same server never receives this one's live-query results."""
    ours, theirs = await connect_test_broker(), await RedisBroker.connect(
        address=REDIS_ADDRESS, database=TEST_DB + 1 if TEST_DB < 15 else 1, read_timeout=5.0)
    try:
        async with ours.bus.subscribe(results_channel(1)) as sub:
            assert await theirs.bus.publish(results_channel(1), b"theirs") == 0
            assert await ours.bus.publish(results_channel(1), b"ours") == 1
            assert await asyncio.wait_for(anext(aiter(sub)), DEADLINE_SECONDS) == b"ours"
    finally:
        await ours.close()
        await theirs.close()


async def test_command_burst_beyond_a_hundred_connections(broker: Broker) -> None:
    """Hundreds of check-ins in flight at once each need the broker; none may fail for
    want of a pooled connection (redis-py's default pool stops at 100)."""
    await broker.live.run_query(1, "SELECT 1", list(range(0, 600, 2)))
    publishes = [broker.bus.publish(results_channel(1), b"x") for _ in range(300)]
    reads = [broker.live.queries_for_host(h) for h in range(300)]
    results = await asyncio.gather(*publishes, *reads)
    assert results[:300] == [0] * 300
    assert results[300:] == [{1: "SELECT 1"} if h % 2 == 0 else {} for h in range(300)]


async def test_capped_pool_waits_for_a_free_connection(redis_admin: Redis) -> None:
    broker = await RedisBroker.connect(address=REDIS_ADDRESS, database=TEST_DB,
                                       max_open_conns=2, read_timeout=5.0)
    try:
        counts = await asyncio.gather(*(broker.bus.publish("c", b"x") for _ in range(50)))
        assert counts == [0] * 50
        fleet_clients = [c for c in await redis_admin.client_list() if c["name"] == "fleet"]
        assert 1 <= len(fleet_clients) <= 2
    finally:
        await broker.close()


async def test_rate_limit_allows_burst_then_says_how_long_to_wait(broker: Broker) -> None:
    waits = [await broker.limits.hit("login:a|1.2.3.4", 10, 9) for _ in range(11)]
    assert waits[:10] == [0] * 10
    assert 1 <= waits[10] <= 6  # one attempt per 6 s comes back
    assert await broker.limits.hit("login:b|1.2.3.4", 10, 9) == 0  # its own bucket


async def test_rate_limit_is_shared_by_instances(redis_brokers: BrokerFactory) -> None:
    first, second = await redis_brokers(), await redis_brokers()
    for i in range(10):
        assert await (first if i % 2 else second).limits.hit("login:x|ip", 10, 9) == 0
    assert await first.limits.hit("login:x|ip", 10, 9) > 0
    assert await second.limits.hit("login:x|ip", 10, 9) > 0


async def test_publish_subscribe_in_order(broker: Broker) -> None:
    channel = results_channel(12)
    payloads = [f"row {i}".encode() for i in range(200)] + [b"", b"\x00\xff"]
    async with broker.bus.subscribe(channel) as first, broker.bus.subscribe(channel) as second:
        for payload in payloads:
            assert await broker.bus.publish(channel, payload) == 2
        for subscription in (first, second):
            received = []
            async with asyncio.timeout(DEADLINE_SECONDS):
                async for payload in subscription:
                    received.append(payload)
                    if len(received) == len(payloads):
                        break
            assert received == payloads
    assert await broker.bus.publish(channel, b"late") == 0


async def test_many_concurrent_subscriptions(broker: Broker) -> None:
    channels = [results_channel(i) for i in range(40)]
    async with AsyncExitStack() as stack:
        subscriptions = [
            (channel, await stack.enter_async_context(broker.bus.subscribe(channel)))
            for channel in channels
            for _ in range(2)
        ]
        for channel in channels:
            assert await broker.bus.publish(channel, channel.encode()) == 2

        async def first(subscription: Subscription) -> bytes:
            async for payload in subscription:
                return bytes(payload)
            raise AssertionError("subscription ended")

        async with asyncio.timeout(DEADLINE_SECONDS):
            received = await asyncio.gather(*(first(s) for _, s in subscriptions))
        assert received == [channel.encode() for channel, _ in subscriptions]


async def test_broken_subscription_raises(redis_brokers: BrokerFactory, redis_admin: Redis) -> None:
    broker = await redis_brokers()
    channel = results_channel(99)

    async def pubsub_clients() -> set[int]:
        clients = await redis_admin.client_list(_type="pubsub")
        return {int(c["id"]) for c in clients if c["db"] == str(TEST_DB)}

    before = await pubsub_clients()
    async with broker.bus.subscribe(channel) as subscription:
        (ours,) = await pubsub_clients() - before
        await redis_admin.client_kill_filter(_id=str(ours))
        with pytest.raises(BrokerUnavailable):
            async with asyncio.timeout(DEADLINE_SECONDS):
                async for _ in subscription:
                    pass
    # The caller's recovery: subscribe again.
    async with broker.bus.subscribe(channel) as subscription:
        assert await broker.bus.publish(channel, b"again") == 1
        async with asyncio.timeout(DEADLINE_SECONDS):
            async for payload in subscription:
                assert payload == b"again"
                break


# --- locks -------------------------------------------------------------------------------


async def test_lock_is_exclusive_and_released_by_owner_only(broker: Broker) -> None:
    assert await broker.locks.acquire("vulns", "a", 30)
    assert not await broker.locks.acquire("vulns", "b", 30)
    await broker.locks.release("vulns", "b")  # not b's lock: no effect
    assert not await broker.locks.acquire("vulns", "b", 30)
    assert await broker.locks.acquire("other", "b", 30)  # locks are independent
    await broker.locks.release("vulns", "a")
    assert await broker.locks.acquire("vulns", "b", 30)


async def test_lock_extension_by_owner_resets_ttl(broker: Broker) -> None:
    assert await broker.locks.acquire("cleanup", "a", 60)
    # Re-acquiring as the owner sets the new TTL; a short one proves the reset took effect.
    assert await broker.locks.acquire("cleanup", "a", 0.2)
    assert not await broker.locks.acquire("cleanup", "b", 60)

    async def b_takes_over() -> bool:
        return await broker.locks.acquire("cleanup", "b", 60)

    await eventually(b_takes_over, "the shortened lock to expire")
    assert not await broker.locks.acquire("cleanup", "a", 60)


async def test_lock_extension_sets_redis_ttl(
    redis_brokers: BrokerFactory, redis_admin: Redis
) -> None:
    broker = await redis_brokers()
    assert await broker.locks.acquire("job", "a", 1)
    assert await broker.locks.acquire("job", "a", 120)
    assert 60_000 < await redis_admin.pttl("locks:job") <= 120_000


async def test_lock_rejects_non_positive_ttl(broker: Broker) -> None:
    with pytest.raises(ValueError):
        await broker.locks.acquire("x", "a", 0)


# --- connectivity ------------------------------------------------------------------------


async def test_create_broker_picks_backend(redis_admin: Redis) -> None:
    memory = await create_broker(redis_address="")
    assert memory.kind == "memory"
    shared = await create_broker(
        redis_address=f"redis://{REDIS_ADDRESS.removeprefix('redis://')}", database=TEST_DB
    )
    try:
        assert shared.kind == "redis"
        await shared.ping()
    finally:
        await shared.close()


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:6380", ("127.0.0.1", 6380, False)),
        ("redis://cache.internal:6379", ("cache.internal", 6379, False)),
        ("rediss://cache.internal:6380/", ("cache.internal", 6380, True)),
        ("localhost", ("localhost", 6379, False)),
        ("[::1]:6381", ("::1", 6381, False)),
        ("[::1]", ("::1", 6379, False)),
    ],
)
def test_address_forms(address: str, expected: tuple[str, int, bool]) -> None:
    assert redis_module._parse_address(address) == expected


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_unreachable_redis_is_unavailable() -> None:
    started = monotonic()
    with pytest.raises(BrokerUnavailable):
        await connect_test_broker(f"127.0.0.1:{free_port()}")
    assert monotonic() - started < redis_module.PING_TIMEOUT_SECONDS + 1.0


async def test_recovers_after_connections_are_killed(
    redis_brokers: BrokerFactory, redis_admin: Redis
) -> None:
    """What a Redis restart does to the pool: every idle connection is dead."""
    broker = await redis_brokers()
    await broker.live.run_query(4, "SELECT 4", [4])
    for client in await redis_admin.client_list(_type="normal"):
        if client["name"] == "fleet" and client["db"] == str(TEST_DB):
            await redis_admin.client_kill_filter(_id=client["id"])
    await broker.ping()
    assert await broker.live.active_campaigns() == [4]


class PrivateRedis:
    """A redis-server of our own on a free port, that a test may stop, restart or freeze."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.address = f"127.0.0.1:{free_port()}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        port = self.address.rpartition(":")[2]
        self.process = subprocess.Popen(
            [self.binary, "--port", port, "--bind", "127.0.0.1", "--save", ""]
            + ["--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)  # in case a test froze it
        self.process.terminate()
        self.process.wait()
        self.process = None

    def freeze(self) -> None:
        """A hung server: the TCP connections stay up but nothing answers."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    async def connect_broker(self, read_timeout: float = 5.0) -> RedisBroker:
        """Wait for the server to accept connections, then connect a broker to it."""
        deadline = monotonic() + DEADLINE_SECONDS
        while True:
            try:
                return await RedisBroker.connect(
                    address=self.address, connect_timeout=2.0, read_timeout=read_timeout
                )
            except BrokerUnavailable:
                if monotonic() > deadline:
                    raise
                await asyncio.sleep(0.01)


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server binary not available")
    server = PrivateRedis(binary)
    server.start()
    yield server
    if server.process is not None:
        server.stop()


async def ping_ok(broker: RedisBroker) -> bool:
    try:
        await broker.ping()
    except BrokerUnavailable:
        return False
    return True


async def test_ping_recovers_after_redis_restart(private_redis: PrivateRedis) -> None:
    broker = await private_redis.connect_broker()
    try:
        async with broker.bus.subscribe("restart") as subscription:
            private_redis.stop()
            with pytest.raises(BrokerUnavailable):
                await broker.ping()
            with pytest.raises(BrokerUnavailable):
                async with asyncio.timeout(DEADLINE_SECONDS):
                    async for _ in subscription:
                        pass
        private_redis.start()
        await eventually(lambda: ping_ok(broker), "ping after the restart")
        await broker.live.run_query(1, "SELECT 1", [1])
        assert await broker.live.queries_for_host(1) == {1: "SELECT 1"}
    finally:
        await broker.close()


async def test_idle_subscription_pings_and_keeps_receiving(private_redis: PrivateRedis) -> None:
    broker = await private_redis.connect_broker(read_timeout=0.1)
    admin = Redis.from_url(f"redis://{private_redis.address}")
    try:
        async with broker.bus.subscribe("idle") as subscription:

            async def first() -> bytes:
                return await anext(aiter(subscription))

            received = asyncio.create_task(first())

            async def pinged() -> bool:
                clients = await admin.client_list(_type="pubsub")
                return any(c["cmd"] == "ping" for c in clients)

            await eventually(pinged, "the idle subscription to PING")
            assert await broker.bus.publish("idle", b"still here") == 1
            async with asyncio.timeout(DEADLINE_SECONDS):
                assert await received == b"still here"
    finally:
        await admin.aclose()
        await broker.close()


async def test_hung_redis_is_detected(private_redis: PrivateRedis) -> None:
    broker = await private_redis.connect_broker(read_timeout=0.2)
    try:
        async with broker.bus.subscribe("hung") as subscription:
            private_redis.freeze()
            started = monotonic()
            with pytest.raises(BrokerUnavailable):
                await broker.ping()
            assert monotonic() - started < redis_module.PING_TIMEOUT_SECONDS + 0.5
            with pytest.raises(BrokerUnavailable):
                async with asyncio.timeout(DEADLINE_SECONDS):
                    async for _ in subscription:
                        pass
    finally:
        private_redis.stop()
        await broker.close()
