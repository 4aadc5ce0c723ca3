"""`POST /trigger?name=<schedule>`: run a named schedule now (`fleetctl trigger`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import Query, Request
from starlette.responses import Response

from fleet.api.deps import Ctx, CurrentViewer, rest_router
from fleet.api.errors import json_response
from fleet.api.schemas import Empty, answers
from fleet.service import schedules as service

router = rest_router()


def _schedule_names(request: Request) -> Sequence[str]:
    """The schedules `fleet.server` registered on this app."""
    names: Sequence[str] = getattr(request.app.state, "schedule_names", ())
    return names


@router.post("/trigger", responses=answers(Empty, 401, 403, 404, 409))
async def trigger(request: Request, ctx: Ctx, viewer: CurrentViewer,
                  name: Annotated[str, Query()] = "") -> Response:
    await service.trigger(ctx, viewer, name, _schedule_names(request))
    return json_response({})
