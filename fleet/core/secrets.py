"""Enroll secrets: what an agent presents to enroll. A secret belongs to one team, or to
none (`team_id` None: a global secret)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class EnrollSecret:
    secret: str
    team_id: int | None
    created_at: dt.datetime
