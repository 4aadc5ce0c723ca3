"""Health checks of the database and the broker, run on demand or by a monitor.

`mysql` checks whichever database is configured (the SQLite file when embedded) and `redis`
whichever broker runs (always healthy in-process), so probes work unchanged on both
deployment shapes. The database check uses its own connection (`Database.ping`), never the
agents' pool.

A load balancer's probe must be answered in milliseconds however busy the process is. In a
saturated event loop every await of a live check waits a whole loop turn behind agent work,
so `fleet serve` runs a `HealthMonitor` that checks every `INTERVAL` and the HTTP layer
answers `/healthz` from its last result without entering the application.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from fleet.service.context import ServiceContext

log = logging.getLogger("fleet.healthz")

# A check that takes longer fails: a load balancer must get an answer before its own timeout,
# and a database that needs seconds for SELECT 1 is not healthy.
CHECK_TIMEOUT = 2.0
INTERVAL = 1.0
# A result older than this is not served: the monitor itself is stuck, so ask live.
MAX_AGE = INTERVAL + CHECK_TIMEOUT * 2 + 1.0

Check = Callable[[], Awaitable[None]]


def checks(ctx: ServiceContext) -> dict[str, Check]:
    return {"mysql": ctx.db.ping, "redis": ctx.broker.ping}


async def run_checks(ctx: ServiceContext, names: Iterable[str]) -> dict[str, str]:
    """The failed checks among `names`, each with its reason (empty: all healthy)."""
    available = checks(ctx)
    failed: dict[str, str] = {}
    for name in names:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                await available[name]()
        except TimeoutError:
            failed[name] = f"no answer within {CHECK_TIMEOUT:g} s"
        except Exception as exc:  # any failure of a check means "not healthy"
            failed[name] = str(exc) or type(exc).__name__
    return failed


class HealthMonitor:
    """Runs every check each INTERVAL and keeps the outcome; logs each change of state once
    (a failing check every second would otherwise be a line a second)."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self._failed: dict[str, str] | None = None
        self._at = 0.0

    def healthy(self) -> bool | None:
        """The last outcome, or None when there is none recent enough to serve."""
        if self._failed is None or time.monotonic() - self._at > MAX_AGE:
            return None
        return not self._failed

    async def run(self) -> None:
        while True:
            failed = await run_checks(self.ctx, checks(self.ctx))
            for name, reason in failed.items():
                if self._failed is None or name not in self._failed:
                    log.warning("health check %s failed: %s", name, reason)
            for name in (self._failed or {}):
                if name not in failed:
                    log.info("health check %s passes again", name)
            self._failed, self._at = failed, time.monotonic()
            await asyncio.sleep(INTERVAL)
