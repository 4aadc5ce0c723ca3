"""What the OpenAPI document says about answers: Fleet's error envelope, `answers()` for a
route's `responses=`, and `DocumentedAPI`, the application class that serves the document.

Response models describe the JSON the serializers (`host_json`, `user_json`, ...) build;
they never produce it. A route documents them through `responses=`, which leaves the
handler's own `json_response` as it is: FastAPI neither validates nor re-encodes the
answer (`GET /hosts` with 100k hosts stays one orjson call). The REST fuzz test
(tests/integration/test_rest_fuzz.py) checks every answer against what is documented here:
its status must be listed and its JSON must match, with no undocumented field.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

Responses = dict[int | str, dict[str, Any]]


class ErrorDetail(BaseModel):
    name: str
    reason: str


class ErrorEnvelope(BaseModel):
    """Every non-2xx answer (fleet/api/errors.py); `uuid` is also in the server's log."""

    message: str
    errors: list[ErrorDetail]
    uuid: str


class Empty(BaseModel):
    """`{}`: what a change that returns nothing answers."""


# Why a route answers each status; every REST route can answer 400 (an unknown query
# parameter, a malformed value) and 500.
STATUSES = {
    400: "Bad request: malformed JSON, an unknown key or query parameter, a bad parameter",
    401: "Authentication failed: no token, an expired or unknown one (or, at login, "
         "wrong credentials)",
    403: "Permission denied: the role may not do this, or the user must reset their "
         "password first",
    404: "Resource not found",
    409: "Conflict: the name or email is taken, or the request conflicts with the state",
    422: "Validation failed: a body field is missing, of the wrong type, out of bounds or "
         "refused",
    429: "Too many requests: retry after the number of seconds in Retry-After",
    500: "Internal server error (logged with the uuid of the answer)",
    503: "Service unavailable: a backend the request needs does not answer",
}


class ListMeta(BaseModel):
    """Fleet's `meta` of a paged list."""

    has_next_results: bool
    has_previous_results: bool


def answers(body: type[BaseModel], *errors: int) -> Responses:
    """`responses=` of a route answering `body` (200) or one of `errors` (with 400 and
    500, which every route can answer) in Fleet's error envelope."""
    return {200: {"model": body},
            **{status: {"model": ErrorEnvelope, "description": STATUSES[status]}
               for status in sorted({400, *errors, 500})}}


# The error document FastAPI adds to every route with parameters: Fleet never answers it
# (fleet/api/errors.py turns validation errors into the envelope).
_FASTAPI_422 = "#/components/schemas/HTTPValidationError"


class DocumentedAPI(FastAPI):
    """FastAPI whose document lists only the answers Fleet gives: FastAPI's own 422 is
    dropped from routes that do not document one of Fleet's."""

    def openapi(self) -> dict[str, Any]:
        doc = super().openapi()
        for operations in doc["paths"].values():
            for operation in operations.values():
                responses = operation.get("responses", {})
                schema = responses.get("422", {}).get("content", {}) \
                    .get("application/json", {}).get("schema", {})
                if schema.get("$ref") == _FASTAPI_422:
                    del responses["422"]
        schemas = doc.get("components", {}).get("schemas", {})
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        return doc
