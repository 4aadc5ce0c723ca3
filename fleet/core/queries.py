"""Queries: saved ones (the query library) and the unsaved ones live campaigns run.

Fields carry Fleet's API names (`interval`, `logging`); the store maps them to its columns
(`schedule_interval`, `logging_type`) in both directions.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Query:
    id: int
    created_at: dt.datetime
    updated_at: dt.datetime
    name: str
    description: str
    query: str
    team_id: int | None
    saved: bool
    observer_can_run: bool
    interval: int
    platform: str
    min_osquery_version: str
    automations_enabled: bool
    logging: str
    discard_data: bool
    author_id: int | None
    author_name: str  # "" once the author is deleted
    author_email: str
