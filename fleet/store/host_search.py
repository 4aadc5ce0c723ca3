"""Read side of hosts (list, count, get, search) plus host deletion, and the listing helpers
(pagination, ordering, text search) every list endpoint shares.

Hosts come out as `fleet.core.hosts.Host` (lists as `HostValues` tuples, the fast path for
100k-host lists), selected column by column from the type's fields, so a column added to
`hosts` stays internal and the node key never leaves the store through this module.

Status filters are computed in SQL, mirroring `fleet.core.hoststatus`, so that pagination stays
exact and no host rows are pulled into Python just to be filtered out. The one dialect-specific
piece, "seconds between two timestamps", is a small compiled construct.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from fleet.core import hoststatus
from fleet.core.authz import TeamFilter
from fleet.core.detail_queries import LINUX_PLATFORMS
from fleet.core.errors import BadRequest
from fleet.core.hosts import (
    HOST_FIELDS,
    Host,
    HostFilter,
    HostSummary,
    HostValues,
    PlatformCount,
)
from fleet.store.schema import (
    HOST_CHILD_TABLES,
    INT64_MAX,
    TS,
    host_seen_times,
    host_software,
    hosts,
    label_membership,
    software,
)

# ----------------------------------------------------------------------------------------------
# Listing helpers (shared by users, queries and hosts)


@dataclass(frozen=True)
class ListOptions:
    """Fleet's common list parameters, already validated by the transport."""

    page: int = 0
    per_page: int | None = None  # None: every row
    order_key: str | None = None
    descending: bool = False
    query: str = ""


def search_clause(text: str, columns: Sequence[ColumnElement[Any]]) -> ColumnElement[bool] | None:
    """Substring match of `text` on any of `columns` (LIKE, with `%`/`_` escaped)."""
    if not text:
        return None
    return sa.or_(*(col.contains(text, autoescape=True) for col in columns))


def team_clause(column: ColumnElement[Any], teams: TeamFilter) -> ColumnElement[bool]:
    """`teams` on a `team_id` column (TRUE, which AND drops, when it restricts nothing)."""
    if teams.unrestricted:
        return sa.true()
    allowed = [column.isnot(None) if teams.all_teams else column.in_(sorted(teams.team_ids))]
    if teams.global_objects:
        allowed.append(column.is_(None))
    return sa.or_(*allowed)


def apply_list_options(stmt: sa.Select[Any], opts: ListOptions,
                       sortable: Mapping[str, ColumnElement[Any]], tiebreak: ColumnElement[Any],
                       *, peek: bool = False) -> sa.Select[Any]:
    """ORDER BY/LIMIT/OFFSET from `opts`. `tiebreak` (the id) keeps pages stable; with `peek`
    one extra row is fetched so the caller can tell whether a next page exists."""
    if opts.order_key is not None:
        column = sortable.get(opts.order_key)
        if column is None:
            raise BadRequest(f"invalid order_key: {opts.order_key}", name="order_key")
        if isinstance(column.type, sa.String):
            column = case_insensitive(column)
        stmt = stmt.order_by(column.desc() if opts.descending else column.asc())
    stmt = stmt.order_by(tiebreak.desc() if opts.descending else tiebreak.asc())
    if opts.per_page is not None:
        # Pages past any real table still bind: both drivers take at most a signed 64 bits.
        limit = min(opts.per_page + (1 if peek else 0), INT64_MAX)
        stmt = stmt.limit(limit).offset(min(opts.page * opts.per_page, INT64_MAX))
    return stmt


def split_peek(rows: Sequence[Any], opts: ListOptions) -> tuple[list[Any], bool]:
    """The page of rows `apply_list_options(..., peek=True)` fetched, and whether a next
    page exists (the extra row it fetched)."""
    more = opts.per_page is not None and len(rows) > opts.per_page
    return list(rows[:opts.per_page] if more else rows), more


def has_previous(opts: ListOptions) -> bool:
    return opts.per_page is not None and opts.page > 0


