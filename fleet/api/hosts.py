"""Hosts REST endpoints (`/hosts`, `/hosts/count`, `/hosts/{id}`, `/hosts/identifier/...`)
and the Fleet Host JSON object."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import operator
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import Depends, Query
from pydantic import BaseModel
from starlette.responses import Response, StreamingResponse

from fleet.api.deps import Ctx, CurrentViewer, ListParams, StrictBody, rest_router
from fleet.api.errors import json_response
from fleet.api.fields import Id, IdParam, PathId
from fleet.api.schemas import Empty, answers
from fleet.api.software import HostSoftwareObject, host_software_json
from fleet.core import hoststatus
from fleet.core.errors import BadRequest
from fleet.core.hosts import HOST_FIELDS, Host, HostFilter, HostValues
from fleet.core.labels import Label
from fleet.service import host_admin

router = rest_router()

ExcludeSoftware = Annotated[bool, Query()]
StatusParam = Annotated[Literal["online", "offline", "new", "missing", "mia"] | None, Query()]


def list_filter(
    status: StatusParam = None,
    team_id: IdParam = None,
    low_disk_space: Annotated[int | None, Query(ge=1, le=100)] = None,
    after: Annotated[str | None, Query(max_length=255)] = None,
    software_version_id: IdParam = None,
    software_title_id: IdParam = None,
    software_id: IdParam = None,  # Fleet's name before 4.42, kept for old clients
) -> HostFilter:
    """Fleet's host-list filters (what `/labels/{id}/hosts` takes besides its label)."""
    return HostFilter(status=status, team_id=team_id, low_disk_space=low_disk_space,
                      after=after, software_version_id=software_version_id or software_id,
                      software_title_id=software_title_id)


def host_filter(where: Annotated[HostFilter, Depends(list_filter)],
                label_id: IdParam = None) -> HostFilter:
    """The list filters plus `label_id` (`/hosts`, `/hosts/count`, `/hosts/report`)."""
    return dataclasses.replace(where, label_id=label_id)


ListFilterParams = Annotated[HostFilter, Depends(list_filter)]
HostFilterParams = Annotated[HostFilter, Depends(host_filter)]


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
    critical_vulnerabilities_count: int
    total_issues_count: int


class Mdm(BaseModel, title="HostMdm"):
    """Fleet's `mdm` member. We manage no MDM, so every member is empty, but present: a
    client written for Fleet reads `host.mdm.enrollment_status` without checking first."""

    encryption_key_available: bool
    enrollment_status: str | None
    dep_profile_error: bool
    server_url: str | None
    name: str
    connected_to_fleet: bool | None
    profiles: list[Any] | None
    os_settings: dict[str, Any] | None
    macos_settings: dict[str, Any] | None
    macos_setup: dict[str, Any] | None
    device_status: str
    pending_action: str


class HostObject(HostFacts, title="Host"):
    """Fleet's Host object: the stored facts and the fields `_with_computed` adds (the keys
    Fleet's clients read are always there, empty where we hold no data)."""

    display_name: str
    display_text: str
    team_name: str | None
    status: Literal["online", "offline"]
    last_restarted_at: dt.datetime | None
    orbit_version: str | None
    fleet_desktop_version: str | None
    scripts_enabled: bool | None
    issues: Issues
    mdm: Mdm


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


_NO_MDM: dict[str, Any] = {
    "encryption_key_available": False, "enrollment_status": None, "dep_profile_error": False,
    "server_url": None, "name": "", "connected_to_fleet": None, "profiles": None,
    "os_settings": None, "macos_settings": None, "macos_setup": None,
    "device_status": "unlocked", "pending_action": ""}


