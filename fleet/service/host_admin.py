"""Hosts as people see them: list, count, look up, delete. (Agents write hosts elsewhere.)"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from fleet.core.authz import EVERYTHING, Action, Viewer, authorize, authorize_any
from fleet.core.errors import BadRequest, NotFound
from fleet.core.host_users import HostUser
from fleet.core.hosts import Host, HostFilter, HostSummary, HostValues
from fleet.core.labels import Label
from fleet.core.software import HostSoftware
from fleet.service.context import ServiceContext
from fleet.store import host_search as store
from fleet.store import host_users as host_user_store
from fleet.store import hosts as host_store
from fleet.store import labels as label_store
from fleet.store import software as software_store
from fleet.store.db import utcnow
from fleet.store.host_search import ListOptions


@dataclass(frozen=True, slots=True)
class HostDetail:
    host: Host
    labels: Sequence[Label]
    now: dt.datetime  # the instant the host was read; serialize its status against it
    software: Sequence[HostSoftware] | None = None  # None: excluded
    users: Sequence[HostUser] = ()


@dataclass(frozen=True, slots=True)
class HostList:
    hosts: Sequence[HostValues]
    now: dt.datetime  # the instant the status filter used; serialize statuses against it


NO_FILTER = HostFilter()


async def list_hosts(ctx: ServiceContext, viewer: Viewer, opts: ListOptions,
                     where: HostFilter = NO_FILTER) -> HostList:
    teams = authorize_any(viewer, Action.READ_HOSTS)
    now = utcnow()
    async with ctx.db.connect() as conn:
        return HostList(await store.list_hosts(conn, opts, where, now=now, teams=teams), now)


async def count_hosts(ctx: ServiceContext, viewer: Viewer, opts: ListOptions,
                      where: HostFilter = NO_FILTER) -> int:
    teams = authorize_any(viewer, Action.READ_HOSTS)
    async with ctx.db.connect() as conn:
        return await store.count_hosts(conn, opts, where, now=utcnow(), teams=teams)


async def summary(ctx: ServiceContext, viewer: Viewer, *, platform: str | None,
                  low_disk_space: int | None) -> HostSummary:
    teams = authorize_any(viewer, Action.READ_HOSTS)
    async with ctx.db.connect() as conn:
        counts = await store.host_summary(conn, platform=platform,
                                          low_disk_space=low_disk_space, now=utcnow(),
                                          teams=teams)
        builtin = await label_store.builtin_labels(conn)
    return dataclasses.replace(counts, builtin_labels=tuple(builtin))


async def report_pages(ctx: ServiceContext, viewer: Viewer, opts: ListOptions,
                       where: HostFilter, page_size: int) -> AsyncIterator[HostList]:
    """The hosts of a report, a page at a time (a CSV of 100k hosts never sits in memory).
    Authorized before the first page, so a refusal is an error response, not a cut stream."""
    teams = authorize_any(viewer, Action.READ_HOSTS)
    now = utcnow()

    async def pages() -> AsyncIterator[HostList]:
        page = 0
        while True:
            paged = dataclasses.replace(opts, page=page, per_page=page_size)
            async with ctx.db.connect() as conn:
                rows = await store.list_hosts(conn, paged, where, now=now, teams=teams)
            if rows:
                yield HostList(rows, now)
            if len(rows) < page_size:
                return
            page += 1
    return pages()


async def _detail(conn: AsyncConnection, viewer: Viewer, host: Host | None,
                  missing: str, exclude_software: bool) -> HostDetail:
    """The found host, if the viewer may read it (a host of another team is a 403)."""
    if host is None:
        raise NotFound.of(missing)
    authorize(viewer, Action.READ_HOSTS, host)
    found = None if exclude_software else await software_store.host_software_list(conn, host.id)
    return HostDetail(host, await label_store.host_labels(conn, host.id), utcnow(), software=found,
                      users=await host_user_store.host_user_list(conn, host.id))


async def get_host(ctx: ServiceContext, viewer: Viewer, host_id: int, *,
                   exclude_software: bool = False) -> HostDetail:
    authorize_any(viewer, Action.READ_HOSTS)
    async with ctx.db.connect() as conn:
        return await _detail(conn, viewer, await store.get_host(conn, host_id),
                             f"Host with id={host_id}", exclude_software)


async def find_host(ctx: ServiceContext, viewer: Viewer, identifier: str, *,
                    exclude_software: bool = False) -> HostDetail:
    """By hostname, uuid, hardware serial or osquery host id (the lowest id wins)."""
    authorize_any(viewer, Action.READ_HOSTS)
    async with ctx.db.connect() as conn:
        return await _detail(conn, viewer, await store.find_host(conn, identifier),
                             f"Host with identifier={identifier}", exclude_software)


async def host_for(conn: AsyncConnection, viewer: Viewer, host_id: int,
                   action: Action) -> Host:
    """The host, if `viewer` may do `action` on it (404 if absent, 403 if of another team);
    the caller has checked `authorize_any(viewer, action)` first."""
    host = await store.get_host(conn, host_id)
    if host is None:
        raise NotFound.of(f"Host with id={host_id}")
    authorize(viewer, action, host)
    return host


async def refetch_host(ctx: ServiceContext, viewer: Viewer, host_id: int) -> None:
    """Have the host send every detail and label answer at its next check-in. Reading the
    host is enough (as Fleet: observers may refetch)."""
    authorize_any(viewer, Action.READ_HOSTS)
    async with ctx.db.begin() as conn:
        await host_for(conn, viewer, host_id, Action.READ_HOSTS)
        await host_store.request_refetch(conn, [host_id])
    await ctx.host_changed(host_id)


async def delete_host(ctx: ServiceContext, viewer: Viewer, host_id: int) -> None:
    """Delete the host; it re-enrolls if it still holds a valid enroll secret."""
    teams = authorize_any(viewer, Action.WRITE_HOSTS)
    async with ctx.db.begin() as conn:
        if not await store.delete_hosts(conn, [host_id], teams=teams):
            raise NotFound.of(f"Host with id={host_id}")
    await ctx.host_changed(host_id)


async def expire_hosts(ctx: ServiceContext) -> int:
    """The `expired_hosts` job: with `host_expiry_settings.host_expiry_enabled`, delete the
    hosts not seen for `host_expiry_window` days (an agent still running re-enrolls)."""
    expiry = (await ctx.settings.get(ctx.db)).host_expiry
    if not expiry.enabled or expiry.window_days <= 0:
        return 0
    cutoff = utcnow() - dt.timedelta(days=expiry.window_days)
    async with ctx.db.begin() as conn:
        deleted = await store.delete_hosts(conn, await store.not_seen_since(conn, cutoff),
                                           teams=EVERYTHING)
    await ctx.hosts_changed(deleted)
    return len(deleted)


async def delete_hosts(ctx: ServiceContext, viewer: Viewer, *, ids: Sequence[int] | None,
                       filters: HostFilter | None, query: str = "") -> int:
    """Bulk delete by ids or by filters (exactly one of them); returns how many went."""
    teams = authorize_any(viewer, Action.WRITE_HOSTS)
    if ids is not None and filters is not None:
        raise BadRequest("Cannot specify a list of ids and filters at the same time")
    if ids is None and filters is None:
        raise BadRequest("Either ids or filters must be specified")
    async with ctx.db.begin() as conn:
        if filters is not None:
            if filters.status and filters.label_id is not None:
                raise BadRequest("Cannot filter by both status and label_id", name="filters")
            ids = await store.matching_host_ids(conn, query=query, where=filters,
                                                now=utcnow(), teams=teams)
        deleted = await store.delete_hosts(conn, list(ids or []), teams=teams)
    await ctx.hosts_changed(deleted)
    return len(deleted)
