"""What the REST routers share: their route class (Fleet's request conventions), strict
request bodies, the service context, the authenticated viewer (`Authorization: Bearer
<token>`) and Fleet's list parameters."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, MutableMapping
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, params
from fastapi.dependencies.utils import get_flat_params
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, field_validator
from starlette.responses import Response

from fleet.api.fields import PAGE_MAX
from fleet.core.authz import Viewer
from fleet.core.errors import AuthenticationFailed, BadRequest, PermissionDenied
from fleet.service.context import ServiceContext
from fleet.service.sessions import PASSWORD_RESET_REQUIRED, authenticate
from fleet.store.host_search import ListOptions

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


class FleetRoute(APIRoute):
    """Fleet's request conventions FastAPI lacks: the body is JSON whatever its Content-Type
    (Fleet decodes it regardless, so `curl -d '{...}'` works), and a query parameter the
    endpoint does not take is a 400 naming it instead of being silently ignored."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
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


def bearer_token(request: Request) -> str:
    """The token of an `Authorization: Bearer` header, or "" if there is none."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


async def authenticated_viewer(request: Request, ctx: Ctx) -> Viewer:
    token = bearer_token(request)
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
