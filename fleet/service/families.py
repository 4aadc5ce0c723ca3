"""Query families: the kinds of query Fleet hands an agent at `distributed/read`.

Each family owns a name prefix (`fleet_detail_query_`, `fleet_distributed_query_`, later
`fleet_label_query_`, `fleet_policy_query_`, `fleet_additional_query_`), decides whether it
is due for a host, says which queries it asks, and ingests their answers. `checkin` and
`ingest` loop over `REGISTRY`; a new family is one class and one entry there.

`due` runs on every check-in of every host, so it must decide from the cached host alone
(timestamps, flags) and the configuration: no SQL, no broker call. Only a due family's
`queries` is called, and it may do cheap cached I/O (the live family asks the broker's
cached campaign list).

A family ingests either into host columns (`HostWrite.columns`, e.g. the detail queries'
IngestFuncs) or into tables of its own (`HostWrite.direct`, through the narrow
`core.detail_queries.HostTables`), never through the whole ServiceContext; a software list
(`HostWrite.software`) is queued for the batch writer after the write is stored. Everything a
write stores is committed in one transaction after every family ran, together with the
family's own "updated at" column, so a host's timestamp and its rows never disagree.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from fleet.broker.base import BrokerUnavailable
from fleet.core import detail_queries
from fleet.core.agent_values import INT64_MAX, clean_rows, short
from fleet.core.detail_queries import DirectIngest, IngestContext, Rows
from fleet.service import campaigns
from fleet.service.context import ServiceContext
from fleet.service.hostcache import CachedHost
from fleet.store.db import is_outage

log = logging.getLogger("fleet.families")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Query:
    """One query a family asks (its name, without the prefix, is the key it is listed by)."""

    sql: str
    discovery: str = ""


@dataclass(frozen=True, slots=True)
class Answer:
    """A host's answer to one query of a family, as the agent sent it."""

    name: str  # the whole wire name, prefix included
    rows: Any  # not yet cleaned: see HostWrite.clean
    status: int  # 0: success
    message: str
    stats: Any


@dataclass
class HostWrite:
    """What one `distributed/write` stores for its host, filled by the families' ingests and
    committed in one transaction by `ingest.submit_results`."""

    now: dt.datetime
    context: IngestContext
    columns: dict[str, Any] = field(default_factory=dict)
    direct: list[tuple[DirectIngest, Rows]] = field(default_factory=list)
    # The host's software list (its rows), queued for the batch writer once the write is
    # stored.
    software: Rows | None = None
    # Per query name, the values dropped while cleaning (one warning per write).
    dropped: dict[str, list[str]] = field(default_factory=dict)

    def clean(self, answer: Answer) -> list[dict[str, str]]:
        """The answer's rows as osquery column values (anything else dropped and noted)."""
        rows, self.dropped[answer.name] = clean_rows(answer.rows)
        return rows

    def __bool__(self) -> bool:
        return bool(self.columns or self.direct or self.software is not None)


class QueryFamily(Protocol):
    prefix: str

    def due(self, ctx: ServiceContext, host: CachedHost, now: float) -> bool:
        """Whether to ask this host now: from the cached host and config only (no I/O)."""

    async def queries(self, ctx: ServiceContext, host: CachedHost) -> Mapping[str, Query]:
        """The queries to ask a host the family is due for, by name without the prefix."""

    async def ingest(self, ctx: ServiceContext, host: CachedHost,
                     answers: Mapping[str, Answer], write: HostWrite) -> None:
        """Take this family's answers of one write (by name without the prefix)."""


class Registry:
    """The families in the order they ingest (whoever waits for an answer comes first)."""

    def __init__(self, families: Sequence[QueryFamily]) -> None:
        prefixes = [f.prefix for f in families]
        for prefix in prefixes:
            if any(p != prefix and p.startswith(prefix) for p in prefixes) \
                    or prefixes.count(prefix) > 1:
                raise ValueError(f"query family prefix {prefix!r} is ambiguous")
        self._families = tuple(families)

    def __iter__(self) -> Iterator[QueryFamily]:
        return iter(self._families)

    def family_of(self, name: str) -> QueryFamily | None:
        for family in self._families:
            if name.startswith(family.prefix):
                return family
        return None


def jitter_seconds(host_id: int, interval: float, max_jitter_percent: int) -> float:
    """Per-host offset (whole minutes, as Fleet) so refreshes of a fleet do not align."""
    buckets = int(max_jitter_percent * (interval / 60) / 100)
    return 60.0 * (host_id % buckets) if buckets > 0 else 0.0


def refresh_due(ctx: ServiceContext, host: CachedHost, updated_at: float, interval: float,
                now: float) -> bool:
    """Fleet's `shouldUpdate`: a refetch was requested, or `updated_at` is older than the
    interval plus the host's jitter."""
    if host.refetch_requested:
        return True
    jitter = jitter_seconds(host.id, interval, ctx.cfg.osquery.max_jitter_percent)
    return updated_at < now - (interval + jitter)


