"""In-process cache of the dynamic labels' queries, which the label family asks hosts.

A host whose labels are due gets every dynamic label of its platform: served from memory, so
label refreshes of a whole fleet cost no SQL beyond their answers. Label changes made through
any instance are announced on the broker (`ServiceContext.labels_changed`) and drop the list
everywhere at once; CACHE_SECONDS is the safety net for an announcement lost in an outage.
"""

from __future__ import annotations

from fleet.core.labels import LabelQuery
from fleet.service.reloading import Reloading
from fleet.store import labels as label_store
from fleet.store.db import Database

CACHE_SECONDS = 60.0


class LabelQueryCache:
    def __init__(self) -> None:
        self._queries: Reloading[tuple[LabelQuery, ...]] = Reloading()

    def invalidate(self) -> None:
        self._queries.invalidate()

    async def queries(self, db: Database) -> tuple[LabelQuery, ...]:
        """Every dynamic label's query (the last known ones while the database is away)."""
        async def load() -> tuple[LabelQuery, ...]:
            async with db.connect() as conn:
                return tuple(await label_store.dynamic_label_queries(conn))
        return await self._queries.get(load, CACHE_SECONDS)
