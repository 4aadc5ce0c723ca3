"""Saved queries as agents see them: the ones that belong in the `Global` pack."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from fleet.store.schema import queries


async def global_scheduled_queries(conn: AsyncConnection) -> list[Any]:
    """Fleet's ListScheduledQueriesForAgents for global queries.

    Saved, with an interval, and either sending results to the log destination
    (automations) or kept as a snapshot report.
    """
    stmt = sa.select(
        queries.c.name, queries.c.query, queries.c.schedule_interval, queries.c.platform,
        queries.c.min_osquery_version, queries.c.logging_type, queries.c.automations_enabled,
    ).where(
        queries.c.team_id.is_(None), queries.c.saved.is_(True),
        queries.c.schedule_interval > 0,
        sa.or_(queries.c.automations_enabled.is_(True),
               sa.and_(queries.c.discard_data.is_(False),
                       queries.c.logging_type == "snapshot")),
    ).order_by(queries.c.name)
    return list((await conn.execute(stmt)).all())


async def global_query_automations(conn: AsyncConnection) -> dict[str, bool]:
    """Every global saved query's name -> automations_enabled (decides log forwarding)."""
    stmt = sa.select(queries.c.name, queries.c.automations_enabled).where(
        queries.c.team_id.is_(None), queries.c.saved.is_(True))
    return {r.name: bool(r.automations_enabled) for r in await conn.execute(stmt)}
