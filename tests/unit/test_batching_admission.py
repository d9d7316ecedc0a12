"""DynamicBatcher: refusing, dropping and failing requests without ever leaving a waiter hanging."""

from __future__ import annotations

import asyncio
import re
import time

import numpy as np
import pytest

from service.batching import DynamicBatcher
from service.errors import (
    DeadlineExceeded,
    ErrorCode,
    Internal,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
)
from service.settings import BatchingSettings
from tests.unit.batching_fakes import (
    WAIT_S,
    FakeModel,
    RecordingObserver,
    assert_same,
    async_test,
    eventually,
    hold_worker,
    queued_then_released,
    reference,
    rows,
    started,
)

pytestmark = pytest.mark.timeout(60)


@async_test
async def test_full_queue_refuses_at_once_with_the_limit_in_the_message():
    model, observer = FakeModel(), RecordingObserver()
    batcher = await started(model, observer, max_batch_size=8, batch_timeout_ms=0, max_queue_rows=4)
    blocker = await hold_worker(model, batcher)  # in flight: does not count against the queue
    waiters = [asyncio.create_task(batcher.submit(rows(2, start=i * 10))) for i in range(2)]
    await eventually(lambda: batcher.queue_rows == 4)
    refused = batcher.submit(rows(1))
    with pytest.raises(Unavailable, match=r"queue is full \(max_queue_rows=4") as info:
        refused.send(None)  # raises on its first step: the caller never waits
    assert info.value.code is ErrorCode.UNAVAILABLE
    assert observer.rejects == ["queue_full"]
    model.release()
    await asyncio.wait_for(asyncio.gather(blocker, *waiters), WAIT_S)
    assert_same(await batcher.submit(rows(4)), reference(rows(4)))  # room again
    await batcher.stop()


@async_test
async def test_request_bigger_than_the_whole_queue_is_refused_as_too_large():
    batcher = await started(FakeModel(), max_batch_size=2, max_queue_rows=4)
    with pytest.raises(ResourceExhausted, match="max_queue_rows=4"):
        await batcher.submit(rows(5))
    await batcher.stop()


@async_test
async def test_expired_request_is_dropped_before_compute():
    model, observer = FakeModel(), RecordingObserver()
    batcher = await started(model, observer, max_batch_size=8, batch_timeout_ms=0)
    blocker = await hold_worker(model, batcher)
    doomed = asyncio.create_task(batcher.submit(rows(2), deadline=time.monotonic() + 0.05))
    alive = asyncio.create_task(batcher.submit(rows(1, start=9)))
    await eventually(lambda: batcher.queue_rows == 3)
    await asyncio.sleep(0.1)  # let the deadline pass while the worker is busy
    model.release()
    with pytest.raises(DeadlineExceeded, match="deadline passed"):
        await asyncio.wait_for(doomed, WAIT_S)
    assert_same(await asyncio.wait_for(alive, WAIT_S), reference(rows(1, start=9)))
    await asyncio.wait_for(blocker, WAIT_S)
    assert model.batch_rows == [1, 1]  # the expired rows never reached the model
    assert observer.rejects == ["deadline"]
    await batcher.stop()


@async_test
async def test_request_already_past_its_deadline_is_refused_at_once():
    model = FakeModel()
    batcher = await started(model)
    with pytest.raises(DeadlineExceeded):
        batcher.submit(rows(1), deadline=time.monotonic() - 1).send(None)
    assert model.batch_shapes == []
    await batcher.stop()


@pytest.mark.parametrize("n_rows", [1, 7])  # 7 rows at max_batch_size 2: four queued pieces
@async_test
async def test_cancelled_request_is_dropped_before_compute(n_rows):
    model, observer = FakeModel(), RecordingObserver()
    batcher = await started(model, observer, max_batch_size=2, batch_timeout_ms=0)
    blocker = await hold_worker(model, batcher)
    cancelled = asyncio.create_task(batcher.submit(rows(n_rows)))
    await eventually(lambda: batcher.queue_rows == n_rows)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert batcher.queue_rows == 0
    model.release()
    await asyncio.wait_for(blocker, WAIT_S)
    assert_same(await batcher.submit(rows(1, start=5)), reference(rows(1, start=5)))
    assert model.batch_rows == [1, 1]  # blocker, then the last request: nothing of the cancelled one
    assert observer.rejects == ["cancelled"]
    await batcher.stop()


@async_test
async def test_cancelling_a_request_in_flight_leaves_its_batch_mates_alone():
    model, observer = FakeModel(), RecordingObserver()
    batcher = await started(model, observer, max_batch_size=8, batch_timeout_ms=0)
    model.hold()
    mates = [asyncio.create_task(batcher.submit(rows(1, start=i))) for i in range(3)]
    await eventually(lambda: model.active == 1)
    mates[1].cancel()
    model.release()
    results = await asyncio.wait_for(asyncio.gather(*mates, return_exceptions=True), WAIT_S)
    assert_same(results[0], reference(rows(1, start=0)))
    assert isinstance(results[1], asyncio.CancelledError)
    assert_same(results[2], reference(rows(1, start=2)))
    assert model.batch_rows == [3] and observer.rejects == []  # computed, so not a drop
    await batcher.stop()


