"""Software inventory as people see it: versions and titles with their host counts (kept
by `refresh_counts` on the hourly `software_host_counts` schedule, never counted per
request) and a host's own software.

The counts cover every host (team 0), so the lists are global objects: global roles that
may read hosts see them; team-only users get a 403 until per-team counts exist.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from fleet.core.authz import GLOBAL, Action, Viewer, authorize
from fleet.core.errors import NotFound
from fleet.core.software import Software, SoftwarePage, SoftwareTitle
from fleet.service.context import ServiceContext
from fleet.store import software as store
from fleet.store.db import utcnow
from fleet.store.host_search import ListOptions, has_previous


def _by_count(opts: ListOptions) -> ListOptions:
    """Fleet's default order: most hosts first."""
    if opts.order_key is None:
        return replace(opts, order_key="hosts_count", descending=True)
    return opts


def _page(opts: ListOptions, items: Sequence[Any], total: int, more: bool,
          counted: dt.datetime | None) -> SoftwarePage:
    return SoftwarePage(items, total, counted, more, has_previous(opts))


async def list_versions(ctx: ServiceContext, viewer: Viewer, opts: ListOptions
                        ) -> SoftwarePage:
    authorize(viewer, Action.READ_HOSTS, GLOBAL)
    opts = _by_count(opts)
    async with ctx.db.connect() as conn:
        items, total, more = await store.list_versions(conn, opts)
        counted = await store.counts_updated_at(conn)
    return _page(opts, items, total, more, counted)


async def get_version(ctx: ServiceContext, viewer: Viewer, software_id: int
                      ) -> tuple[Software, dt.datetime | None]:
    authorize(viewer, Action.READ_HOSTS, GLOBAL)
    async with ctx.db.connect() as conn:
        found = await store.get_version(conn, software_id)
        counted = await store.counts_updated_at(conn)
    if found is None:
        raise NotFound.of(f"Software with id={software_id}")
    return found, counted


async def list_titles(ctx: ServiceContext, viewer: Viewer, opts: ListOptions
                      ) -> SoftwarePage:
    authorize(viewer, Action.READ_HOSTS, GLOBAL)
    opts = _by_count(opts)
    async with ctx.db.connect() as conn:
        items, total, more = await store.list_titles(conn, opts)
        counted = await store.counts_updated_at(conn)
    return _page(opts, items, total, more, counted)


async def get_title(ctx: ServiceContext, viewer: Viewer, title_id: int
                    ) -> tuple[SoftwareTitle, dt.datetime | None]:
    authorize(viewer, Action.READ_HOSTS, GLOBAL)
    async with ctx.db.connect() as conn:
        found = await store.get_title(conn, title_id)
        counted = await store.counts_updated_at(conn)
    if found is None:
        raise NotFound.of(f"Software title with id={title_id}")
    return found, counted


async def refresh_counts(ctx: ServiceContext) -> int:
    """The job of the `software_host_counts` schedule."""
    async with ctx.db.begin() as conn:
        return await store.refresh_counts(conn, utcnow())
