"""Host users: a host's local users (`host_users`), written when the `users` detail query's
answer differs from what is stored, and read for the host detail."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from fleet.core.host_users import HostUser
from fleet.store.db import bulk_insert
from fleet.store.schema import host_users

_COLUMNS = ("host_id", "uid", "username", "user_type", "groupname", "shell")


async def host_user_list(conn: AsyncConnection, host_id: int) -> list[HostUser]:
    rows = await conn.execute(
        sa.select(host_users.c.uid, host_users.c.username, host_users.c.user_type,
                  host_users.c.groupname, host_users.c.shell)
        .where(host_users.c.host_id == host_id)
        .order_by(host_users.c.uid, host_users.c.username))
    return [HostUser(int(r.uid), r.username, r.user_type, r.groupname, r.shell) for r in rows]


async def sync_host_users(conn: AsyncConnection, host_id: int,
                          users: Sequence[HostUser]) -> None:
    """Make `users` the host's users: one read, and when they differ, one DELETE and one
    INSERT (a host has a handful of users; the hourly unchanged answer writes nothing)."""
    if sorted(users) == await host_user_list(conn, host_id):
        return
    await conn.execute(host_users.delete().where(host_users.c.host_id == host_id))
    await bulk_insert(conn, host_users, _COLUMNS, [(host_id, *u) for u in users])
