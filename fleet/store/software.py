"""Software inventory storage: a host's list as links to shared `software` rows, the
REST lists with their precomputed host counts, and the job that recomputes those counts.

`sync_software` stores a batch of hosts' lists (`service/software_writer.py` gathers them
off the request): it reads what the hosts have in one statement, maps the lists' checksums
to shared rows' ids (from this process's `SoftwareIds` memo; only software it has not met
is looked up or created), compares ids in Python and writes only the difference, each kind
of change in one statement for the whole batch (new links and paths as one driver-level
multi-row INSERT). An unchanged list writes nothing.
"""

from __future__ import annotations

import datetime as dt
import sys
from array import array
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from fleet.core.bounded import BoundedDict
from fleet.core.software import (
    IDENTITY,
    TITLE_IDENTITY,
    HostSoftware,
    Installed,
    Software,
    SoftwareTitle,
    TitleVersion,
)
from fleet.store.db import bulk_insert, insert_ignore, upsert
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


# Values per IN list: a batch's lists can name tens of thousands of rows, past SQLite's
# limit of bound parameters per statement.
IN_CHUNK = 2000


def _chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    return (values[i:i + IN_CHUNK] for i in range(0, len(values), IN_CHUNK))


async def _ids_by_checksum(conn: AsyncConnection, checksums: Sequence[bytes], *,
                           latest: bool = False) -> dict[bytes, int]:
    """Ids of shared rows. `latest`: a locking read, which sees rows other transactions
    committed after this one began (MySQL's plain reads keep the transaction's snapshot, so
    a row an insert-ignore skipped as a duplicate could stay invisible)."""
    found: dict[bytes, int] = {}
    for part in _chunks(checksums):
        stmt = sa.select(software.c.checksum, software.c.id) \
            .where(software.c.checksum.in_(part))
        rows = await conn.execute(stmt.with_for_update(read=True) if latest else stmt)
        found.update((bytes(r.checksum), int(r.id)) for r in rows)
    return found


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
    title_ids: dict[tuple[str, ...], int] = {}
    for part in _chunks(titles):
        rows = await conn.execute(sa.select(software_titles.c.id,
                                            *(software_titles.c[f] for f in TITLE_IDENTITY))
                                  .where(key.in_(part)).with_for_update(read=True))
        title_ids.update((tuple(r[1:]), int(r.id)) for r in rows)
    await conn.execute(insert_ignore(dialect, software), [
        {**item.identity(), "checksum": item.checksum,
         "title_id": title_ids.get(item.title())} for item in items])


class SoftwareIds:
    """This process's memo of shared `software` rows' ids by checksum, so a host's list of
    known software costs no lookup. An id never changes and nothing deletes `software`
    rows, so an entry cannot go stale (a job that ever deletes unused software must clear
    this memo on every instance). Bounded: past `capacity` the oldest entries go."""

    def __init__(self, capacity: int = 200_000) -> None:
        self._ids: BoundedDict[bytes, int] = BoundedDict(capacity)

    def split(self, checksums: Iterable[bytes]) -> tuple[dict[bytes, int], list[bytes]]:
        """The ids known here, and the checksums that are not."""
        known: dict[bytes, int] = {}
        unknown: list[bytes] = []
        get = self._ids.get
        for c in checksums:
            sid = get(c)
            if sid is None:
                unknown.append(c)
            else:
                known[c] = sid
        return known, unknown

    def add(self, found: Mapping[bytes, int]) -> None:
        self._ids.put_many(found)


@dataclass(frozen=True, slots=True)
class HostList:
    """A host's software list as the writer queues it: what this process already knows by
    its shared row's id, with only the last-opened times and paths it has (no names or
    versions, and each path text shared by every queued host that has it: thousands of
    queued lists must not hold every row's strings), and the rest as parsed."""

    ids: array[int]
    opened: dict[int, dt.datetime]
    paths: dict[int, tuple[str, ...]]
    new: dict[bytes, Installed]

    @classmethod
    def of(cls, items: Mapping[bytes, Installed], known: SoftwareIds) -> HostList:
        ids, unknown = known.split(items)
        opened: dict[int, dt.datetime] = {}
        paths: dict[int, tuple[str, ...]] = {}
        for c, sid in ids.items():
            item = items[c]
            if item.last_opened_at is not None:
                opened[sid] = item.last_opened_at
            if item.installed_paths:
                paths[sid] = tuple(sys.intern(p) for p in item.installed_paths)
        return cls(array("q", ids.values()), opened, paths, {c: items[c] for c in unknown})

    def wanted(self, ids: Mapping[bytes, int]) -> dict[int, tuple[dt.datetime | None,
                                                                  Collection[str]]]:
        """Software id: (last opened, paths), with `ids` for the software queued as new."""
        out: dict[int, tuple[dt.datetime | None, Collection[str]]] = {
            sid: (self.opened.get(sid), self.paths.get(sid, ())) for sid in self.ids}
        for c, item in self.new.items():
            out[ids[c]] = (item.last_opened_at, item.installed_paths)
        return out




