"""One value loaded from the database and served from memory (the agent-config snapshots,
the dynamic labels' queries): what the agent path reads instead of running SQL per request.

A value is reloaded when an invalidation (a change announced by any instance) made it stale,
or when it is older than the caller's age limit (the safety net for an announcement lost in
a broker outage). Reloads are single flight: the hundreds of requests that find the value
stale at once wait for one load instead of each running the queries and draining the pool.
While the database is away, the last value loaded keeps being served.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from fleet.store.db import is_outage

T = TypeVar("T")


class Reloading(Generic[T]):
    def __init__(self) -> None:
        # (value, when it was loaded, the generation it was loaded in)
        self._loaded: tuple[T, float, int] | None = None
        # Bumped by invalidations: a value, or a load under way, of an older generation may
        # predate the change, so it is not served while the database answers.
        self._generation = 0
        self._reload: tuple[int, asyncio.Task[T]] | None = None

    def invalidate(self) -> None:
        self._generation += 1

    async def get(self, load: Callable[[], Awaitable[T]], max_age: float) -> T:
        loaded = self._loaded
        if loaded is not None and loaded[2] == self._generation \
                and time.monotonic() - loaded[1] <= max_age:
            return loaded[0]
        generation = self._generation
        reload = self._reload
        if reload is None or reload[1].done() or reload[0] != generation:
            reload = generation, asyncio.ensure_future(self._load(load, generation))
            self._reload = reload
        try:
            return await asyncio.shield(reload[1])
        except Exception as exc:
            if self._loaded is not None and is_outage(exc):
                return self._loaded[0]
            raise

    async def _load(self, load: Callable[[], Awaitable[T]], generation: int) -> T:
        value = await load()
        if self._loaded is None or self._loaded[2] <= generation:
            self._loaded = value, time.monotonic(), generation
        return value
