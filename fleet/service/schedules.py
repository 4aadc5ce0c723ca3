"""Named schedules as a use case: asking for a run now (`fleetctl trigger`).

The run itself happens on whichever instance holds the schedule's lock (`fleet.jobs`), so
a trigger is a pending `cron_stats` row with no instance yet, which that instance picks up.
"""

from __future__ import annotations

from collections.abc import Sequence

from fleet.core.authz import GLOBAL, Action, Viewer, authorize
from fleet.core.errors import Conflict, NotFound
from fleet.service.context import ServiceContext
from fleet.store import cron_stats
from fleet.store.db import utcnow


async def trigger(ctx: ServiceContext, viewer: Viewer, name: str,
                  names: Sequence[str]) -> None:
    """Queue a run of schedule `name` (one of the registered `names`) unless one of it is
    already waiting or running."""
    authorize(viewer, Action.TRIGGER_SCHEDULES, GLOBAL)
    if name not in names:
        raise _with_message(NotFound(
            f"invalid name; supported trigger names are {', '.join(sorted(names))}",
            name="name"))
    async with ctx.db.begin() as conn:
        if await cron_stats.has_pending(conn, name):
            raise _with_message(Conflict(
                f"a run of the {name} schedule is already pending or running", name="name"))
        await cron_stats.queue_trigger(conn, name, now=utcnow())


def _with_message(exc: NotFound | Conflict) -> NotFound | Conflict:
    """Fleet answers these with the reason as the envelope's message, which is what
    `fleetctl trigger` prints."""
    exc.message = exc.reason
    return exc
