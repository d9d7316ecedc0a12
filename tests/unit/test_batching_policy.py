"""Batch policies, deterministically: made-up times (an injected clock) and synthetic cost curves."""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque

import numpy as np
import pytest

from service.batching import DynamicBatcher
from service.batching.estimates import ArrivalRate, CostModel
from service.batching.policy import SLO_BUDGET_FRACTION, AdaptivePolicy, BatchPolicy, SloPolicy, make_policy
from service.batching.queues import BatchQueue, Pending
from service.errors import Unavailable
from service.settings import BatchingSettings, Settings
from tests.unit.batching_fakes import FakeModel, RecordingObserver, async_test, reference, rows, started


def curve_s(batch_rows: int) -> float:
    """A synthetic compute-time curve: 0.5 ms per call plus 0.2 ms per row."""
    return 0.0005 + 0.0002 * batch_rows


def trained(policy: BatchPolicy, sizes=(1, 2, 4, 8, 16, 32)) -> BatchPolicy:
    for worker in range(len(policy.costs)):
        for _ in range(5):
            for size in sizes:
                policy.finished(worker, size, curve_s(size))
    return policy


def arrivals(policy: BatchPolicy, start_s: float, end_s: float, per_s: float) -> float:
    """Tell `policy` of one-row arrivals evenly spaced at `per_s` in [start_s, end_s); returns end_s."""
    for i in range(int((end_s - start_s) * per_s)):
        policy.arrived(start_s + i / per_s, 1)
    return end_s


def adaptive(**knobs) -> AdaptivePolicy:
    policy = make_policy(BatchingSettings(**knobs), workers=1)
    assert isinstance(policy, AdaptivePolicy)
    return policy


def test_cost_model_learns_a_linear_curve_and_stays_pessimistic_before_it_has_two_sizes():
    cost = CostModel()
    assert not cost.ready and cost.predict_s(8) == 0.0
    cost.observe(1, 0.001)
    assert cost.predict_s(8) == pytest.approx(0.008)  # one size seen: proportional to rows
    for _ in range(20):
        for size in (1, 4, 16):
            cost.observe(size, curve_s(size))
    assert cost.predict_s(32) == pytest.approx(curve_s(32), rel=0.05)
    rows = math.ceil(cost.rows_to_sustain(3000))  # batches of `rows` keep up with 3000 rows/s on average
    assert rows / curve_s(rows) >= 3000 * 0.99 > (rows - 1) / curve_s(rows - 1)
    assert cost.rows_to_sustain(6000) == math.inf  # 0.2 ms a row: no batch keeps up with 6000 rows/s


def test_arrival_rate_follows_a_step():
    rate = ArrivalRate(tau_s=0.1)
    for i in range(1000):
        rate.add(i / 1000, 1)  # 1000 rows/s for 1 s
    assert rate.per_s(1.0) == pytest.approx(1000, rel=0.05)
    assert rate.per_s(1.5) < 10  # silence for 5 time constants


def test_the_lone_request_does_not_wait():
    policy = trained(adaptive())
    policy.arrived(0.0, 1)
    policy.arrived(2.0, 1)  # one request after two quiet seconds
    plan = policy.plan(2.0, 0, queued_rows=1, head_s=2.0)
    assert plan.ready_at_s == 2.0 and plan.wait_s == 0.0


def test_one_client_in_a_closed_loop_soon_stops_waiting():
    """Its rate looks busy (one request right after the other), but nothing ever joins a wait."""
    policy = trained(adaptive(batch_timeout_ms=5.0))
    now_s, waits = 0.0, 0
    for _ in range(1000):
        policy.arrived(now_s, 1)
        plan = policy.plan(now_s, 0, 1, now_s)
        waits += plan.wait_s > 0
        policy.started(plan.ready_at_s, 0, 1, 1)  # the wait (if any) ended with the lone row
        policy.finished(0, 1, curve_s(1))
        now_s = plan.ready_at_s + curve_s(1) + 0.0001  # the reply, and the client's next request
    assert 1 <= waits <= 11  # the first waits, then after 1, 2, 4, ... 512 batches


