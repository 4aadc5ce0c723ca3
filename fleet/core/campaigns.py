"""Live-query campaigns as stored: which query, whose, and how far along."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

STATUS_WAITING, STATUS_RUNNING, STATUS_COMPLETE = 0, 1, 2


@dataclass(frozen=True, slots=True)
class CampaignRecord:
    """A `distributed_query_campaigns` row (the targets and SQL live elsewhere)."""

    id: int
    query_id: int
    status: int
    user_id: int | None
    created_at: dt.datetime