class case_insensitive(FunctionElement[str]):
    """A string column as ORDER BY should compare it: case-insensitively, as MySQL's default
    collation already does (so there it stays the bare column and keeps using its index);
    SQLite compares bytes unless told NOCASE."""

    type = sa.String()
    name = "case_insensitive"
    inherit_cache = True


@compiles(case_insensitive)
def _case_insensitive(element: case_insensitive, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(next(iter(element.clauses)), **kw)


@compiles(case_insensitive, "sqlite")
def _case_insensitive_sqlite(element: case_insensitive, compiler: SQLCompiler,
                             **kw: Any) -> str:
    return f"{compiler.process(next(iter(element.clauses)), **kw)} COLLATE NOCASE"


# ----------------------------------------------------------------------------------------------
# Status math in SQL


class seconds_between(FunctionElement[float]):
    """`end - start` in seconds (fractional), for two timestamp expressions."""

    type = sa.Float()
    name = "seconds_between"
    inherit_cache = True


@compiles(seconds_between, "mysql")
def _seconds_between_mysql(element: seconds_between, compiler: SQLCompiler, **kw: Any) -> str:
    start, end = (compiler.process(c, **kw) for c in element.clauses)
    return f"(TIMESTAMPDIFF(MICROSECOND, {start}, {end}) / 1000000.0)"


@compiles(seconds_between, "sqlite")
def _seconds_between_sqlite(element: seconds_between, compiler: SQLCompiler, **kw: Any) -> str:
    start, end = (compiler.process(c, **kw) for c in element.clauses)
    return f"((julianday({end}) - julianday({start})) * 86400.0)"


SEEN_TIME = sa.func.coalesce(host_seen_times.c.seen_time, hosts.c.created_at)
_FROM = hosts.outerjoin(host_seen_times, host_seen_times.c.host_id == hosts.c.id)
# The columns of a Host, in its field order (seen_time comes from its own table).
_COLUMNS = [hosts.c[name] for name in HOST_FIELDS if name != "seen_time"]
HOST_SORTABLE: dict[str, ColumnElement[Any]] = {c.name: c for c in _COLUMNS}
HOST_SORTABLE["seen_time"] = SEEN_TIME
# Fleet's UI sorts by display_name by default: the computer name, else the hostname.
HOST_SORTABLE["display_name"] = sa.case(
    (hosts.c.computer_name != "", hosts.c.computer_name), else_=hosts.c.hostname)
_SEARCHED = (hosts.c.hostname, hosts.c.uuid, hosts.c.hardware_serial, hosts.c.primary_ip)


def status_clause(status: str, now: dt.datetime) -> ColumnElement[bool]:
    """The SQL twin of `fleet.core.hoststatus` for one status filter value."""
    at = sa.literal(now, TS)
    if status == "online" or status == "offline":
        interval = sa.case(
            (hosts.c.distributed_interval < hosts.c.config_tls_refresh,
             hosts.c.distributed_interval),
            else_=hosts.c.config_tls_refresh)
        online = seconds_between(SEEN_TIME, at) < interval + hoststatus.ONLINE_INTERVAL_BUFFER
        return online if status == "online" else sa.not_(online)
    if status in ("missing", "mia"):
        return SEEN_TIME <= sa.literal(now - hoststatus.MISSING_DURATION, TS)
    if status == "new":
        return hosts.c.created_at >= sa.literal(now - hoststatus.NEW_DURATION, TS)
    raise BadRequest(f"invalid status: {status}", name="status")


def hosts_with_software(*, software_version_id: int | None = None,
                        software_title_id: int | None = None) -> ColumnElement[bool]:
    """A condition on `hosts.c.id` for the host list: hosts that have this version and/or
    a version of this title (both given: both must hold)."""
    conditions: list[ColumnElement[bool]] = []
    if software_version_id is not None:
        conditions.append(hosts.c.id.in_(
            sa.select(host_software.c.host_id)
            .where(host_software.c.software_id == software_version_id)))
    if software_title_id is not None:
        conditions.append(hosts.c.id.in_(
            sa.select(host_software.c.host_id)
            .join(software, software.c.id == host_software.c.software_id)
            .where(software.c.title_id == software_title_id)))
    return sa.and_(sa.true(), *conditions)


def _filters(opts: ListOptions, where: HostFilter, now: dt.datetime,
             teams: TeamFilter) -> list[ColumnElement[bool]]:
    clauses = [team_clause(hosts.c.team_id, teams)]
    text = search_clause(opts.query, _SEARCHED)
    if text is not None:
        clauses.append(text)
    if where.status:
        clauses.append(status_clause(where.status, now))
    if where.label_id is not None:
        # A semi-join, not a join: a host is listed once whatever the membership rows say.
        clauses.append(hosts.c.id.in_(sa.select(label_membership.c.host_id).where(
            label_membership.c.label_id == where.label_id)))
    if where.team_id is not None:
        clauses.append(hosts.c.team_id == where.team_id)
    if where.low_disk_space is not None:
        clauses.append(hosts.c.gigs_disk_space_available < where.low_disk_space)
    if where.software_version_id is not None or where.software_title_id is not None:
        clauses.append(hosts_with_software(software_version_id=where.software_version_id,
                                           software_title_id=where.software_title_id))
    if where.after is not None:
        clauses.append(_after_clause(opts, where.after))
    return clauses


def _after_clause(opts: ListOptions, after: str) -> ColumnElement[bool]:
    """Fleet's `after`: rows whose order_key value comes after `after` in the list's order."""
    column = HOST_SORTABLE.get(opts.order_key or "")
    if column is None:
        raise BadRequest("after requires a valid order_key", name="after")
    value: Any = after
    try:
        if isinstance(column.type, sa.Integer):
            value = int(after)
        elif isinstance(column.type, sa.Float):
            value = float(after)
        elif isinstance(column.type, sa.DateTime):
            value = dt.datetime.fromisoformat(after.replace("Z", "+00:00")).replace(
                tzinfo=None)
    except (ValueError, OverflowError):
        raise BadRequest(f"invalid after value for {opts.order_key}: {after}",
                         name="after") from None
    if isinstance(value, int) and not -INT64_MAX <= value <= INT64_MAX:
        raise BadRequest(f"invalid after value for {opts.order_key}: {after}", name="after")
    if isinstance(column.type, sa.String):
        column = case_insensitive(column)
    return column < value if opts.descending else column > value


def _select_hosts() -> sa.Select[Any]:
    return sa.select(*_COLUMNS, SEEN_TIME.label("seen_time")).select_from(_FROM)


async def _hosts(conn: AsyncConnection, stmt: sa.Select[Any]) -> list[Host]:
    return [Host(*row) for row in await conn.execute(stmt)]


async def list_hosts(conn: AsyncConnection, opts: ListOptions, where: HostFilter, *,
                     now: dt.datetime, teams: TeamFilter) -> list[HostValues]:
    """Hosts as `HostValues` tuples (the fast path: lists may hold every host)."""
    stmt = _select_hosts().where(*_filters(opts, where, now, teams))
    stmt = apply_list_options(stmt, opts, HOST_SORTABLE, hosts.c.id)
    return [tuple(row) for row in await conn.execute(stmt)]


async def count_hosts(conn: AsyncConnection, opts: ListOptions, where: HostFilter, *,
                      now: dt.datetime, teams: TeamFilter) -> int:
    stmt = sa.select(sa.func.count()).select_from(_FROM).where(
        *_filters(opts, where, now, teams))
    return int((await conn.execute(stmt)).scalar_one())


async def matching_host_ids(conn: AsyncConnection, *, query: str, where: HostFilter,
                            now: dt.datetime, teams: TeamFilter) -> list[int]:
    """Ids of the hosts a bulk action's filters select (every host when none is given)."""
    stmt = (sa.select(hosts.c.id).select_from(_FROM)
            .where(*_filters(ListOptions(query=query), where, now, teams)).order_by(hosts.c.id))
    return list((await conn.execute(stmt)).scalars())


async def get_host(conn: AsyncConnection, host_id: int) -> Host | None:
    found = await _hosts(conn, _select_hosts().where(hosts.c.id == host_id))
    return found[0] if found else None


def identified_by(identifiers: Sequence[str]) -> sa.ColumnElement[bool]:
    """Hosts named by any of `identifiers`: hostname, uuid, hardware serial or osquery host id
    (what the API and fleetctl accept wherever a host is given by identifier)."""
    ids = list(identifiers)
    return sa.or_(hosts.c.hostname.in_(ids), hosts.c.uuid.in_(ids),
                  hosts.c.hardware_serial.in_(ids), hosts.c.osquery_host_id.in_(ids))


async def find_host(conn: AsyncConnection, identifier: str) -> Host | None:
    """The first host (lowest id) whose hostname, uuid, serial or osquery host id matches."""
    stmt = _select_hosts().where(identified_by([identifier])).order_by(hosts.c.id).limit(1)
    found = await _hosts(conn, stmt)
    return found[0] if found else None


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)


