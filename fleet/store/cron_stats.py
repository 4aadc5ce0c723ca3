"""Run history of named schedules (`cron_stats`, as Fleet's): one row per run, inserted as
pending when it starts (or when it is triggered), finished with its status and errors."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from fleet.core.cron import CronRun, RunStatus, StatsType
from fleet.store.schema import cron_stats as stats

_PENDING, _QUEUED = stats.c.status == RunStatus.PENDING, stats.c.instance == ""


async def due_state(conn: AsyncConnection,
                    name: str) -> tuple[dt.datetime | None, int | None]:
    """In one statement: when the last completed scheduled run of `name` started, and the
    id of its oldest triggered run still waiting for a lock holder."""
    last = (sa.select(sa.func.max(stats.c.created_at))
            .where(stats.c.name == name, stats.c.stats_type == StatsType.SCHEDULED,
                   stats.c.status == RunStatus.COMPLETED).scalar_subquery())
    queued = (sa.select(sa.func.min(stats.c.id))
              .where(stats.c.name == name, _PENDING, _QUEUED).scalar_subquery())
    row = (await conn.execute(sa.select(last, queued))).one()
    return row[0], row[1]


async def has_pending(conn: AsyncConnection, name: str) -> bool:
    """Whether a run of `name` is waiting for a lock holder or running."""
    stmt = sa.select(stats.c.id).where(stats.c.name == name, _PENDING).limit(1)
    return (await conn.execute(stmt)).first() is not None


async def queue_trigger(conn: AsyncConnection, name: str, *, now: dt.datetime) -> int:
    """A triggered run of `name` that whichever instance holds the lock will start."""
    return await _insert(conn, name, "", StatsType.TRIGGERED, now)


async def start_run(conn: AsyncConnection, name: str, instance: str, *,
                    now: dt.datetime) -> int:
    """A scheduled run of `name` starting on `instance`."""
    return await _insert(conn, name, instance, StatsType.SCHEDULED, now)


async def claim_trigger(conn: AsyncConnection, run_id: int, instance: str, *,
                        now: dt.datetime) -> bool:
    """Start the queued triggered run `run_id` on `instance`, unless another one did."""
    result = await conn.execute(
        sa.update(stats).where(stats.c.id == run_id, _PENDING, _QUEUED)
        .values(instance=instance, created_at=now, updated_at=now))
    return bool(result.rowcount)


async def finish_run(conn: AsyncConnection, run_id: int, status: RunStatus,
                     errors: Mapping[str, str], *, now: dt.datetime) -> None:
    await conn.execute(sa.update(stats).where(stats.c.id == run_id).values(
        status=status, errors=json.dumps(dict(errors)) if errors else None, updated_at=now))


async def expire_started(conn: AsyncConnection, name: str, *, now: dt.datetime) -> int:
    """Mark runs of `name` that started but never finished as expired (called by the lock
    holder before it runs: no other instance can be running them)."""
    result = await conn.execute(
        sa.update(stats).where(stats.c.name == name, _PENDING, stats.c.instance != "")
        .values(status=RunStatus.EXPIRED, updated_at=now))
    return int(result.rowcount)


async def delete_before(conn: AsyncConnection, name: str, before: dt.datetime) -> int:
    """Forget finished runs of `name` that started before `before`."""
    result = await conn.execute(sa.delete(stats).where(
        stats.c.name == name, stats.c.created_at < before, ~_PENDING))
    return int(result.rowcount)


async def recent_runs(conn: AsyncConnection, name: str, limit: int = 20) -> list[CronRun]:
    """The latest runs of `name`, newest first."""
    stmt = (sa.select(stats).where(stats.c.name == name)
            .order_by(stats.c.created_at.desc(), stats.c.id.desc()).limit(limit))
    return [_run(row) for row in (await conn.execute(stmt)).mappings()]


async def _insert(conn: AsyncConnection, name: str, instance: str, stats_type: StatsType,
                  now: dt.datetime) -> int:
    result = await conn.execute(sa.insert(stats).values(
        name=name, instance=instance, stats_type=stats_type, status=RunStatus.PENDING,
        created_at=now, updated_at=now))
    (run_id,) = result.inserted_primary_key or (None,)
    assert run_id is not None
    return int(run_id)


def _run(row: sa.RowMapping) -> CronRun:
    return CronRun(id=row["id"], name=row["name"], instance=row["instance"],
                   stats_type=StatsType(row["stats_type"]), status=RunStatus(row["status"]),
                   errors=json.loads(row["errors"]) if row["errors"] else {},
                   created_at=row["created_at"], updated_at=row["updated_at"])
