"""Reading agent request bodies: size limits, gzip (with bomb protection), JSON objects."""

from __future__ import annotations

import zlib
from typing import Any

import orjson
from starlette.requests import Request

from fleet.core.errors import BadRequest, PayloadTooLarge


async def read_json_object(request: Request, max_size: int) -> dict[str, Any]:
    """The request's JSON object, refusing bodies over `max_size` bytes before or after
    gunzip. Never buffers more than `max_size` (+1 chunk) of either."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_size:
        raise PayloadTooLarge(f"request body exceeds {max_size} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_size:
            raise PayloadTooLarge(f"request body exceeds {max_size} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    if request.headers.get("content-encoding", "").lower() == "gzip":
        body = _gunzip(body, max_size)
    if not body.strip():
        raise BadRequest("Expected JSON Body")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"json decoder error: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("json decoder error: the body must be a JSON object")
    return data


def _gunzip(body: bytes, max_size: int) -> bytes:
    inflater = zlib.decompressobj(wbits=31)
    try:
        out = inflater.decompress(body, max_size + 1)
    except zlib.error as exc:
        raise BadRequest(f"gzip decoding failed: {exc}") from None
    if len(out) > max_size or inflater.unconsumed_tail:
        raise PayloadTooLarge(f"decompressed request body exceeds {max_size} bytes")
    return out


def string_field(data: dict[str, Any], name: str) -> str:
    """A string member ("" when absent); a member of another type is a 400."""
    value = data.get(name, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a string")
    return value


def object_field(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"{name} must be a JSON object")
    return value


def client_ip(request: Request) -> str:
    """The device's public address: True-Client-IP, X-Real-IP, the first X-Forwarded-For
    entry, else the TCP peer (Fleet's order)."""
    headers = request.headers
    for name in ("true-client-ip", "x-real-ip"):
        value = headers.get(name, "").strip()
        if value:
            return value
    forwarded = headers.get("x-forwarded-for", "")
    if forwarded.strip():
        return forwarded.split(",")[0].strip()
    return request.client.host if request.client else ""
