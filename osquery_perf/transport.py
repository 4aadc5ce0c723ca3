"""A small HTTP/1.1 keep-alive client: osquery-perf's hot path.

General-purpose clients cost far more CPU per request than a load generator can afford
(httpx: ~1 ms per request over TLS on one core). This one does only what osquery's
transport does (``osquery/remote/http_client.cpp``):

- ``POST`` with a preformatted header block and ``Content-Length`` (no chunked upload);
- responses framed by ``Content-Length``, chunked encoding or connection close; 1xx skipped;
  ``Connection: close`` (or HTTP/1.0 without keep-alive) closes the socket after the response;
- one 16 s deadline per request covering connect, handshake, write, read and redirects;
- on any failure other than the deadline, reconnect and re-send **once**;
- redirects (301-308) followed up to 10 hops with the same method and body (same origin
  only: a simulated fleet talks to one server);
- Beast's parser limits: about 8 KiB of response headers, 8 MiB of body.

TLS is driven by hand over memory BIOs (``SSLContext.wrap_bio``) on a plain TCP transport:
that is as cheap as asyncio's own TLS layer and, unlike ``loop.create_connection(ssl=...)``,
lets every connection resume its previous TLS session after a reconnect
(``--tls_session_reuse``), which spares both sides the certificate operations.

A connection carries one request at a time (callers queue, FIFO); :class:`ConnectionPool`
shares N connections between many hosts. Deadlines are enforced by one watchdog per
:class:`Endpoint` instead of a timer per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
from collections import deque
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

REQUEST_TIMEOUT = 16.0  # osquery's fixed per-request deadline
MAX_HEAD = 8 * 1024 + 4  # Beast's default header limit
MAX_BODY = 8 * 1024 * 1024  # Beast's default body limit
MAX_REDIRECTS = 10
REDIRECTS = frozenset((301, 302, 303, 304, 305, 307, 308))
WATCHDOG_PERIOD = 0.25
READ_SIZE = 1 << 17
# The response header fields the client acts on (values up to the line end).
_FIELDS = re.compile(
    rb"\r\n(content-length|transfer-encoding|connection|location)[ \t]*:[ \t]*([^\r]*)", re.I)


class TransportError(Exception):
    """The request got no usable HTTP response (connect, TLS, I/O or framing failure)."""


class RequestTimeout(TransportError):
    """The request's deadline passed; osquery does not retry those."""


class Headers:
    """Request headers in both shapes a transport may want: a dict and preformatted
    ``Name: value\\r\\n`` lines. Built once per distinct header set, never per request."""

    __slots__ = ("fields", "raw")

    def __init__(self, fields: dict[str, str]) -> None:
        self.fields = fields
        self.raw = "".join(f"{k}: {v}\r\n" for k, v in fields.items()).encode("latin-1")

    def with_fields(self, **extra: str) -> Headers:
        return Headers({**self.fields, **extra})


class Transport(Protocol):
    """What :class:`~osquery_perf.agent.SimulatedAgent` needs: one POST, answered with
    ``(status, body)`` or :class:`TransportError`."""

    async def post(self, path: str, body: bytes, headers: Headers) -> tuple[int, bytes]: ...


class HttpxTransport:
    """Adapter for an ``httpx.AsyncClient`` (tests, e2e and ASGI in-process servers)."""

    __slots__ = ("client", "origin")

    def __init__(self, client: Any, origin: str) -> None:
        self.client = client
        self.origin = origin.rstrip("/")

    async def post(self, path: str, body: bytes, headers: Headers) -> tuple[int, bytes]:
        import httpx

        try:  # httpx would otherwise ask for gzip; osquery sends no Accept-Encoding
            response = await self.client.post(
                self.origin + path, content=body,
                headers={"Accept-Encoding": "identity", **headers.fields})
        except httpx.TimeoutException as exc:
            raise RequestTimeout(f"{type(exc).__name__}: {exc}") from exc
        except httpx.HTTPError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        return response.status_code, response.content


