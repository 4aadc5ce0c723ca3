"""First-run setup (`POST /api/v1/setup`, `/api/setup`): the first admin, the org name, the
server URL and the global enroll secret. Answers 409 "setup already completed" afterwards."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from starlette.responses import Response

from fleet.api.deps import Ctx, StrictBody, rest_router
from fleet.api.errors import json_response
from fleet.api.schemas import answers
from fleet.api.users import Email, Name, UserObject, user_json
from fleet.core.authz import authorize_none
from fleet.core.errors import ValidationFailed
from fleet.service import app_config
from fleet.service.users import NewUser

router = rest_router()


class SetupAdmin(StrictBody):
    admin: bool = True
    email: Email
    name: Name
    password: str
    password_confirmation: str | None = None


class OrgInfo(StrictBody):
    org_name: str


class SetupBody(StrictBody):
    admin: SetupAdmin
    org_info: OrgInfo
    server_url: str = ""


class OrgSettings(BaseModel):
    """The org part of the app config (more keys as the app config grows)."""

    model_config = ConfigDict(extra="allow")
    org_name: str
    org_logo_url: str


class SetupAnswer(BaseModel):
    admin: UserObject
    org_info: OrgSettings
    server_url: str
    osquery_enroll_secret: str
    token: str


@router.post("/api/v1/setup", responses=answers(SetupAnswer, 409, 422))
@router.post("/api/setup", responses=answers(SetupAnswer, 409, 422))
async def setup(body: SetupBody, ctx: Ctx) -> Response:
    authorize_none("setup is open until the first user exists")
    admin = body.admin
    if admin.password_confirmation is not None and admin.password_confirmation != admin.password:
        raise ValidationFailed("passwords do not match", name="password_confirmation")
    result = await app_config.setup(
        ctx, NewUser(email=admin.email, name=admin.name, password=admin.password),
        org_name=body.org_info.org_name, server_url=body.server_url)
    return json_response({
        "admin": user_json(result.admin), "org_info": result.org_info,
        "server_url": result.server_url, "osquery_enroll_secret": result.enroll_secret,
        "token": result.token})
