"""Live-query campaigns: as stored (which query, whose, how far along), as run (with their
SQL and resolved hosts), and the host totals their watchers see."""

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


@dataclass(frozen=True, slots=True)
class Campaign:
    """A campaign being run: its record, the SQL hosts are asked, the hosts it targets."""

    id: int
    query_id: int
    sql: str
    user_id: int
    status: int
    created_at: dt.datetime
    host_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Totals:
    """How many targeted hosts there are, and how many of them are online, offline, missing."""

    count: int
    online: int
    offline: int
    missing_in_action: int
