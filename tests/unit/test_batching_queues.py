"""BatchQueue (with explicit clocks) and the pure-numpy merge helpers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from service.batching import merge
from service.batching.queues import BatchQueue, Pending
from service.errors import InvalidArgument

_seq = itertools.count()


class _Future:
    """The queue never touches futures; a placeholder keeps these tests loop-free."""


def _item(key: str, rows: int, at_s: float, timeout_s: float = 1.0, deadline_s: float | None = None) -> Pending:
    return Pending(key, {}, rows, next(_seq), at_s, at_s + timeout_s, deadline_s, _Future())  # type: ignore[arg-type]


def test_the_timer_starts_at_the_first_queued_item():
    queue = BatchQueue(8)
    first, second = _item("a", 1, at_s=0.0), _item("a", 1, at_s=0.9)
    queue.push(first)
    queue.push(second)
    assert queue.wake_at() == 1.0
    assert queue.take(0.999) is None
    assert queue.take(1.0) == ([first, second], [])  # the later arrival did not restart the timer
    assert queue.rows == 0 and queue.wake_at() is None


def test_the_idle_timeout_runs_a_batch_nobody_joined_lately_but_never_past_the_timeout():
    queue = BatchQueue(8, idle_s=0.2)
    first, second, third = _item("a", 1, at_s=0.0), _item("a", 1, at_s=0.15), _item("a", 1, at_s=0.3)
    queue.push(first)
    assert queue.wake_at() == pytest.approx(0.2)  # a lone request waits idle_s, not the 1 s timeout
    queue.push(second)
    assert queue.wake_at() == pytest.approx(0.35)  # each arrival keeps the batch open a little longer
    assert queue.take(0.34) is None
    assert queue.take(0.35) == ([first, second], [])
    queue.push(third)
    late = [_item("a", 1, at_s=0.3 + 0.19 * i) for i in range(1, 6)]  # arrivals never 0.2 s apart
    for item in late:
        queue.push(item)
    assert queue.take(1.29) is None
    assert queue.wake_at() == pytest.approx(1.3)  # the head's timeout still bounds the wait
    assert queue.take(1.3) == ([third, *late], [])


def test_a_full_key_is_ready_before_its_timeout_and_caps_the_batch():
    queue = BatchQueue(4)
    items = [_item("a", 2, at_s=0.0) for _ in range(3)]
    assert queue.push(items[0]) is True  # was empty: the dispatcher must set a timer
    assert queue.push(items[1]) is True  # now full
    queue.push(items[2])
    assert queue.take(0.0) == (items[:2], [])
    assert queue.take(0.0) is None  # 2 rows left: not full, not timed out
    assert queue.take(0.0, flush=True) == (items[2:], [])


def test_oldest_head_goes_first_but_a_full_key_beats_one_still_waiting():
    queue = BatchQueue(2)
    a1, b1, b2, a2 = _item("a", 1, 0.0), _item("b", 1, 0.1), _item("b", 1, 0.2), _item("a", 1, 0.3)
    for item in (a1, b1, b2, a2):
        queue.push(item)
    assert queue.take(0.5) == ([a1, a2], [])  # "a" is also full, and it has the oldest head
    queue = BatchQueue(2)
    a1, b1, b2 = _item("a", 1, 0.0), _item("b", 1, 0.1), _item("b", 1, 0.2)
    for item in (a1, b1, b2):
        queue.push(item)
    assert queue.take(0.5) == ([b1, b2], [])  # "a" is not ready yet; "b" is full
    assert queue.take(1.0) == ([a1], [])


def test_expired_items_leave_the_queue_without_joining_a_batch():
    queue = BatchQueue(4)
    late, ok = _item("a", 1, 0.0, deadline_s=0.5), _item("a", 1, 0.0)
    queue.push(late)
    queue.push(ok)
    assert queue.take(1.0) == ([ok], [late])
    assert queue.rows == 0


def test_discarded_items_are_skipped_and_swept_out():
    queue = BatchQueue(1000)
    items = [_item("a", 1, 0.0) for _ in range(200)]
    for item in items:
        queue.push(item)
    for item in items[:150]:
        assert queue.discard(item) is True
    assert queue.discard(items[0]) is False  # already gone
    assert queue.rows == 50
    assert len(queue._queues["a"].items) < 200  # compacted, so cancelled work cannot pile up
    batch, expired = queue.take(1.0)
    assert batch == items[150:] and expired == []


def test_drain_returns_every_live_item_oldest_first():
    queue = BatchQueue(4)
    items = [_item(key, 1, 0.0) for key in "abab"]
    for item in items:
        queue.push(item)
    queue.discard(items[1])
    assert queue.drain() == [items[0], items[2], items[3]]
    assert queue.rows == 0 and queue.take(9.0, flush=True) is None


def test_one_per_batch_mode_never_merges():
    queue = BatchQueue(4, one_per_batch=True)
    items = [_item("a", 3, 0.0, timeout_s=0.0) for _ in range(2)]
    for item in items:
        queue.push(item)
    assert queue.take(0.0) == ([items[0]], [])


def test_describe_keys_on_names_dtypes_and_non_batch_dimensions():
    rows, key = merge.describe({"b": np.zeros((2, 3), np.float32), "a": np.zeros((2,), np.int8)})
    assert rows == 2
    same = merge.describe({"a": np.ones((5,), np.int8), "b": np.ones((5, 3), np.float32)})[1]
    assert key == same
    for other in (
        {"a": np.zeros((2,), np.int16), "b": np.zeros((2, 3), np.float32)},
        {"a": np.zeros((2,), np.int8), "b": np.zeros((2, 4), np.float32)},
        {"a": np.zeros((2,), np.int8), "c": np.zeros((2, 3), np.float32)},
    ):
        assert merge.describe(other)[1] != key
    with pytest.raises(InvalidArgument, match="'a' has 2 rows but 'b' has 3"):
        merge.describe({"a": np.zeros((2,)), "b": np.zeros((3,))})


def test_padded_size_and_padding_repeat_the_last_row():
    assert [merge.padded_size(n, [2, 4, 8]) for n in (1, 2, 3, 8)] == [2, 2, 4, 8]
    assert merge.padded_size(3, []) == 3
    parts = [{"x": np.array([[1, 1]])}, {"x": np.array([[2, 2], [3, 3]])}]
    np.testing.assert_array_equal(merge.concat(parts, pad_rows=2)["x"], [[1, 1], [2, 2], [3, 3], [3, 3], [3, 3]])
    single = {"x": np.arange(4)}
    assert merge.concat([single])["x"] is single["x"]  # no copy when there is nothing to merge


def test_split_returns_each_request_its_rows_and_checks_the_count():
    outputs = {"y": np.arange(8).reshape(4, 2), "z": np.arange(4)}
    first, second = merge.split(outputs, [1, 2], padded_rows=4)
    np.testing.assert_array_equal(first["y"], [[0, 1]])
    np.testing.assert_array_equal(second["z"], [1, 2])
    with pytest.raises(merge.BatchOutputError, match=r"3 rows for output 'z' but the batch had 4 rows \(1 of"):
        merge.split({"y": outputs["y"], "z": np.arange(3)}, [1, 2], padded_rows=4)


def test_chunk_cuts_views_that_reassemble_to_the_request():
    request = {"x": np.arange(20).reshape(10, 2)}
    pieces = merge.chunk(request, 10, 4)
    assert [n for _, n in pieces] == [4, 4, 2]
    np.testing.assert_array_equal(merge.concat([p for p, _ in pieces])["x"], request["x"])
    assert merge.chunk(request, 10, 10) == [(request, 10)]
