"""Write log lines to the server's standard output (for container log collectors)."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Sequence

from fleet.logdest.base import LogWriteError


class StdoutDestination:
    def __init__(self) -> None:
        self._lock = threading.Lock()

    def _write_sync(self, lines: Sequence[bytes]) -> None:
        data = b"".join(line + b"\n" for line in lines)
        with self._lock:
            try:
                sys.stdout.buffer.write(data)
                sys.stdout.buffer.flush()
            except (OSError, ValueError) as exc:
                raise LogWriteError(f"writing stdout: {exc}") from exc

    async def write(self, lines: Sequence[bytes]) -> None:
        if lines:
            await asyncio.to_thread(self._write_sync, lines)

    async def close(self) -> None:
        return None
