"""DynamicBatcher: merges concurrent requests into bounded, deadline-aware batches run on worker threads."""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import itertools
import logging
import time
import weakref
from collections.abc import Callable, Sequence

import numpy as np

from service.batching import merge
from service.batching.admission import Admission
from service.batching.compute import Outputs, PredictFn, compute, compute_alone, rows_of, settle
from service.batching.merge import BatchOutputError
from service.batching.observer import BatchObserver, BatchTrigger, GuardedObserver, NullObserver
from service.batching.policy import make_policy
from service.batching.queues import BatchQueue, Pending
from service.errors import DeadlineExceeded, Internal, ServingError, Unavailable
from service.settings import BatchingSettings

logger = logging.getLogger(__name__)
_MAX_DETAIL_CHARS = 300


class _State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class DynamicBatcher:
    """Queues requests, merges compatible ones along axis 0 and runs each batch as one model call.

    A batch runs only when a worker is free (so batches grow while all workers are busy); when,
    and how many rows at most, the batch policy of settings.mode decides (service/batching/policy.py).
    In fixed mode a batch runs when its requests reach max_batch_size rows, or batch_timeout_ms
    after its first queued request (sooner after batch_idle_timeout_ms without arrivals); the
    adaptive mode runs at once unless waiting is likely to pay; slo mode also refuses at once
    (Unavailable) requests that would miss latency_slo_ms. Requests merge only when their input
    names, dtypes and non-batch dimensions agree; each such key has its own FIFO and the key with
    the oldest request goes first. The queue is bounded in rows (max_queue_rows) and refuses at once when full. Requests
    with more rows than max_batch_size are cut into pieces that queue and run separately.

    There is one worker per element of `predict_fns` (N copies of one callable on CPU, one
    callable per device on GPU); each callable runs at most one batch at a time, in `executor`
    (default: a ThreadPoolExecutor with one thread per callable, shut down by stop()).

    With settings.enabled False nothing is merged, padded or cut: each request is one model call
    with its inputs as given (so signatures without a batch dimension work too), still queued,
    bounded, deadline-checked and run by the workers.

    NOTE: start, submit and stop must be called from one event loop (the one start ran on);
    predict_fns are called from executor threads.
    """

    def __init__(
        self,
        predict_fns: Sequence[PredictFn],
        settings: BatchingSettings,
        *,
        name: str = "",
        observer: BatchObserver | None = None,
        executor: concurrent.futures.Executor | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not predict_fns:
            raise ValueError("DynamicBatcher needs at least one predict function")
        self._fns = list(predict_fns)
        self._settings = settings
        self._name = name
        self._what = f"batcher {name}" if name else "batcher"
        self._observer: BatchObserver = NullObserver() if observer is None else GuardedObserver(observer)
        self._executor = executor
        self._owns_executor = executor is None
        self._batching = settings.enabled
        self._timeout_s = settings.batch_timeout_ms / 1000 if settings.enabled else 0.0
        self._allowed_sizes = list(settings.allowed_batch_sizes) if settings.enabled else []
        idle_ms = settings.batch_idle_timeout_ms if settings.enabled else 0.0
        idle_s = idle_ms / 1000 if 0 < idle_ms < settings.batch_timeout_ms else None  # 0 = off
        self._queue = BatchQueue(settings.max_batch_size, one_per_batch=not settings.enabled, idle_s=idle_s)
        self._observer.watch_queue(rows_of(weakref.ref(self._queue)))
        self._policy = make_policy(settings, len(self._fns))
        self._admission = Admission(settings, self._policy, self._observer, self._what)
        self._clock = clock
        if settings.mode == "fixed" or not settings.enabled:
            self._observer.on_plan(self._timeout_s, settings.max_batch_size if settings.enabled else 1)
        self._seq = itertools.count()
        self._state = _State.NEW
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: asyncio.Queue[int] | None = None  # indices of the workers not running a batch
        self._wakeup: asyncio.Event | None = None  # set when the dispatcher should look at the queue
        self._dispatcher: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._closing: asyncio.Task[None] | None = None
        self._last_failure = ""  # the last batch failure logged at ERROR

    @property
    def queue_rows(self) -> int:
        """Rows waiting for a batch (not counting batches being computed)."""
        return self._queue.rows

    def predicted_compute_s(self, rows: int) -> list[float]:
        """Each worker's current pessimistic estimate of a `rows`-row batch's compute time (0.0 before its first)."""
        return [cost.predict_s(rows) for cost in self._policy.costs]

    async def start(self) -> None:
        """Start the dispatcher on the running loop. Idempotent; raises RuntimeError after stop()."""
        if self._state is _State.RUNNING:
            return
        if self._state is not _State.NEW:
            raise RuntimeError(f"{self._what} was stopped; build a new one")
        self._loop = asyncio.get_running_loop()
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=len(self._fns), thread_name_prefix=f"batch-{self._name}"
            )
        self._idle = asyncio.Queue()
        for worker in range(len(self._fns)):
            self._idle.put_nowait(worker)
        self._wakeup = asyncio.Event()
        self._dispatcher = self._loop.create_task(self._dispatch(), name=f"{self._what} dispatcher")
        self._state = _State.RUNNING

    async def submit(self, inputs: dict[str, np.ndarray], deadline: float | None = None) -> Outputs:
        """Run `inputs` (axis 0 = rows) in a batch and return exactly this request's output rows.

        `deadline` is an absolute time.monotonic() value; the request is dropped if it passes
        before its batch runs. Never blocks on a full queue. Raises:
          Unavailable        the queue is full (the message gives max_queue_rows), or the batcher
                             is not started or is stopping;
          ResourceExhausted  the request alone has more rows than max_queue_rows;
          DeadlineExceeded   the deadline passed before the batch ran;
          InvalidArgument    malformed inputs (no inputs, non-arrays, scalars, 0 rows, or inputs
                             disagreeing on the row count);
          Internal           the model call failed with a non-ServingError, or returned outputs
                             that cannot be split back; a ServingError from the model is re-raised.
        If the awaiting task is cancelled while the request is queued, the request leaves the queue
        and is never computed; if its batch is already running, its rows are computed and discarded.
        """
        if self._state is not _State.RUNNING:
            raise Unavailable(self._refusal())
        rows, key = self._admission.describe(inputs)
        now_s = self._clock()
        self._admission.check(rows, now_s, deadline, self._queue.rows)
        self._policy.arrived(now_s, rows)
        return await self._wait(self._enqueue(inputs, rows, key, now_s, deadline))

    async def stop(self, drain: bool = True) -> None:
        """Stop admitting requests (they get Unavailable), then wind down. Idempotent.

        drain=True runs everything already queued at once (without waiting for the timeout);
        drain=False fails queued requests with Unavailable. Either way stop() returns after the
        batches being computed have finished, so no predict_fn runs after it returns.
        """
        if self._state is _State.NEW:
            self._state = _State.STOPPED
            return
        if self._state is _State.RUNNING:
            self._state = _State.STOPPING
        if not drain:
            self._fail_queued(Unavailable(f"{self._what} stopped before the request ran"))
        assert self._loop is not None and self._wakeup is not None
        self._wakeup.set()
        if self._closing is None:
            self._closing = self._loop.create_task(self._close())
        await asyncio.shield(self._closing)

    # -- admission -------------------------------------------------------------------------

    def _enqueue(
        self, inputs: merge.Tensors, rows: int, key: object, now_s: float, deadline: float | None
    ) -> list[Pending]:
        assert self._loop is not None and self._wakeup is not None
        pieces = merge.chunk(inputs, rows, self._settings.max_batch_size) if self._batching else [(inputs, rows)]
        ready_s = now_s + self._timeout_s
        items = []
        wake = False
        for piece, piece_rows in pieces:
            future = self._loop.create_future()
            item = Pending(key, piece, piece_rows, next(self._seq), now_s, ready_s, deadline, future)
            wake = self._queue.push(item) or wake
            items.append(item)
        if wake:
            self._wakeup.set()
        return items

    async def _wait(self, items: list[Pending]) -> Outputs:
        try:
            if len(items) == 1:
                return await items[0].future
            # NOTE: gather of futures creates no tasks; it fails fast and cancels the rest on cancel.
            parts = await asyncio.gather(*(item.future for item in items))
        except asyncio.CancelledError:
            if self._discard(items):
                self._observer.on_reject("cancelled")
            raise
        except DeadlineExceeded:
            self._discard(items)
            self._observer.on_reject("deadline")
            raise
        except BaseException:
            self._discard(items)
            raise
        try:
            return merge.concat(parts)
        except BatchOutputError as exc:
            raise Internal(f"{self._what}: cannot reassemble a split request: {exc}") from None

    def _discard(self, items: list[Pending]) -> bool:
        """Take a request's pieces out of the queue and cancel their futures; True if any was queued."""
        dropped = False
        for item in items:
            dropped = self._queue.discard(item) or dropped
            if not item.future.done():
                item.future.cancel()
        return dropped

    def _refusal(self) -> str:
        if self._state is _State.NEW:
            return f"{self._what} is not started"
        return f"{self._what} is shutting down and accepts no new requests; retry"

    # -- dispatch --------------------------------------------------------------------------

    async def _dispatch(self) -> None:
        """Pair a free worker with the next ready batch, forever (until stopping and empty)."""
        assert self._loop is not None and self._idle is not None
        try:
            while True:
                worker = await self._idle.get()
                batch = await self._next_batch(worker)
                if batch is None:
                    return
                task = self._loop.create_task(self._run(worker, *batch))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
        except asyncio.CancelledError:
            self._shut_down(Unavailable(f"{self._what} was stopped before the request ran"))
            raise
        except Exception as exc:  # a bug here must not leave waiters hanging
            logger.exception("%s: dispatcher failed", self._what)
            self._shut_down(Internal(f"{self._what} failed: {type(exc).__name__}: {exc}"[:_MAX_DETAIL_CHARS]))

    async def _next_batch(self, worker: int) -> tuple[list[Pending], float] | None:
        """Wait for a batch `worker` should run; returns (items, formed_s), or None once stopping and empty."""
        assert self._loop is not None and self._wakeup is not None
        waited, ready_at_s, cap, ready_rows = False, None, self._settings.max_batch_size, None
        while True:
            now_s = self._clock()
            flush = self._state is not _State.RUNNING
            head = self._queue.head()
            if head is not None and not flush:  # a later look may only shorten the wait
                plan = self._policy.plan(now_s, worker, *head)
                cap, ready_rows, self._queue.wake_rows = plan.cap_rows, plan.ready_rows, plan.ready_rows
                if plan.ready_at_s is not None:
                    ready_at_s = plan.ready_at_s if ready_at_s is None else min(ready_at_s, plan.ready_at_s)
                    self._observer.on_plan(plan.wait_s, plan.cap_rows)
            taken = self._queue.take(now_s, flush=flush, ready_at_s=ready_at_s, cap_rows=cap, ready_rows=ready_rows)
            if taken is not None:
                items, expired = taken
                self._expire(expired, now_s)
                items = self._drop_overdue(items, worker, now_s)
                if items:
                    self._observer.on_trigger(_trigger(waited, flush, sum(i.rows for i in items), ready_rows or cap))
                    return items, now_s
                ready_at_s = None  # the next head starts a fresh plan
                continue
            if flush:
                return None
            wake_at = ready_at_s if ready_at_s is not None else self._queue.wake_at()
            self._wakeup.clear()
            timer = None if wake_at is None else self._loop.call_later(max(0.0, wake_at - now_s), self._wakeup.set)
            try:
                await self._wakeup.wait()
            finally:
                if timer is not None:
                    timer.cancel()
            waited = waited or head is not None  # (waiting on an empty queue is not a batch's wait)

    async def _run(self, worker: int, items: list[Pending], formed_s: float) -> None:
        """Compute one batch in the executor and settle every item's future."""
        assert self._loop is not None and self._idle is not None
        row_counts = [item.rows for item in items]
        rows = sum(row_counts)
        padded_rows = merge.padded_size(rows, self._allowed_sizes)
        inputs = [item.inputs for item in items]
        self._policy.started(formed_s, worker, rows, padded_rows)
        try:
            try:
                run = compute if self._batching else compute_alone
                parts, error, compute_s = await self._loop.run_in_executor(
                    self._executor, run, self._fns[worker], inputs, row_counts, padded_rows
                )
            except Exception as exc:  # e.g. the executor was shut down under us
                parts, error, compute_s = None, exc, 0.0
            self._policy.finished(worker, padded_rows, compute_s)
            # Answer first, then free the worker: the waiters resume (and their replies start) before the
            # dispatcher looks at the queue, so whatever reaches the queue meanwhile joins the next batch.
            # Measured with h2load at 64 streams: batches of 15-18 rows, not 13-14 (docs/batching-policy.md).
            try:
                settle(items, parts if error is None else self._batch_error(error, rows, padded_rows))
            finally:
                self._idle.put_nowait(worker)  # (not when cancelled: its fn may still be running in its thread)
        finally:  # cancelled with the loop, or a bug: no waiter may hang (a no-op when all are settled)
            settle(items, Unavailable(f"{self._what} was stopped while the batch ran"))
        self._observer.on_batch(rows, padded_rows - rows, [formed_s - item.enqueued_s for item in items], compute_s)

    def _batch_error(self, error: BaseException, rows: int, padded_rows: int) -> ServingError:
        """The error every waiter of a failed batch gets; logs non-ServingErrors (repeats at DEBUG)."""
        if isinstance(error, ServingError):
            return error
        padding = f" (padded to {padded_rows})" if padded_rows != rows else ""
        detail = str(error) if isinstance(error, BatchOutputError) else f"{type(error).__name__}: {error}"
        # A broken model fails every batch: log each distinct failure once with its traceback.
        repeated = detail == self._last_failure
        self._last_failure = detail
        logger.log(
            logging.DEBUG if repeated else logging.ERROR,
            "%s: batch of %d rows%s failed: %s",
            self._what,
            rows,
            padding,
            detail,
            exc_info=None if repeated or isinstance(error, BatchOutputError) else error,
        )
        return Internal(f"{self._what}: the batch of {rows} rows{padding} failed: {detail}"[:_MAX_DETAIL_CHARS])

    def _expire(self, expired: list[Pending], now_s: float) -> None:
        for item in expired:
            if not item.future.done():
                waited_s = now_s - item.enqueued_s
                item.future.set_exception(
                    DeadlineExceeded(f"{self._what}: the deadline passed after {waited_s:.3f} s in the queue")
                )

    def _drop_overdue(self, items: list[Pending], worker: int, now_s: float) -> list[Pending]:
        """The items that can still answer in time; the others get Unavailable (slo mode refuses late)."""
        rows = sum(item.rows for item in items)
        kept = []
        for item in items:
            waited_s = now_s - item.enqueued_s
            if not self._policy.overdue(worker, rows, waited_s):
                kept.append(item)
            elif not item.future.done():
                self._observer.on_reject("slo")
                item.future.set_exception(
                    Unavailable(
                        f"{self._what}: the request would miss latency_slo_ms={self._settings.latency_slo_ms} "
                        f"after {waited_s * 1000:.1f} ms in the queue; retry with backoff or add capacity"
                    )
                )
        return kept

    def _fail_queued(self, error: ServingError) -> None:
        settle(self._queue.drain(), error)

    def _shut_down(self, error: ServingError) -> None:
        if self._state is _State.RUNNING:
            self._state = _State.STOPPING
        self._fail_queued(error)

    async def _close(self) -> None:
        assert self._dispatcher is not None
        await asyncio.gather(self._dispatcher, return_exceptions=True)  # returns once the queue is empty
        while self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
        if self._owns_executor and self._executor is not None:
            self._executor.shutdown(wait=False)
        self._state = _State.STOPPED


def _trigger(waited: bool, flush: bool, rows: int, cap: int) -> BatchTrigger:
    """Why a batch ran: with no wait, once full, once its wait was over, or because the batcher drains."""
    if flush:
        return "drain"
    if not waited:
        return "immediate"
    return "full" if rows >= cap else "timeout"
