"""Live-query target endpoints (`POST /targets`, `POST /targets/count`): what the query
page's target picker searches and counts."""

from __future__ import annotations

from pydantic import BaseModel, Field
from starlette.responses import Response

from fleet.api.deps import Ctx, CurrentViewer, StrictBody, rest_router
from fleet.api.errors import json_response
from fleet.api.fields import Id
from fleet.api.hosts import HostObject, listed_host_json
from fleet.api.labels import LabelFull, label_json
from fleet.api.schemas import answers
from fleet.core.campaigns import Totals
from fleet.service import targets as service

router = rest_router()


class Selected(StrictBody):
    hosts: list[Id] = Field(default_factory=list)
    labels: list[Id] = Field(default_factory=list)
    teams: list[Id] = Field(default_factory=list)  # no teams yet: accepted, selects nothing


class SearchBody(StrictBody):
    query: str = ""
    selected: Selected = Field(default_factory=Selected)


class CountBody(StrictBody):
    selected: Selected = Field(default_factory=Selected)
    query_id: Id | None = None  # Fleet's clients send it; the count does not depend on it


class TargetLists(BaseModel):
    hosts: list[HostObject]
    labels: list[LabelFull]
    teams: list[dict[str, object]]


class CountAnswer(BaseModel):
    targets_count: int
    targets_online: int
    targets_offline: int


class SearchAnswer(CountAnswer):
    targets: TargetLists
    targets_missing_in_action: int


def _counts(totals: Totals) -> dict[str, int]:
    return {"targets_count": totals.count, "targets_online": totals.online,
            "targets_offline": totals.offline}


@router.post("/targets", responses=answers(SearchAnswer, 401, 403, 422))
async def search_targets(body: SearchBody, ctx: Ctx, viewer: CurrentViewer) -> Response:
    """Hosts and labels matching `query` (not yet selected), and the selection's counts."""
    found = await service.search_targets(ctx, viewer, body.query.strip(),
                                         body.selected.hosts, body.selected.labels)
    return json_response({
        "targets": {"hosts": [listed_host_json(h, found.now) for h in found.hosts],
                    "labels": [label_json(lbl) for lbl in found.labels], "teams": []},
        **_counts(found.totals), "targets_missing_in_action": found.totals.missing_in_action})


@router.post("/targets/count", responses=answers(CountAnswer, 401, 403, 422))
async def count_targets(body: CountBody, ctx: Ctx, viewer: CurrentViewer) -> Response:
    """How many hosts the selection targets, online and offline."""
    totals = await service.count_targets(ctx, viewer, body.selected.hosts,
                                         body.selected.labels)
    return json_response(_counts(totals))