@async_test
async def test_failing_batch_fails_every_waiter_and_the_batcher_carries_on():
    def flaky(inputs):
        if (inputs["x"] < 0).any():
            raise ValueError("negative input")
        return reference(inputs)

    model = FakeModel(flaky)
    batcher = await started(model, max_batch_size=8, batch_timeout_ms=0)
    outcomes = await queued_then_released(model, batcher, [rows(1, start=-5 + i) for i in range(3)])
    assert model.batch_rows == [1, 3]
    for error in outcomes:
        assert isinstance(error, Internal) and error.code is ErrorCode.INTERNAL
        assert "ValueError: negative input" in error.message
    assert_same(await batcher.submit(rows(2)), reference(rows(2)))
    await batcher.stop()


@async_test
async def test_serving_error_from_the_model_reaches_every_waiter_unchanged():
    def strict(inputs):
        raise InvalidArgument("input 'x' must be finite")

    batcher = await started(FakeModel(strict), max_batch_size=8, batch_timeout_ms=5)
    results = await asyncio.wait_for(
        asyncio.gather(*(batcher.submit(rows(1)) for _ in range(3)), return_exceptions=True), WAIT_S
    )
    assert all(isinstance(r, InvalidArgument) and "finite" in r.message for r in results)
    await batcher.stop()


@pytest.mark.parametrize(
    ("allowed", "behaviour", "message"),
    [
        ([], lambda x: {"y": x["x"][:-1]}, "returned 2 rows for output 'y' but the batch had 3 rows"),
        ([4, 8], lambda x: {"y": x["x"][:3]}, r"batch had 4 rows \(1 of them padding\)"),
        ([], lambda x: {"y": np.float32(1)}, "returned no rows"),
        ([], lambda x: [x["x"]], "instead of a dict"),
    ],
)
@async_test
async def test_outputs_that_do_not_match_the_batch_fail_every_waiter(allowed, behaviour, message):
    model = FakeModel(behaviour)
    batcher = await started(model, max_batch_size=8, batch_timeout_ms=0, allowed_batch_sizes=allowed)
    for outcome in await queued_then_released(model, batcher, [rows(1, start=i) for i in range(3)]):
        assert isinstance(outcome, Internal)
        assert re.search(message, outcome.message), outcome.message
    await batcher.stop()


@async_test
async def test_stop_drains_queued_work_then_refuses():
    model = FakeModel()
    batcher = await started(model, max_batch_size=8, batch_timeout_ms=600_000)
    requests = [rows(1, start=i * 10) for i in range(3)]
    waiters = [asyncio.create_task(batcher.submit(r)) for r in requests]
    await eventually(lambda: batcher.queue_rows == 3)  # waiting for a 10-minute timer
    await asyncio.wait_for(batcher.stop(drain=True), WAIT_S)
    for request, waiter in zip(requests, waiters, strict=True):
        assert_same(await asyncio.wait_for(waiter, WAIT_S), reference(request))
    with pytest.raises(Unavailable, match="shutting down"):
        await batcher.submit(rows(1))
    await asyncio.wait_for(batcher.stop(), WAIT_S)  # idempotent


@async_test
async def test_stop_without_drain_fails_queued_work_and_waits_for_the_running_batch():
    model = FakeModel()
    batcher = await started(model, max_batch_size=8, batch_timeout_ms=0)
    blocker = await hold_worker(model, batcher)
    queued = [asyncio.create_task(batcher.submit(rows(1, start=i))) for i in range(2)]
    await eventually(lambda: batcher.queue_rows == 2)
    stopping = asyncio.create_task(batcher.stop(drain=False))
    for waiter in queued:
        with pytest.raises(Unavailable, match="stopped before the request ran"):
            await asyncio.wait_for(waiter, WAIT_S)
    assert not stopping.done()  # the model call is still running
    model.release()
    await asyncio.wait_for(stopping, WAIT_S)
    assert_same(await asyncio.wait_for(blocker, WAIT_S), reference(rows(1, start=-100)))
    assert model.batch_rows == [1]


@async_test
async def test_lifecycle_misuse_is_refused_not_hung():
    batcher = DynamicBatcher([FakeModel()], BatchingSettings(), name="m")
    with pytest.raises(Unavailable, match="not started"):
        await batcher.submit(rows(1))
    await batcher.start()
    await batcher.start()  # idempotent
    await batcher.stop()
    with pytest.raises(RuntimeError, match="stopped"):
        await batcher.start()
    with pytest.raises(ValueError, match="at least one"):
        DynamicBatcher([], BatchingSettings())


@async_test
async def test_a_failing_observer_does_not_break_batching():
    class Broken(RecordingObserver):
        def on_batch(self, *args):
            raise RuntimeError("metrics down")

        def watch_queue(self, rows):
            raise RuntimeError("metrics down")

    batcher = await started(FakeModel(), Broken(), max_batch_size=4, batch_timeout_ms=0)
    assert_same(await asyncio.wait_for(batcher.submit(rows(3)), WAIT_S), reference(rows(3)))
    await batcher.stop()
