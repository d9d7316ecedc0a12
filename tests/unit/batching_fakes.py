"""Test doubles for the batcher: a recording, holdable fake model and a recording observer."""

from __future__ import annotations

import asyncio
import functools
import gc
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import numpy as np

from service.batching import DynamicBatcher
from service.settings import BatchingSettings

WAIT_S = 10.0  # generous bound for "does not hang"; never an assertion on speed


def reference(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A deterministic row-wise 'model': each output row depends only on its own input row."""
    outputs = {}
    for name, x in inputs.items():
        if x.ndim == 0:  # unbatched input (only reaches a model with batching disabled)
            outputs[f"{name}_double"] = x * 2
            continue
        row_sum = x.reshape(len(x), -1).sum(axis=1)
        outputs[f"{name}_double"] = x * 2 + row_sum.reshape((-1,) + (1,) * (x.ndim - 1))
        outputs[f"{name}_sum"] = row_sum
    return outputs


class FakeModel:
    """Runs `reference` (or `behaviour`), records each batch's shapes, and can be held mid-call."""

    def __init__(self, behaviour: Callable[[dict[str, np.ndarray]], Any] = reference) -> None:
        self.behaviour = behaviour
        self.batch_shapes: list[dict[str, tuple[int, ...]]] = []
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()
        self._gate = threading.Event()
        self._gate.set()

    @property
    def batch_rows(self) -> list[int]:
        """Rows of each call so far (padding included), in call order."""
        return [next(iter(shapes.values()))[0] for shapes in list(self.batch_shapes)]

    def hold(self) -> None:
        """Make calls block until release() (bounded, so a broken test cannot hang a thread)."""
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def __call__(self, inputs: dict[str, np.ndarray]) -> Any:
        with self._lock:
            self.batch_shapes.append({name: array.shape for name, array in inputs.items()})
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            self._gate.wait(WAIT_S)
            return self.behaviour(inputs)
        finally:
            with self._lock:
                self.active -= 1


class RecordingObserver:
    """Keeps every report a batcher makes."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, int, list[float], float]] = []
        self.rejects: list[str] = []
        self.plans: list[tuple[float, int]] = []
        self.triggers: list[str] = []
        self.queue_rows: Callable[[], int] = lambda: 0

    def on_batch(self, rows: int, padding_rows: int, queue_wait_s: Sequence[float], compute_s: float) -> None:
        self.batches.append((rows, padding_rows, list(queue_wait_s), compute_s))

    def on_reject(self, reason: str) -> None:
        self.rejects.append(reason)

    def on_plan(self, wait_s: float, cap_rows: int) -> None:
        self.plans.append((wait_s, cap_rows))

    def on_trigger(self, trigger: str) -> None:
        self.triggers.append(trigger)

    def watch_queue(self, rows: Callable[[], int]) -> None:
        self.queue_rows = rows


def run(coro: Coroutine[Any, Any, Any], timeout_s: float = 30.0) -> Any:
    """asyncio.run with an overall bound, so a hang fails the test instead of stalling the suite.

    Also fails on anything the loop reports to its exception handler (a task or future whose
    exception nobody retrieved, a callback that raised).
    """
    reports: list[dict[str, Any]] = []

    async def bounded() -> Any:
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: reports.append(context))
        return await asyncio.wait_for(coro, timeout_s)

    result = asyncio.run(bounded())
    gc.collect()  # unretrieved future exceptions are reported when the future is collected
    assert not reports, reports
    return result


def async_test(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an `async def` test function through `run` (no pytest-asyncio needed)."""

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        run(test(*args, **kwargs))

    return wrapper


async def eventually(predicate: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    """Yield to the loop until predicate() holds; fail after timeout_s."""
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.001)


async def started(
    fns: FakeModel | Sequence[Callable[..., Any]], observer: RecordingObserver | None = None, **knobs: Any
) -> DynamicBatcher:
    """A started batcher over `fns` (one worker per element; a single model means one worker).

    Fixed mode with the idle timeout off unless a test sets them, so batch_timeout_ms alone decides
    when batches run.
    """
    knobs.setdefault("batch_idle_timeout_ms", 0.0)
    knobs.setdefault("mode", "fixed")
    batcher = DynamicBatcher(
        [fns] if isinstance(fns, FakeModel) else list(fns), BatchingSettings(**knobs), name="fake", observer=observer
    )
    await batcher.start()
    return batcher


async def hold_worker(model: FakeModel, batcher: DynamicBatcher) -> asyncio.Task:
    """Occupy a single-worker batcher with a one-row request that blocks inside the model."""
    model.hold()
    blocker = asyncio.create_task(batcher.submit(rows(1, start=-100)))
    await eventually(lambda: model.active == 1)
    return blocker


async def queued_then_released(
    model: FakeModel, batcher: DynamicBatcher, requests: Sequence[dict[str, np.ndarray]]
) -> list[Any]:
    """Queue `requests` behind a held worker, then let everything run; the outcomes, in order.

    This makes batch composition deterministic: everything is queued before a batch forms.
    model.batch_shapes[0] is the blocker's batch. Exceptions are returned, not raised.
    """
    blocker = await hold_worker(model, batcher)
    waiters = [asyncio.create_task(batcher.submit(request)) for request in requests]
    total_rows = sum(len(next(iter(request.values()))) for request in requests)
    await eventually(lambda: batcher.queue_rows == total_rows)
    model.release()
    outcomes = await asyncio.wait_for(asyncio.gather(*waiters, return_exceptions=True), WAIT_S)
    await asyncio.wait_for(asyncio.gather(blocker, return_exceptions=True), WAIT_S)
    return outcomes


def rows(n: int, width: int = 3, start: int = 0, dtype: Any = np.int64) -> dict[str, np.ndarray]:
    """A one-input request of n distinct rows."""
    return {"x": np.arange(start, start + n * width, dtype=dtype).reshape(n, width)}


def assert_alone(requests: Sequence[dict[str, np.ndarray]], outcomes: Sequence[Any]) -> None:
    """Each outcome is what running its request alone gives."""
    assert len(requests) == len(outcomes)
    for request, outcome in zip(requests, outcomes, strict=True):
        assert not isinstance(outcome, BaseException), outcome
        assert_same(outcome, reference(request))


def assert_same(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    """Equal names, dtypes, shapes and values."""
    assert got.keys() == want.keys()
    for name, expected in want.items():
        assert got[name].dtype == expected.dtype, name
        np.testing.assert_array_equal(got[name], expected, err_msg=name)
