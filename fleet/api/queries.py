"""Saved-query REST endpoints (`/queries...`) and their fleetctl specs (`/spec/queries...`)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import BaseModel
from starlette.responses import Response

from fleet.api.deps import Ctx, CurrentViewer, ListParams, StrictBody, rest_router
from fleet.api.errors import json_response
from fleet.api.fields import Id, PathId, fits
from fleet.api.schemas import Empty, ListMeta, answers
from fleet.core.queries import Query
from fleet.service import queries as service
from fleet.store.schema import queries

router = rest_router()


class QueryCommon(BaseModel):
    """The fields queries and query specs share."""

    name: str
    description: str
    query: str
    interval: int
    observer_can_run: bool
    automations_enabled: bool
    platform: str
    min_osquery_version: str
    logging: str
    discard_data: bool


class QueryObject(QueryCommon, title="Query"):
    """Fleet's Query object (no packs or stats yet)."""

    id: int
    created_at: dt.datetime
    updated_at: dt.datetime
    team_id: int | None
    saved: bool
    author_id: int | None
    author_name: str
    author_email: str
    packs: list[dict[str, Any]]
    stats: dict[str, Any]


class QuerySpecObject(QueryCommon, title="QuerySpec"):
    """A query as fleetctl's `kind: query` spec."""

    team: str


class QueryAnswer(BaseModel):
    query: QueryObject


class QueriesAnswer(BaseModel):
    queries: list[QueryObject]
    meta: ListMeta
    count: int


class DeletedAnswer(BaseModel):
    deleted: int


class QuerySpecsAnswer(BaseModel):
    specs: list[QuerySpecObject]


class QuerySpecAnswer(BaseModel):
    """One spec, under the plural key, as Fleet answers."""

    specs: QuerySpecObject


def _common(query: Query) -> dict[str, Any]:
    """The fields queries and query specs share."""
    return {name: getattr(query, name) for name in QueryCommon.model_fields}


def query_json(query: Query) -> dict[str, Any]:
    """Fleet's Query object."""
    return {"id": query.id, "created_at": query.created_at, "updated_at": query.updated_at,
            **_common(query), "team_id": query.team_id, "saved": query.saved,
            "author_id": query.author_id, "author_name": query.author_name,
            "author_email": query.author_email, "packs": [], "stats": {}}


def spec_json(query: Query) -> dict[str, Any]:
    """A query as fleetctl's `kind: query` spec."""
    return {**_common(query), "team": ""}


Name = Annotated[str, fits(queries.c.name)]
Interval = Annotated[int, fits(queries.c.schedule_interval)]
Platform = Annotated[str, fits(queries.c.platform)]
MinVersion = Annotated[str, fits(queries.c.min_osquery_version)]


class QueryFields(StrictBody):
    """Optional fields of a query; only those sent are passed on (PATCH semantics)."""

    name: Name | None = None
    query: str | None = None
    description: str | None = None
    observer_can_run: bool | None = None
    interval: Interval | None = None
    platform: Platform | None = None
    min_osquery_version: MinVersion | None = None
    automations_enabled: bool | None = None
    logging: str | None = None
    discard_data: bool | None = None
    team_id: int | None = None

    def sent(self) -> dict[str, Any]:
        """Fields present in the request; an explicit null means "unchanged" except team_id."""
        return {k: v for k, v in self.model_dump(exclude_unset=True).items()
                if v is not None or k == "team_id"}


class CreateQueryBody(QueryFields):
    name: Name
    query: str


class QuerySpec(StrictBody):
    name: Name
    query: str
    description: str = ""
    team: str = ""
    interval: Interval = 0
    observer_can_run: bool = False
    automations_enabled: bool = False
    platform: Platform = ""
    min_osquery_version: MinVersion = ""
    logging: str = "snapshot"
    discard_data: bool = False


class QuerySpecsBody(StrictBody):
    specs: list[QuerySpec]


class DeleteQueriesBody(StrictBody):
    ids: list[Id]


@router.get("/queries", responses=answers(QueriesAnswer, 401, 403))
async def list_queries(ctx: Ctx, viewer: CurrentViewer, opts: ListParams) -> Response:
    page = await service.list_queries(ctx, viewer, opts)
    return json_response({
        "queries": [query_json(q) for q in page.queries],
        "meta": {"has_next_results": page.has_next_results,
                 "has_previous_results": page.has_previous_results},
        "count": page.count})


@router.get("/queries/{query_id:int}", responses=answers(QueryAnswer, 401, 403, 404))
async def get_query(query_id: PathId, ctx: Ctx, viewer: CurrentViewer) -> Response:
    return json_response({"query": query_json(await service.get_query(ctx, viewer, query_id))})


@router.post("/queries", responses=answers(QueryAnswer, 401, 403, 409, 422))
async def create_query(body: CreateQueryBody, ctx: Ctx, viewer: CurrentViewer) -> Response:
    query = await service.create_query(ctx, viewer, body.sent())
    return json_response({"query": query_json(query)})


@router.patch("/queries/{query_id:int}",
              responses=answers(QueryAnswer, 401, 403, 404, 409, 422))
async def modify_query(query_id: PathId, body: QueryFields, ctx: Ctx,
                       viewer: CurrentViewer) -> Response:
    query = await service.modify_query(ctx, viewer, query_id, body.sent())
    return json_response({"query": query_json(query)})


@router.post("/queries/delete", responses=answers(DeletedAnswer, 401, 403, 422))
async def delete_queries(body: DeleteQueriesBody, ctx: Ctx, viewer: CurrentViewer) -> Response:
    return json_response({"deleted": await service.delete_queries(ctx, viewer, body.ids)})


@router.delete("/queries/id/{query_id:int}", responses=answers(Empty, 401, 403, 404))
async def delete_query_by_id(query_id: PathId, ctx: Ctx, viewer: CurrentViewer) -> Response:
    await service.delete_query(ctx, viewer, query_id)
    return json_response({})


@router.delete("/queries/{name:path}", responses=answers(Empty, 401, 403, 404))
async def delete_query_by_name(name: str, ctx: Ctx, viewer: CurrentViewer) -> Response:
    await service.delete_query_by_name(ctx, viewer, name)
    return json_response({})


@router.get("/spec/queries", responses=answers(QuerySpecsAnswer, 401, 403))
async def get_query_specs(ctx: Ctx, viewer: CurrentViewer) -> Response:
    found = await service.query_specs(ctx, viewer)
    return json_response({"specs": [spec_json(q) for q in found]})


@router.get("/spec/queries/{name:path}", responses=answers(QuerySpecAnswer, 401, 403, 404))
async def get_query_spec(name: str, ctx: Ctx, viewer: CurrentViewer) -> Response:
    return json_response({"specs": spec_json(await service.query_spec(ctx, viewer, name))})


@router.post("/spec/queries", responses=answers(Empty, 401, 403, 422))
async def apply_query_specs(body: QuerySpecsBody, ctx: Ctx, viewer: CurrentViewer) -> Response:
    await service.apply_query_specs(ctx, viewer, [s.model_dump() for s in body.specs])
    return json_response({})
