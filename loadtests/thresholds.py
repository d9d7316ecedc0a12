"""Pass/fail thresholds for a load test, checked against locust's aggregated stats when it quits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class AggregateStats(Protocol):
    """What we read from `environment.stats.total` (locust's StatsEntry)."""

    num_requests: int
    fail_ratio: float
    total_rps: float

    def get_response_time_percentile(self, percent: float) -> float: ...


@dataclass(frozen=True)
class Thresholds:
    """Limits for a run; None turns a check off. Latencies in ms (locust keeps whole ms below 100 ms)."""

    max_failure_ratio: float | None = 0.01
    max_p95_ms: float | None = None
    max_p99_ms: float | None = None
    min_rps: float | None = None

    def violations(self, total: AggregateStats) -> list[str]:
        """One message per failed check; a run in which no request completed fails too."""
        found = [] if total.num_requests else ["no request completed"]
        if self.max_failure_ratio is not None and total.fail_ratio > self.max_failure_ratio:
            found.append(f"failure ratio {total.fail_ratio:.4f} > {self.max_failure_ratio}")
        for percent, limit in ((0.95, self.max_p95_ms), (0.99, self.max_p99_ms)):
            value = total.get_response_time_percentile(percent)
            if limit is not None and value > limit:
                found.append(f"p{round(percent * 100)} {value:.1f} ms > {limit} ms")
        if self.min_rps is not None and total.total_rps < self.min_rps:
            found.append(f"throughput {total.total_rps:.1f} req/s < {self.min_rps} req/s")
        return found
