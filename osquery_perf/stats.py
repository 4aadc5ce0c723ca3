"""Request counters and latency summaries for simulated agents."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

ENDPOINTS = ("enroll", "config", "distributed_read", "distributed_write", "log")


@dataclass(slots=True)
class AgentStats:
    """Per-agent counters. ``latencies`` (seconds, one per completed HTTP exchange) grows
    until the caller drains it, so a long-running caller must call :meth:`drain_latencies`."""

    requests: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    enrollments: int = 0
    last_error: str = ""  # "<endpoint>: <reason>" of the most recent failure
    last_success: float = 0.0  # clock time of the last accepted authenticated request

    def drain_latencies(self) -> list[float]:
        out, self.latencies = self.latencies, []
        return out


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted list (0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(0, math.ceil(p / 100 * len(sorted_values)) - 1)
    return sorted_values[min(rank, len(sorted_values) - 1)]


class Histogram:
    """Log-bucketed latencies (~2 % resolution): whole-run percentiles in bounded memory."""

    __slots__ = ("buckets", "count", "max")
    _STEP = math.log(1.02)
    _INV = 1 / _STEP

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        ms = seconds * 1000
        bucket = math.floor(math.log(ms if ms > 0.01 else 0.01) * self._INV)
        buckets = self.buckets
        buckets[bucket] = buckets.get(bucket, 0) + 1
        self.count += 1
        if seconds > self.max:
            self.max = seconds

    def merge(self, other: Histogram) -> None:
        buckets = self.buckets
        for bucket, n in other.buckets.items():
            buckets[bucket] = buckets.get(bucket, 0) + n
        self.count += other.count
        self.max = max(self.max, other.max)

    def percentile(self, p: float) -> float:
        """Approximate percentile in seconds (upper edge of the bucket)."""
        if not self.count:
            return 0.0
        target = max(1, math.ceil(p / 100 * self.count))
        seen = 0
        for bucket in sorted(self.buckets):
            seen += self.buckets[bucket]
            if seen >= target:
                return min(math.exp((bucket + 1) * self._STEP) / 1000, self.max)
        return self.max


class FleetStats:
    """Run-wide counters every agent of a CLI run writes to: request and error counts by
    endpoint and a latency histogram per endpoint (the reporter drains it each interval)."""

    __slots__ = ("requests", "errors", "latency")

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.latency: dict[str, Histogram] = {e: Histogram() for e in ENDPOINTS}

    def drain_latency(self) -> dict[str, Histogram]:
        """This interval's histograms; recording starts afresh."""
        out = self.latency
        self.latency = {e: Histogram() for e in ENDPOINTS}
        return out
