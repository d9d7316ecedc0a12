"""DynamicBatcher: when batches run, how they are padded and split, and which requests merge."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from service.errors import InvalidArgument
from tests.unit.batching_fakes import (
    WAIT_S,
    FakeModel,
    RecordingObserver,
    assert_alone,
    assert_same,
    async_test,
    eventually,
    queued_then_released,
    reference,
    rows,
    started,
)

pytestmark = pytest.mark.timeout(60)


@async_test
async def test_timeout_flushes_a_partial_batch():
    model, observer = FakeModel(), RecordingObserver()
    batcher = await started(model, observer, max_batch_size=64, batch_timeout_ms=20)
    requests = [rows(1, start=i * 10) for i in range(3)]
    assert_alone(requests, await asyncio.wait_for(asyncio.gather(*map(batcher.submit, requests)), WAIT_S))
    # 3 rows < max_batch_size: only the timer can have run this batch.
    assert model.batch_rows == [3]
    # The timer starts at the first request; a batch never runs before it (a guarantee, not a speed claim).
    assert min(observer.batches[0][2]) >= 0.020
    await batcher.stop()


@async_test
async def test_idle_timeout_runs_a_lone_request_long_before_the_batch_timeout():
    model, observer = FakeModel(), RecordingObserver()
    batcher = await started(model, observer, max_batch_size=64, batch_timeout_ms=600_000, batch_idle_timeout_ms=20)
    request = rows(2)
    # A 10-minute timeout: only the idle timeout can have run this batch.
    assert_same(await asyncio.wait_for(batcher.submit(request), WAIT_S), reference(request))
    assert model.batch_rows == [2]
    assert min(observer.batches[0][2]) >= 0.020  # never before the idle time (a guarantee, not a speed claim)
    await batcher.stop()


@async_test
async def test_size_flushes_a_full_batch_without_waiting_for_the_timeout():
    model = FakeModel()
    batcher = await started(model, max_batch_size=4, batch_timeout_ms=600_000)
    requests = [rows(1, start=i * 10) for i in range(8)]
    # A 10-minute timeout: these can only complete because each batch filled up.
    assert_alone(requests, await asyncio.wait_for(asyncio.gather(*map(batcher.submit, requests)), WAIT_S))
    assert model.batch_rows == [4, 4]
    await batcher.stop()


@async_test
async def test_zero_timeout_takes_whatever_is_queued():
    model = FakeModel()
    batcher = await started(model, max_batch_size=8, batch_timeout_ms=0)
    requests = [rows(1, start=i) for i in range(3)]
    assert_alone(requests, await queued_then_released(model, batcher, requests))
    assert model.batch_rows == [1, 3]
    await batcher.stop()


@async_test
async def test_pads_batches_up_to_the_next_allowed_size_and_slices_padding_off():
    model, observer = FakeModel(), RecordingObserver()
    batcher = await started(model, observer, max_batch_size=8, batch_timeout_ms=0, allowed_batch_sizes=[2, 4, 8])
    requests = [rows(1, start=i * 10) for i in range(3)]
    assert_alone(requests, await queued_then_released(model, batcher, requests))
    assert model.batch_rows == [2, 4]  # 1 row padded to 2, then 3 rows padded to 4
    assert [(b[0], b[1]) for b in observer.batches] == [(1, 1), (3, 1)]
    await batcher.stop()


@async_test
async def test_splits_an_oversized_request_and_reassembles_it():
    model = FakeModel()
    batcher = await started(model, max_batch_size=4, batch_timeout_ms=0, allowed_batch_sizes=[2, 4])
    request = rows(10)
    assert_same(await asyncio.wait_for(batcher.submit(request), WAIT_S), reference(request))
    assert model.batch_rows == [4, 4, 2]
    await batcher.stop()


@async_test
async def test_oversized_request_shares_batches_with_small_ones():
    model = FakeModel()
    batcher = await started(model, max_batch_size=4, batch_timeout_ms=0)
    requests = [rows(1, start=500), rows(6), rows(1, start=700)]
    assert_alone(requests, await queued_then_released(model, batcher, requests))
    assert model.batch_rows == [1, 1, 4, 3]  # FIFO: [1] then [4 of 6], then [2 of 6 + 1]
    await batcher.stop()


@async_test
async def test_incompatible_requests_go_to_separate_batches():
    model = FakeModel()
    batcher = await started(model, max_batch_size=16, batch_timeout_ms=0)
    requests = [
        rows(2, width=3),
        rows(1, width=5),  # another feature size
        rows(2, width=3, dtype=np.float32),  # another dtype
        {"y": np.ones((1, 3), np.int64)},  # another input name
        {"x": np.ones((1, 3), np.int64), "y": np.ones((1, 3), np.int64)},  # an extra input
        rows(1, width=3, start=77),  # merges with the first
        {"x": np.array([[b"ab", b"c", b""]], dtype=object)},  # strings (object arrays)
    ]
    assert_alone(requests, await queued_then_released(model, batcher, requests))
    signatures = [tuple(sorted(shapes.items())) for shapes in model.batch_shapes[1:]]
    assert len(signatures) == 6  # one batch per compatibility key
    assert signatures[0] == (("x", (3, 3)),)  # the two width-3 int64 requests merged
    await batcher.stop()


@async_test
async def test_oldest_request_goes_first_across_shapes():
    model = FakeModel()
    batcher = await started(model, max_batch_size=2, batch_timeout_ms=0)
    requests = [rows(1, width=w) for w in (3, 3, 5, 3, 3)]  # in arrival order
    assert_alone(requests, await queued_then_released(model, batcher, requests))
    widths = [shapes["x"][1:] for shapes in model.batch_shapes[1:]]
    assert widths == [(3,), (5,), (3,)]  # the width-5 request is not starved by later width-3 ones
    await batcher.stop()


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"a": np.ones((2, 3)), "b": np.ones((3, 3))}, "disagree on the batch size"),
        ({"a": np.float32(1.0)}, "not a numpy array"),
        ({"a": np.array(1.0)}, "scalar"),
        ({"a": np.ones((0, 3))}, "0 rows"),
        ({}, "no inputs"),
        ({"a": [[1.0, 2.0]]}, "not a numpy array"),
    ],
)
@async_test
async def test_malformed_requests_are_refused(inputs, message):
    model, observer = FakeModel(), RecordingObserver()
    batcher = await started(model, observer)
    with pytest.raises(InvalidArgument, match=message):
        await batcher.submit(inputs)
    assert observer.rejects == ["invalid"] and model.batch_shapes == []
    await batcher.stop()


@async_test
async def test_disabled_batching_runs_each_request_alone_as_given():
    model = FakeModel()
    batcher = await started(model, enabled=False, max_batch_size=2, batch_timeout_ms=600_000)
    requests = [rows(3, start=i * 100) for i in range(3)]
    assert_alone(requests, await queued_then_released(model, batcher, requests))
    assert model.batch_rows == [1, 3, 3, 3]  # neither merged nor cut at max_batch_size
    # Unbatched signatures (no batch dimension) pass through untouched.
    scalar = await asyncio.wait_for(batcher.submit({"s": np.array(4.0)}), WAIT_S)
    assert scalar["s_double"] == 8.0
    await batcher.stop()


@async_test
async def test_a_finished_batch_is_answered_before_the_worker_takes_the_next():
    """What a waiter of a finished batch submits as soon as it has its answer (a closed-loop client's next
    request) joins the request already queued, because the worker is freed only after the answers."""
    model = FakeModel()
    model.hold()
    batcher = await started(model, max_batch_size=8, batch_timeout_ms=0)

    async def client(start: int) -> None:
        await batcher.submit(rows(1, start=start))
        await batcher.submit(rows(1, start=start + 10))  # sent in the same turn as the answer arrives

    first = asyncio.create_task(client(0))
    await eventually(lambda: model.active == 1)
    queued = asyncio.create_task(batcher.submit(rows(1, start=5)))
    await eventually(lambda: batcher.queue_rows == 1)
    model.release()
    await asyncio.wait_for(asyncio.gather(first, queued), WAIT_S)
    assert model.batch_rows == [1, 2]  # not [1, 1, 1]: the next batch waited for the first one's answer
    await batcher.stop()


@async_test
async def test_one_worker_per_predict_fn_and_each_runs_one_batch_at_a_time():
    devices = [FakeModel(), FakeModel()]
    for device in devices:
        device.hold()
    batcher = await started(devices, max_batch_size=4, batch_timeout_ms=0)
    waiters = [asyncio.create_task(batcher.submit(rows(1, start=i))) for i in range(6)]
    await eventually(lambda: all(d.active == 1 for d in devices))  # both devices busy at once
    for device in devices:
        device.release()
    await asyncio.wait_for(asyncio.gather(*waiters), WAIT_S)
    assert [d.max_active for d in devices] == [1, 1]
    assert sum(sum(d.batch_rows) for d in devices) == 6
    await batcher.stop()