def test_the_lone_request_does_not_wait_before_any_cost_is_known():
    policy = adaptive()
    policy.arrived(0.0, 1)
    assert policy.plan(0.0, 0, queued_rows=1, head_s=0.0).ready_at_s == 0.0


def test_a_burst_forms_one_batch():
    """Under a rate one row at a time cannot serve, the free worker waits until the burst has queued."""
    policy = trained(adaptive(batch_timeout_ms=5.0))
    now_s = arrivals(policy, 0.0, 1.0, per_s=3000)  # 1 / curve_s(1) = 1430 rows/s cannot keep up
    queue = BatchQueue(64)
    loop = asyncio.new_event_loop()
    try:
        queue.push(Pending("k", {}, 1, 0, now_s, math.inf, None, loop.create_future()))
        plan = policy.plan(now_s, 0, *queue.head())
        assert 1 < plan.ready_rows < 64 and now_s < plan.ready_at_s <= now_s + 0.005  # waits, within the timeout
        for i in range(1, plan.ready_rows):
            arrived_s = now_s + i / 3000
            queue.push(Pending("k", {}, 1, i, arrived_s, math.inf, None, loop.create_future()))
            if i < plan.ready_rows - 1:  # not yet: the wait goes on
                assert queue.take(arrived_s, ready_at_s=plan.ready_at_s, ready_rows=plan.ready_rows) is None
        taken = queue.take(arrived_s, ready_at_s=plan.ready_at_s, ready_rows=plan.ready_rows)
    finally:
        loop.close()
    assert taken is not None and len(taken[0]) == plan.ready_rows and queue.rows == 0


@async_test
async def test_a_burst_on_an_idle_batcher_runs_as_one_batch():
    model = FakeModel()
    batcher = await started(model, mode="adaptive")
    requests = [rows(1, start=10 * i) for i in range(10)]
    results = await asyncio.gather(*(batcher.submit(r) for r in requests))
    assert model.batch_rows == [10]
    for request, result in zip(requests, results, strict=True):
        np.testing.assert_array_equal(result["x_sum"], reference(request)["x_sum"])
    await batcher.stop()


def test_the_adaptive_mode_reacts_to_a_step_in_load():
    policy = trained(adaptive(batch_timeout_ms=5.0))
    now_s = arrivals(policy, 0.0, 2.0, per_s=100)
    assert policy.plan(now_s, 0, 1, now_s).wait_s == 0.0  # light load: greedy
    now_s = arrivals(policy, now_s, now_s + 0.5, per_s=5000)
    busy = policy.plan(now_s, 0, 1, now_s)
    assert busy.wait_s > 0 and busy.ready_rows > 1  # heavy load: waits for a batch that keeps up
    now_s = arrivals(policy, now_s, now_s + 0.5, per_s=100)
    assert policy.plan(now_s, 0, 1, now_s).wait_s == 0.0  # light again: greedy within half a second


def _simulate(policy: BatchPolicy, per_s: float, seconds: float) -> tuple[list[float], int]:
    """One worker serving one-row arrivals every 1/per_s s with compute time curve_s; (latencies, refused)."""
    times = [i / per_s for i in range(int(per_s * seconds))]
    queue: deque[float] = deque()
    latencies, refused, now_s, busy_until_s, i = [], 0, 0.0, -1.0, 0
    while i < len(times) or queue:
        next_s = times[i] if i < len(times) else math.inf
        plan = policy.plan(now_s, 0, len(queue), queue[0]) if queue and busy_until_s < now_s else None
        if plan is not None and (len(queue) >= plan.ready_rows or now_s >= plan.ready_at_s):
            batch = [queue.popleft() for _ in range(min(plan.cap_rows, len(queue)))]
            policy.started(now_s, 0, len(batch), len(batch))
            busy_until_s = now_s + curve_s(len(batch))
            policy.finished(0, len(batch), curve_s(len(batch)))
            latencies += [busy_until_s - arrived_s for arrived_s in batch]
            continue
        wake_s = min(
            next_s,
            busy_until_s if busy_until_s >= now_s else math.inf,
            plan.ready_at_s if plan is not None else math.inf,
        )
        now_s = max(now_s, wake_s) + (1e-9 if wake_s == busy_until_s else 0.0)
        if i < len(times) and times[i] <= now_s:
            if policy.admits(now_s, 1, len(queue)):
                policy.arrived(now_s, 1)
                queue.append(now_s)
            else:
                refused += 1
            i += 1
    return latencies, refused


