"""Buffered host seen-times: check-ins record into memory, a flusher writes them in batches.

One UPSERT of every host seen in the last few seconds replaces one write per check-in, which
is what lets the database stay idle while thousands of agents poll. A crash loses at most one
flush interval of seen times, which only delays "online" by as much (Fleet accepts the same).
"""

from __future__ import annotations

from fleet.store import hosts as host_store
from fleet.store.db import Database, utcnow

FLUSH_INTERVAL = 5.0


class SeenBuffer:
    def __init__(self) -> None:
        self._pending: set[int] = set()

    def record(self, host_id: int) -> None:
        self._pending.add(host_id)

    def __len__(self) -> int:
        return len(self._pending)

    async def flush(self, db: Database) -> int:
        """Write every pending seen time; on failure they are kept for the next flush."""
        if not self._pending:
            return 0
        batch, self._pending = self._pending, set()
        try:
            await host_store.mark_seen(db, sorted(batch), utcnow())
        except BaseException:
            self._pending |= batch
            raise
        return len(batch)
