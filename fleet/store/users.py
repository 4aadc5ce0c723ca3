"""Users: rows of the `users` table, handed out as `fleet.core.users.User` (no password
hash: only `get_login` and `password_hash` give it, to the code that verifies one).

Emails are unique case-insensitively on both dialects (MySQL's collation already compares
so; SQLite's `=` and unique index would not), so this module checks before it writes and
turns a lost race on the index into the same AlreadyExists."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from fleet.core.authz import Role, TeamFilter
from fleet.core.errors import AlreadyExists
from fleet.core.users import User
from fleet.store.db import duplicate_raises
from fleet.store.host_search import ListOptions, apply_list_options, search_clause
from fleet.store.schema import users

_SORTABLE = {name: users.c[name] for name in
             ("id", "name", "email", "created_at", "updated_at", "global_role", "position")}
# What a User is made of (never the password): other stores join these in.
USER_COLUMNS = (users.c.id, users.c.created_at, users.c.updated_at, users.c.name,
                users.c.email, users.c.global_role, users.c.api_only, users.c.enabled,
                users.c.force_password_reset, users.c.sso_enabled, users.c.position)


def from_row(row: Any) -> User:
    """A User from a row holding `USER_COLUMNS` (under their own names)."""
    return User(id=row.id, created_at=row.created_at, updated_at=row.updated_at,
                name=row.name, email=row.email,
                global_role=Role(row.global_role) if row.global_role else None,
                api_only=bool(row.api_only), enabled=bool(row.enabled),
                force_password_reset=bool(row.force_password_reset),
                sso_enabled=bool(row.sso_enabled), position=row.position)


def _email_taken(email: str) -> AlreadyExists:
    return AlreadyExists(f"a user with email {email} already exists", name="email")


def _by_email(email: str) -> sa.ColumnElement[bool]:
    return sa.func.lower(users.c.email) == email.lower()


async def _ensure_email_free(conn: AsyncConnection, email: str,
                             except_id: int | None = None) -> None:
    stmt = sa.select(users.c.id).where(_by_email(email))
    if except_id is not None:
        stmt = stmt.where(users.c.id != except_id)
    if (await conn.execute(stmt.limit(1))).first() is not None:
        raise _email_taken(email)


async def insert_user(conn: AsyncConnection, values: Mapping[str, Any]) -> int:
    """Insert a user; AlreadyExists (name "email") if the email is taken."""
    await _ensure_email_free(conn, values["email"])
    with duplicate_raises(_email_taken(values["email"])):
        result = await conn.execute(sa.insert(users).values(**values))
    return int(result.lastrowid)


async def get_user(conn: AsyncConnection, user_id: int) -> User | None:
    row = (await conn.execute(sa.select(*USER_COLUMNS).where(users.c.id == user_id))).first()
    return None if row is None else from_row(row)


async def get_login(conn: AsyncConnection, email: str) -> tuple[User, bytes] | None:
    """The user with this email and their password hash, for a login to verify."""
    stmt = sa.select(*USER_COLUMNS, users.c.password).where(_by_email(email))
    row = (await conn.execute(stmt)).first()
    return None if row is None else (from_row(row), bytes(row.password))


async def password_hash(conn: AsyncConnection, user_id: int) -> bytes | None:
    """The user's password hash, for the services that check a current password."""
    stmt = sa.select(users.c.password).where(users.c.id == user_id)
    value = (await conn.execute(stmt)).scalar_one_or_none()
    return None if value is None else bytes(value)


async def any_user(conn: AsyncConnection) -> bool:
    return (await conn.execute(sa.select(users.c.id).limit(1))).first() is not None


async def count_admins(conn: AsyncConnection) -> int:
    stmt = sa.select(sa.func.count()).where(users.c.global_role == "admin",
                                            users.c.enabled.is_(True))
    return int((await conn.execute(stmt)).scalar_one())


async def list_users(conn: AsyncConnection, opts: ListOptions, *,
                     teams: TeamFilter) -> list[User]:
    stmt = sa.select(*USER_COLUMNS).where(users.c.enabled.is_(True))
    if not teams.all_teams:  # the members of a viewer's teams come with the user_teams table
        stmt = stmt.where(sa.false())
    text = search_clause(opts.query, (users.c.name, users.c.email))
    if text is not None:
        stmt = stmt.where(text)
    rows = await conn.execute(apply_list_options(stmt, opts, _SORTABLE, users.c.id))
    return [from_row(row) for row in rows]


async def update_user(conn: AsyncConnection, user_id: int, values: Mapping[str, Any]) -> None:
    """Change columns; AlreadyExists (name "email") if a new email belongs to someone else."""
    email = values.get("email")
    if email is not None:
        await _ensure_email_free(conn, email, except_id=user_id)
    with duplicate_raises(_email_taken(str(email))):  # only the email is unique
        await conn.execute(sa.update(users).where(users.c.id == user_id).values(**values))


async def delete_user(conn: AsyncConnection, user_id: int) -> bool:
    result = await conn.execute(sa.delete(users).where(users.c.id == user_id))
    return bool(result.rowcount)