def last_restarted_at(detail_updated_at: dt.datetime, uptime_ns: int) -> dt.datetime | None:
    """When the host booted, as of its last vitals (None until an uptime was reported)."""
    if uptime_ns <= 0:
        return None
    try:
        return detail_updated_at - dt.timedelta(microseconds=uptime_ns // 1000)
    except OverflowError:  # an uptime longer than the calendar: no usable boot time
        return None


def _with_computed(data: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    """Add the fields Fleet computes to a Host object's stored ones."""
    display_name = data["computer_name"] or data["hostname"]
    data.update(
        display_name=display_name, display_text=display_name, team_name=None,
        status=hoststatus.status(data["seen_time"], data["distributed_interval"],
                                 data["config_tls_refresh"], now),
        last_restarted_at=last_restarted_at(data["detail_updated_at"], data["uptime"]),
        orbit_version=None, fleet_desktop_version=None, scripts_enabled=None,
        issues={"failing_policies_count": 0, "critical_vulnerabilities_count": 0,
                "total_issues_count": 0},
        mdm=dict(_NO_MDM))
    return data


def label_json(label: Label) -> dict[str, Any]:
    return {"id": label.id, "created_at": label.created_at, "updated_at": label.updated_at,
            "name": label.name, "description": label.description, "query": label.query,
            "platform": label.platform, "label_type": label.label_type,
            "label_membership_type": label.label_membership_type, "display_text": label.name}


def _detail(detail: host_admin.HostDetail) -> Response:
    host = host_json(detail.host, detail.now)
    host["labels"] = [label_json(label) for label in detail.labels]
    host["users"] = [{"uid": u.uid, "username": u.username, "type": u.type,
                      "groupname": u.groupname, "shell": u.shell} for u in detail.users]
    # What Fleet's clients read even where this server has nothing yet.
    host.update(batteries=[], pack_stats=[], policies=[])
    if detail.software is not None:
        host["software"] = [host_software_json(s) for s in detail.software]
    return json_response({"host": host})


@router.get("/hosts", responses=answers(HostsAnswer, 401, 403))
async def list_hosts(ctx: Ctx, viewer: CurrentViewer, opts: ListParams,
                     where: HostFilterParams) -> Response:
    result = await host_admin.list_hosts(ctx, viewer, opts, where)
    return json_response({"hosts": [listed_host_json(h, result.now) for h in result.hosts]})


@router.get("/hosts/count", responses=answers(CountAnswer, 401, 403))
async def count_hosts(ctx: Ctx, viewer: CurrentViewer, opts: ListParams,
                      where: HostFilterParams) -> Response:
    count = await host_admin.count_hosts(ctx, viewer, opts, where)
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
    f = body.filters
    filters = None if f is None else HostFilter(status=f.status, label_id=f.label_id,
                                                team_id=f.team_id)
    await host_admin.delete_hosts(ctx, viewer, ids=body.ids, filters=filters,
                                  query=f.query.strip() if f else "")
    return json_response({})


@router.post("/hosts/{host_id:int}/refetch", responses=answers(Empty, 401, 403, 404))
async def refetch_host(host_id: PathId, ctx: Ctx, viewer: CurrentViewer) -> Response:
    """Ask the host for all its details and label answers at its next check-in."""
    await host_admin.refetch_host(ctx, viewer, host_id)
    return json_response({})


@router.delete("/hosts/{host_id:int}", responses=answers(Empty, 401, 403, 404))
async def delete_host(host_id: PathId, ctx: Ctx, viewer: CurrentViewer) -> Response:
    await host_admin.delete_host(ctx, viewer, host_id)
    return json_response({})


class BuiltinLabel(BaseModel):
    id: int
    name: str
    description: str
    label_type: Literal["regular", "builtin"]


class PlatformCountObject(BaseModel, title="PlatformCount"):
    platform: str
    hosts_count: int


class HostSummaryAnswer(BaseModel, title="HostSummary"):
    team_id: int | None
    totals_hosts_count: int
    online_count: int
    offline_count: int
    mia_count: int
    missing_30_days_count: int
    new_count: int
    all_linux_count: int
    low_disk_space_count: int | None
    builtin_labels: list[BuiltinLabel]
    platforms: list[PlatformCountObject]


@router.get("/host_summary", responses=answers(HostSummaryAnswer, 401, 403))
async def host_summary(
    ctx: Ctx, viewer: CurrentViewer,
    platform: Annotated[str | None, Query(max_length=255)] = None,
    low_disk_space: Annotated[int | None, Query(ge=1, le=100)] = None,
) -> Response:
    """Host counts by status and platform; `low_disk_space` (GB) adds how many hosts have
    less space available than that; `platform=linux` counts every Linux distribution."""
    s = await host_admin.summary(ctx, viewer, platform=platform or None,
                                 low_disk_space=low_disk_space)
    return json_response({
        "team_id": None, "totals_hosts_count": s.totals_hosts_count,
        "online_count": s.online_count, "offline_count": s.offline_count,
        "mia_count": s.mia_count, "missing_30_days_count": s.mia_count,
        "new_count": s.new_count, "all_linux_count": s.all_linux_count,
        "low_disk_space_count": s.low_disk_space_count,
        "builtin_labels": [{"id": lb.id, "name": lb.name, "description": lb.description,
                            "label_type": lb.label_type} for lb in s.builtin_labels],
        "platforms": [{"platform": p.platform, "hosts_count": p.hosts_count}
                      for p in s.platforms]})


# What a report row can hold: every Host object field that is one value (not an object).
REPORT_COLUMNS = tuple(name for name, f in HostObject.model_fields.items()
                       if name not in ("issues", "mdm"))
REPORT_PAGE = 1000


def _csv_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat(timespec="seconds") + "Z"
    return "" if value is None else value


_REPORT_ANSWERS = answers(Empty, 401, 403)
_REPORT_ANSWERS[200] = {"description": "The hosts as CSV, one row per host",
                        "content": {"text/csv": {"schema": {"type": "string"}}}}


@router.get("/hosts/report", response_class=Response, responses=_REPORT_ANSWERS)
async def hosts_report(
    ctx: Ctx, viewer: CurrentViewer, opts: ListParams, where: HostFilterParams,
    format: Annotated[str, Query(max_length=16)] = "",  # noqa: A002 (Fleet's name)
    columns: Annotated[str, Query(max_length=4096)] = "",
) -> Response:
    """The listed hosts as a CSV download (`format=csv` required; `columns`: a comma list
    of Host object fields, default all), streamed a page at a time."""
    pages = await host_admin.report_pages(ctx, viewer, opts, where, REPORT_PAGE)
    if format != "csv":
        raise BadRequest("format must be csv", name="format")
    wanted = [c.strip() for c in columns.split(",") if c.strip()] or list(REPORT_COLUMNS)
    unknown = [c for c in wanted if c not in REPORT_COLUMNS]
    if unknown:
        raise BadRequest(f"unknown columns: {', '.join(unknown)}", name="columns")

    async def body() -> AsyncIterator[str]:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(wanted)
        async for page in pages:
            for values in page.hosts:
                host = listed_host_json(values, page.now)
                writer.writerow([_csv_value(host[c]) for c in wanted])
            yield out.getvalue()
            out.seek(0)
            out.truncate()
        yield out.getvalue()

    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    return StreamingResponse(body(), media_type="text/csv", headers={
        "Content-Disposition": f'attachment; filename="Hosts {stamp}.csv"'})