async def _resolve_ids(conn: AsyncConnection, items: Mapping[bytes, Installed],
                       known: SoftwareIds) -> tuple[dict[bytes, int], dict[bytes, int]]:
    """Every item's shared row id (from the memo, else looked up, else created), and the
    ids the memo did not have."""
    ids, unknown = known.split(items)
    found: dict[bytes, int] = {}
    if unknown:
        found = await _ids_by_checksum(conn, unknown)
        missing = [items[c] for c in unknown if c not in found]
        if missing:
            await _create_software(conn, missing)
            found.update(await _ids_by_checksum(conn, [m.checksum for m in missing],
                                                latest=True))
        ids.update(found)
    return ids, found


_LINK_COLUMNS = ("host_id", "software_id", "last_opened_at")
_PATH_COLUMNS = ("host_id", "software_id", "installed_path")


@dataclass
class _Changes:
    """What a batch writes, gathered over its hosts so each kind is one statement."""

    links: list[tuple[int, int, dt.datetime | None]] = field(default_factory=list)
    opened: list[dict[str, Any]] = field(default_factory=list)
    gone: list[tuple[int, int]] = field(default_factory=list)
    paths_added: list[tuple[int, int, str]] = field(default_factory=list)
    paths_dropped: list[int] = field(default_factory=list)
    hosts: set[int] = field(default_factory=set)  # hosts with any change

    def diff(self, host_id: int,
             wanted: Mapping[int, tuple[dt.datetime | None, Collection[str]]],
             have: Mapping[int, dt.datetime | None],
             have_paths: Mapping[tuple[int, str], int]) -> None:
        """Add what makes `have` (+ `have_paths`) the host's `wanted` software (id: last
        opened, paths)."""
        before = self._size()
        # New links are a plain INSERT: MySQL's INSERT ... ON DUPLICATE KEY UPDATE takes
        # exclusive next-key locks that make concurrent writers wait on each other's gaps.
        for sid, (opened, _) in wanted.items():
            if sid not in have:
                self.links.append((host_id, sid, opened))
            elif have[sid] != opened:
                self.opened.append({"host_id": host_id, "software_id": sid,
                                    "last_opened_at": opened})
        self.gone.extend((host_id, sid) for sid in have if sid not in wanted)
        want_paths = {(sid, p) for sid, (_, found) in wanted.items() for p in found}
        self.paths_added.extend((host_id, sid, p) for sid, p in want_paths
                                if (sid, p) not in have_paths)
        # Paths of removed software go with their link (the outer join listed them too).
        self.paths_dropped.extend(pid for key, pid in have_paths.items()
                                  if key not in want_paths)
        if self._size() != before:
            self.hosts.add(host_id)

    def _size(self) -> int:
        return len(self.links) + len(self.opened) + len(self.gone) \
            + len(self.paths_added) + len(self.paths_dropped)


async def _stored(conn: AsyncConnection, host_ids: Sequence[int]
                  ) -> dict[int, tuple[dict[int, dt.datetime | None], dict[tuple[int, str], int]]]:
    """Each host's links (software id: last opened) and paths ((software id, path): row id)."""
    out: dict[int, tuple[dict[int, dt.datetime | None], dict[tuple[int, str], int]]] = {
        h: ({}, {}) for h in host_ids}
    rows = await conn.execute(
        sa.select(host_software.c.host_id, host_software.c.software_id,
                  host_software.c.last_opened_at, paths.c.id.label("path_id"),
                  paths.c.installed_path)
        .select_from(host_software.outerjoin(paths, sa.and_(
            paths.c.host_id == host_software.c.host_id,
            paths.c.software_id == host_software.c.software_id)))
        .where(host_software.c.host_id.in_(host_ids)))
    for r in rows:
        have, have_paths = out[r.host_id]
        have[r.software_id] = r.last_opened_at
        if r.path_id is not None:
            have_paths[(r.software_id, r.installed_path)] = r.path_id
    return out


