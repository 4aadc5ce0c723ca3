"""Hosts REST endpoints (`/hosts`, `/hosts/count`, `/hosts/{id}`, `/hosts/identifier/...`)
and the Fleet Host JSON object."""

from __future__ import annotations

import datetime as dt
import operator
from typing import Annotated, Any, Literal

from fastapi import Query
from pydantic import BaseModel
from starlette.responses import Response

from fleet.api.deps import Ctx, CurrentViewer, ListParams, StrictBody, rest_router
from fleet.api.errors import json_response
from fleet.api.fields import Id, IdParam, PathId
from fleet.api.schemas import Empty, answers
from fleet.api.software import HostSoftwareObject, host_software_json
from fleet.core import hoststatus
from fleet.core.hosts import HOST_FIELDS, Host, HostValues
from fleet.core.labels import Label
from fleet.service import host_admin

router = rest_router()

ExcludeSoftware = Annotated[bool, Query()]
StatusParam = Annotated[Literal["online", "offline", "new", "missing", "mia"] | None, Query()]


class HostFacts(BaseModel):
    """The stored facts of Fleet's Host object, by its field names and with the domain
    types of `core.hosts.Host` (osquery_host_id stays internal, as in Fleet)."""

    id: int
    team_id: int | None
    created_at: dt.datetime
    updated_at: dt.datetime
    detail_updated_at: dt.datetime
    label_updated_at: dt.datetime
    policy_updated_at: dt.datetime
    last_enrolled_at: dt.datetime
    refetch_requested: bool
    hostname: str
    computer_name: str
    uuid: str
    platform: str
    platform_like: str
    os_version: str
    build: str
    code_name: str
    osquery_version: str
    cpu_type: str
    cpu_subtype: str
    cpu_brand: str
    cpu_physical_cores: int
    cpu_logical_cores: int
    memory: int
    hardware_vendor: str
    hardware_model: str
    hardware_version: str
    hardware_serial: str
    uptime: int
    primary_ip: str
    primary_mac: str
    public_ip: str
    distributed_interval: int
    config_tls_refresh: int
    logger_tls_period: int
    gigs_disk_space_available: float
    percent_disk_space_available: float
    gigs_total_disk_space: float
    software_updated_at: dt.datetime | None
    seen_time: dt.datetime


class Issues(BaseModel):
    failing_policies_count: int
    total_issues_count: int


class HostObject(HostFacts, title="Host"):
    """Fleet's Host object: the stored facts and the fields `_with_computed` adds."""

    display_name: str
    display_text: str
    team_name: str | None
    status: Literal["online", "offline"]
    issues: Issues


class LabelObject(BaseModel, title="Label"):
    id: int
    created_at: dt.datetime
    updated_at: dt.datetime
    name: str
    description: str
    query: str
    platform: str
    label_type: Literal["regular", "builtin"]
    label_membership_type: Literal["dynamic", "manual"]
    display_text: str


class HostDetail(HostObject, title="HostDetail"):
    """A single host: its Host object, its labels and (unless `exclude_software`) its
    software."""

    labels: list[LabelObject]
    software: list[HostSoftwareObject] | None = None


class HostsAnswer(BaseModel):
    hosts: list[HostObject]


class HostAnswer(BaseModel):
    host: HostDetail


class CountAnswer(BaseModel):
    count: int


# host_json picks these; what it adds is HostObject's other fields.
HOST_JSON_FIELDS = tuple(HostFacts.model_fields)
_host_facts = operator.attrgetter(*HOST_JSON_FIELDS)
_listed_facts = operator.itemgetter(*(HOST_FIELDS.index(f) for f in HOST_JSON_FIELDS))


def host_json(host: Host, now: dt.datetime) -> dict[str, Any]:
    """Fleet's Host object (status as of `now`)."""
    return _with_computed(dict(zip(HOST_JSON_FIELDS, _host_facts(host), strict=True)), now)


