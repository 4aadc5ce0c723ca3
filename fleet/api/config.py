"""`GET /config` and `PATCH /config`: the app config document (`fleetctl get config`,
`apply -f` of `kind: config`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Body, Query
from pydantic import BaseModel, ConfigDict
from starlette.responses import Response

from fleet.api.deps import Ctx, CurrentViewer, rest_router
from fleet.api.errors import json_response
from fleet.api.schemas import answers
from fleet.service import app_settings as service

router = rest_router()


class AppConfigObject(BaseModel, title="AppConfig"):
    """Every section with every field (defaults filled in), then the server's read-only
    facts: `license`, `logging` (log destinations), `update_interval` (nanoseconds)."""

    model_config = ConfigDict(extra="allow")

    org_info: dict[str, Any]
    server_settings: dict[str, Any]
    host_expiry_settings: dict[str, Any]
    features: dict[str, Any]
    license: dict[str, Any]
    logging: dict[str, Any]
    update_interval: dict[str, Any]


@router.get("/config", responses=answers(AppConfigObject, 401, 403))
async def get_config(ctx: Ctx, viewer: CurrentViewer) -> Response:
    return json_response(await service.get_config(ctx, viewer))


@router.patch("/config", responses=answers(AppConfigObject, 401, 403, 422))
async def modify_config(
        ctx: Ctx, viewer: CurrentViewer,
        body: Annotated[dict[str, Any], Body(description=(
            "Sections to change, each with the fields to change (objects merge field by "
            "field; `features.additional_queries` and `features.detail_query_overrides` are "
            "replaced whole). An unknown key is a 400; a value of the wrong type, 422."))],
        dry_run: Annotated[bool, Query(description=(
            "check the change and answer the document it would make, without saving"))
        ] = False,
) -> Response:
    return json_response(await service.modify_config(ctx, viewer, body, dry_run=dry_run))
