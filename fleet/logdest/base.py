"""Where osquery result and status logs go. One line per log item, written in batches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class LogWriteError(Exception):
    """The destination refused the batch; the agent must keep its logs and retry (413)."""


class LogDestination(Protocol):
    async def write(self, lines: Sequence[bytes]) -> None:
        """Append every line (without trailing newline) or raise LogWriteError."""

    async def close(self) -> None: ...
