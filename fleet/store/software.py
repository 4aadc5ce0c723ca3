"""Software inventory storage: a host's list as links to shared `software` rows, the
REST lists with their precomputed host counts, and the job that recomputes those counts.

`sync_host_software` is the agent path: it reads what the host has in one statement,
compares checksums in Python and writes only the difference, each kind of change in one
statement (executemany) whatever the list's length. An unchanged list writes nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from fleet.core.software import (
    IDENTITY,
    TITLE_IDENTITY,
    HostSoftware,
    Installed,
    Software,
    SoftwareTitle,
    TitleVersion,
)
from fleet.store.db import insert_ignore, upsert
from fleet.store.host_search import (
    ListOptions,
    apply_list_options,
    search_clause,
    split_peek,
)
from fleet.store.schema import (
    host_software,
    host_software_installed_paths,
    hosts,
    software,
    software_host_counts,
    software_titles,
    software_titles_host_counts,
)

ALL_TEAMS = 0  # the team_id of counts over every host

paths = host_software_installed_paths


# ----------------------------------------------------------------------------------------
# Ingestion


async def _ids_by_checksum(conn: AsyncConnection, checksums: Sequence[bytes], *,
                           latest: bool = False) -> dict[bytes, int]:
    """Ids of shared rows. `latest`: a locking read, which sees rows other transactions
    committed after this one began (MySQL's plain reads keep the transaction's snapshot, so
    a row an insert-ignore skipped as a duplicate could stay invisible)."""
    if not checksums:
        return {}
    stmt = sa.select(software.c.checksum, software.c.id) \
        .where(software.c.checksum.in_(checksums))
    rows = await conn.execute(stmt.with_for_update(read=True) if latest else stmt)
    return {bytes(r.checksum): int(r.id) for r in rows}


async def _create_software(conn: AsyncConnection, items: Sequence[Installed]) -> None:
    """Shared rows for software no host had before: titles first (insert-ignore, then their
    ids in one SELECT), then the versions (insert-ignore: a concurrent host may win)."""
    dialect = conn.dialect.name
    # Key order: concurrent hosts inserting overlapping rows take their locks in one order,
    # which keeps MySQL's gap locks from deadlocking them.
    titles = sorted({item.title() for item in items})
    items = sorted(items, key=lambda item: item.checksum)
    await conn.execute(insert_ignore(dialect, software_titles),
                       [dict(zip(TITLE_IDENTITY, t, strict=True)) for t in titles])
    key = sa.tuple_(*(software_titles.c[f] for f in TITLE_IDENTITY))
    rows = await conn.execute(sa.select(software_titles.c.id,
                                        *(software_titles.c[f] for f in TITLE_IDENTITY))
                              .where(key.in_(titles)).with_for_update(read=True))
    title_ids = {tuple(r[1:]): int(r.id) for r in rows}
    await conn.execute(insert_ignore(dialect, software), [
        {**item.identity(), "checksum": item.checksum,
         "title_id": title_ids.get(item.title())} for item in items])


async def sync_host_software(conn: AsyncConnection, host_id: int,
                             items: Mapping[bytes, Installed], now: dt.datetime) -> int:
    """Make `items` the host's software; returns the number of statements that wrote."""
    stored = await conn.execute(
        sa.select(software.c.checksum, host_software.c.software_id,
                  host_software.c.last_opened_at, paths.c.id.label("path_id"),
                  paths.c.installed_path)
        .select_from(host_software.join(software, software.c.id == host_software.c.software_id)
                     .outerjoin(paths, sa.and_(paths.c.host_id == host_software.c.host_id,
                                               paths.c.software_id == software.c.id)))
        .where(host_software.c.host_id == host_id))
    have: dict[bytes, tuple[int, dt.datetime | None]] = {}
    have_paths: dict[tuple[int, str], int] = {}
    for r in stored:
        have[bytes(r.checksum)] = (int(r.software_id), r.last_opened_at)
        if r.path_id is not None:
            have_paths[(int(r.software_id), r.installed_path)] = int(r.path_id)

    new = [c for c in items if c not in have]
    ids = {c: sid for c, (sid, _) in have.items()}
    if new:
        found = await _ids_by_checksum(conn, new)
        missing = [items[c] for c in new if c not in found]
        if missing:
            await _create_software(conn, missing)
            found.update(await _ids_by_checksum(conn, [m.checksum for m in missing],
                                                latest=True))
        ids.update(found)
    writes = 0
    # New links are a plain INSERT: MySQL's INSERT ... ON DUPLICATE KEY UPDATE takes
    # exclusive next-key locks that make concurrent hosts' inserts wait on each other's gaps.
    links = [{"host_id": host_id, "software_id": ids[c], "last_opened_at": item.last_opened_at}
             for c, item in items.items() if c not in have]
    if links:
        await conn.execute(host_software.insert(), links)
        writes += 1
    opened = [{"host_id": host_id, "software_id": ids[c], "last_opened_at": item.last_opened_at}
              for c, item in items.items()
              if c in have and have[c][1] != item.last_opened_at]
    if opened:
        await upsert(conn, host_software, opened, keys=["host_id", "software_id"],
                     update=["last_opened_at"])
        writes += 1
    gone = [sid for c, (sid, _) in have.items() if c not in items]
    if gone:
        await conn.execute(host_software.delete().where(
            host_software.c.host_id == host_id, host_software.c.software_id.in_(gone)))
        writes += 1
    wanted = {(ids[c], p) for c, item in items.items() for p in item.installed_paths}
    added = [{"host_id": host_id, "software_id": sid, "installed_path": p}
             for sid, p in wanted if (sid, p) not in have_paths]
    if added:
        await conn.execute(paths.insert(), added)
        writes += 1
    # Paths of removed software go with their link (the outer join listed them too).
    dropped = [pid for key, pid in have_paths.items() if key not in wanted]
    if dropped:
        await conn.execute(paths.delete().where(paths.c.id.in_(dropped)))
        writes += 1
    if links or opened or gone or added or dropped:
        await conn.execute(hosts.update().where(hosts.c.id == host_id)
                           .values(software_updated_at=now))
        writes += 1
    return writes