async def host_summary(conn: AsyncConnection, *, platform: str | None,
                       low_disk_space: int | None, now: dt.datetime,
                       teams: TeamFilter) -> HostSummary:
    """Every count in one pass over the hosts, the platforms in a second: two statements
    whatever the fleet's size (the built-in labels are the label store's)."""
    where = [team_clause(hosts.c.team_id, teams)]
    if platform:
        where.append(hosts.c.platform.in_(sorted(LINUX_PLATFORMS)) if platform == "linux"
                     else hosts.c.platform == platform)
    counts = (await conn.execute(sa.select(
        sa.func.count(), _count_if(status_clause("online", now)),
        _count_if(status_clause("missing", now)), _count_if(status_clause("new", now)),
        _count_if(hosts.c.platform.in_(sorted(LINUX_PLATFORMS))),
        _count_if(hosts.c.gigs_disk_space_available < (low_disk_space or 0)),
    ).select_from(_FROM).where(*where))).one()
    total, online, missing, new, linux, low_disk = (int(v) for v in counts)
    platforms = await conn.execute(
        sa.select(hosts.c.platform, sa.func.count()).where(*where)
        .group_by(hosts.c.platform).order_by(hosts.c.platform))
    return HostSummary(
        totals_hosts_count=total, online_count=online, offline_count=total - online,
        mia_count=missing, new_count=new, all_linux_count=linux,
        low_disk_space_count=low_disk if low_disk_space is not None else None,
        platforms=tuple(PlatformCount(p, int(n)) for p, n in platforms))


