"""Runs of named schedules, as Fleet records them in `cron_stats`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class StatsType(StrEnum):
    SCHEDULED = "scheduled"  # its interval came round
    TRIGGERED = "triggered"  # someone asked for it (POST /trigger, fleetctl trigger)


class RunStatus(StrEnum):
    PENDING = "pending"      # waiting for a lock holder (triggered, no instance yet) or running
    COMPLETED = "completed"  # every job ran (some may have failed: see `errors`)
    EXPIRED = "expired"      # its instance stopped holding the lock before finishing
    CANCELED = "canceled"    # its instance shut down during the run


@dataclass(frozen=True, slots=True)
class CronRun:
    id: int
    name: str
    instance: str  # "" while a triggered run waits for a lock holder
    stats_type: StatsType
    status: RunStatus
    errors: Mapping[str, str]  # job name -> "ExceptionType: message"
    created_at: dt.datetime    # when the run started (or was triggered, while it waits)
    updated_at: dt.datetime    # when it last changed (finished, once it is not pending)
