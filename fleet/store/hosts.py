"""Host rows as the agent endpoints write them: enrollment, vitals, intervals, seen times.

The read side used by the REST API (listing, filtering, deleting) is in `host_search.py`.
Functions take the caller's connection; `enroll` and `mark_seen` open their own transaction
(the hot-path exceptions listed in `fleet/service/__init__.py`).
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from fleet.core.host_users import HostUser
from fleet.store import host_users as host_user_store
from fleet.store import labels as label_store
from fleet.store.db import Database, insert_ignore, upsert, utcnow
from fleet.store.schema import host_seen_times, hosts, label_membership, labels, max_int, metadata

# Fleet's "never": timestamps that make every refresh due at the first check-in.
NEVER = dt.datetime(1970, 1, 2)
ENROLL_ATTEMPTS = 4
# Rows per seen-time UPSERT: large enough to amortize round trips, small enough to stay far
# below max_allowed_packet and SQLite's variable limit.
SEEN_BATCH = 2000
# Largest magnitude a MySQL FLOAT (single precision) column accepts.
FLOAT_MAX = 3.4e38


def clip(values: Mapping[str, Any]) -> dict[str, Any]:
    """Fit agent-supplied values to their columns: strings cut to the column width, integers
    clamped to the column's range, floats made finite and within a MySQL FLOAT.

    Agents report whatever their tables hold; MySQL in strict mode would reject the whole
    row for one out-of-range value, SQLite would store it or fail to bind it. Fitting makes
    both agree and keeps the rest of the row.
    """
    out = dict(values)
    for key, value in values.items():
        column = hosts.c[key]
        if isinstance(value, str):
            length = getattr(column.type, "length", None)
            if length and len(value) > length:
                out[key] = value[:length]
        elif isinstance(value, bool):
            continue
        elif isinstance(value, int) and isinstance(column.type, sa.Integer):
            top = max_int(column)
            out[key] = max(-top - 1, min(top, value))
        elif isinstance(value, float):
            out[key] = max(-FLOAT_MAX, min(FLOAT_MAX, value)) if math.isfinite(value) else 0.0
    return out


class EnrollCooldown(Exception):
    """The host re-enrolled again within `osquery.enroll_cooldown`."""


# The agent path runs these for every enrollment and detail refresh. Built once, with bound
# parameters, SQLAlchemy compiles each shape once and later executions skip statement
# construction (the largest CPU cost of a write at enrollment rates).
_BY_NODE_KEY = sa.select(hosts).where(hosts.c.node_key == sa.bindparam("b_node_key"))
_BY_IDENTIFIER = sa.select(hosts.c.id, hosts.c.last_enrolled_at).where(
    hosts.c.osquery_host_id == sa.bindparam("b_identifier"))
_INSERT = hosts.insert()
# SET columns come from the keys of the parameters passed with it.
_UPDATE = hosts.update().where(hosts.c.id == sa.bindparam("b_id"))


@functools.cache
def _all_hosts_membership(dialect: str) -> Any:
    """INSERT IGNORE of a new host into the builtin "All Hosts" label."""
    member = sa.select(labels.c.id, sa.bindparam("b_host_id"), sa.bindparam("b_now")) \
        .where(labels.c.name == "All Hosts")
    return insert_ignore(dialect, label_membership).from_select(
        ["label_id", "host_id", "created_at"], member)


async def find_by_node_key(conn: AsyncConnection, node_key: str) -> Any | None:
    return (await conn.execute(_BY_NODE_KEY, {"b_node_key": node_key})).first()


class Enrolled(NamedTuple):
    host_id: int
    created: bool


async def enroll(db: Database, *, osquery_host_id: str, node_key: str, team_id: int | None,
                 cooldown_seconds: float, values: Mapping[str, Any]) -> Enrolled:
    """Create the host, or give an existing one a new node key.

    `values` are host columns known at enrollment (vitals, check-in intervals), already cut
    to width by `clip` (the caller also caches them, so it clips once). A concurrent
    first enrollment of the same identifier loses the INSERT race and is retried as a
    re-enrollment, so two racing agents never produce two rows; a transaction the database
    chose as a deadlock victim is retried the same way. That retry loop is why this function
    owns its transaction (a hot-path exception to the rule).
    """
    return await db.transact(
        lambda conn: _enroll_tx(conn, osquery_host_id, node_key, team_id, cooldown_seconds,
                                values), attempts=ENROLL_ATTEMPTS)


async def _enroll_tx(conn: AsyncConnection, osquery_host_id: str, node_key: str,
                     team_id: int | None, cooldown_seconds: float,
                     values: Mapping[str, Any]) -> Enrolled:
    now = utcnow()
    existing = (await conn.execute(_BY_IDENTIFIER, {"b_identifier": osquery_host_id})).first()
    if existing is not None:
        if cooldown_seconds > 0 and \
                now - existing.last_enrolled_at < dt.timedelta(seconds=cooldown_seconds):
            raise EnrollCooldown(f"host identified by {osquery_host_id} enrolling too often")
        host_id = int(existing.id)
        await conn.execute(_UPDATE, {**values, "b_id": host_id, "node_key": node_key,
                                     "team_id": team_id, "last_enrolled_at": now,
                                     "updated_at": now})
        return Enrolled(host_id, False)
    # No seen-time row yet: a host's seen time defaults to its creation until the seen
    # buffer's next flush.
    result = await conn.execute(_INSERT, {
        **values, "osquery_host_id": osquery_host_id, "node_key": node_key,
        "team_id": team_id, "created_at": now, "updated_at": now,
        "detail_updated_at": NEVER, "label_updated_at": NEVER, "policy_updated_at": NEVER,
        "last_enrolled_at": now, "refetch_requested": False})
    key = result.inserted_primary_key
    assert key is not None  # a one-row INSERT
    host_id = int(key[0])
    await conn.execute(_all_hosts_membership(conn.dialect.name),
                       {"b_host_id": host_id, "b_now": now})
    return Enrolled(host_id, True)


async def update_host(conn: AsyncConnection, host_id: int, values: Mapping[str, Any]) -> None:
    """Write changed host columns (vitals, intervals, refresh timestamps) in one UPDATE."""
    await conn.execute(_UPDATE, {**clip(values), "updated_at": utcnow(), "b_id": host_id})


async def request_refetch(conn: AsyncConnection, host_ids: Sequence[int]) -> None:
    """Have the hosts send all their details (and label answers) at their next check-in."""
    if host_ids:
        await conn.execute(hosts.update().where(hosts.c.id.in_(host_ids))
                           .values(refetch_requested=True, updated_at=utcnow()))


class HostTables:
    """One host's rows in the tables a direct ingest owns, written in the caller's
    transaction (implements `core.detail_queries.HostTables`)."""

    def __init__(self, conn: AsyncConnection, host_id: int) -> None:
        self._conn = conn
        self._host_id = host_id

    async def replace_rows(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        child = metadata.tables.get(table)
        if child is None or table == hosts.name or "host_id" not in child.c:
            raise ValueError(f"{table!r} is not a table of host rows")
        await self._conn.execute(child.delete().where(child.c.host_id == self._host_id))
        if rows:
            await self._conn.execute(child.insert(),
                                     [{**row, "host_id": self._host_id} for row in rows])

    async def sync_users(self, users: Sequence[HostUser]) -> None:
        await host_user_store.sync_host_users(self._conn, self._host_id, users)

    async def record_label_results(self, results: Mapping[int, bool]) -> None:
        await label_store.remove_host_from_labels(
            self._conn, self._host_id, [label for label, member in results.items() if not member])
        await label_store.add_host_to_labels(
            self._conn, self._host_id, [label for label, member in results.items() if member],
            utcnow())


async def mark_seen(db: Database, host_ids: Iterable[int], seen: dt.datetime) -> None:
    """Upsert the seen time of many hosts in one statement (the batched check-in write).

    The seen-time flush has no caller transaction to join: it owns its own (a hot-path
    exception to the rule)."""
    rows = [{"host_id": h, "seen_time": seen} for h in host_ids]
    async with db.begin() as conn:
        for i in range(0, len(rows), SEEN_BATCH):
            await upsert(conn, host_seen_times, rows[i:i + SEEN_BATCH], keys=["host_id"],
                         update=["seen_time"])
