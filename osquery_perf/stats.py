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

    def __init__(self) -> None:
        self.buckets: Counter[int] = Counter()
        self.count = 0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        ms = max(seconds * 1000, 0.01)
        self.buckets[math.floor(math.log(ms) / self._STEP)] += 1
        self.count += 1
        self.max = max(self.max, seconds)

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
