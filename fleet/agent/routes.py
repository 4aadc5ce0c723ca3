"""The osquery TLS endpoints (the hot path): a bare ASGI front door with orjson.

Served at `/api/osquery/*` and the legacy alias `/api/v1/osquery/*`. Agent requests are
dispatched by exact path before the REST application and its middleware stack, which would
otherwise cost more than the check-in itself. Every failure answers with an `error` member,
which osquery treats as a failed request (and keeps its logs or retries), plus
`node_invalid: true` when the agent must re-enroll.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from fleet.agent.body import AgentRequest, object_field, read_json_object, send_json, string_field
from fleet.broker import BrokerUnavailable
from fleet.core.agent_values import clean_json, clean_text, short
from fleet.core.errors import (
    BadRequest,
    FleetError,
    MethodNotAllowed,
    NodeInvalid,
    ServiceUnavailable,
)
from fleet.logthrottle import LogThrottle
from fleet.service import checkin, enrollment, ingest, osquery_logs
from fleet.service.agent_auth import authenticate_host
from fleet.service.agent_config import client_config
from fleet.service.context import ServiceContext
from fleet.service.hostcache import CachedHost
from fleet.store.db import driver_error, is_outage

log = logging.getLogger("fleet.agent")

PREFIXES = ("/api/osquery", "/api/v1/osquery")
# Longest wait for an enrollment slot: well inside the agents' request timeouts.
ENROLL_WAIT_SECONDS = 8.0
_EMPTY = b"{}"
_OVERLOADED = orjson.dumps({"error": "server busy, retry later"})


def _error_body(exc: FleetError) -> bytes:
    payload: dict[str, Any] = {"error": exc.reason, "uuid": str(uuid.uuid4())}
    if isinstance(exc, NodeInvalid):
        payload["node_invalid"] = True
    return orjson.dumps(payload)


# A handler returns the JSON body of a 200 answer; failures are raised as FleetError.
Handler = Callable[[AgentRequest, dict[str, Any]], Awaitable[bytes]]
Endpoint = Callable[[AgentRequest, Receive, Send], Awaitable[None]]


class AgentEndpoints:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.max_body = ctx.cfg.server.max_request_body_size
        limit = ctx.cfg.osquery.max_concurrent_enrollments
        self.enroll_slots = asyncio.Semaphore(limit) if limit else None
        self.throttle = LogThrottle(log)
        # Admission control for every agent endpoint: past this many requests in progress,
        # more work would only lengthen the queue (and /healthz's wait behind it) until
        # agents time out and resend. A plain counter: no await on the way in.
        self.max_in_flight = ctx.cfg.osquery.max_concurrent_requests or 1 << 62
        self.in_flight = 0

    def _endpoint(self, handler: Handler) -> Endpoint:
        async def endpoint(request: AgentRequest, receive: Receive, send: Send) -> None:
            if self.in_flight >= self.max_in_flight:
                self.throttle.log(logging.WARNING, "overload", "agent requests in progress "
                                  "reached osquery.max_concurrent_requests (%d): answering "
                                  "503 so agents retry later", self.max_in_flight)
                await send_json(send, 503, _OVERLOADED)
                return
            self.in_flight += 1
            try:
                data = await read_json_object(request, receive, self.max_body)
                status, body = 200, await handler(request, data)
            except FleetError as exc:
                status, body = exc.status, _error_body(exc)
                # One line per kind of rejection and interval: a reason that quotes the
                # request names its kind (exc.name), so varying junk cannot flood the log.
                kind = exc.reason if exc.name == "base" else exc.name
                self.throttle.log(logging.INFO, f"{request.path} {exc.status} {kind[:64]}",
                                  "agent request %s from %s rejected (%d): %s", request.path,
                                  short(request.client_ip()), exc.status,
                                  short(exc.reason, 200))
            except BrokerUnavailable as exc:
                # The agent keeps its results and retries; a line per episode, not a
                # traceback per request, while Redis is away.
                self.throttle.log(logging.WARNING, "broker", "agent request %s failed, "
                                  "broker unavailable: %s", request.path, exc)
                status, body = 503, _error_body(ServiceUnavailable(str(exc)))
            except Exception as exc:
                if not is_outage(exc):
                    log.exception("agent request %s failed", request.path)
                    status, body = 500, _error_body(FleetError("internal error"))
                else:  # the database is away: the same as a broker outage
                    self.throttle.log(logging.WARNING, "database", "agent request %s "
                                      "failed, database unavailable: %s", request.path,
                                      _first_line(exc))
                    status, body = 503, _error_body(
                        ServiceUnavailable("database unavailable, retry later"))
            finally:
                self.in_flight -= 1
            await send_json(send, status, body)
        return endpoint

    async def _host(self, request: AgentRequest, data: dict[str, Any]) -> CachedHost:
        node_key = string_field(data, "node_key")
        if not node_key:
            auth = request.header(b"authorization")
            if auth[:8].lower() == "nodekey ":
                node_key = auth[8:].strip()
        return await authenticate_host(self.ctx, node_key)

    async def enroll(self, _request: AgentRequest, data: dict[str, Any]) -> bytes:
        # Admission limit: in a storm, enrollments wait their turn for one of a few slots,
        # but not past ENROLL_WAIT_SECONDS. Work done after the agent gave up is wasted (it
        # retries anyway, adding more), so a request that waited that long gets a 503 and
        # osquery's enroll backoff instead.
        if self.enroll_slots is None:
            return await self._enroll(data)
        try:
            async with asyncio.timeout(ENROLL_WAIT_SECONDS):
                await self.enroll_slots.acquire()
        except TimeoutError:
            raise ServiceUnavailable("too many enrollments in progress, retry later") from None
        try:
            return await self._enroll(data)
        finally:
            self.enroll_slots.release()

    async def _enroll(self, data: dict[str, Any]) -> bytes:
        node_key = await enrollment.enroll(
            self.ctx, enroll_secret=string_field(data, "enroll_secret"),
            provided_identifier=string_field(data, "host_identifier"),
            host_details=object_field(data, "host_details"))
        return orjson.dumps({"node_key": node_key})

    async def config(self, request: AgentRequest, data: dict[str, Any]) -> bytes:
        host = await self._host(request, data)
        return orjson.dumps(await client_config(self.ctx, host))

    async def distributed_read(self, request: AgentRequest, data: dict[str, Any]) -> bytes:
        host = await self._host(request, data)
        return orjson.dumps(await checkin.distributed_queries(self.ctx, host))

    async def distributed_write(self, request: AgentRequest, data: dict[str, Any]) -> bytes:
        host = await self._host(request, data)
        raw = object_field(data, "messages")
        messages = {k: clean_text(v) for k, v in raw.items() if isinstance(v, str)}
        statuses, invalid = _statuses(object_field(data, "statuses"))
        if invalid:
            # Failed with the reason, so a live query shows this host's error; the other
            # answers of the write still land.
            self.throttle.log(logging.WARNING, "invalid_status",
                              "distributed/write with an invalid status, taken as failed: %s",
                              next(iter(invalid.values())))
            messages.update(invalid)
        await ingest.submit_results(
            self.ctx, host, queries=object_field(data, "queries"), statuses=statuses,
            messages=messages, stats=clean_json(object_field(data, "stats")),
            public_ip=request.client_ip())
        return _EMPTY

    async def log(self, request: AgentRequest, data: dict[str, Any]) -> bytes:
        # The lines carry their own host identity; the host's team picks the config that
        # decides which result lines are forwarded.
        host = await self._host(request, data)
        items = data.get("data")
        if items is None:
            items = []
        if not isinstance(items, list):
            raise BadRequest("data must be a JSON array")
        await osquery_logs.submit_logs(self.ctx, host.team_id, string_field(data, "log_type"),
                                       items)
        return _EMPTY

    def endpoints(self) -> dict[str, Endpoint]:
        table: dict[str, Handler] = {
            "/enroll": self.enroll,
            "/config": self.config,
            "/distributed/read": self.distributed_read,
            "/distributed/write": self.distributed_write,
            "/log": self.log,
        }
        return {prefix + path: self._endpoint(handler)
                for prefix in PREFIXES for path, handler in table.items()}


def _first_line(exc: BaseException) -> str:
    text = str(driver_error(exc))
    return text.splitlines()[0] if text else type(exc).__name__


_JSON_TYPES = {bool: "a boolean", float: "a fraction", dict: "an object", list: "an array",
               type(None): "null"}


def _statuses(raw: dict[str, Any]) -> tuple[dict[str, int], dict[str, str]]:
    """osquery >= 3 sends numbers, older agents numeric strings. Anything else counts as a
    failure, returned with its reason by query name. Only zero (success) or not matters, so
    a string's value is not converted past 18 digits (`int()` refuses thousands, and takes
    non-ASCII digits `isdigit` lets through)."""
    out: dict[str, int] = {}
    invalid: dict[str, str] = {}
    for name, value in raw.items():
        if isinstance(value, int) and not isinstance(value, bool):
            out[name] = value
            continue
        digits = value.strip().lstrip("-") if isinstance(value, str) else ""
        if not (digits.isascii() and digits.isdigit()):
            shown = repr(short(value)) if isinstance(value, str) else _JSON_TYPES.get(
                type(value), "not a number")
            out[name] = 1
            invalid[name] = f"invalid status for {short(name)}: {shown}"
            continue
        out[name] = int(digits.lstrip("0")[:18] or "0")
    return out, invalid


class AgentFrontDoor:
    """ASGI app: agent paths served here, anything else passed to `fallback`."""

    def __init__(self, ctx: ServiceContext, fallback: ASGIApp) -> None:
        self.endpoints = AgentEndpoints(ctx).endpoints()
        self.fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self.endpoints.get(scope["path"]) if scope["type"] == "http" else None
        if endpoint is None:
            await self.fallback(scope, receive, send)
            return
        if scope["method"] != "POST":
            await send_json(send, 405, _error_body(MethodNotAllowed("use POST")))
            return
        await endpoint(AgentRequest.from_scope(scope), receive, send)
