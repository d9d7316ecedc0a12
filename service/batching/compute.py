"""What runs in a batcher's worker threads (merge, predict, split) and how waiters are settled."""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable

import numpy as np

from service.batching import merge
from service.batching.queues import BatchQueue, Pending
from service.errors import ServingError

PredictFn = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
Outputs = dict[str, np.ndarray]


def compute(
    fn: PredictFn, inputs: list[merge.Tensors], row_counts: list[int], padded_rows: int
) -> tuple[list[Outputs] | None, BaseException | None, float]:
    """Merge, pad, predict and split one batch: (parts, None, seconds) or (None, error, seconds).

    NOTE: runs in an executor thread; touches no batcher state.
    """
    start_s = time.monotonic()
    try:
        batch = merge.concat(inputs, padded_rows - sum(row_counts))
        parts = merge.split(fn(batch), row_counts, padded_rows)
    except Exception as exc:
        return None, exc, time.monotonic() - start_s
    return parts, None, time.monotonic() - start_s


def compute_alone(
    fn: PredictFn, inputs: list[merge.Tensors], row_counts: list[int], padded_rows: int
) -> tuple[list[Outputs] | None, BaseException | None, float]:
    """Run one request as given, without batching: no padding and no row checks (see compute)."""
    start_s = time.monotonic()
    try:
        (request,) = inputs
        outputs = merge.as_outputs(fn(dict(request)))
    except Exception as exc:
        return None, exc, time.monotonic() - start_s
    return [outputs], None, time.monotonic() - start_s


def rows_of(queue: weakref.ReferenceType[BatchQueue]) -> Callable[[], int]:
    """A reader of the queue's current rows that does not keep the queue (or its batcher) alive."""

    def rows() -> int:
        alive = queue()
        return 0 if alive is None else alive.rows

    return rows


def settle(items: list[Pending], outcome: list[Outputs] | ServingError | None) -> None:
    """Resolve each item's future with its part of `outcome`, or with the error; skips futures already done."""
    for i, item in enumerate(items):
        if item.future.done():
            continue
        if isinstance(outcome, ServingError):
            item.future.set_exception(outcome)
        else:
            assert outcome is not None
            item.future.set_result(outcome[i])
