"""Log lines that an attacker or an outage cannot turn into a flood.

A rejected agent request, a failed enrollment or a database outage deserves a line with its
reason, but thousands of agents retrying every few seconds would write thousands of them. A
`LogThrottle` writes the first line of each kind, then at most one per interval, saying how
many like it it held back.
"""

from __future__ import annotations

import logging
import time
from typing import Any


class LogThrottle:
    def __init__(self, logger: logging.Logger, interval: float = 10.0) -> None:
        self.logger = logger
        self.interval = interval
        self._kinds: dict[str, tuple[float, int]] = {}  # kind -> (last written, held back)

    def log(self, level: int, kind: str, msg: str, *args: Any) -> None:
        now = time.monotonic()
        last, held = self._kinds.get(kind, (-self.interval, 0))
        if now - last < self.interval:
            self._kinds[kind] = (last, held + 1)
            return
        if len(self._kinds) > 1000:  # kinds come from a small fixed set; stay bounded anyway
            self._kinds.clear()
        self._kinds[kind] = (now, 0)
        if held:
            msg += f" ({held} more like it in the last {self.interval:g} s)"
        self.logger.log(level, msg, *args)
