"""The label family: dynamic labels asked of hosts as `fleet_label_query_<id>`.

Due when the host's `label_updated_at` is older than `osquery.label_update_interval` (plus
the per-host jitter the detail family also uses) or a refetch was requested: decided from the
cached host alone. The labels asked come from `ServiceContext.label_queries`, an in-process
cache, so a due host costs no SQL until it answers. An answer's rows make the host a member,
no rows or a failed query remove it; all of one write's answers are stored in two statements
through `HostTables.record_label_results`, with `label_updated_at`, in the write's
transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fleet.core.agent_values import short
from fleet.core.detail_queries import HostTables, IngestContext, Rows
from fleet.core.labels import PREFIX, membership_result
from fleet.service.context import ServiceContext
from fleet.service.families import (
    Answer,
    HostWrite,
    Query,
    campaign_id,
    loaded_or_none,
    refresh_due,
)
from fleet.service.hostcache import CachedHost

log = logging.getLogger("fleet.families")


class LabelFamily:
    prefix = PREFIX

    def due(self, ctx: ServiceContext, host: CachedHost, now: float) -> bool:
        return refresh_due(ctx, host, host.label_updated_at,
                           ctx.cfg.osquery.label_update_interval, now)

    async def queries(self, ctx: ServiceContext, host: CachedHost) -> Mapping[str, Query]:
        labels = await loaded_or_none(ctx.label_queries.queries(ctx.db), host, "label queries")
        if labels is None:
            return {}
        return {str(label.id): Query(label.query) for label in labels
                if label.runs_on(host.platform)}

    async def ingest(self, ctx: ServiceContext, host: CachedHost,
                     answers: Mapping[str, Answer], write: HostWrite) -> None:
        results: dict[int, bool] = {}
        for name, answer in answers.items():
            label_id = campaign_id(name)  # the same rule: a plain positive 64-bit id
            if label_id is None:
                log.info("host %s answered unknown label query %r", host.id,
                         short(answer.name))
                continue
            rows = answer.rows if isinstance(answer.rows, list) else []
            results[label_id] = bool(membership_result(bool(answer.status), len(rows)))

        async def record(tables: HostTables, _rows: Rows, _ctx: IngestContext) -> None:
            await tables.record_label_results(results)

        if results:
            write.direct.append((record, []))
        write.columns["label_updated_at"] = write.now
