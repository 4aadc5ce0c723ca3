"""Write log lines to the server's standard output (for container log collectors)."""

from __future__ import annotations

import sys

from fleet.logdest.base import LogWriteError, ThreadedLineWriter


class StdoutDestination(ThreadedLineWriter):
    def _append(self, data: bytes) -> None:
        try:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        except (OSError, ValueError) as exc:
            raise LogWriteError(f"writing stdout: {exc}") from exc
