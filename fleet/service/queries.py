"""Saved queries (global only: teams are a Premium feature) and the unsaved queries that
live-query campaigns run.

Fields come in under Fleet's API names (`interval`, `logging`, ...) as a mapping holding only
what the caller sent; `_validated` checks them once for create, modify and spec apply (the
store maps them to its columns). A name already taken is the store's AlreadyExists.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from fleet.core.authz import GLOBAL, Action, Viewer, authorize, authorize_any
from fleet.core.errors import NotFound, ValidationFailed
from fleet.core.queries import Query
from fleet.service.context import ServiceContext
from fleet.store import queries as store
from fleet.store.db import utcnow
from fleet.store.host_search import ListOptions, has_previous, split_peek
from fleet.store.schema import max_chars, queries

LOGGING_TYPES = ("snapshot", "differential", "differential_ignore_removals")
PLATFORMS = ("darwin", "windows", "linux", "chrome")
DEFAULTS: dict[str, Any] = {
    "description": "", "observer_can_run": False, "interval": 0, "platform": "",
    "min_osquery_version": "", "automations_enabled": False, "logging": "snapshot",
    "discard_data": False}
# Where a team could be named: only "no team" is accepted.
_TEAM_FIELDS = {"team_id": None, "team": ""}


@dataclass(frozen=True)
class QueryPage:
    queries: Sequence[Query]
    count: int
    has_next_results: bool
    has_previous_results: bool


def _check(field: str, value: Any) -> None:
    if field in ("name", "query") and not value.strip():
        raise ValidationFailed(f"{field} must not be empty", name=field)
    if field == "logging" and value not in LOGGING_TYPES:
        raise ValidationFailed(f"logging must be one of {', '.join(LOGGING_TYPES)}",
                               name="logging")
    if field == "interval" and value < 0:
        raise ValidationFailed("interval must not be negative", name="interval")
    if field == "platform" and value and any(p.strip() not in PLATFORMS
                                             for p in value.split(",")):
        raise ValidationFailed(f"platform must be a comma list of {', '.join(PLATFORMS)}",
                               name="platform")
    if field in _TEAM_FIELDS and value != _TEAM_FIELDS[field]:
        raise ValidationFailed("team queries are not supported: teams require Fleet Premium",
                               name=field)


def _validated(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Check API-named fields; return them without the team fields (global queries only)."""
    for field, value in fields.items():
        _check(field, value)
    return {k: v for k, v in fields.items() if k not in _TEAM_FIELDS}



async def _existing(conn: AsyncConnection, query_id: int) -> Query:
    query = await store.get_query(conn, query_id)
    if query is None:
        raise NotFound.of(f"Query with id={query_id}")
    return query


async def list_queries(ctx: ServiceContext, viewer: Viewer, opts: ListOptions) -> QueryPage:
    teams = authorize_any(viewer, Action.READ_QUERIES)
    async with ctx.db.connect() as conn:
        rows = await store.list_saved_queries(conn, opts, teams=teams, peek=True)
        count = await store.count_saved_queries(conn, opts, teams=teams)
    page, more = split_peek(rows, opts)
    return QueryPage(queries=page, count=count, has_next_results=more,
                     has_previous_results=has_previous(opts))


async def get_query(ctx: ServiceContext, viewer: Viewer, query_id: int) -> Query:
    """Any query by id (saved or a live query's), with author_name and author_email."""
    authorize_any(viewer, Action.READ_QUERIES)
    async with ctx.db.connect() as conn:
        query = await _existing(conn, query_id)
    authorize(viewer, Action.READ_QUERIES, query)
    return query


async def create_query(ctx: ServiceContext, viewer: Viewer,
                       fields: Mapping[str, Any]) -> Query:
    """A saved global query; `fields` must hold name and query, the rest defaults."""
    authorize(viewer, Action.WRITE_QUERIES, GLOBAL)
    values = _validated({**DEFAULTS, **fields})
    now = utcnow()
    async with ctx.db.begin() as conn:
        query_id = await store.insert_query(conn, {
            **values, "created_at": now, "updated_at": now, "saved": True,
            "author_id": viewer.user_id})
        row = await _existing(conn, query_id)
    await ctx.agent_config_changed()
    return row