def listed_host_json(values: HostValues, now: dt.datetime) -> dict[str, Any]:
    """`host_json` of a listed host (one C call to pick the fields, even for 100k hosts)."""
    return _with_computed(dict(zip(HOST_JSON_FIELDS, _listed_facts(values), strict=True)), now)


def _with_computed(data: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    """Add the fields Fleet computes to a Host object's stored ones."""
    display_name = data["computer_name"] or data["hostname"]
    data.update(
        display_name=display_name, display_text=display_name, team_name=None,
        status=hoststatus.status(data["seen_time"], data["distributed_interval"],
                                 data["config_tls_refresh"], now),
        issues={"failing_policies_count": 0, "total_issues_count": 0})
    return data


def label_json(label: Label) -> dict[str, Any]:
    return {"id": label.id, "created_at": label.created_at, "updated_at": label.updated_at,
            "name": label.name, "description": label.description, "query": label.query,
            "platform": label.platform, "label_type": label.label_type,
            "label_membership_type": label.label_membership_type, "display_text": label.name}


def _detail(detail: host_admin.HostDetail) -> Response:
    host = host_json(detail.host, detail.now)
    host["labels"] = [label_json(label) for label in detail.labels]
    if detail.software is not None:
        host["software"] = [host_software_json(s) for s in detail.software]
    return json_response({"host": host})


@router.get("/hosts", responses=answers(HostsAnswer, 401, 403))
async def list_hosts(ctx: Ctx, viewer: CurrentViewer, opts: ListParams,
                     status: StatusParam = None) -> Response:
    result = await host_admin.list_hosts(ctx, viewer, opts, status)
    return json_response({"hosts": [listed_host_json(h, result.now) for h in result.hosts]})


@router.get("/hosts/count", responses=answers(CountAnswer, 401, 403))
async def count_hosts(ctx: Ctx, viewer: CurrentViewer, opts: ListParams,
                      status: StatusParam = None,
                      label_id: IdParam = None) -> Response:
    count = await host_admin.count_hosts(ctx, viewer, opts, status, label_id)
    return json_response({"count": count})


@router.get("/hosts/identifier/{identifier}",
            responses=answers(HostAnswer, 401, 403, 404))
async def get_host_by_identifier(identifier: str, ctx: Ctx, viewer: CurrentViewer,
                                 exclude_software: ExcludeSoftware = False) -> Response:
    return _detail(await host_admin.find_host(ctx, viewer, identifier,
                                              exclude_software=exclude_software))


@router.get("/hosts/{host_id:int}", responses=answers(HostAnswer, 401, 403, 404))
async def get_host(host_id: PathId, ctx: Ctx, viewer: CurrentViewer,
                   exclude_software: ExcludeSoftware = False) -> Response:
    return _detail(await host_admin.get_host(ctx, viewer, host_id,
                                             exclude_software=exclude_software))


class BulkFilters(StrictBody):
    query: str = ""
    status: Literal["online", "offline", "new", "missing", "mia"] | None = None
    label_id: Id | None = None
    team_id: Id | None = None


class BulkDelete(StrictBody):
    ids: list[Id] | None = None
    filters: BulkFilters | None = None


@router.post("/hosts/delete", responses=answers(Empty, 401, 403, 422))
async def delete_hosts(body: BulkDelete, ctx: Ctx, viewer: CurrentViewer) -> Response:
    filters = None if body.filters is None else host_admin.HostFilters(
        **body.filters.model_dump())
    await host_admin.delete_hosts(ctx, viewer, ids=body.ids, filters=filters)
    return json_response({})


@router.delete("/hosts/{host_id:int}", responses=answers(Empty, 401, 403, 404))
async def delete_host(host_id: PathId, ctx: Ctx, viewer: CurrentViewer) -> Response:
    await host_admin.delete_host(ctx, viewer, host_id)
    return json_response({})
