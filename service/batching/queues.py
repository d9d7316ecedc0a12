"""Per-compatibility-key FIFO queues that count rows and hand out the oldest ready batch."""

from __future__ import annotations

import asyncio
import heapq
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field

from service.batching.merge import Tensors

# Dead (cancelled) entries are swept out of a key's deque once they are this many and half of it.
_COMPACT_MIN_DEAD = 64


@dataclass(slots=True, eq=False)
class Pending:
    """One queued piece of a request: at most max_batch_size rows, resolved through `future`."""

    key: Hashable
    inputs: Tensors
    rows: int
    seq: int  # arrival order; strictly increasing
    enqueued_s: float
    ready_s: float  # enqueued_s + batch timeout: its batch may run from then on
    deadline_s: float | None
    future: asyncio.Future
    queued: bool = False  # True from push() until it is taken, expired, discarded or drained


@dataclass
class _KeyQueue:
    key: Hashable
    items: deque[Pending] = field(default_factory=deque)
    rows: int = 0  # rows of live (queued) items
    dead: int = 0  # items still in the deque but discarded
    last_s: float = 0.0  # when the newest item was queued (for the idle timeout)


class BatchQueue:
    """Row-counting FIFO queues, one per compatibility key, with oldest-head-first selection.

    A key's batch is ready when it holds max_batch_rows rows, or its oldest item's timeout has
    passed, or (with `idle_s`) nothing joined it for idle_s seconds: requests that keep arriving
    keep the batch open up to the timeout, a lone request does not wait for it.
    `take` prefers the key with the oldest head, so one shape cannot starve another.
    Costs: push and discard O(1) amortized, take O(rows taken + log keys).
    NOTE: not thread-safe; the batcher uses it from the event loop thread only.
    """

    def __init__(self, max_batch_rows: int, *, one_per_batch: bool = False, idle_s: float | None = None) -> None:
        self._max_rows = max_batch_rows
        self._one_per_batch = one_per_batch
        self._idle_s = idle_s
        self._queues: dict[Hashable, _KeyQueue] = {}
        self._heads: list[tuple[int, Hashable]] = []  # one (seq, key) per key; seq may lag the real head
        self._full: set[Hashable] = set()
        self.rows = 0
        self.wake_rows = max_batch_rows  # push() asks for a look once a key holds this many rows

    def push(self, item: Pending) -> bool:
        """Queue `item`; True when this may make a batch ready sooner (the dispatcher should look)."""
        was_empty = self.rows == 0
        kq = self._queues.get(item.key)
        if kq is None:
            kq = self._queues[item.key] = _KeyQueue(item.key)
            heapq.heappush(self._heads, (item.seq, item.key))
        kq.items.append(item)
        kq.last_s = item.enqueued_s
        kq.rows += item.rows
        self.rows += item.rows
        item.queued = True
        if kq.rows >= self._max_rows:
            self._full.add(item.key)
            return True
        return was_empty or kq.rows >= self.wake_rows

    def discard(self, item: Pending) -> bool:
        """Drop a still-queued item (its caller went away); False if it already left the queue."""
        if not item.queued:
            return False
        kq = self._queues[item.key]
        self._unqueue(kq, item)
        item.inputs = {}  # free the request's arrays now; the entry itself is swept out later
        kq.dead += 1
        if kq.dead >= _COMPACT_MIN_DEAD and 2 * kq.dead >= len(kq.items):
            kq.items = deque(i for i in kq.items if i.queued)
            kq.dead = 0
        return True

    def take(
        self,
        now_s: float,
        *,
        flush: bool = False,
        ready_at_s: float | None = None,
        cap_rows: int | None = None,
        ready_rows: int | None = None,
    ) -> tuple[list[Pending], list[Pending]] | None:
        """The next ready batch as (items, expired), or None when no batch is ready.

        `expired` are items whose deadline passed; they left the queue and must be failed by the
        caller. `items` may be empty when all candidates had expired. flush=True treats every
        queued item as ready (used while draining). A batch policy may set when the oldest key's
        batch is ready (`ready_at_s`, instead of its items' timers), a smaller size cap (`cap_rows`)
        and how many queued rows make it ready at once (`ready_rows`, default the cap).
        """
        kq = self._oldest()
        if kq is None:
            return None
        cap = self._max_rows if cap_rows is None else min(cap_rows, self._max_rows)
        ready_s = self._ready_at(kq) if ready_at_s is None else ready_at_s
        if not (flush or now_s >= ready_s or kq.rows >= min(cap, ready_rows or cap)):
            if not self._full:
                return None
            key = min(self._full, key=lambda k: self._queues[k].items[0].seq)
            kq = self._queues[key]
        return self._pop_batch(kq, now_s, cap)

    def head(self) -> tuple[int, float] | None:
        """(rows, enqueued_s of its oldest item) of the key with the oldest item; None when empty."""
        kq = self._oldest()
        return None if kq is None else (kq.rows, kq.items[0].enqueued_s)

    def wake_at(self) -> float | None:
        """When the oldest queued item's timeout passes; None when nothing is queued."""
        kq = self._oldest()
        return None if kq is None else self._ready_at(kq)

    def _ready_at(self, kq: _KeyQueue) -> float:
        """When the key's batch becomes ready by time: its head's timeout, or sooner once it goes idle."""
        ready_s = kq.items[0].ready_s
        if self._idle_s is not None:
            ready_s = min(ready_s, kq.last_s + self._idle_s)
        return ready_s

    def drain(self) -> list[Pending]:
        """Remove and return every queued item, oldest first."""
        live = sorted((i for kq in self._queues.values() for i in kq.items if i.queued), key=lambda i: i.seq)
        for item in live:
            item.queued = False
        self._queues.clear()
        self._heads.clear()
        self._full.clear()
        self.rows = 0
        return live

    def _oldest(self) -> _KeyQueue | None:
        while self._heads:
            seq, key = self._heads[0]
            kq = self._queues[key]
            while kq.items and not kq.items[0].queued:
                kq.items.popleft()
                kq.dead -= 1
            if not kq.items:
                heapq.heappop(self._heads)
                del self._queues[key]
            elif kq.items[0].seq != seq:
                heapq.heapreplace(self._heads, (kq.items[0].seq, key))  # the head moved on: re-sort it
            else:
                return kq
        return None

    def _pop_batch(self, kq: _KeyQueue, now_s: float, cap: int) -> tuple[list[Pending], list[Pending]]:
        items, expired, rows = [], [], 0
        queue = kq.items
        while queue:
            item = queue[0]
            if not item.queued:
                queue.popleft()
                kq.dead -= 1
            elif item.deadline_s is not None and now_s >= item.deadline_s:
                queue.popleft()
                self._unqueue(kq, item)
                expired.append(item)
            elif items and (rows + item.rows > cap or self._one_per_batch):
                break
            else:
                queue.popleft()
                self._unqueue(kq, item)
                items.append(item)
                rows += item.rows
        return items, expired

    def _unqueue(self, kq: _KeyQueue, item: Pending) -> None:
        item.queued = False
        kq.rows -= item.rows
        self.rows -= item.rows
        if kq.rows < self._max_rows:
            self._full.discard(item.key)
