"""Saved (and live-query) queries. Global queries have team_id NULL and team_id_char ''.

Queries come out as `fleet.core.queries.Query` (with the author's name and email, "" once
the author is deleted) and go in as mappings of Fleet's field names (`interval`,
`logging`, ...): this module is the one place that knows their column names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields as dataclass_fields
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from fleet.core.authz import TeamFilter
from fleet.core.errors import AlreadyExists
from fleet.core.queries import Query
from fleet.store.db import duplicate_raises, upsert
from fleet.store.host_search import ListOptions, apply_list_options, search_clause, team_clause
from fleet.store.schema import queries, users

# Query field -> column, where they differ.
_COLUMN = {"interval": "schedule_interval", "logging": "logging_type"}
_SORTABLE = {name: queries.c[name] for name in (
    "id", "name", "description", "query", "created_at", "updated_at", "platform",
    "observer_can_run", "automations_enabled", "discard_data", "author_id",
    "min_osquery_version")}
_SORTABLE.update({field: queries.c[column] for field, column in _COLUMN.items()})
_GLOBAL = queries.c.team_id.is_(None)

# Columns a spec upsert overwrites; created_at and author_id stay those of the first apply.
_SPEC_UPDATED = ("updated_at", "description", "query", "saved", "observer_can_run",
                 "schedule_interval", "platform", "min_osquery_version",
                 "automations_enabled", "logging_type", "discard_data")
_SELECT = (sa.select(*(queries.c[_COLUMN.get(name, name)].label(name)
                       for name in (f.name for f in dataclass_fields(Query))
                       if name not in ("author_name", "author_email")),
                     sa.func.coalesce(users.c.name, "").label("author_name"),
                     sa.func.coalesce(users.c.email, "").label("author_email"))
           .select_from(queries.outerjoin(users, users.c.id == queries.c.author_id)))


def _columns(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {_COLUMN.get(name, name): value for name, value in fields.items()}


def _name_taken(name: str) -> AlreadyExists:
    return AlreadyExists(f"a query named {name!r} already exists", name="name")


def _saved_global(opts: ListOptions, teams: TeamFilter) -> list[sa.ColumnElement[bool]]:
    where: list[sa.ColumnElement[bool]] = [queries.c.saved.is_(True), _GLOBAL,
                                           team_clause(queries.c.team_id, teams)]
    text = search_clause(opts.query, (queries.c.name,))
    if text is not None:
        where.append(text)
    return where


async def _fetch(conn: AsyncConnection, stmt: sa.Select[Any]) -> list[Query]:
    return [Query(**row) for row in (await conn.execute(stmt)).mappings()]


async def insert_query(conn: AsyncConnection, fields: Mapping[str, Any]) -> int:
    """Insert a query (Query field names); AlreadyExists (name "name") if a query of its
    team already has its name."""
    with duplicate_raises(_name_taken(fields["name"])):
        result = await conn.execute(sa.insert(queries).values(**_columns(fields)))
    return int(result.lastrowid)


async def get_query(conn: AsyncConnection, query_id: int) -> Query | None:
    found = await _fetch(conn, _SELECT.where(queries.c.id == query_id))
    return found[0] if found else None


async def get_saved_query_by_name(conn: AsyncConnection, name: str) -> Query | None:
    found = await _fetch(conn, _SELECT.where(queries.c.name == name, _GLOBAL,
                                             queries.c.saved.is_(True)))
    return found[0] if found else None


async def list_saved_queries(conn: AsyncConnection, opts: ListOptions, *, teams: TeamFilter,
                             peek: bool = False) -> list[Query]:
    return await _fetch(conn, apply_list_options(_SELECT.where(*_saved_global(opts, teams)),
                                                 opts, _SORTABLE, queries.c.id, peek=peek))


async def count_saved_queries(conn: AsyncConnection, opts: ListOptions, *,
                              teams: TeamFilter) -> int:
    stmt = sa.select(sa.func.count()).select_from(queries).where(*_saved_global(opts, teams))
    return int((await conn.execute(stmt)).scalar_one())


async def update_query(conn: AsyncConnection, query_id: int, fields: Mapping[str, Any]) -> None:
    """Change fields (Query field names); AlreadyExists if the new name is taken."""
    with duplicate_raises(_name_taken(str(fields.get("name")))):  # only the name is unique
        await conn.execute(sa.update(queries).where(queries.c.id == query_id)
                           .values(**_columns(fields)))


async def delete_queries(conn: AsyncConnection, ids: Sequence[int]) -> int:
    """Delete saved global queries by id; returns how many existed."""
    if not ids:
        return 0
    stmt = sa.delete(queries).where(queries.c.id.in_(ids), queries.c.saved.is_(True), _GLOBAL)
    return int((await conn.execute(stmt)).rowcount)


async def upsert_global_queries(conn: AsyncConnection,
                                rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert global queries (Query field names), or overwrite the one with the same name
    (fleetctl apply)."""
    await upsert(conn, queries, [{**_columns(r), "team_id": None, "team_id_char": ""}
                                 for r in rows],
                 keys=("name", "team_id_char"), update=_SPEC_UPDATED)
