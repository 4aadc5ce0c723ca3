"""Live-query REST endpoints: start campaigns, and the synchronous single-call variants."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, Field
from starlette.responses import Response

from fleet.api.deps import Ctx, CurrentViewer, StrictBody, rest_router
from fleet.api.errors import json_response
from fleet.api.fields import Id, PathId
from fleet.api.schemas import answers
from fleet.core.campaigns import Campaign, Totals
from fleet.service import campaigns

router = rest_router(tags=["live queries"])


class Selected(StrictBody):
    hosts: list[Id] = Field(default_factory=list)
    labels: list[Id] = Field(default_factory=list)
    teams: list[Id] = Field(default_factory=list)


class RunRequest(StrictBody):
    query: str | None = None
    query_id: Id | None = None
    selected: Selected = Field(default_factory=Selected)


class SelectedByIdentifiers(StrictBody):
    hosts: list[str] = Field(default_factory=list)
    labels: list[str] = Field(default_factory=list)


class RunByIdentifiersRequest(StrictBody):
    query: str | None = None
    query_id: Id | None = None
    selected: SelectedByIdentifiers = Field(default_factory=SelectedByIdentifiers)


class CampaignMetrics(BaseModel):
    TotalHosts: int
    OnlineHosts: int
    OfflineHosts: int
    MissingInActionHosts: int
    NewHosts: int


class CampaignObject(BaseModel, title="DistributedQueryCampaign"):
    """Fleet's DistributedQueryCampaign; results arrive on the results websocket."""

    id: int
    query_id: int
    status: int
    user_id: int
    created_at: dt.datetime
    updated_at: dt.datetime
    Metrics: CampaignMetrics


class CampaignAnswer(BaseModel):
    campaign: CampaignObject


class HostQueryAnswer(BaseModel):
    host_id: int
    query: str
    status: Literal["online", "offline"]  # an offline host is not asked
    error: str | None
    rows: list[dict[str, Any]]


class HostResult(BaseModel):
    host_id: int
    rows: list[dict[str, Any]]
    error: str | None


class SavedQueryRunAnswer(BaseModel):
    query_id: int
    targeted_host_count: int
    responded_host_count: int
    results: list[HostResult]


def campaign_json(campaign: Campaign, totals: Totals) -> dict[str, Any]:
    """Fleet's DistributedQueryCampaign object (its `Metrics` in Go's field names)."""
    stamp = campaign.created_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "id": campaign.id, "query_id": campaign.query_id, "status": campaign.status,
        "user_id": campaign.user_id, "created_at": stamp, "updated_at": stamp,
        "Metrics": {"TotalHosts": totals.count, "OnlineHosts": totals.online,
                    "OfflineHosts": totals.offline,
                    "MissingInActionHosts": totals.missing_in_action, "NewHosts": 0},
    }


async def _campaign_answer(ctx: Ctx, campaign: Campaign) -> Response:
    totals = await campaigns.totals(ctx, campaign.id)
    return json_response({"campaign": campaign_json(campaign, totals)})


# A campaign without a target is a 400, an unknown host, label or saved query a 404.
CAMPAIGN_ANSWERS = answers(CampaignAnswer, 401, 403, 404, 422)


@router.post("/queries/run", responses=CAMPAIGN_ANSWERS)
async def run_query(body: RunRequest, ctx: Ctx, viewer: CurrentViewer) -> Response:
    campaign = await campaigns.create(
        ctx, viewer, sql=body.query, query_id=body.query_id,
        host_ids=body.selected.hosts, label_ids=body.selected.labels)
    return await _campaign_answer(ctx, campaign)


@router.post("/queries/run_by_identifiers", responses=CAMPAIGN_ANSWERS)
@router.post("/queries/run_by_names", responses=CAMPAIGN_ANSWERS)
async def run_query_by_identifiers(body: RunByIdentifiersRequest, ctx: Ctx,
                                   viewer: CurrentViewer) -> Response:
    campaign = await campaigns.create_by_identifiers(
        ctx, viewer, sql=body.query, query_id=body.query_id,
        hosts=body.selected.hosts, labels=body.selected.labels)
    return await _campaign_answer(ctx, campaign)


class HostQueryRequest(StrictBody):
    query: str


@router.post("/hosts/{host_id:int}/query",
             responses=answers(HostQueryAnswer, 401, 403, 404, 422))
async def run_host_query(host_id: PathId, body: HostQueryRequest, ctx: Ctx,
                         viewer: CurrentViewer) -> Response:
    """Run SQL on one host and wait for its answer (offline hosts answer at once)."""
    answer = await campaigns.run_on_host(ctx, viewer, host_id, body.query,
                                         ctx.cfg.live_query_rest_period)
    return json_response({"host_id": host_id, "query": body.query, "status": answer.status,
                          "error": answer.error, "rows": answer.rows})


class SavedQueryRunRequest(StrictBody):
    host_ids: list[Id]


@router.post("/queries/{query_id:int}/run",
             responses=answers(SavedQueryRunAnswer, 401, 403, 404, 422))
async def run_saved_query(query_id: PathId, body: SavedQueryRunRequest, ctx: Ctx,
                          viewer: CurrentViewer) -> Response:
    campaign, results = await campaigns.run_sync(
        ctx, viewer, sql=None, query_id=query_id, host_ids=body.host_ids,
        wait_seconds=ctx.cfg.live_query_rest_period)
    return json_response({
        "query_id": query_id,
        "targeted_host_count": len(campaign.host_ids),
        "responded_host_count": len(results),
        "results": [{"host_id": a.host_id, "rows": a.rows, "error": a.error}
                    for a in results.values()],
    })
