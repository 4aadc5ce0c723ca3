"""Live-query campaigns, their targets, and the host facts needed to count them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from fleet.core.authz import TeamFilter
from fleet.core.campaigns import STATUS_RUNNING, STATUS_WAITING, CampaignRecord
from fleet.core.hosts import HostSeen
from fleet.core.labels import ALL_HOSTS
from fleet.store.db import utcnow
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

TARGET_LABEL, TARGET_HOST = 0, 1
_RECORD = sa.select(campaigns.c.id, campaigns.c.query_id, campaigns.c.status,
                    campaigns.c.user_id, campaigns.c.created_at)


async def create(conn: AsyncConnection, *, query_id: int, user_id: int,
                 host_ids: Sequence[int], label_ids: Sequence[int]) -> CampaignRecord:
    now = utcnow()
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
    return CampaignRecord(id=int(campaign_id), query_id=query_id, status=STATUS_WAITING,
                          user_id=user_id, created_at=now)


async def get(conn: AsyncConnection, campaign_id: int) -> CampaignRecord | None:
    row = (await conn.execute(_RECORD.where(campaigns.c.id == campaign_id))).first()
    return None if row is None else CampaignRecord(*row)


async def set_status(conn: AsyncConnection, campaign_id: int, status: int) -> None:
    await conn.execute(campaigns.update().where(campaigns.c.id == campaign_id)
                       .values(status=status, updated_at=utcnow()))


async def stale_campaign_ids(conn: AsyncConnection, now: dt.datetime) -> list[int]:
    """Waiting campaigns older than a minute, running ones older than a day (Fleet's rule)."""
    stmt = sa.select(campaigns.c.id).where(sa.or_(
        sa.and_(campaigns.c.status == STATUS_WAITING,
                campaigns.c.created_at < now - dt.timedelta(minutes=1)),
        sa.and_(campaigns.c.status == STATUS_RUNNING,
                campaigns.c.created_at < now - dt.timedelta(days=1))))
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
    all_hosts = sa.exists().where(labels.c.id.in_(label_ids), labels.c.name == ALL_HOSTS)
    members = sa.select(label_membership.c.host_id).where(
        label_membership.c.label_id.in_(label_ids))
    return sa.select(hosts.c.id).where(sa.or_(
        hosts.c.id.in_(explicit), hosts.c.id.in_(members), all_hosts))


def _selected(host_ids: Sequence[int], label_ids: Sequence[int],
              teams: TeamFilter) -> ColumnElement[bool] | None:
    """The hosts within `teams` that explicit hosts and labels select (None: nothing is)."""
    conds: list[Any] = []
    if host_ids:
        conds.append(hosts.c.id.in_(list(host_ids)))
    if label_ids:
        conds.append(hosts.c.id.in_(sa.select(label_membership.c.host_id).where(
            label_membership.c.label_id.in_(list(label_ids)))))
        conds.append(sa.exists().where(labels.c.id.in_(list(label_ids)),
                                       labels.c.name == ALL_HOSTS))
    if not conds:
        return None
    return sa.and_(sa.or_(*conds), team_clause(hosts.c.team_id, teams))


async def resolve_targets(conn: AsyncConnection, host_ids: Sequence[int],
                          label_ids: Sequence[int], teams: TeamFilter) -> list[int]:
    """Host ids for explicit hosts and labels, before a campaign exists (sorted), of the
    hosts within `teams`."""
    where = _selected(host_ids, label_ids, teams)
    if where is None:
        return []
    rows = await conn.execute(sa.select(hosts.c.id).where(where).order_by(hosts.c.id))
    return [int(r.id) for r in rows]


async def selected_seen_facts(conn: AsyncConnection, host_ids: Sequence[int],
                              label_ids: Sequence[int], teams: TeamFilter) -> list[HostSeen]:
    """Status facts of the hosts `resolve_targets` would select (target counts)."""
    where = _selected(host_ids, label_ids, teams)
    if where is None:
        return []
    return [HostSeen(*row) for row in await conn.execute(_seen_facts(where))]


def _seen_facts(where: Any) -> sa.Select[Any]:
    """`HostSeen` columns of every matching host."""
    return sa.select(
        hosts.c.id,
        sa.func.coalesce(host_seen_times.c.seen_time, hosts.c.created_at).label("seen"),
        hosts.c.distributed_interval, hosts.c.config_tls_refresh,
    ).select_from(hosts.outerjoin(host_seen_times, host_seen_times.c.host_id == hosts.c.id)
                  ).where(where)


async def target_seen_facts(conn: AsyncConnection, campaign_id: int) -> list[HostSeen]:
    """Status facts of every host a campaign targets (for its totals)."""
    stmt = _seen_facts(hosts.c.id.in_(_targeted_host_ids(campaign_id)))
    return [HostSeen(*row) for row in await conn.execute(stmt)]


async def host_seen_facts(conn: AsyncConnection, host_id: int,
                          teams: TeamFilter) -> HostSeen | None:
    row = (await conn.execute(_seen_facts(sa.and_(
        hosts.c.id == host_id, team_clause(hosts.c.team_id, teams))))).first()
    return None if row is None else HostSeen(*row)


async def label_ids_by_name(conn: AsyncConnection, names: Sequence[str]) -> dict[str, int]:
    rows = await conn.execute(sa.select(labels.c.id, labels.c.name)
                              .where(labels.c.name.in_(list(names))))
    return {r.name: int(r.id) for r in rows}


async def host_ids_by_identifier(conn: AsyncConnection, identifiers: Sequence[str],
                                 teams: TeamFilter) -> list[int]:
    """Hosts within `teams` whose hostname, uuid, hardware serial or osquery host id is
    listed."""
    rows = await conn.execute(sa.select(hosts.c.id).where(
        identified_by(identifiers), team_clause(hosts.c.team_id, teams)))
    return sorted(int(r.id) for r in rows)
