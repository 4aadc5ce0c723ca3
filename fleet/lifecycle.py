"""The `fleet serve` process around uvicorn: start only when it can really serve, stop fast.

- An embedded instance holds an exclusive lock on its SQLite file for its lifetime. A second
  one would not corrupt the file, but its in-process broker and host cache would be blind to
  the first's: live queries would reach half the agents, a deleted host would keep checking in.
- The listening socket is bound (and listening) before anything is announced, so a taken port
  is one clear line and exit 1, and the banner only appears once the address is really ours.
- The listener is served with deadlines on the TLS handshake and on the TLS close (asyncio's
  defaults are 60 s and 30 s, which uvicorn cannot change), so connections that never finish
  either cannot pile up.
- On SIGTERM/SIGINT, in-flight requests get `server.shutdown_timeout` to finish; idle
  keep-alive connections are dropped at once (a graceful TLS close would wait up to 30 s for
  each idle client's close_notify), and whatever is still open at the deadline is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import gc
import logging
import os
import resource
import socket
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import IO, Any

import uvicorn

log = logging.getLogger("fleet.server")

BACKLOG = 2048  # uvicorn's default
CANCEL_GRACE = 1.0  # seconds for cancelled requests to unwind


class StartupError(Exception):
    """`fleet serve` cannot start; the message is the one line the operator sees."""


class InstanceLock:
    """An exclusive `flock` on `<database>.lock`, released when the process ends (even by
    `kill -9`). The file names the holder, so the refusal can say who has it."""

    def __init__(self, database: str) -> None:
        self.database = Path(database).resolve()
        self.path = self.database.with_name(self.database.name + ".lock")
        self._file: IO[str] | None = None

    def acquire(self, holder: str) -> None:
        try:
            fh = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the process
        except OSError as exc:
            raise StartupError(f"cannot create the instance lock {self.path}: "
                               f"{exc.strerror}") from None
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            other = fh.read().strip() or "another process"
            fh.close()
            raise StartupError(
                f"the embedded database {self.database} is in use by another fleet serve "
                f"({other}; lock {self.path}). Stop it, or give this instance its own "
                "--sqlite_path; several instances need MySQL and Redis.") from None
        fh.truncate(0)
        fh.write(f"pid {os.getpid()}, {holder}\n")
        fh.flush()
        self._file = fh

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


FD_RESERVE = 256  # descriptors beside client connections: database, Redis, log files


def ensure_file_limit(max_connections: int) -> None:
    """Raise the soft open-file limit so `server.max_connections` can really be reached,
    or say at start-up that it cannot (accept would fail with EMFILE long before the cap)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = max_connections + FD_RESERVE
    if soft >= needed:
        return
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft < needed:
        log.warning("the open-file limit (%d) is below server.max_connections (%d) plus %d; "
                    "raise it (ulimit -n, systemd LimitNOFILE) or lower the cap",
                    soft, max_connections, FD_RESERVE)


def listen(address: str) -> socket.socket:
    """A socket bound to `host:port` and listening, or StartupError with the reason."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    try:
        family, kind, proto, _, sockaddr = socket.getaddrinfo(
            host, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise StartupError(f"cannot listen on {address}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        hint = {errno.EADDRINUSE: " (another process is listening on that port)",
                errno.EACCES: " (ports below 1024 need privileges)",
                errno.EADDRNOTAVAIL: " (no local interface has that address)"}
        raise StartupError(f"cannot listen on {address}: {exc.strerror}"
                           f"{hint.get(exc.errno or 0, '')}") from None
    sock.setblocking(False)
    return sock


class Server(uvicorn.Server):
    """uvicorn's server with an announcement once serving and a bounded, prompt stop."""

    def __init__(self, config: uvicorn.Config, *, on_started: Callable[[], None],
                 shutdown_timeout: float, tls_handshake_timeout: float,
                 companions: Sequence[Callable[[], Awaitable[None]]] = ()) -> None:
        super().__init__(config)
        self.on_started = on_started
        self.shutdown_timeout = shutdown_timeout
        self.tls_handshake_timeout = tls_handshake_timeout
        self.companions = companions  # tasks that run while serving (the health monitor)
        self._companion_tasks: list[asyncio.Task[None]] = []

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        # uvicorn runs the lifespan and its state with no sockets; the listeners are ours.
        await super().startup([])
        if not self.started:
            return
        config = self.config
        loop = asyncio.get_running_loop()

        def protocol() -> asyncio.Protocol:
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=self.server_state, app_state=self.lifespan.state)

        deadline = self.tls_handshake_timeout if config.ssl is not None else None
        for sock in sockets or []:
            self.servers.append(await loop.create_server(
                protocol, sock=sock, backlog=BACKLOG, ssl=config.ssl,
                ssl_handshake_timeout=deadline, ssl_shutdown_timeout=deadline))
        self._companion_tasks = [asyncio.ensure_future(run()) for run in self.companions]
        # What exists now (modules, the app, the ORM, the pools) lives as long as the process:
        # moved out of the collector's reach, a full collection under load scans only what
        # came later, instead of pausing every request (and /healthz) for a whole heap walk.
        gc.collect()
        gc.freeze()
        self.on_started()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.shutdown_timeout
        for task in self._companion_tasks:
            task.cancel()
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        state = self.server_state
        # Idle connections close, busy ones close after their response, websockets get 1012.
        for connection in list(state.connections):
            connection.shutdown()
        if state.tasks:
            log.info("stopping: %d request(s) in flight, waiting up to %gs",
                     len(state.tasks), self.shutdown_timeout)
        if state.tasks and not self.force_exit:
            await asyncio.wait(list(state.tasks), timeout=self.shutdown_timeout)
        # What is left is closing: drop each once its last response has left the buffer; at
        # the deadline, drop the rest, so no request cancelled below can still answer.
        while state.connections and not self.force_exit and loop.time() < deadline:
            for connection in list(state.connections):
                if _transport(connection).get_write_buffer_size() == 0:
                    _transport(connection).abort()
            await asyncio.sleep(0.05)
        for connection in list(state.connections):
            _transport(connection).abort()
        if state.tasks:
            log.warning("stopping: %d request(s) still running after %gs, cancelled",
                        len(state.tasks), self.shutdown_timeout)
            # uvicorn would log each cancellation as a traceback; the line above says it all.
            logging.getLogger("uvicorn.error").addFilter(_not_cancelled)
            cancelled = list(state.tasks)
            for task in cancelled:
                task.cancel()
            # Let their cleanups (closing a campaign, say) run before the database closes.
            await asyncio.wait(cancelled, timeout=CANCEL_GRACE)
        if not self.force_exit:
            await self.lifespan.shutdown()


def _not_cancelled(record: logging.LogRecord) -> bool:
    return not (record.exc_info and record.exc_info[0] is asyncio.CancelledError)


def _transport(connection: Any) -> asyncio.Transport:
    transport: asyncio.Transport = connection.transport  # every uvicorn protocol keeps one
    return transport

