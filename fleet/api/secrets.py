"""Global enroll secrets as a fleetctl spec (`/spec/enroll_secret`)."""

from __future__ import annotations

from typing import Annotated

from starlette.responses import Response

from fleet.api.deps import Ctx, CurrentViewer, StrictBody, rest_router
from fleet.api.errors import json_response
from fleet.api.fields import fits
from fleet.service import secrets as service
from fleet.store.schema import enroll_secrets

router = rest_router()



class SecretItem(StrictBody):
    secret: Annotated[str, fits(enroll_secrets.c.secret)]


class SecretsSpec(StrictBody):
    secrets: list[SecretItem]


class ApplySecretsBody(StrictBody):
    spec: SecretsSpec


@router.get("/spec/enroll_secret")
async def get_enroll_secret_spec(ctx: Ctx, viewer: CurrentViewer) -> Response:
    found = await service.get_global_secrets(ctx, viewer)
    secrets = [{"secret": s.secret, "created_at": s.created_at, "team_id": s.team_id}
               for s in found]
    return json_response({"spec": {"secrets": secrets}})


@router.post("/spec/enroll_secret")
async def apply_enroll_secret_spec(body: ApplySecretsBody, ctx: Ctx,
                                   viewer: CurrentViewer) -> Response:
    await service.apply_global_secrets(ctx, viewer, [s.secret for s in body.spec.secrets])
    return json_response({})
