"""Batch policies: when a free worker should run the queued rows, how many, and what to refuse.

A policy sees only numbers the batcher hands it (times, rows, which worker), never a clock of
its own, so it is tested deterministically with made-up times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from service.batching.estimates import ArrivalRate, CostModel
from service.settings import BatchingSettings

# Wait for a batch that sustains this much more than the arrival rate, so the queue drains.
_RATE_MARGIN = 1.25
# After a wait that gained no rows, the next 1, 2, 4, ... batches (at most this many) do not wait.
_MAX_BACKOFF_BATCHES = 1024
# mode=slo plans its queue + compute time within this fraction of latency_slo_ms: the rest is for
# decoding, encoding and the scheduling jitter that the compute-time model does not see.
SLO_BUDGET_FRACTION = 0.7
# While mode=slo refuses everything (even one row seems to miss the SLO), an idle batcher still
# admits one request this often, so that the cost model sees the model again (it may be faster now).
SLO_PROBE_INTERVAL_S = 0.5


@dataclass(frozen=True, slots=True)
class Plan:
    """What a free worker does with the oldest queued rows.

    ready_at_s: run the batch once the clock reaches it (None: the queue's own per-request
    timers decide, as in fixed mode); cap_rows: run at most this many rows; ready_rows: run at
    once when this many are queued; wait_s: the wait this plan allows after the oldest request.
    """

    ready_at_s: float | None
    cap_rows: int
    ready_rows: int
    wait_s: float


class BatchPolicy:
    """Fixed mode (TF Serving's semantics): wait batch_timeout_ms / batch_idle_timeout_ms, whatever the load.

    Subclasses decide per batch. Every policy hears of arrivals, batch starts and batch ends, and
    keeps one CostModel per worker (workers may be different devices).
    NOTE: called from the batcher's event loop only.
    """

    def __init__(self, settings: BatchingSettings, workers: int) -> None:
        self.max_rows = settings.max_batch_size if settings.enabled else 1
        self.timeout_s = settings.batch_timeout_ms / 1000 if settings.enabled else 0.0
        self.costs = [CostModel() for _ in range(workers)]
        self.rate = ArrivalRate()
        self._busy_until_s: dict[int, float] = {}  # worker -> when its running batch should end

    def plan(self, now_s: float, worker: int, queued_rows: int, head_s: float) -> Plan:
        """How free `worker` treats the oldest key's `queued_rows` rows, the first queued at `head_s`."""
        return Plan(None, self.max_rows, self.max_rows, self.timeout_s)

    def admits(self, now_s: float, rows: int, queued_rows: int) -> bool:
        """False when a request of `rows` rows, behind `queued_rows`, should be refused at once."""
        return True

    def arrived(self, now_s: float, rows: int) -> None:
        """A request of `rows` rows was queued at `now_s`."""
        self.rate.add(now_s, rows)

    def started(self, now_s: float, worker: int, rows: int, padded_rows: int) -> None:
        """`worker` began a batch of `rows` request rows (padded to `padded_rows`) at `now_s`."""
        self._busy_until_s[worker] = now_s + self.costs[worker].predict_s(padded_rows)

    def finished(self, worker: int, rows: int, compute_s: float) -> None:
        """`worker`'s batch of `rows` rows took `compute_s` seconds in the model call (0: it never ran)."""
        self._busy_until_s.pop(worker, None)
        if compute_s > 0:
            self.costs[worker].observe(max(1, rows), compute_s)

    def overdue(self, worker: int, batch_rows: int, waited_s: float) -> bool:
        """True when a request that has queued `waited_s` would answer too late in `worker`'s batch of `batch_rows`."""
        return False

    def free_in_s(self, now_s: float) -> float:
        """Expected seconds until some worker is free: 0 when one is idle now."""
        if len(self._busy_until_s) < len(self.costs):
            return 0.0
        return max(0.0, min(self._busy_until_s.values()) - now_s)


class AdaptivePolicy(BatchPolicy):
    """Run at once unless waiting is likely to pay; never wait longer than batch_timeout_ms.

    Waiting pays only when batches of the rows already queued cannot keep up with the recent
    arrival rate (per worker). Then the worker waits for the smallest batch that can (or the cap),
    for about the time the arrival rate says those rows take to come. So a lone request runs at
    once, requests that queued while the workers were busy all go in the next batch, and a burst
    on an idle worker forms one batch when the measured costs say so.

    A rate alone cannot tell many independent clients from one client sending its next request
    as soon as the last returns (nothing arrives while it waits). So the policy checks its waits:
    a wait during which no row joined makes the next 1, 2, 4, ... (at most _MAX_BACKOFF_BATCHES)
    batches run without waiting; a wait that gained rows resets the backoff.
    """

    def __init__(self, settings: BatchingSettings, workers: int) -> None:
        super().__init__(settings, workers)
        self._wait_from_rows: dict[int, int] = {}  # worker -> rows queued when it chose to wait
        self._skip = 0  # batches that will not wait
        self._backoff = 1

    def plan(self, now_s: float, worker: int, queued_rows: int, head_s: float) -> Plan:
        cap = self.cap_rows(worker)
        if queued_rows >= cap:
            return Plan(now_s, cap, cap, 0.0)
        longest_s = self.longest_wait_s(worker, cap)
        target = self._target_rows(now_s, worker, queued_rows, cap)
        if target <= queued_rows or longest_s <= 0 or self._skip > 0:
            return Plan(now_s, cap, cap, 0.0)
        self._wait_from_rows.setdefault(worker, queued_rows)
        wait_s = (target - queued_rows) / self.rate.per_s(now_s)
        ready_at_s = min(now_s + wait_s, head_s + longest_s)
        return Plan(ready_at_s, cap, target, max(0.0, ready_at_s - head_s))

    def started(self, now_s: float, worker: int, rows: int, padded_rows: int) -> None:
        super().started(now_s, worker, rows, padded_rows)
        waited_from = self._wait_from_rows.pop(worker, None)
        if waited_from is None:
            self._skip = max(0, self._skip - 1)
        elif rows > waited_from:
            self._backoff = 1
        else:  # nothing joined: waiting did not pay
            self._skip = self._backoff
            self._backoff = min(2 * self._backoff, _MAX_BACKOFF_BATCHES)

    def cap_rows(self, worker: int) -> int:
        """The most rows `worker` runs in one batch."""
        return self.max_rows

    def longest_wait_s(self, worker: int, cap: int) -> float:
        """The longest a queued request may wait for partners."""
        return self.timeout_s

    def _target_rows(self, now_s: float, worker: int, queued_rows: int, cap: int) -> int:
        """The smallest batch that keeps up with arrivals, at most the cap (queued_rows when no wait pays)."""
        rate_per_worker = self.rate.per_s(now_s) / len(self.costs)
        needed = self.costs[worker].rows_to_sustain(rate_per_worker * _RATE_MARGIN)
        if needed <= queued_rows:
            return queued_rows
        return cap if needed >= cap else math.ceil(needed)


class SloPolicy(AdaptivePolicy):
    """Adaptive waits, with the size cap, the longest wait and admission chosen to meet latency_slo_ms.

    A request can wait for one batch already running and then run in a batch of its own: so the cap
    is the largest batch whose pessimistic cost, twice, fits the budget (SLO_BUDGET_FRACTION of
    the SLO), and the longest wait is what the budget leaves. A request is refused at once when the
    rows ahead of it, run cap by cap on every worker, would take longer than the budget, including
    when even a batch of one does not fit; a queued request that has waited so long that its batch would
    end past the budget is refused when the batch forms, never answered late. Before a worker's first
    batch nothing is refused; while
    everything would be, an idle batcher admits one probe per SLO_PROBE_INTERVAL_S to re-measure, and
    a probe that fits the budget restarts the worker's cost model.
    """

    def __init__(self, settings: BatchingSettings, workers: int) -> None:
        super().__init__(settings, workers)
        assert settings.latency_slo_ms is not None  # validated by BatchingSettings
        self.budget_s = settings.latency_slo_ms / 1000 * SLO_BUDGET_FRACTION
        self._probed_s = -math.inf

    def finished(self, worker: int, rows: int, compute_s: float) -> None:
        """As the base class; and a probe (a batch run while every worker seemed too slow) that fits the
        budget restarts that worker's cost model from it: the slow past (an overload, a noisy neighbour)
        no longer describes the model, and fading it out batch by batch at one probe per interval
        would keep refusing a light load for tens of seconds."""
        stale = compute_s > 0 and self._too_slow() and compute_s <= self.budget_s
        super().finished(worker, rows, compute_s)
        if stale:
            self.costs[worker] = CostModel()
            self.costs[worker].observe(max(1, rows), compute_s)

    def _too_slow(self) -> bool:
        """True when even a batch of one seems to miss the budget on every worker that has been measured."""
        ready = [cost for cost in self.costs if cost.ready]
        return bool(ready) and min(cost.predict_s(1) for cost in ready) > self.budget_s

    def overdue(self, worker: int, batch_rows: int, waited_s: float) -> bool:
        """Its wait plus the batch's expected compute time exceeds the budget: refuse it rather than
        answer late. The expected time, not the pessimistic one admission plans with: this request
        has already cost its decode and its wait, so it is refused only when it is late on the odds.
        Not before the worker's first batch (nothing is known), and not while even one row seems too
        slow: then admission lets only probes in, and a probe must run for the cost model to see the
        model again."""
        if waited_s <= 0 or not self.costs[worker].ready or self._too_slow():
            return False
        return waited_s + self.costs[worker].mean_s(batch_rows) > self.budget_s

    def cap_rows(self, worker: int) -> int:
        cost = self.costs[worker]
        if not cost.ready:
            return 1  # learn the cost of one row before promising more
        return max(1, _largest_fitting(cost, self.max_rows, self.budget_s / 2))

    def longest_wait_s(self, worker: int, cap: int) -> float:
        return max(0.0, self.budget_s - 2 * self.costs[worker].predict_s(cap))

    def admits(self, now_s: float, rows: int, queued_rows: int) -> bool:
        ready = [w for w, cost in enumerate(self.costs) if cost.ready]
        if not ready:
            return True
        if self._too_slow():  # not even a batch of one fits
            idle = queued_rows == 0 and self.free_in_s(now_s) == 0
            if idle and now_s - self._probed_s >= SLO_PROBE_INTERVAL_S:
                self._probed_s = now_s
                return True
            return False
        caps = [self.cap_rows(w) for w in ready]
        round_s = max(self.costs[w].predict_s(cap) for w, cap in zip(ready, caps, strict=True))
        rounds = math.ceil((queued_rows + rows) / sum(caps))
        return self.free_in_s(now_s) + rounds * round_s <= self.budget_s


def _largest_fitting(cost: CostModel, max_rows: int, limit_s: float) -> int:
    """The largest rows in [0, max_rows] with cost.predict_s(rows) <= limit_s (cost grows with rows)."""
    low, high = 0, max_rows
    while low < high:
        mid = (low + high + 1) // 2
        if cost.predict_s(mid) <= limit_s:
            low = mid
        else:
            high = mid - 1
    return low


def make_policy(settings: BatchingSettings, workers: int) -> BatchPolicy:
    """The policy settings.mode names (fixed, with no waits, when batching is disabled)."""
    if not settings.enabled or settings.mode == "fixed":
        return BatchPolicy(settings, workers)
    if settings.mode == "slo":
        return SloPolicy(settings, workers)
    return AdaptivePolicy(settings, workers)
