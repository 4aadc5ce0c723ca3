"""uvicorn's httptools protocol with the limits a public listener needs against slow or
oversized clients, so that idle, slowloris and header-flooding connections cannot hold the
process's sockets or memory while agents wait.

- A connection must deliver a request's headers within `read_header_timeout` of its first
  byte (of connecting, for a new connection), and its body within `read_timeout` of the
  headers; otherwise it gets a 408 (or, mid-body, is closed).
- Between requests a keep-alive connection may stay idle for `idle_timeout` (uvicorn's timer).
- The request line plus headers may hold at most `max_header_bytes` (about: an unfinished
  header is measured per read) and `max_header_count` fields; beyond that a 431 and close.
- At `max_connections` open connections (websockets included) a new one gets a 503 with
  `Retry-After` and is closed, with one throttled log line saying which limit was reached.

A few paths may be answered by the protocol itself (`fast_paths`: `GET /healthz`, from the
health monitor's last result): a load balancer's probe then waits for one turn of the event
loop, not for a task queued behind thousands of agent requests.

Timers are armed only while a request is incomplete after a read, so a request that arrives
in one read (the agents' usual case) costs no timer beyond the one a new connection gets.
Each refusal is counted in one throttled line per kind, never a line per connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from fleet.logthrottle import LogThrottle

log = logging.getLogger("fleet.server")
_throttle = LogThrottle(log, interval=10.0)

_IDLE, _HEAD, _BODY = 0, 1, 2


@dataclass(frozen=True, slots=True)
class Limits:
    read_header_timeout: float
    read_timeout: float
    max_header_bytes: int
    max_header_count: int
    max_connections: int


class _HeadersTooLarge(Exception):
    pass


def response_bytes(status: int, headers: Sequence[tuple[bytes, bytes]],
                   body: bytes = b"") -> bytes:
    """A whole HTTP/1.1 response, built once: the refusals below and the fast paths."""
    lines = [b"HTTP/1.1 %d %s" % (status, HTTPStatus(status).phrase.encode()),
             b"content-length: %d" % len(body),
             *(name + b": " + value for name, value in headers)]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _refusal(status: int, text: str, *extra: tuple[bytes, bytes]) -> bytes:
    return response_bytes(status, [(b"content-type", b"text/plain; charset=utf-8"),
                                   (b"connection", b"close"), *extra], text.encode())


_TIMEOUT = _refusal(408, "request not received in time")
_TOO_LARGE = _refusal(431, "request headers too large")
_BUSY = _refusal(503, "server connection limit reached", (b"retry-after", b"5"))
_BAD = _refusal(400, "Invalid HTTP request received.")


# A fast path returns the whole response, or None to let the application answer.
FastPath = Callable[[], bytes | None]


class LimitedHttpProtocol(HttpToolsProtocol):
    """Set `limits` and `fast_paths` (raw request target of a GET -> FastPath) on a subclass
    (see `protocol_class`); uvicorn builds one per connection."""

    limits: ClassVar[Limits]
    fast_paths: ClassVar[Mapping[bytes, FastPath]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._phase = _IDLE
        self._timer: asyncio.TimerHandle | None = None
        self._timer_phase = _IDLE
        self._head_bytes = 0
        self._head_count = 0
        self._answered = False  # the current message got a fast-path response
        self._completed = False  # a message ended during the current read

    # Connection life

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            _throttle.log(logging.WARNING, "max_connections",
                          "refusing connections: %d open, the limit server.max_connections "
                          "is %d", len(self.connections) - 1, self.limits.max_connections)
            self._refuse(_BUSY)
            return
        self._arm(_HEAD)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def handle_websocket_upgrade(self) -> None:
        self._disarm()  # the websocket protocol takes the connection over
        super().handle_websocket_upgrade()

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        if self._phase == _HEAD:
            self._head_bytes += len(data)
        self._completed = False
        try:
            self.parser.feed_data(data)
            if self._phase == _HEAD and self._head_bytes > self.limits.max_header_bytes:
                raise _HeadersTooLarge
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except _HeadersTooLarge:
            self._reject_headers()
            return
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, _HeadersTooLarge):
                self._reject_headers()
            else:
                _throttle.log(logging.INFO, "bad_request",
                              "answered 400 to a request that is not valid HTTP/1.1")
                self._refuse(_BAD)
            return
        # Keep exactly the timer the connection's state needs after this read. Bytes that
        # began no request (stray CRLFs) leave the connection owing one: a header deadline.
        want = self._phase
        if want == _IDLE and not self._completed and (
                self.cycle is None or self.cycle.response_complete):
            want = _HEAD
        if want == _IDLE:
            self._disarm()
        elif want != self._timer_phase or self._timer is None:
            self._arm(want)

    # Parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._phase = _HEAD
        self._head_bytes = 0
        self._head_count = 0

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_count += 1
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._phase = _BODY
        self._answered = False
        fast = self.fast_paths.get(self.url)
        if fast is not None and (self.cycle is None or self.cycle.response_complete) \
                and self.parser.get_method() == b"GET":
            response = fast()
            if response is not None:
                self._answered = True
                self.transport.write(response)
                if not self.parser.should_keep_alive():
                    self.transport.close()
                return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._answered:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._phase = _IDLE
        self._completed = True
        if self._answered:  # as uvicorn does once a response is out: wait for the next one
            self._answered = False
            self.server_state.total_requests += 1
            if not self.transport.is_closing():
                self.timeout_keep_alive_task = self.loop.call_later(
                    self.timeout_keep_alive, self.timeout_keep_alive_handler)
            return
        super().on_message_complete()

    # Limits

    def _count(self, size: int) -> None:
        # Bytes of completed fields; data_received adds those of an unfinished one.
        self._head_bytes += size
        if (self._head_bytes > self.limits.max_header_bytes
                or self._head_count > self.limits.max_header_count):
            raise _HeadersTooLarge

    def _reject_headers(self) -> None:
        _throttle.log(logging.INFO, "headers_too_large",
                      "answered 431 to a request over server.max_header_bytes (%d) or "
                      "server.max_header_count (%d)",
                      self.limits.max_header_bytes, self.limits.max_header_count)
        self._refuse(_TOO_LARGE)

    def _arm(self, phase: int) -> None:
        self._disarm()
        delay = self.limits.read_timeout if phase == _BODY else self.limits.read_header_timeout
        self._timer = self.loop.call_later(delay, self._timed_out)
        self._timer_phase = phase

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_phase = _IDLE

    def _timed_out(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if self._timer_phase == _BODY:
            # The application is reading this body; the cut tells it the client went away.
            _throttle.log(logging.INFO, "body_timeout",
                          "closed a connection whose request body did not arrive within "
                          "server.read_timeout (%gs)", self.limits.read_timeout)
            self.transport.abort()
            return
        _throttle.log(logging.INFO, "header_timeout",
                      "answered 408 to a connection that sent no complete request headers "
                      "within server.read_header_timeout (%gs)", self.limits.read_header_timeout)
        if self.cycle is None or self.cycle.response_complete:
            self._refuse(_TIMEOUT)
        else:  # a pipelined request is still being answered: no second response on the wire
            self.transport.close()

    def _refuse(self, response: bytes) -> None:
        self._disarm()
        self.transport.write(response)
        self.transport.close()


def protocol_class(limits: Limits, fast_paths: Mapping[bytes, FastPath] | None = None,
                   ) -> type[LimitedHttpProtocol]:
    """A protocol class for uvicorn's `http=` option, carrying these limits and paths."""
    return type("FleetHttpProtocol", (LimitedHttpProtocol,),
                {"limits": limits, "fast_paths": dict(fast_paths or {})})
