"""Login, logout and "who am I" (`/login`, `/logout`, `/me`)."""

from __future__ import annotations

from fastapi import Request
from starlette.responses import Response

from fleet.api import health
from fleet.api.deps import AnyViewer, Ctx, CurrentViewer, StrictBody, rest_router
from fleet.api.errors import json_response
from fleet.api.users import user_json
from fleet.core.authz import authorize_none
from fleet.service import sessions, users

router = rest_router()


class LoginBody(StrictBody):
    email: str
    password: str


@router.post("/login")
async def login(body: LoginBody, request: Request, ctx: Ctx) -> Response:
    authorize_none("logging in is how one gets a token")
    # The peer address, not X-Forwarded-For: a header anyone can set would let a client pick
    # a fresh bucket for every attempt.
    client_ip = request.client.host if request.client else ""
    user, token = await sessions.login(ctx, body.email, body.password, client_ip=client_ip)
    return json_response({"user": user_json(user), "token": token, "available_teams": []})


@router.post("/logout")
async def logout(ctx: Ctx, viewer: AnyViewer) -> Response:
    authorize_none("anyone may end their own session")
    await sessions.logout(ctx, viewer)
    return json_response({})


@router.get("/me")
async def me(ctx: Ctx, viewer: AnyViewer) -> Response:
    user = await users.get_user(ctx, viewer, viewer.user_id)
    return json_response({"user": user_json(user), "available_teams": []})


@router.get("/version")
async def version(viewer: CurrentViewer) -> Response:
    """`/version`'s build information for authenticated clients, as Fleet's API serves it."""
    authorize_none("any signed-in user may read the build information")
    return await health.version()
