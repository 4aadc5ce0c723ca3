"""In-process cache of the dynamic labels' queries, which the label family asks hosts.

A host whose labels are due gets every dynamic label of its platform: served from memory, so
label refreshes of a whole fleet cost no SQL beyond their answers. Label changes made through
any instance are announced on the broker (`ServiceContext.labels_changed`) and drop the list
everywhere at once; CACHE_SECONDS is the safety net for an announcement lost in an outage.
"""

from __future__ import annotations

import asyncio
import time

from fleet.core.labels import LabelQuery
from fleet.store import labels as label_store
from fleet.store.db import Database, is_outage

CACHE_SECONDS = 60.0


class LabelQueryCache:
    def __init__(self) -> None:
        self._queries: tuple[LabelQuery, ...] | None = None
        self._loaded_at = 0.0
        self._generation = 0  # bumped by invalidations: a load that started before is stale
        self._loaded_generation = -1
        self._reload: tuple[int, asyncio.Task[tuple[LabelQuery, ...]]] | None = None

    def invalidate(self) -> None:
        self._generation += 1

    def _fresh(self) -> bool:
        return self._queries is not None and self._loaded_generation == self._generation \
            and time.monotonic() - self._loaded_at <= CACHE_SECONDS

    async def queries(self, db: Database) -> tuple[LabelQuery, ...]:
        """Every dynamic label's query (single flight: concurrent misses share one load)."""
        if self._fresh():
            assert self._queries is not None
            return self._queries
        generation = self._generation
        if self._reload is None or self._reload[1].done() or self._reload[0] != generation:
            self._reload = generation, asyncio.ensure_future(self._load(db, generation))
        try:
            return await asyncio.shield(self._reload[1])
        except Exception as exc:
            # While the database is away, hosts keep being asked the last known labels.
            if self._queries is not None and is_outage(exc):
                return self._queries
            raise

    async def _load(self, db: Database, generation: int) -> tuple[LabelQuery, ...]:
        async with db.connect() as conn:
            found = tuple(await label_store.dynamic_label_queries(conn))
        if generation >= self._loaded_generation:
            self._queries, self._loaded_at, self._loaded_generation = \
                found, time.monotonic(), generation
        return found
