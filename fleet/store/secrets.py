"""Enroll secrets. `team_id` NULL marks the global secrets (the only kind served here)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from fleet.core.secrets import EnrollSecret
from fleet.store.db import insert_ignore
from fleet.store.schema import enroll_secrets

_FIND_SECRET = sa.select(enroll_secrets.c.secret, enroll_secrets.c.team_id,
                         enroll_secrets.c.created_at).where(
    enroll_secrets.c.secret == sa.bindparam("b_secret"))


async def find_secret(conn: AsyncConnection, secret: str) -> EnrollSecret | None:
    """The enrolling agent's secret, or None if unknown."""
    row = (await conn.execute(_FIND_SECRET, {"b_secret": secret})).first()
    return None if row is None else EnrollSecret(*row)


async def list_global_secrets(conn: AsyncConnection) -> list[EnrollSecret]:
    stmt = (sa.select(enroll_secrets.c.secret, enroll_secrets.c.team_id,
                      enroll_secrets.c.created_at)
            .where(enroll_secrets.c.team_id.is_(None))
            .order_by(enroll_secrets.c.created_at, enroll_secrets.c.secret))
    return [EnrollSecret(*row) for row in await conn.execute(stmt)]


async def team_secrets_among(conn: AsyncConnection, secrets: Sequence[str]) -> list[str]:
    """Which of `secrets` already belong to a team (a secret maps to one place only)."""
    if not secrets:
        return []
    stmt = sa.select(enroll_secrets.c.secret).where(enroll_secrets.c.secret.in_(secrets),
                                                    enroll_secrets.c.team_id.is_not(None))
    return list((await conn.execute(stmt)).scalars())


async def add_global_secrets(conn: AsyncConnection, secrets: Sequence[str],
                             now: dt.datetime) -> None:
    """Insert the secrets that do not exist yet; existing ones keep their created_at."""
    if secrets:
        await conn.execute(insert_ignore(conn.dialect.name, enroll_secrets),
                           [{"secret": s, "team_id": None, "created_at": now} for s in secrets])


async def delete_global_secrets_except(conn: AsyncConnection, keep: Sequence[str]) -> None:
    stmt = sa.delete(enroll_secrets).where(enroll_secrets.c.team_id.is_(None))
    if keep:
        stmt = stmt.where(enroll_secrets.c.secret.not_in(keep))
    await conn.execute(stmt)
