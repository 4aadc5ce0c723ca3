"""Named schedules on both backends: Fleet's lock semantics, one run per interval across
instances, cadence across restarts, run history and errors, and the trigger endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from fleet.core.cron import CronRun, RunStatus, StatsType
from fleet.jobs import schedule as schedule_module
from fleet.jobs.cleanups import CLEANUPS_THEN_AGGREGATION
from fleet.jobs.schedule import Schedule, take_lock
from fleet.server import create_app
from fleet.service.context import ServiceContext
from fleet.store import cron_stats, locks
from fleet.store.db import create_database, utcnow
from fleet.store.schema import cron_stats as cron_stats_table
from tests.integration.conftest import Api, assert_error

HOUR = dt.timedelta(hours=1)


@pytest.fixture
async def other(ctx: ServiceContext) -> AsyncIterator[ServiceContext]:
    """A second instance on the same database: its own engine and instance id."""
    db = create_database(ctx.cfg)
    instance = ServiceContext(cfg=ctx.cfg, db=db, broker=ctx.broker)
    try:
        yield instance
    finally:
        await db.close()


async def runs(ctx: ServiceContext, name: str) -> list[CronRun]:
    async with ctx.db.connect() as conn:
        return await cron_stats.recent_runs(conn, name, limit=100)


async def acquire(ctx: ServiceContext, owner: str, now: dt.datetime,
                  ttl: float = 60) -> bool:
    async with ctx.db.begin() as conn:
        return await locks.acquire(conn, "leader", owner, now=now,
                                   ttl=dt.timedelta(seconds=ttl))


def counting_job(calls: list[str]) -> Any:
    async def job(ctx: ServiceContext) -> int:
        calls.append(ctx.instance_id)
        return 1
    return job


# ---------------------------------------------------------------------------------------------
# Locks


async def test_lock_is_extended_by_its_owner_stolen_once_expired_and_released(
        ctx: ServiceContext) -> None:
    t0 = utcnow()
    s = dt.timedelta(seconds=1)
    assert await acquire(ctx, "a", t0)               # the first taker inserts it
    assert await acquire(ctx, "a", t0)               # the same expiry again still counts
    assert not await acquire(ctx, "b", t0 + 30 * s)  # held by a
    assert await acquire(ctx, "a", t0 + 30 * s)      # extended to t0 + 90 s
    assert not await acquire(ctx, "b", t0 + 80 * s)
    assert await acquire(ctx, "b", t0 + 91 * s)      # expired: stolen
    assert not await acquire(ctx, "a", t0 + 92 * s)
    async with ctx.db.begin() as conn:
        await locks.release(conn, "leader", "a", now=t0 + 93 * s)  # not a's: no effect
    assert not await acquire(ctx, "a", t0 + 94 * s)
    async with ctx.db.begin() as conn:
        await locks.release(conn, "leader", "b", now=t0 + 95 * s)
    assert await acquire(ctx, "a", t0 + 96 * s)


async def test_one_of_many_contending_instances_gets_a_new_lock(
        ctx: ServiceContext, other: ServiceContext) -> None:
    instances = [dataclasses.replace(c, instance_id=f"{c.instance_id}-{i}")
                 for i in range(4) for c in (ctx, other)]
    taken = await asyncio.gather(*(take_lock(c, "leader", HOUR) for c in instances))
    assert taken.count(True) == 1


# ---------------------------------------------------------------------------------------------
# Runs


async def test_two_instances_run_a_job_once_per_interval(ctx: ServiceContext,
                                                         other: ServiceContext) -> None:
    calls: list[str] = []
    schedule = Schedule("twice", interval=0.3, poll=0.02, jobs=(("count", counting_job(calls)),))
    tasks = [asyncio.create_task(schedule.run_forever(c)) for c in (ctx, other)]
    try:
        for _ in range(1500):  # up to 30 s
            if [r.status for r in await runs(ctx, "twice")].count(RunStatus.COMPLETED) >= 4:
                break
            await asyncio.sleep(0.02)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    history = sorted(await runs(ctx, "twice"), key=lambda r: r.created_at)
    assert [r.status for r in history].count(RunStatus.COMPLETED) >= 4
    assert len(calls) == len(history)  # one job call per recorded run, none twice
    assert {r.stats_type for r in history} == {StatsType.SCHEDULED}
    assert {r.instance for r in history} <= {ctx.instance_id, other.instance_id}
    for before, after in zip(history, history[1:], strict=False):
        assert after.created_at - before.created_at >= dt.timedelta(seconds=0.3)


async def test_cadence_follows_the_last_completed_run_across_restarts(
        ctx: ServiceContext, other: ServiceContext) -> None:
    calls: list[str] = []
    schedule = Schedule("hourly", interval=3600, jobs=(("count", counting_job(calls)),))
    assert await schedule.tick(ctx, utcnow()) is None  # no history: an interval after start
    assert await schedule.tick(ctx, utcnow() - HOUR) == StatsType.SCHEDULED
    # A restart (a new instance) right after that run: the history, not the start, decides.
    assert await schedule.tick(other, utcnow() - 2 * HOUR) is None
    async with ctx.db.begin() as conn:
        await conn.execute(sa.update(cron_stats_table).values(
            created_at=utcnow() - HOUR - dt.timedelta(seconds=1)))
    assert await schedule.tick(other, utcnow()) == StatsType.SCHEDULED
    assert calls == [ctx.instance_id, other.instance_id]


async def test_a_failing_job_is_recorded_in_one_line_and_the_others_run(
        ctx: ServiceContext, caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []

    async def boom(_ctx: ServiceContext) -> int:
        raise RuntimeError("boom\nsecond line")

    schedule = Schedule("failing", interval=60,
                        jobs=(("boom", boom), ("count", counting_job(calls))))
    caplog.set_level(logging.INFO, logger="fleet.schedule")
    assert await schedule.tick(ctx, utcnow() - HOUR) == StatsType.SCHEDULED
    assert calls == [ctx.instance_id]
    (run,) = await runs(ctx, "failing")
    assert run.status == RunStatus.COMPLETED and run.instance == ctx.instance_id
    assert run.errors == {"boom": "RuntimeError: boom\nsecond line"}
    failures = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(failures) == 1 and failures[0].exc_info is None
    assert failures[0].levelno == logging.ERROR
    assert failures[0].getMessage().startswith("schedule failing: job boom failed: "
                                               "RuntimeError: boom")


async def test_shutdown_cancels_the_run_and_frees_the_lock(ctx: ServiceContext,
                                                           other: ServiceContext) -> None:
    started = asyncio.Event()

    async def forever(_ctx: ServiceContext) -> int:
        started.set()
        await asyncio.Event().wait()
        return 0

    schedule = Schedule("slow", interval=60, lock_name="leader", jobs=(("wait", forever),))
    task = asyncio.create_task(schedule.tick(ctx, utcnow() - HOUR))
    async with asyncio.timeout(30):
        await started.wait()
    assert not await acquire(other, other.instance_id, utcnow())  # held while running
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    (run,) = await runs(ctx, "slow")
    assert run.status == RunStatus.CANCELED
    assert await acquire(other, other.instance_id, utcnow())


async def test_a_run_its_instance_never_finished_expires(ctx: ServiceContext,
                                                         other: ServiceContext) -> None:
    async with ctx.db.begin() as conn:
        dead = await cron_stats.start_run(conn, "orphans", "dead-instance",
                                          now=utcnow() - 2 * HOUR)
    schedule = Schedule("orphans", interval=3600, jobs=(("count", counting_job([])),))
    assert await schedule.tick(other, utcnow() - HOUR) == StatsType.SCHEDULED
    statuses = {r.id: r.status for r in await runs(ctx, "orphans")}
    assert statuses.pop(dead) == RunStatus.EXPIRED
    assert list(statuses.values()) == [RunStatus.COMPLETED]


# ---------------------------------------------------------------------------------------------
# POST /trigger


@contextlib.asynccontextmanager
async def client_of(app: Any, ctx: ServiceContext) -> AsyncIterator[Api]:
    """A client of `app`, after setup."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://fleet.test") as client:
        api = Api(client, ctx)
        await api.setup()
        yield api


