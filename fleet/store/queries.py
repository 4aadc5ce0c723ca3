"""Saved (and live-query) queries. Global queries have team_id NULL and team_id_char ''.

Queries are returned as mappings (`row["query"]`) of every `queries` column plus
`author_name` and `author_email` (NULL once the author is deleted).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from fleet.core.authz import TeamFilter
from fleet.store.db import Database
from fleet.store.host_search import ListOptions, apply_list_options, search_clause, team_clause
from fleet.store.schema import queries, users

_SORTABLE = {name: queries.c[name] for name in (
    "id", "name", "description", "query", "created_at", "updated_at", "platform",
    "observer_can_run", "automations_enabled", "discard_data", "author_id",
    "min_osquery_version")}
_SORTABLE.update(interval=queries.c.schedule_interval, logging=queries.c.logging_type)
_GLOBAL = queries.c.team_id.is_(None)

# Columns a spec upsert overwrites; created_at and author_id stay those of the first apply.
_SPEC_UPDATED = ("updated_at", "description", "query", "saved", "observer_can_run",
                 "schedule_interval", "platform", "min_osquery_version",
                 "automations_enabled", "logging_type", "discard_data")


def _select() -> sa.Select[Any]:
    return (sa.select(queries, users.c.name.label("author_name"),
                      users.c.email.label("author_email"))
            .select_from(queries.outerjoin(users, users.c.id == queries.c.author_id)))


def _saved_global(opts: ListOptions, teams: TeamFilter) -> list[sa.ColumnElement[bool]]:
    where: list[sa.ColumnElement[bool]] = [queries.c.saved.is_(True), _GLOBAL,
                                           team_clause(queries.c.team_id, teams)]
    text = search_clause(opts.query, (queries.c.name,))
    if text is not None:
        where.append(text)
    return where


async def insert_query(conn: AsyncConnection, values: Mapping[str, Any]) -> int:
    result = await conn.execute(sa.insert(queries).values(**values))
    return int(result.lastrowid)


async def get_query(conn: AsyncConnection, query_id: int) -> sa.RowMapping | None:
    return (await conn.execute(_select().where(queries.c.id == query_id))).mappings().first()


async def get_saved_query_by_name(conn: AsyncConnection, name: str) -> sa.RowMapping | None:
    stmt = _select().where(queries.c.name == name, _GLOBAL, queries.c.saved.is_(True))
    return (await conn.execute(stmt)).mappings().first()


async def name_taken(conn: AsyncConnection, name: str, *, except_id: int | None = None) -> bool:
    """Whether a global query (saved or not) already uses `name`."""
    stmt = sa.select(queries.c.id).where(queries.c.name == name, _GLOBAL)
    if except_id is not None:
        stmt = stmt.where(queries.c.id != except_id)
    return (await conn.execute(stmt.limit(1))).first() is not None


async def list_saved_queries(conn: AsyncConnection, opts: ListOptions, *, teams: TeamFilter,
                             peek: bool = False) -> Sequence[sa.RowMapping]:
    stmt = apply_list_options(_select().where(*_saved_global(opts, teams)), opts, _SORTABLE,
                              queries.c.id, peek=peek)
    return (await conn.execute(stmt)).mappings().all()


async def count_saved_queries(conn: AsyncConnection, opts: ListOptions, *,
                              teams: TeamFilter) -> int:
    stmt = sa.select(sa.func.count()).select_from(queries).where(*_saved_global(opts, teams))
    return int((await conn.execute(stmt)).scalar_one())


async def update_query(conn: AsyncConnection, query_id: int, values: Mapping[str, Any]) -> None:
    await conn.execute(sa.update(queries).where(queries.c.id == query_id).values(**values))


async def delete_queries(conn: AsyncConnection, ids: Sequence[int]) -> int:
    """Delete saved global queries by id; returns how many existed."""
    if not ids:
        return 0
    stmt = sa.delete(queries).where(queries.c.id.in_(ids), queries.c.saved.is_(True), _GLOBAL)
    return int((await conn.execute(stmt)).rowcount)


async def upsert_queries(db: Database, conn: AsyncConnection,
                         rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert global queries, or overwrite the one with the same name (fleetctl apply)."""
    await db.upsert(conn, queries, [dict(r) for r in rows], keys=("name", "team_id_char"),
                    update=_SPEC_UPDATED)