async def modify_query(ctx: ServiceContext, viewer: Viewer, query_id: int,
                       fields: Mapping[str, Any]) -> Query:
    authorize(viewer, Action.WRITE_QUERIES, GLOBAL)
    values = _validated(fields)
    async with ctx.db.begin() as conn:
        await _existing(conn, query_id)
        if values:
            await store.update_query(conn, query_id, {**values, "updated_at": utcnow()})
        row = await _existing(conn, query_id)
    await ctx.agent_config_changed()
    return row


async def delete_query_by_name(ctx: ServiceContext, viewer: Viewer, name: str) -> None:
    authorize(viewer, Action.WRITE_QUERIES, GLOBAL)
    async with ctx.db.begin() as conn:
        query = await store.get_saved_query_by_name(conn, name)
        if query is None:
            raise NotFound.of(f"Query {name}")
        await store.delete_queries(conn, [query.id])
    await ctx.agent_config_changed()


async def delete_query(ctx: ServiceContext, viewer: Viewer, query_id: int) -> None:
    authorize(viewer, Action.WRITE_QUERIES, GLOBAL)
    async with ctx.db.begin() as conn:
        if not await store.delete_queries(conn, [query_id]):
            raise NotFound.of(f"Query with id={query_id}")
    await ctx.agent_config_changed()


async def delete_queries(ctx: ServiceContext, viewer: Viewer, ids: Sequence[int]) -> int:
    """Bulk delete; returns how many of `ids` existed."""
    authorize(viewer, Action.WRITE_QUERIES, GLOBAL)
    async with ctx.db.begin() as conn:
        deleted = await store.delete_queries(conn, list(set(ids)))
    await ctx.agent_config_changed()
    return deleted


async def query_specs(ctx: ServiceContext, viewer: Viewer) -> Sequence[Query]:
    teams = authorize_any(viewer, Action.READ_QUERIES)
    async with ctx.db.connect() as conn:
        return await store.list_saved_queries(conn, ListOptions(order_key="name"), teams=teams)


async def query_spec(ctx: ServiceContext, viewer: Viewer, name: str) -> Query:
    authorize(viewer, Action.READ_QUERIES, GLOBAL)
    async with ctx.db.connect() as conn:
        query = await store.get_saved_query_by_name(conn, name)
    if query is None:
        raise NotFound.of(f"Query {name}")
    return query


async def apply_query_specs(ctx: ServiceContext, viewer: Viewer,
                            specs: Sequence[Mapping[str, Any]]) -> None:
    """Create or overwrite global queries by name; fields a spec omits get their defaults.
    All specs are validated before anything is written, and written in one transaction."""
    authorize(viewer, Action.WRITE_QUERIES, GLOBAL)
    names = [spec.get("name", "") for spec in specs]
    if len(set(names)) != len(names):
        raise ValidationFailed("duplicate query name in specs", name="name")
    now = utcnow()
    rows = [{**_validated({**DEFAULTS, **spec}), "created_at": now, "updated_at": now,
             "saved": True, "author_id": viewer.user_id}
            for spec in specs]
    async with ctx.db.begin() as conn:
        await store.upsert_global_queries(conn, rows)
    await ctx.agent_config_changed()


async def create_unsaved_query(ctx: ServiceContext, viewer: Viewer, sql: str) -> int:
    """The hidden query a live campaign runs: `distributed_<email>_<unix nanos>`."""
    authorize_any(viewer, Action.RUN_NEW_QUERIES)
    _check("query", sql)
    now = utcnow()
    # A 255-character email must not push the name past its column.
    name = f"distributed_{viewer.email}"[:max_chars(queries.c.name) - 20] + f"_{time.time_ns()}"
    async with ctx.db.begin() as conn:
        return await store.insert_query(conn, {
            **DEFAULTS, "name": name,
            "query": sql, "created_at": now, "updated_at": now, "saved": False,
            "author_id": viewer.user_id})