def split_url(url: str) -> tuple[str, str]:
    """``(origin, path)`` of a base URL: ``https://h:1/p/`` -> ``("https://h:1", "/p")``."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}", parts.path.rstrip("/")


class Endpoint:
    """One server: address, TLS settings, ``Host`` header, request deadline and counters.
    Shared by every connection to that server."""

    def __init__(self, url: str, ssl_context: ssl.SSLContext | None = None, *,
                 timeout: float = REQUEST_TIMEOUT) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError(f"unsupported server URL {url!r}")
        self.scheme = parts.scheme
        self.host = parts.hostname
        default_port = 443 if parts.scheme == "https" else 80
        self.port = parts.port or default_port
        name = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = name if self.port == default_port else f"{name}:{self.port}"
        self.origin = f"{parts.scheme}://{self.host_header}"
        self.tls: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self.tls = ssl_context or ssl.create_default_context()
        self.timeout = timeout
        # counters for the summary
        self.connects = 0
        self.resumed = 0  # TLS handshakes that resumed a previous session
        self.connect_failures = 0
        self.resends = 0  # transparent reconnect-and-resend after a failure
        self.wires: set[_Wire] = set()
        self.inflight: set[_Wire] = set()
        self._lines: dict[str, bytes] = {}
        self._address: tuple[Any, ...] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def request_line(self, target: str) -> bytes:
        """``POST <target> HTTP/1.1`` plus the ``Host`` line, cached per target."""
        line = self._lines.get(target)
        if line is None:
            line = f"POST {target} HTTP/1.1\r\nHost: {self.host_header}\r\n".encode("latin-1")
            self._lines[target] = line
        return line

    def loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
            self._watchdog = loop.create_task(self._watch())
        return loop

    async def address(self) -> tuple[Any, ...]:
        """Resolve once (osquery refreshes DNS at most every 60 s; a failure re-resolves)."""
        if self._address is None:
            infos = await self.loop().getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
            if not infos:
                raise OSError(f"cannot resolve {self.host}")
            self._address = infos[0][4]
        return self._address

    async def _watch(self) -> None:
        """Fail requests whose deadline passed; one sweep instead of a timer per request."""
        loop = self.loop()
        while True:
            await asyncio.sleep(WATCHDOG_PERIOD)
            if not self.inflight:
                continue
            now = loop.time()
            for wire in [w for w in self.inflight if w.deadline <= now]:
                wire.fail(RequestTimeout(f"no response within {self.timeout:g}s"))

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.gather(self._watchdog, return_exceptions=True)
            self._watchdog = None
        for wire in list(self.wires):
            wire.session_saved = True  # shutting down: no reconnect will need it
            wire.close()


class _Wire(asyncio.Protocol):
    """One TCP (+TLS) connection and the response being read on it."""

    def __init__(self, conn: HTTPConnection) -> None:
        self.conn = conn
        self.endpoint = conn.endpoint
        self.transport: asyncio.Transport | None = None
        self.sslobj: ssl.SSLObject | None = None
        self.tls: Any = None  # sslobj's C object: read/write without ssl.py's wrappers
        self.incoming = self.outgoing = ssl.MemoryBIO()
        self.handshake: asyncio.Future[None] | None = None
        self.waiter: asyncio.Future[tuple[int, bytes, str]] | None = None
        self.deadline = 0.0
        self.closed = False
        self.responses = 0
        self.session_saved = False
        self._reset()

    def _reset(self) -> None:
        self.buf = b""
        self.status = -1
        self.length = -1
        self.chunked = False
        self.close_after = False
        self.location = ""

    # --- connection ----------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.endpoint.wires.add(self)

    def start_tls(self, context: ssl.SSLContext, hostname: str,
                  session: ssl.SSLSession | None) -> asyncio.Future[None]:
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        try:
            self.sslobj = context.wrap_bio(self.incoming, self.outgoing,
                                           server_hostname=hostname, session=session)
        except ValueError:  # a session from another context: full handshake instead
            self.sslobj = context.wrap_bio(self.incoming, self.outgoing,
                                           server_hostname=hostname)
        self.tls = getattr(self.sslobj, "_sslobj", self.sslobj)
        self.handshake = self.endpoint.loop().create_future()
        self._handshake_step()
        return self.handshake

    def _handshake_step(self) -> None:
        assert self.sslobj is not None and self.handshake is not None
        try:
            self.sslobj.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return
        except (ssl.SSLError, ssl.CertificateError) as exc:
            self._flush()
            self.fail(TransportError(f"TLS handshake: {exc}"))
            return
        self._flush()
        done, self.handshake = self.handshake, None
        if not done.done():
            done.set_result(None)

    def _flush(self) -> None:
        if self.outgoing.pending and self.transport is not None:
            self.transport.write(self.outgoing.read())

    def _save_session(self) -> None:
        """Keep the TLS session for the next connection's resumption. Taken only when the
        connection ends (CPython copies it through i2d/d2i: ~0.1 ms), and only after a
        response (TLS 1.3 tickets arrive after the handshake)."""
        if not self.session_saved and self.responses and self.sslobj is not None:
            self.session_saved = True
            try:
                session = self.sslobj.session
            except (ValueError, ssl.SSLError):
                return
            if session is not None:
                self.conn.session = session

    def close(self) -> None:
        if not self.closed:
            self._save_session()
            self.closed = True
            if self.conn.wire is self:
                self.conn.wire = None
            if self.transport is not None:
                self.transport.close()

    def fail(self, exc: TransportError) -> None:
        """Give up on this connection: fail whoever waits on it and drop the socket."""
        self.endpoint.inflight.discard(self)
        for fut in (self.waiter, self.handshake):
            if fut is not None and not fut.done():
                fut.set_exception(exc)
        self.waiter = self.handshake = None
        self._save_session()
        self.closed = True
        if self.conn.wire is self:
            self.conn.wire = None
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.endpoint.wires.discard(self)
        self._save_session()
        if self.waiter is not None and self.status >= 0 and self.length < 0 \
                and not self.chunked:
            self._done(self.buf)  # close-delimited body
        if not self.closed or self.waiter is not None or self.handshake is not None:
            reason = f": {exc}" if exc else ""
            self.fail(TransportError(f"connection closed by server{reason}"))
        self.transport = None  # no reference cycle with the transport

    def eof_received(self) -> bool | None:
        if self.waiter is None and self.handshake is None:
            self.close()  # an idle keep-alive connection the server let go: never reuse it
        return None  # close our side too; connection_lost follows

    # --- request / response --------------------------------------------------------------------
    def send(self, request: bytes, deadline: float) -> asyncio.Future[tuple[int, bytes, str]]:
        assert self.transport is not None
        waiter = self.endpoint.loop().create_future()
        self.waiter = waiter
        self.deadline = deadline
        self.endpoint.inflight.add(self)
        if self.tls is None:
            self.transport.write(request)
        else:
            self.tls.write(request)
            self.transport.write(self.outgoing.read())
        return waiter

    def data_received(self, data: bytes) -> None:
        tls = self.tls
        if tls is None:
            self._feed(data)
            return
        incoming = self.incoming
        incoming.write(data)
        if self.handshake is not None:
            self._handshake_step()
            if self.handshake is not None or self.closed:
                return
        plain = b""
        eof = False
        while True:
            try:
                chunk = tls.read(READ_SIZE)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                eof = True
                break
            except ssl.SSLError as exc:
                self.fail(TransportError(f"TLS: {exc}"))
                return
            if not chunk:
                eof = True
                break
            plain = plain + chunk if plain else chunk
            if not incoming.pending and not tls.pending():
                break
        if self.outgoing.pending:
            self._flush()
        if plain:
            self._feed(plain)
        if eof and not self.closed:
            if self.waiter is not None and self.status >= 0 and self.length < 0 \
                    and not self.chunked:
                self._done(self.buf)
            self.close()
            if self.waiter is not None:
                self.fail(TransportError("connection closed by server"))

    def _feed(self, data: bytes) -> None:
        if self.waiter is None:
            self.close()  # nobody asked: a server must not send unsolicited data
            return
        buf = self.buf + data if self.buf else data
        while self.status < 0:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD:
                    self.fail(TransportError("response headers too large"))
                else:
                    self.buf = buf
                return
            if not self._parse_head(buf, end):
                return
            buf = buf[end + 4:]
            if 100 <= self.status < 200:  # interim response: the real one follows
                self._reset()
        if self.chunked:
            try:
                body = _dechunk(buf)
            except ValueError:
                self.fail(TransportError("malformed chunked body"))
                return
            if body is None:
                if len(buf) > MAX_BODY * 2:
                    self.fail(TransportError("response body too large"))
                else:
                    self.buf = buf
                return
            self._done(body)
        elif self.length >= 0:
            if len(buf) < self.length:
                self.buf = buf
                return
            self._done(buf if len(buf) == self.length else buf[: self.length])
        else:  # close-delimited
            if len(buf) > MAX_BODY:
                self.fail(TransportError("response body too large"))
            else:
                self.buf = buf

    def _parse_head(self, buf: bytes, end: int) -> bool:
        try:
            if buf[:7] != b"HTTP/1." or buf[12:13] not in (b" ", b"\r"):
                raise ValueError
            status = int(buf[9:12])
            length = -1
            chunked = False
            connection = location = b""
            for name, value in _FIELDS.findall(buf, 12, end):
                name = name.lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"transfer-encoding":
                    chunked = b"chunked" in value.lower()
                elif name == b"connection":
                    connection = value.lower()
                else:
                    location = value
        except ValueError:
            self.fail(TransportError(f"malformed response head {buf[:60]!r}"))
            return False
        close = b"close" in connection or (buf[7:8] == b"0" and b"keep-alive" not in connection)
        if status in (204, 304) or 100 <= status < 200:
            length, chunked = 0, False
        elif length > MAX_BODY:
            self.fail(TransportError("response body too large"))
            return False
        self.status, self.length, self.chunked, self.close_after = status, length, chunked, close
        if location and status in REDIRECTS:
            self.location = location.strip().decode("latin-1")
        return True

    def _done(self, body: bytes) -> None:
        waiter = self.waiter
        assert waiter is not None
        self.waiter = None
        self.endpoint.inflight.discard(self)
        self.responses += 1
        result = (self.status, body, self.location)
        close = self.close_after
        self._reset()
        if close:
            self.close()
        if not waiter.done():
            waiter.set_result(result)


def _dechunk(data: bytes) -> bytes | None:
    """The body of a complete chunked message, None while incomplete."""
    pos, parts = 0, list[bytes]()
    while True:
        nl = data.find(b"\r\n", pos)
        if nl < 0:
            return None
        size = int(data[pos:nl].split(b";", 1)[0].strip() or b"x", 16)
        if size == 0:
            if data.find(b"\r\n\r\n", nl) < 0 and data[nl:nl + 4] != b"\r\n\r\n":
                return None  # trailers (or the final CRLF) not complete yet
            return b"".join(parts)
        start = nl + 2
        stop = start + size
        if len(data) < stop + 2:
            return None
        parts.append(data[start:stop])
        pos = stop + 2


class HTTPConnection:
    """One keep-alive connection to an endpoint, (re)connected on demand. Requests queue
    and go one at a time, like an osquery thread's ``thread_local`` client."""

    __slots__ = ("endpoint", "wire", "session", "_busy", "_queue")

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.wire: _Wire | None = None
        self.session: ssl.SSLSession | None = None
        self._busy = False
        self._queue: deque[asyncio.Future[None]] = deque()

    async def post(self, path: str, body: bytes, headers: Headers) -> tuple[int, bytes]:
        """One request, after the ones already queued on this connection: reconnect and
        re-send once after a non-timeout failure, follow same-origin redirects."""
        if self._busy:
            await self._acquire()
        self._busy = True
        try:
            endpoint = self.endpoint
            deadline = endpoint.loop().time() + endpoint.timeout
            tail = b"".join((headers.raw, b"Content-Length: ", str(len(body)).encode(),
                             b"\r\n\r\n", body))
            request = endpoint.request_line(path) + tail
            retried = False
            hops = 0
            while True:
                wire = self.wire
                try:
                    if wire is None or wire.closed:
                        wire = await self._connect(deadline)
                    status, data, location = await wire.send(request, deadline)
                except asyncio.CancelledError:
                    if wire is not None:  # its response may still come: never reuse it
                        wire.fail(TransportError("request cancelled"))
                    raise
                except RequestTimeout:
                    raise
                except TransportError:
                    if retried:
                        raise
                    retried = True
                    endpoint.resends += 1
                    continue
                if status not in REDIRECTS or not location:
                    return status, data
                hops += 1
                if hops > MAX_REDIRECTS:
                    raise TransportError(f"more than {MAX_REDIRECTS} redirects")
                path = self._redirect_target(path, location)
                request = endpoint.request_line(path) + tail
        finally:
            self._release()

    async def _acquire(self) -> None:
        fut: asyncio.Future[None] = self.endpoint.loop().create_future()
        self._queue.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._release()  # we were handed the connection: pass it on
            else:  # _release may already have dropped our cancelled future
                with contextlib.suppress(ValueError):
                    self._queue.remove(fut)
            raise

    def _release(self) -> None:
        queue = self._queue
        while queue:
            fut = queue.popleft()
            if not fut.done():
                fut.set_result(None)  # ownership passes on; stays busy
                return
        self._busy = False

    def _redirect_target(self, path: str, location: str) -> str:
        endpoint = self.endpoint
        absolute = urljoin(endpoint.origin + path, location)
        origin, _ = split_url(absolute)
        if origin != endpoint.origin:
            raise TransportError(f"redirect to another server is not simulated: {location}")
        parts = urlsplit(absolute)
        return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    async def _connect(self, deadline: float) -> _Wire:
        endpoint = self.endpoint
        loop = endpoint.loop()
        wire = _Wire(self)
        try:
            async with asyncio.timeout_at(deadline):
                address = await endpoint.address()
                await loop.create_connection(lambda: wire, address[0], address[1])
                if endpoint.tls is not None:
                    wire.deadline = deadline
                    endpoint.inflight.add(wire)  # the watchdog also guards the handshake
                    await wire.start_tls(endpoint.tls, endpoint.host, self.session)
                    endpoint.inflight.discard(wire)
        except asyncio.CancelledError:
            wire.fail(TransportError("connect cancelled"))
            raise
        except TimeoutError:
            endpoint.connect_failures += 1
            wire.fail(RequestTimeout(f"connect: no answer within {endpoint.timeout:g}s"))
            raise RequestTimeout(f"connect: no answer within {endpoint.timeout:g}s") from None
        except TransportError:
            endpoint.connect_failures += 1
            raise
        except OSError as exc:
            endpoint.connect_failures += 1
            endpoint._address = None  # re-resolve next time
            wire.fail(TransportError(f"connect: {exc}"))
            raise TransportError(f"connect: {exc}") from exc
        endpoint.connects += 1
        if wire.sslobj is not None and wire.sslobj.session_reused:
            endpoint.resumed += 1
        self.wire = wire
        return wire

    def close(self) -> None:
        if self.wire is not None:
            self.wire.close()


class ConnectionPool:
    """``size`` keep-alive connections shared by many hosts; a request waits (FIFO) for a
    free connection."""

    def __init__(self, endpoint: Endpoint, size: int) -> None:
        if size < 1:
            raise ValueError("pool size must be >= 1")
        self.endpoint = endpoint
        self.idle: deque[HTTPConnection] = deque(HTTPConnection(endpoint) for _ in range(size))
        self.waiters: deque[asyncio.Future[HTTPConnection]] = deque()

    async def post(self, path: str, body: bytes, headers: Headers) -> tuple[int, bytes]:
        conn = self.idle.popleft() if self.idle else await self._wait()
        try:
            return await conn.post(path, body, headers)  # never queues: we own it
        finally:
            self._give_back(conn)

    async def _wait(self) -> HTTPConnection:
        fut: asyncio.Future[HTTPConnection] = self.endpoint.loop().create_future()
        self.waiters.append(fut)
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._give_back(fut.result())
            else:  # _give_back may already have dropped our cancelled future
                with contextlib.suppress(ValueError):
                    self.waiters.remove(fut)
            raise

    def _give_back(self, conn: HTTPConnection) -> None:
        waiters = self.waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(conn)
                return
        self.idle.append(conn)
