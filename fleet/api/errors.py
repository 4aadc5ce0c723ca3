"""Fleet's REST error envelope and JSON responses.

Every non-2xx answer is `{"message", "errors": [{"name", "reason"}], "uuid"}`: domain errors
(`fleet.core.errors`) carry their own status; request parsing problems become 400 (malformed
or missing JSON body, bad query or path parameters, a body key the endpoint does not know)
or 422 (a body field of the wrong type, missing or out of bounds, or a value the database
refused); a duplicate key is the store's AlreadyExists (409); anything unexpected 500,
logged with its traceback and the uuid the client sees, and never described to it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleet.core.errors import FleetError, RateLimited

log = logging.getLogger("fleet.api")


class FleetJSONResponse(JSONResponse):
    """orjson rendering; naive datetimes (UTC throughout) become RFC 3339 with a `Z`."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z)


def json_response(content: Any, status_code: int = 200) -> Response:
    """Endpoints return this directly, which skips FastAPI's slow generic encoder."""
    return FleetJSONResponse(content, status_code=status_code)


def error_response(status: int, message: str, reason: str, *, name: str = "base",
                   headers: Mapping[str, str] | None = None, error_id: str = "") -> Response:
    body = {"message": message, "errors": [{"name": name, "reason": reason}],
            "uuid": error_id or str(uuid.uuid4())}
    return FleetJSONResponse(body, status_code=status, headers=headers)


async def _fleet_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FleetError)
    if isinstance(exc, RateLimited):
        text = f"limit exceeded, retry after: {exc.retry_after}s"
        return error_response(exc.status, text, text, name=exc.name,
                              headers={"Retry-After": str(exc.retry_after)})
    return error_response(exc.status, exc.message, exc.reason, name=exc.name)


def _field(loc: Sequence[int | str]) -> str:
    """The innermost named field of a pydantic error location (`specs[0].name` -> `name`)."""
    names = [part for part in loc[1:] if isinstance(part, str)]
    return names[-1] if names else str(loc[-1])


async def _validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0]
    loc = tuple(first["loc"])
    if first.get("type") == "json_invalid":
        return error_response(400, "Bad request", "json decoder error")
    if loc == ("body",):
        return error_response(400, "Bad request", "Expected JSON Body")
    if first.get("type") == "extra_forbidden":
        kind = "filter key" if "filters" in loc else "key"
        return error_response(400, "Bad request", f"unknown {kind}: {loc[-1]}",
                              name=str(loc[-1]))
    if loc[0] != "body":  # query, path or header parameter
        return error_response(400, "Bad request", f"invalid {_field(loc)}: {first['msg']}",
                              name=_field(loc))
    return error_response(422, "Validation Failed", first["msg"], name=_field(loc))


async def _data_error(_request: Request, exc: Exception) -> Response:
    """The database refused a value (MySQL `Data too long`, `Incorrect string value`, out of
    range): bad input the field bounds (`fleet.api.fields`) did not catch, so 422, not 500."""
    log.warning("database refused a request value: %s", getattr(exc, "orig", exc))
    return error_response(422, "Validation Failed", "a value does not fit its database column")


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    messages = {404: "Resource Not Found", 405: "Method Not Allowed"}
    message = messages.get(exc.status_code, str(exc.detail))
    return error_response(exc.status_code, message, str(exc.detail), headers=exc.headers)


class _CatchAll:
    """Turns an unhandled exception into the 500 envelope (logged once, with the uuid)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except ClientDisconnect:
            return  # the client left (or was cut off by server.read_timeout): nobody to answer
        except Exception:
            if started:
                raise
            error_id = str(uuid.uuid4())
            log.exception("unhandled error %s on %s %s", error_id, scope.get("method"),
                          scope.get("path"))
            response = error_response(500, "Internal Server Error", "internal server error",
                                      error_id=error_id)
            await response(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(FleetError, _fleet_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(DataError, _data_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_middleware(_CatchAll)
