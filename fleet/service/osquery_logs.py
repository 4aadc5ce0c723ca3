"""`/log`: forward osquery status and result lines to their destinations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from fleet.core.agent_values import clean_json, short
from fleet.core.errors import BadRequest, PayloadTooLarge
from fleet.logdest import LogWriteError
from fleet.service.context import ServiceContext


async def submit_logs(ctx: ServiceContext, team_id: int | None, log_type: str,
                      data: Sequence[Any]) -> None:
    """Write one JSON line per item; a destination failure is a 413 so osquery retries.
    Result lines are filtered by the config of the sending host's team."""
    if log_type == "status":
        lines = [_line(item) for item in data]
        destination = ctx.status_log
    elif log_type == "result":
        lines = []
        for item in data:
            # Items that are not result objects are dropped, as Fleet does.
            if not isinstance(item, dict) or not isinstance(item.get("name"), str) \
                    or not item["name"]:
                continue
            if await ctx.agent_config.forwards_results(ctx.db, team_id, item["name"]):
                lines.append(_line(item))
        destination = ctx.result_log
    else:
        raise BadRequest(f"unknown log type: {short(log_type)}", name="log_type")
    try:
        await destination.write(lines)
    except LogWriteError as exc:
        raise PayloadTooLarge(f"error writing {log_type} logs: {exc}",
                              name="log_write") from None


def _line(item: Any) -> bytes:
    """One JSON line; an item orjson cannot encode (lone surrogates, integers beyond 64
    bits) is cleaned first rather than failing the whole batch."""
    try:
        return orjson.dumps(item)
    except TypeError:
        return orjson.dumps(clean_json(item))
