"""Load-test thresholds and the run-time syntax of run_loadtest (pure functions, no load)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from loadtests.run_loadtest import run_time_s
from loadtests.thresholds import Thresholds


@dataclass
class Totals:
    """Aggregated figures shaped like locust's StatsEntry."""

    num_requests: int = 100
    fail_ratio: float = 0.0
    total_rps: float = 50.0
    percentiles_ms: dict[float, float] = field(default_factory=lambda: {0.95: 20.0, 0.99: 40.0})

    def get_response_time_percentile(self, percent: float) -> float:
        return self.percentiles_ms[percent]


def test_defaults_pass_a_clean_run():
    assert Thresholds().violations(Totals()) == []


def test_each_limit_reports_its_own_violation():
    limits = Thresholds(max_failure_ratio=0.01, max_p95_ms=10, max_p99_ms=30, min_rps=60)
    found = limits.violations(Totals(fail_ratio=0.05))
    assert [message.split()[0] for message in found] == ["failure", "p95", "p99", "throughput"]


def test_limits_at_the_measured_value_pass():
    assert Thresholds(max_p95_ms=20, max_p99_ms=40, min_rps=50).violations(Totals()) == []


def test_a_run_without_requests_fails():
    idle = Totals(num_requests=0, total_rps=0.0)
    assert Thresholds().violations(idle) == ["no request completed"]
    assert len(Thresholds(min_rps=1).violations(idle)) == 2


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("30s", 30), ("2m", 120), ("1h30m", 5400), ("1m5s", 65)])
def test_run_time_syntax(text, seconds):
    assert run_time_s(text) == seconds


@pytest.mark.parametrize("text", ["", "3x", "s", "-5s"])
def test_bad_run_time_is_refused(text):
    with pytest.raises(ValueError):
        run_time_s(text)