@pytest.mark.parametrize("slo_ms", [10.0, 50.0])
@pytest.mark.parametrize("load", [0.2, 0.8, 0.95])
def test_the_slo_is_respected_on_a_synthetic_cost_curve(slo_ms, load):
    policy = trained(make_policy(BatchingSettings(mode="slo", latency_slo_ms=slo_ms), workers=1))
    cap = policy.plan(0.0, 0, 1, 0.0).cap_rows
    budget_s = slo_ms / 1000 * SLO_BUDGET_FRACTION
    assert 2 * curve_s(cap) <= budget_s  # the largest cap that fits (give or take one), or max_batch_size
    assert cap == 64 or budget_s < 2 * curve_s(cap + 2)
    saturation_per_s = 64 / curve_s(64)
    latencies, refused = _simulate(policy, load * saturation_per_s, seconds=2.0)
    assert np.percentile(latencies, 99) <= slo_ms / 1000
    assert len(latencies) > 0.9 * (len(latencies) + refused) or load > 0.9


def test_overload_is_refused_at_once_and_never_answered_late():
    policy = trained(make_policy(BatchingSettings(mode="slo", latency_slo_ms=10.0), workers=1))
    latencies, refused = _simulate(policy, 3 * 64 / curve_s(64), seconds=1.0)
    assert refused > 0 and max(latencies) <= 0.010


def test_slo_mode_refuses_everything_when_even_one_row_misses_the_target():
    policy = make_policy(BatchingSettings(mode="slo", latency_slo_ms=10.0), workers=1)
    assert isinstance(policy, SloPolicy) and policy.admits(0.0, 1, 0)  # nothing known yet
    policy.finished(0, 1, 0.020)
    assert not policy.admits(0.0, 1, 3)
    assert policy.admits(0.0, 1, 0)  # idle: one probe re-measures the model
    assert not policy.admits(0.1, 1, 0)  # and only one per SLO_PROBE_INTERVAL_S
    assert policy.admits(0.6, 1, 0)


def test_a_probe_that_fits_ends_the_refusals_at_once():
    policy = make_policy(BatchingSettings(mode="slo", latency_slo_ms=10.0), workers=1)
    for _ in range(100):  # an overload, or a noisy neighbour: every batch of one took 20 ms
        policy.finished(0, 1, 0.020)
    assert not policy.admits(0.0, 1, 3)
    assert policy.admits(0.0, 1, 0)  # the idle probe
    policy.started(0.0, 0, 1, 1)
    policy.finished(0, 1, 0.001)  # the model is fast again
    assert policy.admits(0.001, 1, 3) and policy.cap_rows(0) >= 1
    slow_probe = make_policy(BatchingSettings(mode="slo", latency_slo_ms=10.0), workers=1)
    slow_probe.finished(0, 1, 0.020)
    slow_probe.finished(0, 1, 0.015)  # still over the budget: refusals go on
    assert not slow_probe.admits(0.0, 1, 3)


def test_fixed_mode_keeps_the_queue_timers():
    plan = make_policy(BatchingSettings(mode="fixed", batch_timeout_ms=2.0), workers=1).plan(0.0, 0, 1, 0.0)
    assert plan.ready_at_s is None and plan.wait_s == 0.002 and plan.cap_rows == 64


def test_settings_validate_the_mode_and_the_slo():
    with pytest.raises(ValueError, match="latency_slo_ms"):
        BatchingSettings(mode="slo")
    with pytest.raises(ValueError, match="only with mode='slo'"):
        BatchingSettings(latency_slo_ms=10.0)
    with pytest.raises(ValueError):
        BatchingSettings(mode="slo", latency_slo_ms=0.0)
    assert BatchingSettings().mode == "adaptive"


