"""The practical ceiling: an ASGI app that only answers an idle `distributed/read`.

Served by the same uvicorn/TLS stack as `fleet serve`, so the ratio between the two shows
how much of the per-request cost is ours and how much is the web stack's.
"""

from __future__ import annotations

from typing import Any

BODY = b'{"queries":{}}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:  # drain the request body like a real handler must
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
