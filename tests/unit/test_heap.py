"""settle_heap: the long-lived heap is frozen, and garbage frozen earlier is collected on the next settle."""

from __future__ import annotations

import gc
import weakref

from service.heap import settle_heap


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector can free it


def test_settle_heap_freezes_survivors_and_frees_cycles_frozen_before():
    try:
        node = _Node()
        alive = weakref.ref(node)
        settle_heap()
        assert gc.get_freeze_count() > 0
        del node
        gc.collect()
        assert alive() is not None  # frozen: the collector ignores it, as it does the loaded models
        settle_heap()  # what the server does after a version is unloaded
        assert alive() is None
    finally:
        gc.unfreeze()
