"""Admission: what a request must pass before it queues; each refusal is reported once and explained."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from service.batching import merge
from service.batching.observer import BatchObserver
from service.batching.policy import BatchPolicy
from service.errors import DeadlineExceeded, InvalidArgument, ResourceExhausted, Unavailable
from service.settings import BatchingSettings


class Admission:
    """Checks requests for one batcher (named `what` in messages) against its settings and policy.

    NOTE: called from the batcher's event loop only.
    """

    def __init__(self, settings: BatchingSettings, policy: BatchPolicy, observer: BatchObserver, what: str) -> None:
        self._settings = settings
        self._policy = policy
        self._observer = observer
        self._what = what

    def describe(self, inputs: Mapping[str, np.ndarray]) -> tuple[int, merge.CompatKey | None]:
        """(rows, compatibility key) of a request (key None with batching off); raises InvalidArgument."""
        try:
            if self._settings.enabled:
                return merge.describe(inputs)
            if not isinstance(inputs, Mapping):
                raise InvalidArgument(f"inputs must be a dict of arrays, not {type(inputs).__name__}")
            return merge.loose_rows(inputs), None
        except InvalidArgument:
            self._observer.on_reject("invalid")
            raise

    def check(self, rows: int, now_s: float, deadline: float | None, queued_rows: int) -> None:
        """Raise if a request of `rows` rows may not queue behind `queued_rows` now.

        DeadlineExceeded (its deadline passed), ResourceExhausted (more rows than the queue holds),
        Unavailable (the queue is full, or slo mode predicts it would miss latency_slo_ms).
        """
        limit = self._settings.max_queue_rows
        if deadline is not None and now_s >= deadline:
            self._observer.on_reject("deadline")
            raise DeadlineExceeded(f"{self._what}: the deadline had passed before the request was queued")
        if rows > limit:
            self._observer.on_reject("invalid")
            raise ResourceExhausted(
                f"{self._what}: the request has {rows} rows, more than the queue holds "
                f"(max_queue_rows={limit}); send smaller requests"
            )
        if queued_rows + rows > limit:
            self._observer.on_reject("queue_full")
            raise Unavailable(
                f"{self._what}: queue is full (max_queue_rows={limit}, {queued_rows} rows queued, "
                f"request has {rows}); retry with backoff"
            )
        if not self._policy.admits(now_s, rows, queued_rows):
            self._observer.on_reject("slo")
            raise Unavailable(
                f"{self._what}: the request would miss latency_slo_ms={self._settings.latency_slo_ms} "
                f"({queued_rows} rows queued); retry with backoff or add capacity"
            )
