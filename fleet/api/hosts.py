"""Hosts REST endpoints (`/hosts`, `/hosts/count`, `/hosts/{id}`, `/hosts/identifier/...`)
and the Fleet Host JSON object."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import Query
from starlette.responses import Response

from fleet.api.deps import Ctx, CurrentViewer, ListParams, StrictBody, rest_router
from fleet.api.errors import json_response
from fleet.api.fields import Id, IdParam, PathId
from fleet.core import hoststatus
from fleet.service import host_admin
from fleet.store.db import utcnow
from fleet.store.host_search import HOST_FIELDS

router = rest_router()

StatusParam = Annotated[Literal["online", "offline", "new", "missing", "mia"] | None, Query()]


def host_json(row: sa.Row[Any], now: dt.datetime) -> dict[str, Any]:
    """Fleet's Host object from a host_search row (status as of `now`). The row's columns are
    already Fleet's field names; osquery_host_id stays internal, as in Fleet."""
    data = dict(zip(HOST_FIELDS, row, strict=True))  # cheap, even for 100k-host lists
    del data["osquery_host_id"]
    display_name = row.computer_name or row.hostname
    data.update(
        display_name=display_name, display_text=display_name, team_name=None,
        status=hoststatus.status(row.seen_time, row.distributed_interval,
                                 row.config_tls_refresh, now),
        issues={"failing_policies_count": 0, "total_issues_count": 0})
    return data


def label_json(row: sa.Row[Any]) -> dict[str, Any]:
    return {"id": row.id, "created_at": row.created_at, "updated_at": row.updated_at,
            "name": row.name, "description": row.description, "query": row.query,
            "platform": row.platform, "label_type": row.label_type,
            "label_membership_type": row.label_membership_type, "display_text": row.name}


def _detail(detail: host_admin.HostDetail) -> Response:
    host = host_json(detail.host, utcnow())
    host["labels"] = [label_json(label) for label in detail.labels]
    return json_response({"host": host})


@router.get("/hosts")
async def list_hosts(ctx: Ctx, viewer: CurrentViewer, opts: ListParams,
                     status: StatusParam = None) -> Response:
    result = await host_admin.list_hosts(ctx, viewer, opts, status)
    return json_response({"hosts": [host_json(row, result.now) for row in result.hosts]})


@router.get("/hosts/count")
async def count_hosts(ctx: Ctx, viewer: CurrentViewer, opts: ListParams,
                      status: StatusParam = None,
                      label_id: IdParam = None) -> Response:
    count = await host_admin.count_hosts(ctx, viewer, opts, status, label_id)
    return json_response({"count": count})


@router.get("/hosts/identifier/{identifier}")
async def get_host_by_identifier(identifier: str, ctx: Ctx, viewer: CurrentViewer) -> Response:
    return _detail(await host_admin.find_host(ctx, viewer, identifier))


@router.get("/hosts/{host_id:int}")
async def get_host(host_id: PathId, ctx: Ctx, viewer: CurrentViewer) -> Response:
    return _detail(await host_admin.get_host(ctx, viewer, host_id))



class BulkFilters(StrictBody):
    query: str = ""
    status: Literal["online", "offline", "new", "missing", "mia"] | None = None
    label_id: Id | None = None
    team_id: Id | None = None


class BulkDelete(StrictBody):
    ids: list[Id] | None = None
    filters: BulkFilters | None = None


@router.post("/hosts/delete")
async def delete_hosts(body: BulkDelete, ctx: Ctx, viewer: CurrentViewer) -> Response:
    filters = None if body.filters is None else host_admin.HostFilters(
        **body.filters.model_dump())
    await host_admin.delete_hosts(ctx, viewer, ids=body.ids, filters=filters)
    return json_response({})


@router.delete("/hosts/{host_id:int}")
async def delete_host(host_id: PathId, ctx: Ctx, viewer: CurrentViewer) -> Response:
    await host_admin.delete_host(ctx, viewer, host_id)
    return json_response({})
