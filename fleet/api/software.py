"""Software REST endpoints (`/software/versions`, `/software/titles`, each + `/{id}`) and
the software entries of a host's detail, in Fleet's shapes. There is no vulnerability
scanning: `vulnerabilities` is always an empty list and `generated_cpe` empty."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel
from starlette.responses import Response

from fleet.api.deps import Ctx, CurrentViewer, ListParams, rest_router
from fleet.api.errors import json_response
from fleet.api.fields import PathId
from fleet.api.schemas import ListMeta, answers
from fleet.core.software import HostSoftware, Software, SoftwarePage, SoftwareTitle
from fleet.service import software as service

router = rest_router()


class SoftwareObject(BaseModel, title="Software"):
    id: int
    name: str
    version: str
    source: str
    browser: str
    bundle_identifier: str
    release: str
    vendor: str
    arch: str
    extension_id: str
    generated_cpe: str
    vulnerabilities: list[Any]
    hosts_count: int


class HostSoftwareObject(BaseModel, title="HostSoftware"):
    id: int
    name: str
    version: str
    source: str
    browser: str
    bundle_identifier: str
    generated_cpe: str
    vulnerabilities: list[Any]
    installed_paths: list[str]
    last_opened_at: dt.datetime | None


class TitleVersionObject(BaseModel):
    id: int
    version: str
    vulnerabilities: list[Any]
    hosts_count: int


class SoftwareTitleObject(BaseModel, title="SoftwareTitle"):
    id: int
    name: str
    source: str
    browser: str
    bundle_identifier: str
    software_package: None
    app_store_app: None
    versions_count: int
    hosts_count: int
    versions: list[TitleVersionObject]


class VersionsAnswer(BaseModel):
    counts_updated_at: dt.datetime | None
    count: int
    software: list[SoftwareObject]
    meta: ListMeta


class VersionAnswer(BaseModel):
    software: SoftwareObject


class TitlesAnswer(BaseModel):
    counts_updated_at: dt.datetime | None
    count: int
    software_titles: list[SoftwareTitleObject]
    meta: ListMeta


class TitleAnswer(BaseModel):
    software_title: SoftwareTitleObject


def software_json(s: Software) -> dict[str, Any]:
    return {"id": s.id, "name": s.name, "version": s.version, "source": s.source,
            "browser": s.browser, "bundle_identifier": s.bundle_identifier,
            "release": s.release, "vendor": s.vendor, "arch": s.arch,
            "extension_id": s.extension_id, "generated_cpe": "", "vulnerabilities": [],
            "hosts_count": s.hosts_count}


def host_software_json(item: HostSoftware) -> dict[str, Any]:
    """An entry of a host detail's `software`."""
    s = item.software
    return {"id": s.id, "name": s.name, "version": s.version, "source": s.source,
            "browser": s.browser, "bundle_identifier": s.bundle_identifier,
            "generated_cpe": "", "vulnerabilities": [],
            "installed_paths": list(item.installed_paths),
            "last_opened_at": item.last_opened_at}


def title_json(t: SoftwareTitle) -> dict[str, Any]:
    return {"id": t.id, "name": t.name, "source": t.source, "browser": t.browser,
            "bundle_identifier": t.bundle_identifier, "software_package": None,
            "app_store_app": None, "versions_count": len(t.versions),
            "hosts_count": t.hosts_count,
            "versions": [{"id": v.id, "version": v.version, "vulnerabilities": [],
                          "hosts_count": v.hosts_count} for v in t.versions]}


def _list(page: SoftwarePage, key: str, item_json: Any) -> Response:
    return json_response({
        "counts_updated_at": page.counts_updated_at, "count": page.count,
        key: [item_json(i) for i in page.items],
        "meta": {"has_next_results": page.has_next, "has_previous_results": page.has_previous}})


@router.get("/software/versions", responses=answers(VersionsAnswer, 400, 401, 403))
async def list_versions(ctx: Ctx, viewer: CurrentViewer, opts: ListParams) -> Response:
    """Software versions installed on at least one host; `order_key` is `name` or
    `hosts_count` (default `hosts_count` descending); `query` matches name or version."""
    return _list(await service.list_versions(ctx, viewer, opts), "software", software_json)


@router.get("/software/versions/{software_id:int}",
            responses=answers(VersionAnswer, 401, 403, 404))
async def get_version(software_id: PathId, ctx: Ctx, viewer: CurrentViewer) -> Response:
    found, _ = await service.get_version(ctx, viewer, software_id)
    return json_response({"software": software_json(found)})


@router.get("/software/titles", responses=answers(TitlesAnswer, 400, 401, 403))
async def list_titles(ctx: Ctx, viewer: CurrentViewer, opts: ListParams) -> Response:
    """Software titles (a name across its versions) with their versions; ordering and
    `query` as for versions."""
    return _list(await service.list_titles(ctx, viewer, opts), "software_titles", title_json)


@router.get("/software/titles/{title_id:int}", responses=answers(TitleAnswer, 401, 403, 404))
async def get_title(title_id: PathId, ctx: Ctx, viewer: CurrentViewer) -> Response:
    found, counted = await service.get_title(ctx, viewer, title_id)
    return json_response({"software_title": {**title_json(found),
                                             "counts_updated_at": counted}})
