"""Security response headers, built once at start and appended to every response.

API answers carry session tokens, API tokens, enroll secrets, node keys and host data, so
nothing may be cached (`Cache-Control: no-store`), sniffed into another content type, framed
or leak its URL in a Referer. The JSON API needs no content at all: its CSP is
`default-src 'none'; frame-ancestors 'none'`. HSTS is sent only when this process terminates
TLS (behind a TLS-terminating proxy, the proxy owns it). A response that sets its own
Cache-Control, Content-Security-Policy or Referrer-Policy (a web page: the API docs,
fleet/api/docs.py) keeps it.

Agent answers (the hot path) take the static part from `AGENT_HEADERS`, a constant list: no
per-request work. HSTS is left out there: it instructs browsers, and osquery is not one.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HSTS = (b"strict-transport-security", b"max-age=31536000")
ALWAYS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
]
DEFAULTS = [
    (b"cache-control", b"no-store"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"referrer-policy", b"no-referrer"),
]
AGENT_HEADERS = [*ALWAYS, (b"cache-control", b"no-store")]


def response_headers(*, tls: bool) -> list[tuple[bytes, bytes]]:
    """All of them, for a response built outside the application (fleet/httpserver.py)."""
    return [*ALWAYS, *([HSTS] if tls else []), *DEFAULTS]


class SecurityHeaders:
    """ASGI middleware for the REST application (not the agent front door)."""

    def __init__(self, app: ASGIApp, *, tls: bool) -> None:
        self.app = app
        self.always = [*ALWAYS, HSTS] if tls else list(ALWAYS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = _with_headers(message, self.always)
            await send(message)

        await self.app(scope, receive, send_secured)


def _with_headers(message: Message, always: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    headers = list(message.get("headers", ()))
    present = {bytes(name).lower() for name, _ in headers}
    headers += always
    headers += [h for h in DEFAULTS if h[0] not in present]
    return {**message, "headers": headers}
