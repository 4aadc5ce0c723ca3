"""Host status math (Fleet's): online / offline / new / missing.

A host is online while `seen + min(distributed_interval, config_tls_refresh) + 60 s` is in
the future (an interval of 0 means unknown, leaving only the 60 s buffer). Missing means not
seen for 30 days; new means created within the last day, independently of online/offline.
The SQL filters in the store mirror these rules; keep them in sync.
"""

from __future__ import annotations

import datetime as dt

ONLINE_INTERVAL_BUFFER = 60
NEW_DURATION = dt.timedelta(days=1)
MISSING_DURATION = dt.timedelta(days=30)
STATUSES = ("online", "offline", "new", "missing", "mia")


def checkin_interval(distributed_interval: int, config_tls_refresh: int) -> int:
    """LEAST(distributed_interval, config_tls_refresh), as Fleet computes it."""
    return min(distributed_interval, config_tls_refresh)


def is_online(seen: dt.datetime, distributed_interval: int, config_tls_refresh: int,
              now: dt.datetime) -> bool:
    interval = checkin_interval(distributed_interval, config_tls_refresh)
    return seen + dt.timedelta(seconds=interval + ONLINE_INTERVAL_BUFFER) > now


def status(seen: dt.datetime, distributed_interval: int, config_tls_refresh: int,
           now: dt.datetime) -> str:
    """What the API reports as `status`: only online or offline, like current Fleet."""
    return "online" if is_online(seen, distributed_interval, config_tls_refresh, now) \
        else "offline"


def is_missing(seen: dt.datetime, now: dt.datetime) -> bool:
    return seen + MISSING_DURATION <= now


def is_new(created_at: dt.datetime, now: dt.datetime) -> bool:
    return created_at + NEW_DURATION >= now
