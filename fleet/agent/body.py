"""Agent requests at the ASGI level: headers, size limits, gzip (bomb-proof), JSON objects.

The hot path reads `scope` and `receive` directly: building framework request and response
objects would cost more than answering an idle check-in.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

from fleet.core.agent_values import clean_text
from fleet.core.errors import BadRequest, PayloadTooLarge
from fleet.security_headers import AGENT_HEADERS

# Every agent answer may carry a node key or host configuration: never cached or sniffed.
_JSON_HEADERS = [(b"content-type", b"application/json"), *AGENT_HEADERS]


@dataclass(frozen=True, slots=True)
class AgentRequest:
    path: str
    headers: dict[bytes, bytes]  # lower-case names; the last value wins
    peer: str

    @classmethod
    def from_scope(cls, scope: Scope) -> AgentRequest:
        client = scope.get("client")
        return cls(scope["path"], dict(scope["headers"]), client[0] if client else "")

    def header(self, name: bytes) -> str:
        return self.headers.get(name, b"").decode("latin-1")

    def client_ip(self) -> str:
        """The device's public address: True-Client-IP, X-Real-IP, the first
        X-Forwarded-For entry, else the TCP peer (Fleet's order)."""
        for name in (b"true-client-ip", b"x-real-ip"):
            value = self.header(name).strip()
            if value:
                return value
        forwarded = self.header(b"x-forwarded-for")
        if forwarded.strip():
            return forwarded.split(",")[0].strip()
        return self.peer


async def read_json_object(request: AgentRequest, receive: Receive,
                           max_size: int) -> dict[str, Any]:
    """The request's JSON object, refusing bodies over `max_size` bytes before or after
    gunzip. Never buffers more than `max_size` (+1 chunk) of either."""
    declared = request.headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_size:
        raise PayloadTooLarge(f"request body exceeds {max_size} bytes")
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BadRequest("client disconnected")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_size:
            raise PayloadTooLarge(f"request body exceeds {max_size} bytes")
        chunks.append(chunk)
        more = message.get("more_body", False)
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    if request.headers.get(b"content-encoding", b"").lower() == b"gzip":
        body = _gunzip(body, max_size)
    if not body.strip():
        raise BadRequest("Expected JSON Body")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        data = _lenient_json(body, exc)
    if not isinstance(data, dict):
        raise BadRequest("json decoder error: the body must be a JSON object")
    return data


def _lenient_json(body: bytes, error: orjson.JSONDecodeError) -> Any:
    """What orjson refuses but a JSON text may still mean: lone surrogate escapes, integers
    beyond 64 bits, bytes that are not UTF-8. Refusing the whole body would lose the
    live-query answers in it, so the stdlib parses it (slower, on this error path only) and
    the values are cleaned downstream (fleet.core.agent_values)."""
    try:
        return json.loads(body.decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        raise BadRequest(f"json decoder error: {error}", name="json") from None


def _gunzip(body: bytes, max_size: int) -> bytes:
    inflater = zlib.decompressobj(wbits=31)
    try:
        out = inflater.decompress(body, max_size + 1)
    except zlib.error as exc:
        raise BadRequest(f"gzip decoding failed: {exc}", name="gzip") from None
    if len(out) > max_size or inflater.unconsumed_tail:
        raise PayloadTooLarge(f"decompressed request body exceeds {max_size} bytes")
    return out


async def send_json(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def string_field(data: dict[str, Any], name: str) -> str:
    """A string member ("" when absent); a member of another type is a 400."""
    value = data.get(name, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a string")
    return clean_text(value)


def object_field(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"{name} must be a JSON object")
    return value