async def _existing_hosts(conn: AsyncConnection, host_ids: Sequence[int]) -> list[int]:
    """The hosts that still exist, share-locked on MySQL so none is deleted (with its
    software) before this transaction commits links for it (SQLite has one writer)."""
    stmt = sa.select(hosts.c.id).where(hosts.c.id.in_(host_ids))
    if conn.dialect.name == "mysql":
        stmt = stmt.with_for_update(read=True)
    return sorted(int(r.id) for r in await conn.execute(stmt))


async def sync_software(conn: AsyncConnection, lists: Mapping[int, HostList],
                        now: dt.datetime, known: SoftwareIds) -> dict[bytes, int]:
    """Make each host's list (by host id) its software, writing only the difference, in a
    fixed number of statements for the whole batch (a host whose software changed gets
    `software_updated_at = now`). Hosts deleted meanwhile are skipped. Unchanged lists of
    known software cost one read and no write.

    Returns the shared rows' ids `known` did not have, for the caller to add once the
    transaction has committed (rows created in a transaction that rolls back must not be
    remembered)."""
    stored = await _stored(conn, list(lists))
    new: dict[bytes, Installed] = {}
    for queued in lists.values():
        new.update(queued.new)
    ids, learned = await _resolve_ids(conn, new, known)

    def diff(host_ids: Iterable[int]) -> _Changes:
        changes = _Changes()
        for h in host_ids:
            have, have_paths = stored[h]
            changes.diff(h, lists[h].wanted(ids), have, have_paths)
        return changes

    changes = diff(lists)
    if not changes.hosts:
        return learned
    alive = await _existing_hosts(conn, sorted(changes.hosts))
    if len(alive) < len(changes.hosts):
        changes = diff(alive)
    if changes.links:
        await bulk_insert(conn, host_software, _LINK_COLUMNS, changes.links)
    if changes.opened:
        await upsert(conn, host_software, changes.opened, keys=["host_id", "software_id"],
                     update=["last_opened_at"])
    for part in _chunks(changes.gone):
        await conn.execute(host_software.delete().where(
            sa.tuple_(host_software.c.host_id, host_software.c.software_id).in_(part)))
    if changes.paths_added:
        await bulk_insert(conn, paths, _PATH_COLUMNS, changes.paths_added)
    for part in _chunks(changes.paths_dropped):
        await conn.execute(paths.delete().where(paths.c.id.in_(part)))
    if changes.hosts:
        await conn.execute(hosts.update().where(hosts.c.id.in_(sorted(changes.hosts)))
                           .values(software_updated_at=now))
    return learned


# ----------------------------------------------------------------------------------------
# Host counts (the aggregation job)


async def refresh_counts(conn: AsyncConnection, now: dt.datetime) -> int:
    """Recompute every version's and title's host count (team 0: all hosts); how many
    versions have hosts.

    The counts are read with plain SELECTs and written back as rows: MySQL's
    INSERT ... SELECT would share-lock every `host_software` and `software` row it reads
    for the whole transaction, and the software writer's inserts then deadlock on them."""
    versions = [(int(r.software_id), ALL_TEAMS, int(r.n), now) for r in await conn.execute(
        sa.select(host_software.c.software_id, sa.func.count().label("n"))
        .group_by(host_software.c.software_id))]
    titles = [(int(r.title_id), ALL_TEAMS, int(r.n), now) for r in await conn.execute(
        sa.select(software.c.title_id,
                  sa.func.count(sa.distinct(host_software.c.host_id)).label("n"))
        .select_from(host_software.join(software,
                                        software.c.id == host_software.c.software_id))
        .where(software.c.title_id.isnot(None))
        .group_by(software.c.title_id))]
    await conn.execute(software_host_counts.delete())
    await bulk_insert(conn, software_host_counts,
                      ("software_id", "team_id", "hosts_count", "updated_at"), versions)
    await conn.execute(software_titles_host_counts.delete())
    await bulk_insert(conn, software_titles_host_counts,
                      ("software_title_id", "team_id", "hosts_count", "updated_at"), titles)
    return len(versions)


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
