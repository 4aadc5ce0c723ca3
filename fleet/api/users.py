"""Users REST endpoints (`/users`, `/users/admin`) and the Fleet User JSON object."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import BaseModel, Field
from starlette.responses import Response

from fleet.api.deps import AnyViewer, Ctx, CurrentViewer, ListParams, StrictBody, rest_router
from fleet.api.errors import json_response
from fleet.api.fields import PathId, fits
from fleet.api.schemas import Empty, answers
from fleet.core.authz import Role, authorize_none
from fleet.core.users import User
from fleet.service import users as service
from fleet.store.schema import users

router = rest_router()

# Bodies are strict (no "1" for 1, no "yes" for true), but an enum arrives as its JSON string.
RoleName = Annotated[Role, Field(strict=False)]


class UserObject(BaseModel, title="User"):
    """Fleet's User object (`teams` stays empty until teams exist)."""

    id: int
    created_at: dt.datetime
    updated_at: dt.datetime
    name: str
    email: str
    enabled: bool
    force_password_reset: bool
    gravatar_url: str
    sso_enabled: bool
    mfa_enabled: bool
    global_role: Role | None
    api_only: bool
    teams: list[dict[str, Any]]
    position: str


class UserAnswer(BaseModel):
    user: UserObject


class CreatedUserAnswer(UserAnswer):
    token: str | None = Field(None, description="only for an API-only user: its token")


class UsersAnswer(BaseModel):
    users: list[UserObject]


def user_json(user: User) -> dict[str, Any]:
    """Fleet's User object."""
    return {
        "id": user.id, "created_at": user.created_at, "updated_at": user.updated_at,
        "name": user.name, "email": user.email, "enabled": user.enabled,
        "force_password_reset": user.force_password_reset, "gravatar_url": "",
        "sso_enabled": user.sso_enabled, "mfa_enabled": False,
        "global_role": user.global_role, "api_only": user.api_only, "teams": [],
        "position": user.position,
    }


Email = Annotated[str, fits(users.c.email)]
Name = Annotated[str, fits(users.c.name)]
Position = Annotated[str, fits(users.c.position)]


class CreateUserBody(StrictBody):
    email: Email
    name: Name
    password: str | None = None
    global_role: RoleName = Role.OBSERVER
    api_only: bool = False
    admin_forced_password_reset: bool | None = None
    sso_enabled: bool = False
    position: Position = ""


class ModifyUserBody(StrictBody):
    name: Name | None = None
    email: Email | None = None
    position: Position | None = None
    global_role: RoleName | None = None
    new_password: str | None = None
    password: str | None = None


@router.post("/users/admin", responses=answers(CreatedUserAnswer, 401, 403, 409, 422))
async def create_user(body: CreateUserBody, ctx: Ctx, viewer: CurrentViewer) -> Response:
    # Fleet forces a reset on first login by default, never for API-only or SSO users.
    forced = body.admin_forced_password_reset
    if forced is None:
        forced = not (body.api_only or body.sso_enabled)
    new = service.NewUser(
        email=body.email, name=body.name, password=body.password, global_role=body.global_role,
        api_only=body.api_only, force_password_reset=forced, sso_enabled=body.sso_enabled,
        position=body.position)
    user, token = await service.create_user(ctx, viewer, new)
    content: dict[str, Any] = {"user": user_json(user)}
    if token is not None:
        content["token"] = token
    return json_response(content)


@router.get("/users", responses=answers(UsersAnswer, 401, 403))
async def list_users(ctx: Ctx, viewer: CurrentViewer, opts: ListParams) -> Response:
    users = await service.list_users(ctx, viewer, opts)
    return json_response({"users": [user_json(user) for user in users]})


@router.get("/users/{user_id:int}", responses=answers(UserAnswer, 401, 403, 404))
async def get_user(user_id: PathId, ctx: Ctx, viewer: CurrentViewer) -> Response:
    return json_response({"user": user_json(await service.get_user(ctx, viewer, user_id))})


@router.patch("/users/{user_id:int}",
              responses=answers(UserAnswer, 401, 403, 404, 409, 422))
async def modify_user(user_id: PathId, body: ModifyUserBody, ctx: Ctx,
                      viewer: CurrentViewer) -> Response:
    changes = service.UserChanges(**body.model_dump())
    user = await service.modify_user(ctx, viewer, user_id, changes)
    return json_response({"user": user_json(user)})


@router.delete("/users/{user_id:int}", responses=answers(Empty, 401, 403, 404, 422))
async def delete_user(user_id: PathId, ctx: Ctx, viewer: CurrentViewer) -> Response:
    await service.delete_user(ctx, viewer, user_id)
    return json_response({})


class RequireResetBody(StrictBody):
    require: bool


@router.post("/users/{user_id:int}/require_password_reset",
             responses=answers(UserAnswer, 401, 403, 404, 422))
async def require_password_reset(user_id: PathId, body: RequireResetBody, ctx: Ctx,
                                 viewer: CurrentViewer) -> Response:
    user = await service.require_password_reset(ctx, viewer, user_id, body.require)
    return json_response({"user": user_json(user)})


class PerformResetBody(StrictBody):
    new_password: str


@router.post("/perform_required_password_reset",
             responses=answers(UserAnswer, 401, 422))
async def perform_required_password_reset(body: PerformResetBody, ctx: Ctx,
                                          viewer: AnyViewer) -> Response:
    authorize_none("users set the new password an admin required of them")
    user = await service.perform_required_password_reset(ctx, viewer, body.new_password)
    return json_response({"user": user_json(user)})
