"""Database locks with Fleet's semantics (`locks` table): a lock is held by one owner until
it expires; the owner extends it, anyone may steal it once expired, the first taker
inserts it. Each call is one statement or three in the caller's transaction."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from fleet.store.db import insert_ignore
from fleet.store.schema import locks


async def acquire(conn: AsyncConnection, name: str, owner: str, *, now: dt.datetime,
                  ttl: dt.timedelta) -> bool:
    """Take or extend lock `name` for `owner` until `now + ttl`: whether `owner` holds it."""
    expires_at = now + ttl
    extended = await conn.execute(
        sa.update(locks).where(locks.c.name == name, locks.c.owner == owner)
        .values(expires_at=expires_at))
    if extended.rowcount:
        return True
    stolen = await conn.execute(
        sa.update(locks).where(locks.c.name == name, locks.c.expires_at < now)
        .values(owner=owner, expires_at=expires_at))
    if stolen.rowcount:
        return True
    created = await conn.execute(insert_ignore(conn.dialect.name, locks).values(
        name=name, owner=owner, expires_at=expires_at))
    return bool(created.rowcount)


async def release(conn: AsyncConnection, name: str, owner: str, *, now: dt.datetime) -> None:
    """Let anyone take lock `name` now, if `owner` still holds it."""
    await conn.execute(sa.update(locks).where(locks.c.name == name, locks.c.owner == owner)
                       .values(expires_at=now))
