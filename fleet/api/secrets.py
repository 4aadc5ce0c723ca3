"""Global enroll secrets as a fleetctl spec (`/spec/enroll_secret`)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import BaseModel
from starlette.responses import Response

from fleet.api.deps import Ctx, CurrentViewer, StrictBody, rest_router
from fleet.api.errors import json_response
from fleet.api.fields import fits
from fleet.api.schemas import Empty, answers
from fleet.service import secrets as service
from fleet.store.schema import enroll_secrets

router = rest_router()


class SecretItem(StrictBody):
    secret: Annotated[str, fits(enroll_secrets.c.secret)]


class SecretsSpec(StrictBody):
    secrets: list[SecretItem]


class ApplySecretsBody(StrictBody):
    spec: SecretsSpec


class EnrollSecret(BaseModel):
    secret: str
    created_at: dt.datetime
    team_id: int | None


class EnrollSecrets(BaseModel):
    secrets: list[EnrollSecret]


class EnrollSecretSpecAnswer(BaseModel):
    spec: EnrollSecrets


@router.get("/spec/enroll_secret", responses=answers(EnrollSecretSpecAnswer, 401, 403))
async def get_enroll_secret_spec(ctx: Ctx, viewer: CurrentViewer) -> Response:
    found = await service.get_global_secrets(ctx, viewer)
    secrets = [{"secret": s.secret, "created_at": s.created_at, "team_id": s.team_id}
               for s in found]
    return json_response({"spec": {"secrets": secrets}})


@router.post("/spec/enroll_secret", responses=answers(Empty, 401, 403, 409, 422))
async def apply_enroll_secret_spec(body: ApplySecretsBody, ctx: Ctx,
                                   viewer: CurrentViewer) -> Response:
    await service.apply_global_secrets(ctx, viewer, [s.secret for s in body.spec.secrets])
    return json_response({})
