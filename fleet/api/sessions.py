"""Login, logout and "who am I" (`/login`, `/logout`, `/me`)."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from pydantic import BaseModel
from starlette.responses import Response

from fleet.api import health
from fleet.api.deps import AnyViewer, Ctx, CurrentViewer, StrictBody, rest_router
from fleet.api.errors import json_response
from fleet.api.schemas import Empty, answers
from fleet.api.users import UserObject, user_json
from fleet.core.authz import authorize_none
from fleet.service import sessions, users

router = rest_router()


class LoginBody(StrictBody):
    email: str
    password: str


class MeAnswer(BaseModel):
    user: UserObject
    available_teams: list[dict[str, Any]]


class LoginAnswer(MeAnswer):
    token: str


class VersionAnswer(BaseModel):
    """Build information (`python_version` where Fleet has `go_version`, which stays "")."""

    version: str
    branch: str
    revision: str
    go_version: str
    python_version: str
    build_date: str
    build_user: str


@router.post("/login", responses=answers(LoginAnswer, 401, 422, 429, 503))
async def login(body: LoginBody, request: Request, ctx: Ctx) -> Response:
    authorize_none("logging in is how one gets a token")
    # The peer address, not X-Forwarded-For: a header anyone can set would let a client pick
    # a fresh bucket for every attempt.
    client_ip = request.client.host if request.client else ""
    user, token = await sessions.login(ctx, body.email, body.password, client_ip=client_ip)
    return json_response({"user": user_json(user), "token": token, "available_teams": []})


@router.post("/logout", responses=answers(Empty, 401))
async def logout(ctx: Ctx, viewer: AnyViewer) -> Response:
    authorize_none("anyone may end their own session")
    await sessions.logout(ctx, viewer)
    return json_response({})


@router.get("/me", responses=answers(MeAnswer, 401))
async def me(ctx: Ctx, viewer: AnyViewer) -> Response:
    user = await users.get_user(ctx, viewer, viewer.user_id)
    return json_response({"user": user_json(user), "available_teams": []})


@router.get("/version", responses=answers(VersionAnswer, 401, 403))
async def version(viewer: CurrentViewer) -> Response:
    """`/version`'s build information for authenticated clients, as Fleet's API serves it."""
    authorize_none("any signed-in user may read the build information")
    return await health.version()
