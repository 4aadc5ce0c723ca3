"""How background work reports a failure: one line for a database or broker that is away
(or for a job, whose error is also recorded in `cron_stats`), a traceback for a bug in a
per-instance loop."""

from __future__ import annotations

import logging

from fleet.broker.base import BrokerUnavailable
from fleet.store.db import driver_error, is_outage


def is_unavailable(exc: Exception) -> bool:
    return is_outage(exc) or isinstance(exc, BrokerUnavailable | OSError)


def describe(exc: Exception) -> str:
    """`Type: message`, with the driver's own one-line message for database errors."""
    reason = driver_error(exc)
    return f"{type(reason).__name__}: {reason}"


def log_failure(log: logging.Logger, what: str, exc: Exception) -> None:
    """A warning naming the driver's error when a dependency is away (the loop retries, and
    a traceback would say nothing more); a traceback for a bug."""
    if is_unavailable(exc):
        log.warning("%s: %s", what, describe(exc))
    else:
        log.exception(what)