@contextlib.asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    """Start `app` as uvicorn does (its background loops and schedules), then stop it."""
    incoming: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    outgoing: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}},
                                   incoming.get, outgoing.put))
    await incoming.put({"type": "lifespan.startup"})
    assert (await outgoing.get())["type"] == "lifespan.startup.complete"
    try:
        yield
    finally:
        await incoming.put({"type": "lifespan.shutdown"})
        assert (await outgoing.get())["type"] == "lifespan.shutdown.complete"
        await task


@pytest.fixture
async def app_api(ctx: ServiceContext) -> AsyncIterator[Api]:
    """The production app (its background loops are not started), after setup."""
    async with client_of(create_app(ctx), ctx) as api:
        yield api


async def test_the_server_runs_its_schedules_and_their_triggers(
        ctx: ServiceContext, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schedule_module, "POLL", 0.02)
    app = create_app(ctx)
    name = CLEANUPS_THEN_AGGREGATION.name
    async with client_of(app, ctx) as api, lifespan(app):
        assert (await api.request("POST", f"/trigger?name={name}")).status_code == 200
        for _ in range(1500):  # up to 30 s
            if [r.status for r in await runs(ctx, name)] == [RunStatus.COMPLETED]:
                break
            await asyncio.sleep(0.02)
    (run,) = await runs(ctx, name)
    assert (run.stats_type, run.status, run.instance) == (
        StatsType.TRIGGERED, RunStatus.COMPLETED, ctx.instance_id)


