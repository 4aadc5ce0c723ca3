"""Host rows as the agent endpoints write them: enrollment, vitals, intervals, seen times.

The read side used by the REST API (listing, filtering, deleting) is in `host_search.py`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, OperationalError

from fleet.store.db import Database, utcnow
from fleet.store.schema import host_seen_times, hosts, label_membership, labels

# Fleet's "never": timestamps that make every refresh due at the first check-in.
NEVER = dt.datetime(1970, 1, 2)
ENROLL_ATTEMPTS = 4
# Rows per seen-time UPSERT: large enough to amortize round trips, small enough to stay far
# below max_allowed_packet and SQLite's variable limit.
SEEN_BATCH = 2000


def clip(values: Mapping[str, Any]) -> dict[str, Any]:
    """Cut agent-supplied strings to their column width.

    Agents report whatever their tables hold; MySQL in strict mode would reject the whole
    row for one over-long value, SQLite would silently store it. Clipping makes both agree.
    """
    out = dict(values)
    for key, value in values.items():
        if isinstance(value, str):
            length = getattr(hosts.c[key].type, "length", None)
            if length and len(value) > length:
                out[key] = value[:length]
    return out


class EnrollCooldown(Exception):
    """The host re-enrolled again within `osquery.enroll_cooldown`."""


async def find_by_node_key(db: Database, node_key: str) -> Any | None:
    async with db.connect() as conn:
        result = await conn.execute(sa.select(hosts).where(hosts.c.node_key == node_key))
        return result.first()


async def enroll(db: Database, *, osquery_host_id: str, node_key: str, team_id: int | None,
                 cooldown_seconds: float, vitals: Mapping[str, Any]) -> int:
    """Create the host, or give an existing one a new node key; returns the host id.

    A concurrent first enrollment of the same identifier loses the INSERT race and is
    retried as a re-enrollment, so two racing agents never produce two rows; a transaction
    the database chose as a deadlock victim is retried the same way.
    """
    for attempt in range(ENROLL_ATTEMPTS):
        try:
            async with db.begin() as conn:
                return await _enroll_tx(conn, db, osquery_host_id, node_key, team_id,
                                        cooldown_seconds, vitals)
        except (IntegrityError, OperationalError) as exc:
            if attempt == ENROLL_ATTEMPTS - 1 or not db.is_retryable(exc):
                raise
    raise AssertionError("unreachable")


async def _enroll_tx(conn: Any, db: Database, osquery_host_id: str, node_key: str,
                     team_id: int | None, cooldown_seconds: float,
                     vitals: Mapping[str, Any]) -> int:
    now = utcnow()
    existing = (await conn.execute(
        sa.select(hosts.c.id, hosts.c.last_enrolled_at)
        .where(hosts.c.osquery_host_id == osquery_host_id))).first()
    if existing is not None:
        if cooldown_seconds > 0 and \
                now - existing.last_enrolled_at < dt.timedelta(seconds=cooldown_seconds):
            raise EnrollCooldown(f"host identified by {osquery_host_id} enrolling too often")
        host_id = int(existing.id)
        await conn.execute(hosts.update().where(hosts.c.id == host_id).values(
            node_key=node_key, team_id=team_id, last_enrolled_at=now, updated_at=now,
            **clip(vitals)))
    else:
        result = await conn.execute(hosts.insert().values(
            osquery_host_id=osquery_host_id, node_key=node_key, team_id=team_id,
            created_at=now, updated_at=now, detail_updated_at=NEVER,
            label_updated_at=NEVER, policy_updated_at=NEVER, last_enrolled_at=now,
            refetch_requested=False, **clip(vitals)))
        host_id = int(result.inserted_primary_key[0])
        await conn.execute(
            db.insert_ignore(label_membership).from_select(
                ["label_id", "host_id", "created_at"],
                sa.select(labels.c.id, sa.literal(host_id), sa.literal(now))
                .where(labels.c.name == "All Hosts")))
    await db.upsert(conn, host_seen_times, [{"host_id": host_id, "seen_time": now}],
                    keys=["host_id"], update=["seen_time"])
    return host_id


async def update_host(db: Database, host_id: int, values: Mapping[str, Any]) -> None:
    """Write changed host columns (vitals, intervals, refresh timestamps) in one UPDATE."""
    async with db.begin() as conn:
        await conn.execute(hosts.update().where(hosts.c.id == host_id)
                           .values(updated_at=utcnow(), **clip(values)))


async def mark_seen(db: Database, host_ids: Iterable[int], seen: dt.datetime) -> None:
    """Upsert the seen time of many hosts in one statement (the batched check-in write)."""
    rows = [{"host_id": h, "seen_time": seen} for h in host_ids]
    async with db.begin() as conn:
        for i in range(0, len(rows), SEEN_BATCH):
            await db.upsert(conn, host_seen_times, rows[i:i + SEEN_BATCH], keys=["host_id"],
                            update=["seen_time"])
