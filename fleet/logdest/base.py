"""Where osquery result and status logs go. One line per log item, written in batches."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Protocol


class LogWriteError(Exception):
    """The destination refused the batch; the agent must keep its logs and retry (413)."""


class LogDestination(Protocol):
    async def write(self, lines: Sequence[bytes]) -> None:
        """Append every line (without trailing newline) or raise LogWriteError."""

    async def close(self) -> None: ...


class ThreadedLineWriter:
    """Writes batches off the event loop (a slow sink must not stall check-ins), one batch
    at a time so concurrent batches never interleave inside a line. Subclasses supply
    `_append`, which raises LogWriteError on failure."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def _append(self, data: bytes) -> None:
        raise NotImplementedError

    def _write_sync(self, lines: Sequence[bytes]) -> None:
        data = b"".join(line + b"\n" for line in lines)
        with self._lock:
            self._append(data)

    async def write(self, lines: Sequence[bytes]) -> None:
        if lines:
            await asyncio.to_thread(self._write_sync, lines)