async def loaded_or_none(load: Awaitable[T], host: CachedHost, what: str) -> T | None:
    """A cached value a family asks with (`what`), or None when it was never loaded and the
    database is away: the family asks nothing this check-in (its answers could not be
    stored either) while vitals and live queries still flow. Debug only: every check-in
    would repeat it, and the agent endpoints report the outage once."""
    try:
        return await load
    except Exception as exc:
        if not is_outage(exc):
            raise
        log.debug("%s unavailable for host %s: %s", what, host.id, exc)
        return None


class DetailFamily:
    """Host vitals (`core/detail_queries.py`), due every `osquery.detail_update_interval`
    (plus a per-host jitter) or when a refetch was requested."""

    prefix = detail_queries.PREFIX

    def due(self, ctx: ServiceContext, host: CachedHost, now: float) -> bool:
        return refresh_due(ctx, host, host.detail_updated_at,
                           ctx.cfg.osquery.detail_update_interval, now)

    async def queries(self, ctx: ServiceContext, host: CachedHost) -> Mapping[str, Query]:
        """The platform's detail queries, as `features` says: a query whose flag is off
        (`enable_software_inventory`, ...) is not asked; `detail_query_overrides` replaces
        a query's SQL, or with null or "" drops it."""
        settings = await loaded_or_none(ctx.settings.get(ctx.db), host, "settings")
        if settings is None:
            return {}
        features = settings.features
        overrides = features.detail_query_overrides
        out: dict[str, Query] = {}
        for name, q in detail_queries.queries_for_platform(host.platform).items():
            if not features.enabled(q.feature):
                continue
            if name not in overrides:
                out[name] = Query(q.sql, q.discovery)
            elif overrides[name]:
                out[name] = Query(str(overrides[name]), q.discovery)
        return out

    async def ingest(self, ctx: ServiceContext, host: CachedHost,
                     answers: Mapping[str, Answer], write: HostWrite) -> None:
        for name, answer in answers.items():
            if answer.status:
                if not answer.message.startswith("no such table"):
                    log.info("detail query %s failed on host %s: %s", short(answer.name),
                             host.id, short(answer.message, 200))
                continue
            detail = detail_queries.BY_NAME.get(name)
            if detail is None:
                log.info("host %s answered unknown detail query %r", host.id,
                         short(answer.name))
                continue
            rows = write.clean(answer)
            if detail.ingest is not None:
                write.columns.update(detail.ingest(rows, write.context))
            if detail.direct_ingest is not None:
                write.direct.append((detail.direct_ingest, rows))
            if detail.software_list:
                write.software = rows
        # Answered, even if every query failed: not due again before the next interval.
        write.columns.update(detail_updated_at=write.now, refetch_requested=False)


def campaign_id(text: str) -> int | None:
    """The id in a live query's name: plain ASCII digits within a 64-bit id, else None
    (`int()` would also take signs, spaces, underscores and non-ASCII digits)."""
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        return None
    value = int(text)
    return value if 0 < value <= INT64_MAX else None


class LiveFamily:
    """Live-query campaigns (`service/campaigns.py`): asked while the broker marks the host,
    answers published to the campaign's watchers at once."""

    prefix = "fleet_distributed_query_"

    def due(self, ctx: ServiceContext, host: CachedHost, now: float) -> bool:
        return True  # the broker's cached campaign list decides, in `queries`

    async def queries(self, ctx: ServiceContext, host: CachedHost) -> Mapping[str, Query]:
        try:
            live = await ctx.broker.live.queries_for_host(host.id)
        except BrokerUnavailable as exc:
            # Live queries are best effort here: vitals must still flow while Redis is down.
            log.warning("live query lookup failed for host %s: %s", host.id, exc)
            return {}
        return {str(cid): Query(sql) for cid, sql in live.items()}

    async def ingest(self, ctx: ServiceContext, host: CachedHost,
                     answers: Mapping[str, Answer], write: HostWrite) -> None:
        for name, answer in answers.items():
            cid = campaign_id(name)
            if cid is None:
                log.info("host %s answered unknown live query %r", host.id, short(answer.name))
                continue
            rows = write.clean(answer)
            error = (answer.message or "query failed") if answer.status else ""
            await campaigns.ingest_result(ctx, host, cid, rows, error, answer.stats)


DETAILS = DetailFamily()
LIVE = LiveFamily()


def __getattr__(name: str) -> Registry:
    """`REGISTRY`, built at first use: families in modules of their own build on this
    module's types, so they can only be imported once it is (PEP 562 module attribute)."""
    if name != "REGISTRY":
        raise AttributeError(name)
    from fleet.service.label_family import LabelFamily

    # Live first: someone is waiting for those answers, so nothing else in the write may
    # cost them.
    registry = globals()["REGISTRY"] = Registry((LIVE, DETAILS, LabelFamily()))
    return registry
