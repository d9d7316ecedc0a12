"""BatchObserver: the hooks a DynamicBatcher reports through (service/metrics.py implements them)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Literal, Protocol

RejectReason = Literal["queue_full", "deadline", "cancelled", "invalid", "slo"]
# Why a batch ran: no wait was chosen, it reached its size cap, its wait ran out, or the batcher drains.
BatchTrigger = Literal["immediate", "full", "timeout", "drain"]

logger = logging.getLogger(__name__)


class BatchObserver(Protocol):
    """What a batcher reports. Every hook defaults to a no-op; subclass to keep the defaults.

    NOTE: hooks run on the event loop thread, on the request path: they must be quick and must
    not block. An exception from a hook is logged and otherwise ignored.
    """

    def on_batch(self, rows: int, padding_rows: int, queue_wait_s: Sequence[float], compute_s: float) -> None:
        """A batch ran (successfully or not): its request rows, the padding added on top, each
        queued piece's wait from enqueue to batch formation, and the model call's duration."""
        return None

    def on_reject(self, reason: RejectReason) -> None:
        """A request was refused or dropped before compute; called once per request."""
        return None

    def on_plan(self, wait_s: float, cap_rows: int) -> None:
        """The batch policy chose a wait (seconds after the oldest request) and a batch-size cap."""
        return None

    def on_trigger(self, trigger: BatchTrigger) -> None:
        """A batch was formed, for this reason (called once per batch, before on_batch)."""
        return None

    def watch_queue(self, rows: Callable[[], int]) -> None:
        """Called once, when the batcher is built: `rows()` returns the rows waiting in its queue now.

        Read it when you need it (e.g. at scrape time, from any thread): the batcher does not report
        every change, so the request path pays nothing for the queue depth. `rows` holds the
        batcher only weakly (0 once it is gone).
        """
        return None


class NullObserver(BatchObserver):
    """Observes nothing."""


class GuardedObserver(BatchObserver):
    """Forwards to another observer, logging instead of raising if it fails."""

    def __init__(self, inner: BatchObserver) -> None:
        self._inner = inner

    def on_batch(self, rows: int, padding_rows: int, queue_wait_s: Sequence[float], compute_s: float) -> None:
        try:
            self._inner.on_batch(rows, padding_rows, queue_wait_s, compute_s)
        except Exception:
            logger.exception("batch observer failed in on_batch")

    def on_reject(self, reason: RejectReason) -> None:
        try:
            self._inner.on_reject(reason)
        except Exception:
            logger.exception("batch observer failed in on_reject")

    def on_plan(self, wait_s: float, cap_rows: int) -> None:
        try:
            self._inner.on_plan(wait_s, cap_rows)
        except Exception:
            logger.exception("batch observer failed in on_plan")

    def on_trigger(self, trigger: BatchTrigger) -> None:
        try:
            self._inner.on_trigger(trigger)
        except Exception:
            logger.exception("batch observer failed in on_trigger")

    def watch_queue(self, rows: Callable[[], int]) -> None:
        try:
            self._inner.watch_queue(rows)
        except Exception:
            logger.exception("batch observer failed in watch_queue")
