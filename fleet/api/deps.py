"""What the REST routers share: their route classes (the authorization backstop and Fleet's
request conventions), strict request bodies, the service context, the authenticated viewer
(`Authorization: Bearer <token>`) and Fleet's list parameters."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, MutableMapping
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, params
from fastapi.dependencies.utils import get_flat_params
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.routing import APIRoute
from fastapi.security.base import SecurityBase
from pydantic import BaseModel, ConfigDict, field_validator
from starlette.responses import Response

from fleet.api.errors import error_response
from fleet.api.fields import PAGE_MAX
from fleet.core.authz import Viewer, track
from fleet.core.errors import AuthenticationFailed, BadRequest, FleetError, PermissionDenied
from fleet.service.context import ServiceContext
from fleet.service.sessions import PASSWORD_RESET_REQUIRED, authenticate
from fleet.store.host_search import ListOptions

log = logging.getLogger("fleet.authz")

DEFAULT_PER_PAGE = 20


class StrictBody(BaseModel):
    """Base of request bodies: JSON values must have the declared type ("1" is not 1), and a
    key the endpoint does not know is an error, never ignored (an ignored filter key would
    widen a bulk delete to every host)."""

    model_config = ConfigDict(strict=True, extra="forbid")

    @field_validator("*")
    @classmethod
    def _valid_unicode(cls, value: Any) -> Any:
        """A lone surrogate (`"\\ud800"` in JSON) is no text: the database cannot store it."""
        for item in value if isinstance(value, list) else (value,):
            if isinstance(item, str) and not item.isascii():
                try:
                    item.encode()
                except UnicodeEncodeError:
                    raise ValueError("must be valid Unicode (no lone surrogates)") from None
        return value


Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class CheckedRoute(APIRoute):
    """The authorization backstop (Fleet's authzcheck): a request whose handler reached none of
    `authorize`, `authorize_any` or `authorize_none` answers a 500, logged in one line naming
    the route, instead of what the handler produced. Refusals that come before any object is
    touched need no check: a malformed request (400, or a body FastAPI rejects), a missing or
    bad token (401) and a denial (403); server errors stay what they are."""

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()

        async def checked(request: Request) -> Response:
            with track() as check:
                try:
                    response = await handler(request)
                except Exception as exc:
                    if check.checked or not _needs_check(exc):
                        raise
                    return self._unchecked(request)
            return response if check.checked else self._unchecked(request)

        return checked

    def _unchecked(self, request: Request) -> Response:
        log.error("%s %s answered without an authorization check (endpoint %s): 500 instead",
                  request.method, request.url.path, self.name)
        return error_response(500, "Internal Server Error", "internal server error")


def _needs_check(exc: Exception) -> bool:
    if isinstance(exc, RequestValidationError):
        return False
    return isinstance(exc, FleetError) and exc.status not in (400, 401, 403) \
        and exc.status < 500


class FleetRoute(CheckedRoute):
    """Fleet's request conventions FastAPI lacks: the body is JSON whatever its Content-Type
    (Fleet decodes it regardless, so `curl -d '{...}'` works), and a query parameter the
    endpoint does not take is a 400 naming it instead of being silently ignored."""

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()
        known = frozenset(field.alias for field in get_flat_params(self.dependant)
                          if isinstance(field.field_info, params.Query))
        takes_body = self.body_field is not None

        async def handle(request: Request) -> Response:
            for key in request.query_params:
                if key not in known:
                    raise BadRequest(f"unsupported query parameter: {key}", name=key)
            if takes_body:
                _read_body_as_json(request.scope)
            return await handler(request)

        return handle


def _read_body_as_json(scope: MutableMapping[str, Any]) -> None:
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    for name, value in headers:
        if name == b"content-type" and value.startswith(b"application/json"):
            return
    scope["headers"] = [*(h for h in headers if h[0] != b"content-type"),
                        (b"content-type", b"application/json")]


def rest_router(**kwargs: Any) -> APIRouter:
    """The router every REST module uses."""
    return APIRouter(route_class=FleetRoute, **kwargs)


def get_ctx(request: Request) -> ServiceContext:
    ctx: ServiceContext = request.app.state.ctx
    return ctx


Ctx = Annotated[ServiceContext, Depends(get_ctx)]


class BearerToken(SecurityBase):
    """The token of an `Authorization: Bearer` header, or "" if there is none. A security
    scheme, so the OpenAPI document marks the routes that take a token (and the docs page
    offers to send one)."""

    def __init__(self) -> None:
        self.model = HTTPBearerModel(description="a session token from POST /login or "
                                                 "setup, or an API-only user's token")
        self.scheme_name = "bearer"

    async def __call__(self, request: Request) -> str:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" else ""


BEARER = BearerToken()


async def authenticated_viewer(token: Annotated[str, Depends(BEARER)], ctx: Ctx) -> Viewer:
    if not token:
        raise AuthenticationFailed("Authentication failed")
    return await authenticate(ctx, token)


# Any authenticated user, even one who must set a new password first (/me, /logout and
# /perform_required_password_reset).
AnyViewer = Annotated[Viewer, Depends(authenticated_viewer)]


async def current_viewer(viewer: AnyViewer) -> Viewer:
    if viewer.must_reset_password:
        raise PermissionDenied(PASSWORD_RESET_REQUIRED)
    return viewer


CurrentViewer = Annotated[Viewer, Depends(current_viewer)]


def list_options(
    page: Annotated[int | None, Query(le=PAGE_MAX)] = None,
    per_page: Annotated[int | None, Query(le=PAGE_MAX)] = None,
    order_key: Annotated[str | None, Query()] = None,
    order_direction: Annotated[Literal["asc", "desc"] | None, Query()] = None,
    query: Annotated[str, Query()] = "",
) -> ListOptions:
    """Fleet's rules: no page and no per_page lists everything; a page alone has 20 rows;
    negative pages and non-positive sizes are 400; a direction needs an order_key."""
    if page is not None and page < 0:
        raise BadRequest("page must not be negative", name="page")
    if per_page is not None and per_page <= 0:
        raise BadRequest("per_page must be positive", name="per_page")
    if order_direction is not None and not order_key:
        raise BadRequest("order_key must be specified with order_direction",
                         name="order_direction")
    if page is not None and per_page is None:
        per_page = DEFAULT_PER_PAGE
    return ListOptions(page=page or 0, per_page=per_page, order_key=order_key or None,
                       descending=order_direction == "desc", query=query.strip())


ListParams = Annotated[ListOptions, Depends(list_options)]
