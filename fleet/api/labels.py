"""Labels REST endpoints (`/labels...`, a host's manual labels under `/hosts/{id}/labels`)
and their fleetctl specs (`/spec/labels...`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel
from starlette.responses import Response

from fleet.api.deps import Ctx, CurrentViewer, ListParams, StrictBody, rest_router
from fleet.api.errors import json_response
from fleet.api.fields import PathId, fits
from fleet.api.hosts import HostsAnswer, LabelObject, ListFilterParams, listed_host_json
from fleet.api.hosts import label_json as host_label_json
from fleet.api.schemas import Empty, answers
from fleet.core.labels import Label
from fleet.service import labels as service
from fleet.store.schema import labels

router = rest_router()

Name = Annotated[str, fits(labels.c.name)]
Platform = Annotated[str, fits(labels.c.platform)]
Identifier = Annotated[str, fits(labels.c.name)]  # every host identifier is a VARCHAR(255)


class LabelFull(LabelObject, title="LabelWithCount"):
    """Fleet's Label object, with its host count."""

    host_count: int
    count: int
    host_ids: list[int] | None


class LabelAnswer(BaseModel):
    label: LabelFull


class LabelsAnswer(BaseModel):
    labels: list[LabelFull]


class LabelSummary(BaseModel):
    id: int
    name: str
    description: str
    label_type: Literal["regular", "builtin"]


class LabelSummaryAnswer(BaseModel):
    labels: list[LabelSummary]


class LabelSpecObject(BaseModel, title="LabelSpec"):
    id: int
    name: str
    description: str
    query: str
    platform: str
    label_type: Literal["regular", "builtin"]
    label_membership_type: Literal["dynamic", "manual"]
    hosts: list[str] | None


class LabelSpecsAnswer(BaseModel):
    specs: list[LabelSpecObject]


class LabelSpecAnswer(BaseModel):
    """One spec, under the plural key, as Fleet answers."""

    specs: LabelSpecObject


def label_json(label: Label) -> dict[str, Any]:
    """The Label object as a host's detail shows it, with its host count."""
    return {**host_label_json(label), "host_count": label.host_count,
            "count": label.host_count, "host_ids": None}


def spec_json(label: Label, hostnames: list[str]) -> dict[str, Any]:
    return {"id": label.id, "name": label.name, "description": label.description,
            "query": label.query, "platform": label.platform, "label_type": label.label_type,
            "label_membership_type": label.label_membership_type,
            "hosts": hostnames if label.label_membership_type == "manual" else None}


class CreateLabelBody(StrictBody):
    name: Name
    description: str = ""
    query: str = ""
    platform: Platform = ""
    hosts: list[Identifier] | None = None


class ModifyLabelBody(StrictBody):
    """Name, description and (manual labels) hosts; `query` and `platform` are accepted
    only to be refused by name (they are immutable)."""

    name: Name | None = None
    description: str | None = None
    hosts: list[Identifier] | None = None
    query: str | None = None
    platform: Platform | None = None


class LabelSpec(StrictBody):
    name: Name
    description: str = ""
    query: str = ""
    platform: Platform = ""
    label_membership_type: Literal["dynamic", "manual"] | None = None
    label_type: Literal["regular", "builtin"] | None = None
    hosts: list[Identifier] | None = None
    id: int | None = None  # what `get` prints; ignored


class LabelSpecsBody(StrictBody):
    specs: list[LabelSpec]


class HostLabelsBody(StrictBody):
    labels: list[Name]


@router.get("/labels", responses=answers(LabelsAnswer, 401, 403))
async def list_labels(ctx: Ctx, viewer: CurrentViewer, opts: ListParams) -> Response:
    found = await service.list_labels(ctx, viewer, opts)
    return json_response({"labels": [label_json(lbl) for lbl in found]})


@router.get("/labels/summary", responses=answers(LabelSummaryAnswer, 401, 403))
async def labels_summary(ctx: Ctx, viewer: CurrentViewer) -> Response:
    found = await service.list_labels(ctx, viewer, service.ListOptions())
    return json_response({"labels": [
        {"id": lbl.id, "name": lbl.name, "description": lbl.description,
         "label_type": lbl.label_type} for lbl in found]})


