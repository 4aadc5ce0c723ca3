"""Software lists written off the request, in batches, by one task per instance.

A host's software list is hundreds of rows and every host sends its first one within
seconds of enrolling, so an enrollment burst would make each `distributed/write` wait for
a large write that contends with every other host's for the same shared rows (MySQL lock
waits, deadlocks, retries). Instead the request queues the parsed list and answers; one
drain task per instance writes whatever has queued, up to `batch_hosts` hosts at a time,
in one transaction of a fixed number of statements (`store.software.sync_software`). A
quiet server writes each list within milliseconds; a burst makes batches larger, not
requests slower.

A list identical to the one this process last stored for the host (the hourly re-send of
an unchanged inventory) is recognised by its digest and costs neither parsing nor SQL. A
queued list keeps only the ids of software the process already knows (no names and
versions), so thousands of queued hosts stay small. The queue is bounded: when `capacity`
hosts wait, `submit` waits for room (the agent's request is held, nothing is dropped). A
host that sends a new list while its previous one waits replaces it.

A batch that cannot be stored after the retries is logged and its hosts' details are marked
due, so they send their lists again at their next check-in; lists still queued when the
process dies are asked again at the next detail interval.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from itertools import islice

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from fleet.core.bounded import BoundedDict
from fleet.core.software import parse_rows
from fleet.store import hosts as host_store
from fleet.store import software as store
from fleet.store.db import Database, utcnow

log = logging.getLogger("fleet.software")

Rows = Sequence[Mapping[str, str]]
Forget = Callable[[Sequence[int]], Awaitable[None]]

STORED_DIGESTS = 500_000  # hosts whose last stored list this process remembers
ATTEMPTS = 5  # per batch, for lock conflicts with other instances' batches
BACKOFF = 0.25  # seconds before the first retry, doubled each time (jittered)


class SoftwareWriter:
    """`forget` drops hosts from every instance's host cache (after their refetch flag
    was set, so the cached hosts do not go on saying their details are current)."""

    def __init__(self, db: Database, forget: Forget, *, capacity: int = 5000,
                 batch_hosts: int = 100) -> None:
        self._db = db
        self._forget = forget
        self._ids = store.SoftwareIds()
        # Per host, the digest of the list this process last stored (or found unchanged).
        self._stored: BoundedDict[int, bytes] = BoundedDict(STORED_DIGESTS)
        self.capacity = capacity
        self.batch_hosts = batch_hosts
        self._pending: dict[int, tuple[store.HostList, bytes, dt.datetime]] = {}
        self._room = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self.failed = 0  # lists given up on

    async def submit(self, host_id: int, rows: Rows) -> None:
        """Queue `rows` (a software detail query's answer) as the host's software, unless it
        is the list last stored (waiting while the queue is full)."""
        digest = hashlib.md5(orjson.dumps(rows), usedforsecurity=False).digest()
        if host_id not in self._pending and self._stored.get(host_id) == digest:
            return
        while len(self._pending) >= self.capacity and host_id not in self._pending:
            self._room.clear()
            await self._room.wait()
        queued = store.HostList.of(parse_rows(rows), self._ids)
        self._pending.pop(host_id, None)  # a newer list goes to the back of the queue
        self._pending[host_id] = (queued, digest, utcnow())
        self._idle.clear()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name="software-writer")

    async def idle(self) -> None:
        """Wait until every queued list has been written (or given up on)."""
        await self._idle.wait()

    async def close(self, grace: float) -> None:
        """Write what is queued (shutdown); what is left after `grace` seconds is asked
        again at those hosts' next detail interval."""
        try:
            async with asyncio.timeout(grace):
                await self.idle()
        except TimeoutError:
            log.warning("shutting down with %d software lists not written; those hosts "
                        "will send them again", len(self._pending))
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch = {h: self._pending.pop(h)
                         for h in list(islice(self._pending, self.batch_hosts))}
                self._room.set()
                await self._write(batch)
        finally:
            if not self._pending:
                self._idle.set()

    async def _write(self, batch: Mapping[int, tuple[store.HostList, bytes, dt.datetime]]
                     ) -> None:
        lists = {h: queued for h, (queued, _, _) in batch.items()}
        # The batch's time is its latest list's: no host's update time is before its list.
        now = max(at for _, _, at in batch.values())

        async def work(conn: AsyncConnection) -> dict[bytes, int]:
            return await store.sync_software(conn, lists, now, self._ids)

        try:
            self._ids.add(await self._db.transact(work, attempts=ATTEMPTS, backoff=BACKOFF))
            self._stored.put_many((h, digest) for h, (_, digest, _) in batch.items())
        except Exception as exc:  # the writer must outlive any one batch
            for h in lists:
                self._stored.pop(h)
            self.failed += len(lists)
            log.error("storing the software of %d hosts failed (%s); they will be asked "
                      "again", len(lists), exc)
            await self._ask_again(sorted(lists))

    async def _ask_again(self, host_ids: Sequence[int]) -> None:
        try:
            async with self._db.begin() as conn:
                await host_store.request_refetch(conn, host_ids)
            await self._forget(host_ids)
        except Exception as exc:
            log.error("could not mark %d hosts' details due again: %s", len(host_ids), exc)