# Ids per DELETE ... IN (...): far below SQLite's variable limit and MySQL's packet size.
DELETE_BATCH = 1000


async def not_seen_since(conn: AsyncConnection, cutoff: dt.datetime) -> list[int]:
    """Hosts last seen (or, never seen, enrolled) before `cutoff`: host expiry's."""
    return [int(r.id) for r in await conn.execute(
        sa.select(hosts.c.id).select_from(_FROM).where(SEEN_TIME < cutoff)
        .order_by(hosts.c.id))]


async def delete_hosts(conn: AsyncConnection, host_ids: Sequence[int], *,
                       teams: TeamFilter) -> list[int]:
    """Delete the hosts and the rows that hang off them; returns the ids that existed
    (hosts outside `teams` count as absent)."""
    deleted: list[int] = []
    for i in range(0, len(host_ids), DELETE_BATCH):
        batch = list(host_ids[i:i + DELETE_BATCH])
        existing = list((await conn.execute(
            sa.select(hosts.c.id).where(hosts.c.id.in_(batch),
                                        team_clause(hosts.c.team_id, teams)))).scalars())
        if not existing:
            continue
        for table in HOST_CHILD_TABLES:
            await conn.execute(sa.delete(table).where(table.c.host_id.in_(existing)))
        await conn.execute(sa.delete(hosts).where(hosts.c.id.in_(existing)))
        deleted += existing
    return deleted