@router.get("/labels/{label_id:int}", responses=answers(LabelAnswer, 401, 403, 404))
async def get_label(label_id: PathId, ctx: Ctx, viewer: CurrentViewer) -> Response:
    return json_response({"label": label_json(await service.get_label(ctx, viewer, label_id))})


@router.get("/labels/{label_id:int}/hosts", responses=answers(HostsAnswer, 401, 403, 404))
async def label_hosts(label_id: PathId, ctx: Ctx, viewer: CurrentViewer, opts: ListParams,
                      where: ListFilterParams) -> Response:
    """The label's hosts, with the host list's paging, ordering and filters."""
    result = await service.label_hosts(ctx, viewer, label_id, opts, where)
    return json_response({"hosts": [listed_host_json(h, result.now) for h in result.hosts]})


@router.post("/labels", responses=answers(LabelAnswer, 401, 403, 409, 422))
async def create_label(body: CreateLabelBody, ctx: Ctx, viewer: CurrentViewer) -> Response:
    label = await service.create_label(ctx, viewer, body.model_dump(exclude={"hosts"}),
                                       body.hosts)
    return json_response({"label": label_json(label)})


@router.patch("/labels/{label_id:int}",
              responses=answers(LabelAnswer, 401, 403, 404, 409, 422))
async def modify_label(label_id: PathId, body: ModifyLabelBody, ctx: Ctx,
                       viewer: CurrentViewer) -> Response:
    fields = body.model_dump(exclude_unset=True, exclude={"hosts"})
    label = await service.modify_label(ctx, viewer, label_id,
                                       {k: v for k, v in fields.items() if v is not None},
                                       body.hosts)
    return json_response({"label": label_json(label)})


@router.delete("/labels/id/{label_id:int}", responses=answers(Empty, 401, 403, 404, 422))
async def delete_label_by_id(label_id: PathId, ctx: Ctx, viewer: CurrentViewer) -> Response:
    await service.delete_label(ctx, viewer, label_id=label_id)
    return json_response({})


@router.delete("/labels/{name:path}", responses=answers(Empty, 401, 403, 404, 422))
async def delete_label_by_name(name: str, ctx: Ctx, viewer: CurrentViewer) -> Response:
    await service.delete_label(ctx, viewer, name=name)
    return json_response({})


@router.post("/hosts/{host_id:int}/labels", responses=answers(Empty, 401, 403, 404, 422))
async def add_host_labels(host_id: PathId, body: HostLabelsBody, ctx: Ctx,
                          viewer: CurrentViewer) -> Response:
    await service.change_host_labels(ctx, viewer, host_id, body.labels, add=True)
    return json_response({})


@router.delete("/hosts/{host_id:int}/labels", responses=answers(Empty, 401, 403, 404, 422))
async def remove_host_labels(host_id: PathId, body: HostLabelsBody, ctx: Ctx,
                             viewer: CurrentViewer) -> Response:
    await service.change_host_labels(ctx, viewer, host_id, body.labels, add=False)
    return json_response({})


@router.get("/spec/labels", responses=answers(LabelSpecsAnswer, 401, 403))
async def get_label_specs(ctx: Ctx, viewer: CurrentViewer) -> Response:
    found = await service.label_specs(ctx, viewer)
    return json_response({"specs": [spec_json(lbl, hosts) for lbl, hosts in found]})


@router.get("/spec/labels/{name:path}", responses=answers(LabelSpecAnswer, 401, 403, 404))
async def get_label_spec(name: str, ctx: Ctx, viewer: CurrentViewer) -> Response:
    label, hosts = await service.label_spec(ctx, viewer, name)
    return json_response({"specs": spec_json(label, hosts)})


@router.post("/spec/labels", responses=answers(Empty, 401, 403, 422))
async def apply_label_specs(body: LabelSpecsBody, ctx: Ctx, viewer: CurrentViewer) -> Response:
    await service.apply_label_specs(ctx, viewer,
                                    [s.model_dump(exclude={"id"}) for s in body.specs])
    return json_response({})
