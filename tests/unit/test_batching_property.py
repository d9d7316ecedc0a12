"""Property tests: under random sizes, shapes, knobs and interleavings, every caller gets its own answer."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from service.errors import DeadlineExceeded, Unavailable
from tests.unit.batching_fakes import FakeModel, RecordingObserver, assert_same, reference, run, started

pytestmark = pytest.mark.timeout(120)

# (non-batch dimensions, dtype): three mutually incompatible kinds of request.
KINDS = [((3,), np.int64), ((2, 2), np.int64), ((3,), np.float64)]

knobs = st.fixed_dictionaries(
    {
        "max_batch_size": st.integers(1, 8),
        "batch_timeout_ms": st.sampled_from([0.0, 0.5, 2.0]),
        "batch_idle_timeout_ms": st.sampled_from([0.0, 0.3]),
        "workers": st.integers(1, 3),
        "pad": st.booleans(),
        "mode": st.sampled_from(["fixed", "adaptive", "slo"]),
        "slo_ms": st.sampled_from([0.01, 10_000.0]),  # slo mode: refuses nearly all, or nothing
    }
)
# (rows, kind, event-loop yields before submitting)
requests_st = st.lists(st.tuples(st.integers(1, 12), st.integers(0, len(KINDS) - 1), st.integers(0, 3)), max_size=24)
HYPOTHESIS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _request(seed: int, n_rows: int, kind: int) -> dict[str, np.ndarray]:
    shape, dtype = KINDS[kind]
    rng = np.random.default_rng(seed)
    values = rng.integers(-1000, 1000, (n_rows, *shape)) if dtype == np.int64 else rng.normal(size=(n_rows, *shape))
    return {"x": values.astype(dtype)}


async def _batcher(knob: dict, models: list[FakeModel], observer: RecordingObserver | None = None, slo_ms=10_000.0):
    size = knob["max_batch_size"]
    allowed = sorted({max(1, size // 2), size}) if knob["pad"] else []
    return await started(
        models,
        observer,
        max_batch_size=size,
        batch_timeout_ms=knob["batch_timeout_ms"],
        batch_idle_timeout_ms=knob["batch_idle_timeout_ms"],
        allowed_batch_sizes=allowed,
        max_queue_rows=10_000,
        mode=knob["mode"],
        latency_slo_ms=slo_ms if knob["mode"] == "slo" else None,
    )


async def _after(yields: int, submit, *args):
    for _ in range(yields):
        await asyncio.sleep(0)
    return await submit(*args)


@HYPOTHESIS
@given(knob=knobs, specs=requests_st)
def test_every_caller_gets_exactly_what_running_its_request_alone_gives(knob, specs):
    async def main():
        models = [FakeModel() for _ in range(knob["workers"])]
        observer = RecordingObserver()
        batcher = await _batcher(knob, models, observer)
        requests = [_request(i, n, kind) for i, (n, kind, _) in enumerate(specs)]
        results = await asyncio.gather(
            *(_after(y, batcher.submit, r) for r, (_, _, y) in zip(requests, specs, strict=True))
        )
        for request, result in zip(requests, results, strict=True):
            assert_same(result, reference(request))
        allowed = batcher._settings.allowed_batch_sizes
        for model in models:
            assert all(n <= knob["max_batch_size"] and (not allowed or n in allowed) for n in model.batch_rows)
        assert sum(b[0] for b in observer.batches) == sum(n for n, _, _ in specs)
        assert batcher.queue_rows == 0
        await batcher.stop()

    run(main())


@HYPOTHESIS
@given(
    knob=knobs,
    specs=st.lists(
        st.tuples(
            st.integers(1, 12),
            st.integers(0, len(KINDS) - 1),
            st.integers(0, 3),
            st.sampled_from(["wait", "cancel", "deadline"]),
        ),
        max_size=24,
    ),
    stop_early=st.booleans(),
)
def test_cancellations_and_deadlines_never_hang_or_mix_up_answers(knob, specs, stop_early):
    async def main():
        batcher = await _batcher(knob, [FakeModel() for _ in range(knob["workers"])], slo_ms=knob["slo_ms"])
        if knob["mode"] == "slo":  # one batch first, so that the cost model knows the model and may refuse
            assert_same(await batcher.submit(_request(10_000, 1, 0)), reference(_request(10_000, 1, 0)))
        tasks, requests = [], []
        for i, (n, kind, yields, action) in enumerate(specs):
            request = _request(i, n, kind)
            deadline = time.monotonic() + yields * 0.0005 if action == "deadline" else None
            tasks.append(asyncio.create_task(_after(yields, batcher.submit, request, deadline)))
            requests.append(request)
        for yields in range(4):
            for task, (_, _, when, action) in zip(tasks, specs, strict=True):
                if action == "cancel" and when == yields:
                    task.cancel()
            await asyncio.sleep(0)
        if stop_early:
            await batcher.stop(drain=True)
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        for request, outcome, (_, _, _, action) in zip(requests, outcomes, specs, strict=True):
            event(f"{action}: {type(outcome).__name__}")
            if isinstance(outcome, Unavailable) and knob["mode"] == "slo":
                assert "latency_slo_ms" in str(outcome)  # refused at once: it would miss the SLO
            elif isinstance(outcome, BaseException):
                allowed = {"cancel": asyncio.CancelledError, "deadline": DeadlineExceeded}.get(action)
                assert allowed is not None and isinstance(outcome, allowed), (action, outcome)
            else:
                assert_same(outcome, reference(request))
        assert batcher.queue_rows == 0
        await batcher.stop()

    run(main())