# ----------------------------------------------------------------------------------------
# Host counts (the aggregation job)


async def refresh_counts(conn: AsyncConnection, now: dt.datetime) -> int:
    """Recompute every version's and title's host count (team 0: all hosts); how many
    versions have hosts."""
    await conn.execute(software_host_counts.delete())
    await conn.execute(software_host_counts.insert().from_select(
        ["software_id", "team_id", "hosts_count", "updated_at"],
        sa.select(host_software.c.software_id, sa.literal(ALL_TEAMS), sa.func.count(),
                  sa.literal(now, software_host_counts.c.updated_at.type))
        .group_by(host_software.c.software_id)))
    await conn.execute(software_titles_host_counts.delete())
    await conn.execute(software_titles_host_counts.insert().from_select(
        ["software_title_id", "team_id", "hosts_count", "updated_at"],
        sa.select(software.c.title_id, sa.literal(ALL_TEAMS),
                  sa.func.count(sa.distinct(host_software.c.host_id)),
                  sa.literal(now, software_titles_host_counts.c.updated_at.type))
        .select_from(host_software.join(software,
                                        software.c.id == host_software.c.software_id))
        .where(software.c.title_id.isnot(None))
        .group_by(software.c.title_id)))
    return int((await conn.execute(sa.select(sa.func.count())
                                   .select_from(software_host_counts))).scalar_one())


# ----------------------------------------------------------------------------------------
# Lists and lookups

_SOFTWARE_COLUMNS = [software.c.id, *(software.c[f] for f in IDENTITY), software.c.title_id]
_VERSION_COUNT = sa.func.coalesce(software_host_counts.c.hosts_count, 0)
_TITLE_COUNT = sa.func.coalesce(software_titles_host_counts.c.hosts_count, 0)
_WITH_COUNTS = software.outerjoin(software_host_counts, sa.and_(
    software_host_counts.c.software_id == software.c.id,
    software_host_counts.c.team_id == ALL_TEAMS))
_TITLES_WITH_COUNTS = software_titles.outerjoin(software_titles_host_counts, sa.and_(
    software_titles_host_counts.c.software_title_id == software_titles.c.id,
    software_titles_host_counts.c.team_id == ALL_TEAMS))
VERSION_SORTABLE: dict[str, ColumnElement[Any]] = {"name": software.c.name,
                                                   "hosts_count": _VERSION_COUNT}
TITLE_SORTABLE: dict[str, ColumnElement[Any]] = {"name": software_titles.c.name,
                                                 "hosts_count": _TITLE_COUNT}


def _software(row: Any) -> Software:
    return Software(id=int(row.id), **{f: row._mapping[f] for f in IDENTITY},
                    title_id=row.title_id, hosts_count=int(row.hosts_count))


async def counts_updated_at(conn: AsyncConnection) -> dt.datetime | None:
    return (await conn.execute(sa.select(sa.func.max(software_host_counts.c.updated_at))
                               )).scalar_one_or_none()


