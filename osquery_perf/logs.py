"""osquery's buffered TLS logger: pending lines, batch selection and per-type backoff.

Lines are serialized once when buffered; a batch that fails is re-sent byte for byte, so
retries cost no re-encoding (osquery also stores each line as a JSON string).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

DEFAULT_MAX_LINES = 1024  # --logger_tls_max_lines
DEFAULT_BUFFER_MAX = 1_000_000  # --buffered_log_max
BACKOFF_MAX = 3_600  # --logger_tls_backoff_max


def calendar_time(unix: float) -> str:
    """osquery's ``calendarTime``: asctime in UTC, day space-padded, plus " UTC"."""
    return time.asctime(time.gmtime(unix)) + " UTC"


def status_line(
    *,
    host_identifier: str,
    now: float,
    severity: int,
    filename: str,
    line: int,
    message: str,
    version: str,
    decorations: dict[str, str],
) -> dict[str, Any]:
    """One status log line (glog record relayed by the TLS logger)."""
    out: dict[str, Any] = {
        "hostIdentifier": host_identifier, "calendarTime": calendar_time(now),
        "unixTime": int(now), "severity": severity, "filename": filename, "line": line,
        "message": message, "version": version,
    }
    if decorations:
        out["decorations"] = decorations
    return out


def log_body(node_key: str, log_type: str, lines: list[bytes]) -> bytes:
    """``{"node_key", "log_type", "data": [line objects]}`` built from pre-encoded lines."""
    return b"".join((
        b'{"node_key":', orjson.dumps(node_key), b',"log_type":"', log_type.encode(),
        b'","data":[', b",".join(lines), b"]}",
    ))


class LogBuffer:
    """Result and status lines waiting to be accepted by the server."""

    __slots__ = ("results", "statuses", "max_lines")

    def __init__(self, max_lines: int = DEFAULT_BUFFER_MAX) -> None:
        self.results: list[bytes] = []
        self.statuses: list[bytes] = []
        self.max_lines = max_lines

    def add_result(self, line: dict[str, Any]) -> None:
        self.results.append(orjson.dumps(line))

    def add_status(self, line: dict[str, Any]) -> None:
        self.statuses.append(orjson.dumps(line))

    def __len__(self) -> int:
        return len(self.results) + len(self.statuses)

    def batches(self, max_lines: int) -> tuple[list[bytes], list[bytes]]:
        """The next check's batches: results first, statuses fill the rest (osquery scans
        ``tls_r_*`` keys before ``tls_s_*`` with one limit for both)."""
        results = self.results[:max_lines]
        return results, self.statuses[: max_lines - len(results)]

    def purge(self) -> int:
        """Drop the oldest lines beyond ``max_lines`` (0 = unlimited); results go first
        because they dominate the volume. Returns how many were dropped."""
        excess = len(self) - self.max_lines if self.max_lines else 0
        if excess <= 0:
            return 0
        from_results = min(excess, len(self.results))
        del self.results[:from_results]
        del self.statuses[: excess - from_results]
        return excess


@dataclass(slots=True)
class Backoff:
    """After ``n`` consecutive failures the next attempt waits ``period × n²`` (capped),
    counted in logger checks: ``n² - 1`` checks are skipped."""

    failures: int = 0
    skip: int = 0

    def ready(self) -> bool:
        """Whether this check may send; consumes one skipped check otherwise."""
        if self.skip:
            self.skip -= 1
            return False
        return True

    def failed(self, period: float, cap: float = BACKOFF_MAX) -> None:
        self.failures += 1
        if cap <= period:  # osquery: a cap at or below the period disables backoff
            return
        self.skip = min(self.failures**2, int(cap // max(period, 1))) - 1

    def succeeded(self) -> None:
        self.failures = self.skip = 0