async def test_trigger_queues_a_run_that_another_instance_holding_the_lock_runs(
        app_api: Api, other: ServiceContext) -> None:
    name = CLEANUPS_THEN_AGGREGATION.name
    r = await app_api.request("POST", f"/trigger?name={name}")
    assert r.status_code == 200 and r.json() == {}, r.text
    body = assert_error(await app_api.request("POST", f"/trigger?name={name}"), 409,
                        f"a run of the {name} schedule is already pending or running")
    assert body["errors"][0]["name"] == "name"
    (queued,) = await runs(app_api.ctx, name)
    assert (queued.stats_type, queued.status, queued.instance) == (
        StatsType.TRIGGERED, RunStatus.PENDING, "")

    # The other instance was not due (it just started), but it picks the trigger up.
    assert await CLEANUPS_THEN_AGGREGATION.tick(other, utcnow()) == StatsType.TRIGGERED
    (run,) = await runs(app_api.ctx, name)
    assert (run.id, run.status, run.instance, run.errors) == (
        queued.id, RunStatus.COMPLETED, other.instance_id, {})
    # A triggered run leaves the cadence alone: the scheduled run is still due.
    assert await CLEANUPS_THEN_AGGREGATION.tick(other, utcnow() - HOUR) == StatsType.SCHEDULED

    # A scheduled run in progress is a conflict too.
    async with app_api.ctx.db.begin() as conn:
        running = await cron_stats.start_run(conn, name, other.instance_id, now=utcnow())
    assert (await app_api.client.post(f"/api/v1/fleet/trigger?name={name}", headers=app_api.auth(
        app_api.admin_token))).status_code == 409
    async with app_api.ctx.db.begin() as conn:
        await cron_stats.finish_run(conn, running, RunStatus.COMPLETED, {}, now=utcnow())
    r = await app_api.client.post(f"/api/v1/fleet/trigger?name={name}",
                                  headers=app_api.auth(app_api.admin_token))
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("query", ["?name=vulnerabilities", "?name=", ""])
async def test_trigger_of_an_unknown_schedule_lists_the_names(app_api: Api,
                                                              query: str) -> None:
    assert_error(await app_api.request("POST", f"/trigger{query}"), 404,
                 "invalid name; supported trigger names are cleanups_then_aggregation, "
                 "software_host_counts", name="name")
    assert await runs(app_api.ctx, "vulnerabilities") == []


async def test_trigger_is_for_admins(app_api: Api) -> None:
    path = f"/trigger?name={CLEANUPS_THEN_AGGREGATION.name}"
    assert_error(await app_api.client.post("/api/latest/fleet" + path), 401,
                 "Authentication failed")
    for role in ("observer", "observer_plus", "maintainer"):
        _, token = await app_api.user(role)
        assert_error(await app_api.request("POST", path, token=token), 403,
                     "Permission Denied")
    assert await runs(app_api.ctx, CLEANUPS_THEN_AGGREGATION.name) == []
