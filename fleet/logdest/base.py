"""Where osquery result and status logs go. One line per log item, written in batches."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from typing import Literal, Protocol

log = logging.getLogger("fleet.logdest")

# Which of osquery's two log streams a destination receives.
LogType = Literal["status", "result"]


class LogWriteError(Exception):
    """The destination refused the batch; the agent must keep its logs and retry (413)."""


class LogDestination(Protocol):
    async def write(self, lines: Sequence[bytes]) -> None:
        """Append every line (without trailing newline) or raise LogWriteError."""

    async def close(self) -> None: ...


class ThreadedLineWriter:
    """Appends log batches from one writer thread, in group commits.

    A slow sink must not stall check-ins, and a thread hand-off per request (to_thread)
    costs the event loop more than the write itself at thousands of log posts a second. So
    requests queue their batch and wait; the writer thread takes everything queued since
    its last write, appends it with one write and one flush, then settles every waiting
    request at once. Batches are whole, so lines never interleave, and a request returns
    only after its lines reached the sink: a failure still reaches the agent as a 413.
    Subclasses supply `_append` (raising LogWriteError on failure) and `_release`.

    A failing sink is logged once per episode (its first error, then one line when it
    recovers with the number of batches refused meanwhile), not once per request.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: list[tuple[bytes, asyncio.Future[None]]] = []
        self._thread: threading.Thread | None = None
        self._closing = False
        self._refused = 0  # batches refused since the sink started failing

    def _append(self, data: bytes) -> None:
        raise NotImplementedError

    def _release(self) -> None:
        """Give back what `_append` holds open (called on the writer thread at close)."""

    async def write(self, lines: Sequence[bytes]) -> None:
        if not lines:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        data = b"\n".join(lines) + b"\n"
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._closing = False
                self._thread = threading.Thread(target=self._run, name="fleet-log-writer",
                                                daemon=True)
                self._thread.start()
            self._queue.append((data, future))
            self._cond.notify()
        await future

    async def close(self) -> None:
        with self._cond:
            thread, self._closing = self._thread, True
            self._cond.notify()
        if thread is not None:
            await asyncio.to_thread(thread.join)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                batch, self._queue = self._queue, []
                if not batch:
                    self._release()
                    return
            error: LogWriteError | None = None
            try:
                self._append(b"".join(data for data, _ in batch))
            except LogWriteError as exc:
                error = exc
            except Exception as exc:  # a bug in a sink must not leave requests waiting forever
                error = LogWriteError(f"{type(exc).__name__}: {exc}")
            self._note_outcome(error, len(batch))
            loops: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
            for _, future in batch:
                loops.setdefault(future.get_loop(), []).append(future)
            for loop, futures in loops.items():
                try:
                    loop.call_soon_threadsafe(_settle, futures, error)
                except RuntimeError:  # that loop has closed: nobody is waiting any more
                    pass

    def _note_outcome(self, error: LogWriteError | None, batches: int) -> None:
        if error is not None:
            if not self._refused:
                log.error("log destination failing, agents keep their logs and retry: %s "
                          "(logged once until it recovers)", error)
            self._refused += batches
        elif self._refused:
            log.warning("log destination recovered after refusing %d batch(es)",
                        self._refused)
            self._refused = 0


def _settle(futures: list[asyncio.Future[None]], error: LogWriteError | None) -> None:
    for future in futures:
        if future.done():  # the request was cancelled (client went away)
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(LogWriteError(str(error)))
