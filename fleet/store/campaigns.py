"""Live-query campaigns, their targets, and the host facts needed to count them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from fleet.core.authz import TeamFilter
from fleet.store.db import Database, utcnow
from fleet.store.host_search import identified_by, team_clause
from fleet.store.schema import (
    distributed_query_campaign_targets as targets,
)
from fleet.store.schema import (
    distributed_query_campaigns as campaigns,
)
from fleet.store.schema import (
    host_seen_times,
    hosts,
    label_membership,
    labels,
)

STATUS_WAITING, STATUS_RUNNING, STATUS_COMPLETE = 0, 1, 2
TARGET_LABEL, TARGET_HOST = 0, 1


async def create(db: Database, *, query_id: int, user_id: int,
                 host_ids: Sequence[int], label_ids: Sequence[int]) -> Any:
    now = utcnow()
    async with db.begin() as conn:
        result = await conn.execute(campaigns.insert().values(
            query_id=query_id, status=STATUS_WAITING, user_id=user_id, created_at=now,
            updated_at=now))
        (campaign_id,) = result.inserted_primary_key or (None,)
        assert campaign_id is not None
        rows = [{"distributed_query_campaign_id": campaign_id, "type": TARGET_HOST,
                 "target_id": h} for h in host_ids]
        rows += [{"distributed_query_campaign_id": campaign_id, "type": TARGET_LABEL,
                  "target_id": lbl} for lbl in label_ids]
        if rows:
            await conn.execute(targets.insert(), rows)
        return (await conn.execute(
            sa.select(campaigns).where(campaigns.c.id == campaign_id))).one()


async def get(db: Database, campaign_id: int) -> Any | None:
    async with db.connect() as conn:
        return (await conn.execute(
            sa.select(campaigns).where(campaigns.c.id == campaign_id))).first()


async def set_status(db: Database, campaign_id: int, status: int) -> None:
    async with db.begin() as conn:
        await conn.execute(campaigns.update().where(campaigns.c.id == campaign_id)
                           .values(status=status, updated_at=utcnow()))


async def stale_campaign_ids(db: Database, now: dt.datetime) -> list[int]:
    """Waiting campaigns older than a minute, running ones older than a day (Fleet's rule)."""
    stmt = sa.select(campaigns.c.id).where(sa.or_(
        sa.and_(campaigns.c.status == STATUS_WAITING,
                campaigns.c.created_at < now - dt.timedelta(minutes=1)),
        sa.and_(campaigns.c.status == STATUS_RUNNING,
                campaigns.c.created_at < now - dt.timedelta(days=1))))
    async with db.connect() as conn:
        return [int(r.id) for r in await conn.execute(stmt)]


def _targeted_host_ids(campaign_id: int) -> sa.Select[Any]:
    """Host ids selected by a campaign: explicit hosts, plus members of its labels.

    Selecting the built-in "All Hosts" label selects every host, whatever its membership rows.
    """
    explicit = sa.select(targets.c.target_id).where(
        targets.c.distributed_query_campaign_id == campaign_id,
        targets.c.type == TARGET_HOST)
    label_ids = sa.select(targets.c.target_id).where(
        targets.c.distributed_query_campaign_id == campaign_id,
        targets.c.type == TARGET_LABEL)
    all_hosts = sa.exists().where(labels.c.id.in_(label_ids), labels.c.name == "All Hosts")
    members = sa.select(label_membership.c.host_id).where(
        label_membership.c.label_id.in_(label_ids))
    return sa.select(hosts.c.id).where(sa.or_(
        hosts.c.id.in_(explicit), hosts.c.id.in_(members), all_hosts))


async def resolve_targets(db: Database, host_ids: Sequence[int],
                          label_ids: Sequence[int], teams: TeamFilter) -> list[int]:
    """Host ids for explicit hosts and labels, before a campaign exists (sorted), of the
    hosts within `teams`."""
    conds: list[Any] = []
    if host_ids:
        conds.append(hosts.c.id.in_(list(host_ids)))
    if label_ids:
        conds.append(hosts.c.id.in_(sa.select(label_membership.c.host_id).where(
            label_membership.c.label_id.in_(list(label_ids)))))
        conds.append(sa.exists().where(labels.c.id.in_(list(label_ids)),
                                       labels.c.name == "All Hosts"))
    if not conds:
        return []
    async with db.connect() as conn:
        rows = await conn.execute(sa.select(hosts.c.id).where(
            sa.or_(*conds), team_clause(hosts.c.team_id, teams)).order_by(hosts.c.id))
        return [int(r.id) for r in rows]


def _seen_facts(where: Any) -> sa.Select[Any]:
    """(id, seen, created_at, distributed_interval, config_tls_refresh) per matching host."""
    return sa.select(
        hosts.c.id,
        sa.func.coalesce(host_seen_times.c.seen_time, hosts.c.created_at).label("seen"),
        hosts.c.created_at, hosts.c.distributed_interval, hosts.c.config_tls_refresh,
    ).select_from(hosts.outerjoin(host_seen_times, host_seen_times.c.host_id == hosts.c.id)
                  ).where(where)


async def target_seen_facts(db: Database, campaign_id: int) -> list[Any]:
    """Status facts of every host a campaign targets (for its totals)."""
    async with db.connect() as conn:
        stmt = _seen_facts(hosts.c.id.in_(_targeted_host_ids(campaign_id)))
        return list((await conn.execute(stmt)).all())


async def host_seen_facts(db: Database, host_id: int, teams: TeamFilter) -> Any | None:
    async with db.connect() as conn:
        return (await conn.execute(_seen_facts(sa.and_(
            hosts.c.id == host_id, team_clause(hosts.c.team_id, teams))))).first()


async def label_ids_by_name(db: Database, names: Sequence[str]) -> dict[str, int]:
    async with db.connect() as conn:
        rows = await conn.execute(sa.select(labels.c.id, labels.c.name)
                                  .where(labels.c.name.in_(list(names))))
        return {r.name: int(r.id) for r in rows}


async def host_ids_by_identifier(db: Database, identifiers: Sequence[str],
                                 teams: TeamFilter) -> list[int]:
    """Hosts within `teams` whose hostname, uuid, hardware serial or osquery host id is
    listed."""
    async with db.connect() as conn:
        rows = await conn.execute(sa.select(hosts.c.id).where(
            identified_by(identifiers), team_clause(hosts.c.team_id, teams)))
        return sorted(int(r.id) for r in rows)


async def existing_host_ids(db: Database, host_ids: Sequence[int]) -> list[int]:
    async with db.connect() as conn:
        rows = await conn.execute(sa.select(hosts.c.id).where(hosts.c.id.in_(list(host_ids))))
        return sorted(int(r.id) for r in rows)
