"""Write log lines to the server's standard output (for container log collectors)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from fleet.logdest.base import LogType, LogWriteError, ThreadedLineWriter

if TYPE_CHECKING:
    from fleet.config import Config


def from_config(cfg: Config, log_type: LogType) -> StdoutDestination:
    """Both streams share the one standard output; there is nothing to configure."""
    return StdoutDestination()


class StdoutDestination(ThreadedLineWriter):
    def _append(self, data: bytes) -> None:
        try:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        except (OSError, ValueError) as exc:
            raise LogWriteError(f"writing stdout: {exc}") from exc
