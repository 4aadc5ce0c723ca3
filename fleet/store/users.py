"""Users: rows of the `users` table. Emails compare case-insensitively on both dialects
(MySQL's collation already does; SQLite's `=` would not)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from fleet.core.authz import TeamFilter
from fleet.store.host_search import ListOptions, apply_list_options, search_clause
from fleet.store.schema import users

_SORTABLE = {name: users.c[name] for name in
             ("id", "name", "email", "created_at", "updated_at", "global_role", "position")}


async def insert_user(conn: AsyncConnection, values: dict[str, Any]) -> int:
    result = await conn.execute(sa.insert(users).values(**values))
    return int(result.lastrowid)


async def get_user(conn: AsyncConnection, user_id: int) -> sa.Row[Any] | None:
    return (await conn.execute(sa.select(users).where(users.c.id == user_id))).first()


async def get_user_by_email(conn: AsyncConnection, email: str) -> sa.Row[Any] | None:
    stmt = sa.select(users).where(sa.func.lower(users.c.email) == email.lower())
    return (await conn.execute(stmt)).first()


async def any_user(conn: AsyncConnection) -> bool:
    return (await conn.execute(sa.select(users.c.id).limit(1))).first() is not None


async def count_admins(conn: AsyncConnection) -> int:
    stmt = sa.select(sa.func.count()).where(users.c.global_role == "admin",
                                            users.c.enabled.is_(True))
    return int((await conn.execute(stmt)).scalar_one())


async def list_users(conn: AsyncConnection, opts: ListOptions, *,
                     teams: TeamFilter) -> Sequence[sa.Row[Any]]:
    stmt = sa.select(users).where(users.c.enabled.is_(True))
    if not teams.all_teams:  # the members of a viewer's teams come with the user_teams table
        stmt = stmt.where(sa.false())
    text = search_clause(opts.query, (users.c.name, users.c.email))
    if text is not None:
        stmt = stmt.where(text)
    return (await conn.execute(apply_list_options(stmt, opts, _SORTABLE, users.c.id))).all()


async def update_user(conn: AsyncConnection, user_id: int, values: dict[str, Any]) -> None:
    await conn.execute(sa.update(users).where(users.c.id == user_id).values(**values))


async def delete_user(conn: AsyncConnection, user_id: int) -> bool:
    result = await conn.execute(sa.delete(users).where(users.c.id == user_id))
    return bool(result.rowcount)