def test_per_model_overrides_choose_the_mode():
    settings = Settings(models={"m": {"batching": {"mode": "slo", "latency_slo_ms": 20}}})
    assert settings.batching_for("m").mode == "slo" and settings.batching_for("m").latency_slo_ms == 20
    assert settings.batching_for("other").mode == "adaptive"
    with pytest.raises(ValueError, match=r"models\.m\.batching.*latency_slo_ms"):  # at load, naming the model
        Settings(models={"m": {"batching": {"mode": "slo"}}})


@async_test
async def test_each_device_worker_learns_its_own_cost_curve():
    def slow_device(inputs):
        time.sleep(0.05)
        return reference(inputs)

    batcher = DynamicBatcher([reference, slow_device], BatchingSettings(), name="devices")
    await batcher.start()
    assert batcher.predicted_compute_s(1) == [0.0, 0.0]  # nothing known before the first batch
    for i in range(10):  # one-row batches, one after the other: the idle workers take turns
        await batcher.submit(rows(1, start=i))
    fast, slow = batcher.predicted_compute_s(1)
    assert slow >= 0.05 > fast  # each worker has its own curve
    await batcher.stop()


@async_test
async def test_slo_mode_answers_unavailable_at_once_when_the_model_is_slower_than_the_slo():
    model = FakeModel(lambda inputs: (time.sleep(0.03), reference(inputs))[1])
    observer = RecordingObserver()
    batcher = await started(model, observer, mode="slo", latency_slo_ms=10.0)
    await batcher.submit(rows(1))  # nothing known yet: admitted, and it teaches the cost
    probe, *refused = await asyncio.gather(*(batcher.submit(rows(1)) for _ in range(3)), return_exceptions=True)
    assert isinstance(probe, dict)  # the batcher was idle: one probe re-measures the model
    assert all(isinstance(e, Unavailable) and "latency_slo_ms=10.0" in str(e) for e in refused), refused
    assert observer.rejects == ["slo", "slo"] and model.batch_rows == [1, 1]
    await batcher.stop()


def test_a_queued_request_is_overdue_once_its_batch_would_end_past_the_budget():
    policy = trained(make_policy(BatchingSettings(mode="slo", latency_slo_ms=10.0), workers=1))
    assert isinstance(policy, SloPolicy)
    budget_s = 0.010 * SLO_BUDGET_FRACTION
    assert not policy.overdue(0, 4, 0.0)  # a request that has not waited is admission's business
    assert not policy.overdue(0, 4, budget_s - 1.5 * curve_s(4))
    assert policy.overdue(0, 4, budget_s - 0.5 * curve_s(4))
    assert not adaptive().overdue(0, 4, 1.0)  # only slo mode refuses late requests
    assert not make_policy(BatchingSettings(mode="slo", latency_slo_ms=10.0), workers=1).overdue(0, 1, 1.0)  # unknown
    slow = make_policy(BatchingSettings(mode="slo", latency_slo_ms=10.0), workers=1)
    slow.finished(0, 1, 0.020)  # even one row misses: the probe that admission lets in must run
    assert not slow.overdue(0, 1, 0.001)


@async_test
async def test_slo_mode_refuses_a_request_that_waited_too_long_instead_of_answering_late():
    model = FakeModel()
    observer = RecordingObserver()
    batcher = await started(model, observer, mode="slo", latency_slo_ms=10.0)
    await batcher.submit(rows(1))  # teaches the cost: about a millisecond or less
    model.hold()  # the next batch runs far longer than the cost model predicts (a stall, a neighbour)
    first = asyncio.ensure_future(batcher.submit(rows(1, start=1)))
    while model.active == 0:
        await asyncio.sleep(0.001)
    second = asyncio.ensure_future(batcher.submit(rows(1, start=2)))  # admitted: the stall is not known yet
    await asyncio.sleep(0.03)  # three times the SLO in the queue
    model.release()
    assert isinstance(await first, dict)  # it was already running: answered
    with pytest.raises(Unavailable, match=r"latency_slo_ms=10.0 after \d+\.\d ms in the queue"):
        await second
    assert observer.rejects == ["slo"] and model.batch_rows == [1, 1]  # never computed
    await batcher.stop()
