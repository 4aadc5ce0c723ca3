"""Labels and their membership.

Labels come out as `fleet.core.labels.Label`, with `host_count` from one grouped count over
`label_membership` (of the hosts the viewer may see), never a count per label. Membership is
written in whole statements: a manual label's hosts replaced at once, a host's dynamic
answers as one DELETE plus one INSERT ... SELECT (which skips labels deleted meanwhile).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from fleet.core.authz import TeamFilter
from fleet.core.errors import AlreadyExists
from fleet.core.labels import BUILTIN, DYNAMIC, Label, LabelQuery
from fleet.store.db import duplicate_raises, insert_ignore
from fleet.store.host_search import (
    ListOptions,
    apply_list_options,
    identified_by,
    search_clause,
    team_clause,
)
from fleet.store.schema import hosts, label_membership, labels

_COLUMNS = [labels.c[f.name] for f in fields(Label) if f.name in labels.c]
_SORTABLE = {c.name: c for c in _COLUMNS}
# Membership rows per INSERT (far below SQLite's variable limit and MySQL's packet size).
BATCH = 1000


def _name_taken(name: str) -> AlreadyExists:
    return AlreadyExists(f"a label named {name!r} already exists", name="name")


async def _with_counts(conn: AsyncConnection, rows: Sequence[Any],
                       teams: TeamFilter) -> list[Label]:
    ids = [int(r.id) for r in rows]
    counts: dict[int, int] = {}
    if ids:
        stmt = (sa.select(label_membership.c.label_id, sa.func.count())
                .select_from(label_membership.join(hosts,
                                                   hosts.c.id == label_membership.c.host_id))
                .where(label_membership.c.label_id.in_(ids),
                       team_clause(hosts.c.team_id, teams))
                .group_by(label_membership.c.label_id))
        counts = {int(label_id): int(n) for label_id, n in await conn.execute(stmt)}
    return [Label(**row._mapping, host_count=counts.get(int(row.id), 0)) for row in rows]


async def list_labels(conn: AsyncConnection, opts: ListOptions, teams: TeamFilter) -> list[Label]:
    """Labels whose name contains `opts.query` (every label without one)."""
    stmt = sa.select(*_COLUMNS)
    text = search_clause(opts.query, (labels.c.name,))
    if text is not None:
        stmt = stmt.where(text)
    stmt = apply_list_options(stmt, opts, _SORTABLE, labels.c.id)
    return await _with_counts(conn, (await conn.execute(stmt)).all(), teams)


async def get_label(conn: AsyncConnection, teams: TeamFilter, *, label_id: int | None = None,
                    name: str | None = None) -> Label | None:
    where = labels.c.id == label_id if label_id is not None else labels.c.name == name
    rows = (await conn.execute(sa.select(*_COLUMNS).where(where))).all()
    found = await _with_counts(conn, rows, teams)
    return found[0] if found else None


async def host_labels(conn: AsyncConnection, host_id: int) -> list[Label]:
    """The labels a host belongs to (without host counts: a host's detail shows none)."""
    stmt = (sa.select(*_COLUMNS)
            .join(label_membership, label_membership.c.label_id == labels.c.id)
            .where(label_membership.c.host_id == host_id).order_by(labels.c.id))
    return [Label(*row) for row in await conn.execute(stmt)]


async def builtin_labels(conn: AsyncConnection) -> list[Label]:
    """The built-in labels (what `/host_summary` links a dashboard to), without counts."""
    rows = await conn.execute(sa.select(*_COLUMNS).where(labels.c.label_type == BUILTIN)
                              .order_by(labels.c.id))
    return [Label(*row) for row in rows]


async def labels_by_name(conn: AsyncConnection, names: Sequence[str]) -> dict[str, Label]:
    rows = await conn.execute(sa.select(*_COLUMNS).where(labels.c.name.in_(list(names))))
    return {row.name: Label(*row) for row in rows}


async def insert_label(conn: AsyncConnection, values: Mapping[str, Any]) -> int:
    """A new label (label columns); AlreadyExists (name "name") if the name is taken."""
    with duplicate_raises(_name_taken(values["name"])):
        result = await conn.execute(labels.insert().values(**values))
    (label_id,) = result.inserted_primary_key or (None,)
    assert label_id is not None
    return int(label_id)


async def update_label(conn: AsyncConnection, label_id: int, values: Mapping[str, Any]) -> None:
    with duplicate_raises(_name_taken(str(values.get("name")))):
        await conn.execute(labels.update().where(labels.c.id == label_id).values(**values))


async def delete_label(conn: AsyncConnection, label_id: int) -> None:
    await conn.execute(label_membership.delete().where(label_membership.c.label_id == label_id))
    await conn.execute(labels.delete().where(labels.c.id == label_id))


async def host_ids_by_identifier(conn: AsyncConnection,
                                 identifiers: Sequence[str]) -> dict[str, list[int]]:
    """Per identifier (hostname, uuid, serial or osquery host id), the hosts it names."""
    out: dict[str, list[int]] = {}
    wanted = set(identifiers)
    for i in range(0, len(identifiers), BATCH):
        batch = list(identifiers[i:i + BATCH])
        rows = await conn.execute(sa.select(
            hosts.c.id, hosts.c.hostname, hosts.c.uuid, hosts.c.hardware_serial,
            hosts.c.osquery_host_id).where(identified_by(batch)))
        for row in rows:
            for value in row[1:]:
                if value in wanted:
                    out.setdefault(value, []).append(int(row.id))
    return out


async def set_label_hosts(conn: AsyncConnection, label_id: int, host_ids: Sequence[int],
                          now: dt.datetime) -> None:
    """Make `host_ids` the whole membership of a (manual) label."""
    await conn.execute(label_membership.delete().where(label_membership.c.label_id == label_id))
    rows = [{"label_id": label_id, "host_id": h, "created_at": now}
            for h in sorted(set(host_ids))]
    for i in range(0, len(rows), BATCH):
        await conn.execute(label_membership.insert(), rows[i:i + BATCH])


async def add_host_to_labels(conn: AsyncConnection, host_id: int, label_ids: Sequence[int],
                             now: dt.datetime) -> None:
    """Add one host to labels (of any kind, skipping ids that no longer exist or that it
    already belongs to)."""
    if not label_ids:
        return
    member = sa.select(labels.c.id, sa.literal(host_id, hosts.c.id.type),
                       sa.literal(now, label_membership.c.created_at.type)) \
        .where(labels.c.id.in_(sorted(set(label_ids))))
    await conn.execute(insert_ignore(conn.dialect.name, label_membership).from_select(
        ["label_id", "host_id", "created_at"], member))


async def remove_host_from_labels(conn: AsyncConnection, host_id: int,
                                  label_ids: Sequence[int]) -> None:
    if label_ids:
        await conn.execute(label_membership.delete().where(
            label_membership.c.host_id == host_id,
            label_membership.c.label_id.in_(sorted(set(label_ids)))))


async def dynamic_label_queries(conn: AsyncConnection) -> list[LabelQuery]:
    """Every dynamic label's query (what the agent path's cache holds)."""
    rows = await conn.execute(sa.select(labels.c.id, labels.c.query, labels.c.platform)
                              .where(labels.c.label_membership_type == DYNAMIC)
                              .order_by(labels.c.id))
    return [LabelQuery(int(r.id), r.query, r.platform) for r in rows]


async def manual_label_hostnames(conn: AsyncConnection,
                                 label_ids: Sequence[int]) -> dict[int, list[str]]:
    """Per manual label, its hosts' hostnames (what a `kind: label` spec lists)."""
    if not label_ids:
        return {}
    rows = await conn.execute(
        sa.select(label_membership.c.label_id, hosts.c.hostname)
        .join(hosts, hosts.c.id == label_membership.c.host_id)
        .where(label_membership.c.label_id.in_(list(label_ids)))
        .order_by(label_membership.c.label_id, hosts.c.hostname))
    out: dict[int, list[str]] = {}
    for label_id, hostname in rows:
        out.setdefault(int(label_id), []).append(hostname)
    return out
