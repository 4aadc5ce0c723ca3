"""Named schedules, as Fleet's `schedule` package: each has a name, an interval, its own
database lock and an ordered list of jobs, and every run is recorded in `cron_stats`.

Every instance runs every schedule's loop. Each `poll` seconds the loop reads the history
(one statement): a run is due when the last completed scheduled run started an interval
ago (with no history, an interval after this process started), so a restart keeps the
cadence; a triggered run is a pending `cron_stats` row with no instance yet, queued by
`POST /trigger` on any instance. Only then does it take the lock (extend, steal expired,
insert: `fleet.store.locks`) and, holding it, read the history again and start the run, so
two instances never run one interval twice. The lock expires after one interval, is
extended every 80 % of it while the jobs run and released when they end. A job that raises
is logged (one line) and recorded in the run's `errors`; the next job still runs.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fleet.core.cron import RunStatus, StatsType
from fleet.jobs.failures import describe, is_unavailable, log_failure
from fleet.service.context import ServiceContext
from fleet.store import cron_stats, locks
from fleet.store.db import utcnow

log = logging.getLogger("fleet.schedule")

# A job: a service function that does one kind of work and says how many things it did.
Job = Callable[[ServiceContext], Awaitable[int]]

# Seconds between two looks at the history: how late a triggered run may start.
POLL = 5.0
# Finished runs are kept this long (or two intervals, if longer).
RETENTION = dt.timedelta(days=2)
# While running, the lock is extended after this share of its time to live.
EXTEND_AFTER = 0.8


@dataclass(frozen=True, slots=True)
class Schedule:
    name: str
    interval: float  # seconds
    jobs: tuple[tuple[str, Job], ...]
    lock_name: str = ""  # the schedule's name unless set (Fleet's cleanups use "leader")
    poll: float = 0.0    # seconds; POLL, or the interval if shorter, unless set

    @property
    def lock(self) -> str:
        return self.lock_name or self.name

    @property
    def period(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.interval)

    async def run_forever(self, ctx: ServiceContext) -> None:
        started = utcnow()
        while True:
            await asyncio.sleep(self.poll or min(POLL, self.interval))
            try:
                await self.tick(ctx, started)
            except Exception as exc:
                log_failure(log, f"schedule {self.name} could not check its runs; "
                            "will retry", exc)

    async def tick(self, ctx: ServiceContext, started: dt.datetime) -> StatsType | None:
        """Run once if a run is due or triggered and this instance gets the lock; which
        kind ran, or None. `started`: when this process started running the schedule."""
        async with ctx.db.connect() as conn:
            last, queued = await cron_stats.due_state(conn, self.name)
        if queued is None and not self._due(last, started):
            return None
        if not await self._take_lock(ctx):
            return None
        try:
            async with ctx.db.begin() as conn:
                # Holding the lock: a run still pending from before died with its instance.
                await cron_stats.expire_started(conn, self.name, now=utcnow())
                last, queued = await cron_stats.due_state(conn, self.name)
                if queued is not None and await cron_stats.claim_trigger(
                        conn, queued, ctx.instance_id, now=utcnow()):
                    run_id, kind = queued, StatsType.TRIGGERED
                elif self._due(last, started):
                    run_id = await cron_stats.start_run(conn, self.name, ctx.instance_id,
                                                        now=utcnow())
                    kind = StatsType.SCHEDULED
                else:
                    return None  # another instance ran it while this one waited
            await self._run(ctx, run_id)
            return kind
        finally:
            await self._release_lock(ctx)

    def _due(self, last: dt.datetime | None, started: dt.datetime) -> bool:
        return (last or started) + self.period <= utcnow()

    async def _run(self, ctx: ServiceContext, run_id: int) -> None:
        errors: dict[str, str] = {}
        status = RunStatus.CANCELED
        keeper = asyncio.create_task(self._keep_lock(ctx), name=f"lock:{self.lock}")
        try:
            for job_name, job in self.jobs:
                try:
                    n = await job(ctx)
                except Exception as exc:
                    errors[job_name] = describe(exc)
                    level = logging.WARNING if is_unavailable(exc) else logging.ERROR
                    log.log(level, "schedule %s: job %s failed: %s", self.name, job_name,
                            errors[job_name])
                    continue
                if n:
                    log.info("schedule %s: job %s: %d", self.name, job_name, n)
            status = RunStatus.COMPLETED
        finally:
            keeper.cancel()
            await self._finish(ctx, run_id, status, errors)

    async def _finish(self, ctx: ServiceContext, run_id: int, status: RunStatus,
                      errors: dict[str, str]) -> None:
        now = utcnow()
        try:
            async with ctx.db.begin() as conn:
                await cron_stats.finish_run(conn, run_id, status, errors, now=now)
                await cron_stats.delete_before(conn, self.name,
                                               now - max(RETENTION, 2 * self.period))
        except Exception as exc:  # the next lock holder marks the run expired
            log_failure(log, f"schedule {self.name}: recording the run failed", exc)

    async def _take_lock(self, ctx: ServiceContext) -> bool:
        return await take_lock(ctx, self.lock, self.period)

    async def _keep_lock(self, ctx: ServiceContext) -> None:
        while True:
            await asyncio.sleep(self.interval * EXTEND_AFTER)
            try:
                if not await self._take_lock(ctx):
                    log.warning("schedule %s: lock %s was taken by another instance "
                                "during a run", self.name, self.lock)
            except Exception as exc:
                log_failure(log, f"schedule {self.name}: extending lock {self.lock} "
                            "failed", exc)

    async def _release_lock(self, ctx: ServiceContext) -> None:
        try:
            async with ctx.db.begin() as conn:
                await locks.release(conn, self.lock, ctx.instance_id, now=utcnow())
        except Exception as exc:  # it expires after one interval anyway
            log_failure(log, f"schedule {self.name}: releasing lock {self.lock} failed", exc)


async def take_lock(ctx: ServiceContext, name: str, ttl: dt.timedelta) -> bool:
    """Take or extend lock `name` for this instance: whether it holds it. Also False when
    another instance takes it at the same moment and the database gives up on this
    transaction (MySQL's gap locks make racing inserts deadlock; SQLite may be busy)."""
    try:
        async with ctx.db.begin() as conn:
            return await locks.acquire(conn, name, ctx.instance_id, now=utcnow(), ttl=ttl)
    except Exception as exc:
        if ctx.db.is_retryable(exc):
            return False
        raise
