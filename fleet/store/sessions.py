"""Sessions: API tokens, stored only as SHA-256 digests of the token."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from fleet.core.users import Session
from fleet.store import users as user_store
from fleet.store.schema import sessions, users

_FIND = (sa.select(sessions.c.id.label("session_id"), sessions.c.accessed_at,
                   *user_store.USER_COLUMNS)
         .join(users, users.c.id == sessions.c.user_id)
         .where(sessions.c.key_hash == sa.bindparam("b_key_hash")))


async def insert_session(conn: AsyncConnection, *, user_id: int, key_hash: str,
                         now: dt.datetime, expires_at: dt.datetime) -> int:
    result = await conn.execute(sa.insert(sessions).values(
        user_id=user_id, key_hash=key_hash, created_at=now, accessed_at=now,
        expires_at=expires_at))
    return int(result.lastrowid)


async def find_session(conn: AsyncConnection, key_hash: str) -> Session | None:
    """The session with this digest and its user (to authorize its requests)."""
    row = (await conn.execute(_FIND, {"b_key_hash": key_hash})).first()
    if row is None:
        return None
    return Session(id=row.session_id, accessed_at=row.accessed_at,
                   user=user_store.from_row(row))


async def touch_session(conn: AsyncConnection, session_id: int, *, now: dt.datetime,
                        expires_at: dt.datetime) -> None:
    await conn.execute(sa.update(sessions).where(sessions.c.id == session_id)
                       .values(accessed_at=now, expires_at=expires_at))


async def delete_session(conn: AsyncConnection, session_id: int) -> None:
    await conn.execute(sa.delete(sessions).where(sessions.c.id == session_id))


async def delete_user_sessions(conn: AsyncConnection, user_id: int, *,
                               keep: int | None = None) -> None:
    """Log the user out everywhere, except (optionally) the session `keep`."""
    stmt = sa.delete(sessions).where(sessions.c.user_id == user_id)
    if keep is not None:
        stmt = stmt.where(sessions.c.id != keep)
    await conn.execute(stmt)


async def delete_expired(conn: AsyncConnection, now: dt.datetime) -> int:
    """Remove sessions past their expiry (abandoned logins); returns how many."""
    result = await conn.execute(sa.delete(sessions).where(sessions.c.expires_at <= now))
    return int(result.rowcount or 0)