async def list_versions(conn: AsyncConnection, opts: ListOptions
                        ) -> tuple[list[Software], int, bool]:
    """A page of versions with counts (only versions some host has), the total, and
    whether a next page exists."""
    where = [_VERSION_COUNT > 0]
    text = search_clause(opts.query, [software.c.name, software.c.version])
    if text is not None:
        where.append(text)
    stmt = sa.select(*_SOFTWARE_COLUMNS, _VERSION_COUNT.label("hosts_count")) \
        .select_from(_WITH_COUNTS).where(*where)
    rows, more = split_peek(list(await conn.execute(apply_list_options(
        stmt, opts, VERSION_SORTABLE, software.c.id, peek=True))), opts)
    total = (await conn.execute(sa.select(sa.func.count()).select_from(_WITH_COUNTS)
                                .where(*where))).scalar_one()
    return [_software(r) for r in rows], int(total), more


async def get_version(conn: AsyncConnection, software_id: int) -> Software | None:
    row = (await conn.execute(
        sa.select(*_SOFTWARE_COLUMNS, _VERSION_COUNT.label("hosts_count"))
        .select_from(_WITH_COUNTS).where(software.c.id == software_id))).first()
    return None if row is None else _software(row)


async def _title_versions(conn: AsyncConnection, title_ids: Sequence[int]
                          ) -> dict[int, list[TitleVersion]]:
    out: dict[int, list[TitleVersion]] = {t: [] for t in title_ids}
    if not title_ids:
        return out
    rows = await conn.execute(
        sa.select(software.c.title_id, software.c.id, software.c.version,
                  _VERSION_COUNT.label("hosts_count"))
        .select_from(_WITH_COUNTS)
        .where(software.c.title_id.in_(title_ids), _VERSION_COUNT > 0)
        .order_by(software.c.version, software.c.id))
    for r in rows:
        out[int(r.title_id)].append(TitleVersion(int(r.id), r.version, int(r.hosts_count)))
    return out


def _title(row: Any, versions: list[TitleVersion]) -> SoftwareTitle:
    return SoftwareTitle(int(row.id), row.name, row.source, row.browser,
                         row.bundle_identifier, int(row.hosts_count), tuple(versions))


_TITLE_COLUMNS = [software_titles.c[f] for f in ("id", *TITLE_IDENTITY)]


async def list_titles(conn: AsyncConnection, opts: ListOptions
                      ) -> tuple[list[SoftwareTitle], int, bool]:
    where = [_TITLE_COUNT > 0]
    text = search_clause(opts.query, [software_titles.c.name])
    if text is not None:
        where.append(text)
    stmt = sa.select(*_TITLE_COLUMNS, _TITLE_COUNT.label("hosts_count")) \
        .select_from(_TITLES_WITH_COUNTS).where(*where)
    rows, more = split_peek(list(await conn.execute(apply_list_options(
        stmt, opts, TITLE_SORTABLE, software_titles.c.id, peek=True))), opts)
    total = (await conn.execute(sa.select(sa.func.count()).select_from(_TITLES_WITH_COUNTS)
                                .where(*where))).scalar_one()
    versions = await _title_versions(conn, [int(r.id) for r in rows])
    return [_title(r, versions[int(r.id)]) for r in rows], int(total), more


async def get_title(conn: AsyncConnection, title_id: int) -> SoftwareTitle | None:
    row = (await conn.execute(sa.select(*_TITLE_COLUMNS, _TITLE_COUNT.label("hosts_count"))
                              .select_from(_TITLES_WITH_COUNTS)
                              .where(software_titles.c.id == title_id))).first()
    if row is None:
        return None
    return _title(row, (await _title_versions(conn, [title_id]))[title_id])


async def host_software_list(conn: AsyncConnection, host_id: int) -> list[HostSoftware]:
    """A host's software by name and version, with its installed paths (two statements)."""
    rows = await conn.execute(
        sa.select(*_SOFTWARE_COLUMNS, sa.literal(0).label("hosts_count"),
                  host_software.c.last_opened_at)
        .select_from(host_software.join(software,
                                        software.c.id == host_software.c.software_id))
        .where(host_software.c.host_id == host_id)
        .order_by(software.c.name, software.c.version, software.c.id))
    found = await conn.execute(sa.select(paths.c.software_id, paths.c.installed_path)
                               .where(paths.c.host_id == host_id)
                               .order_by(paths.c.installed_path))
    by_software: dict[int, list[str]] = {}
    for p in found:
        by_software.setdefault(int(p.software_id), []).append(p.installed_path)
    return [HostSoftware(_software(r), r.last_opened_at, tuple(by_software.get(int(r.id), ())))
            for r in rows]
