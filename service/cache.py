"""BoundedCache: a small keyed cache with a hard size bound, owned by the object that uses it."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """At most `capacity` entries; when full, the oldest entry makes room (first in, first out).

    Meant for values derived from what clients send (tensor shapes, response layouts), whose
    variety a client controls: the bound keeps memory flat whatever they send. `hits`, `misses`
    and `len()` are public so that tests and metrics can observe it.
    NOTE: not thread-safe; use it from one thread (our servicers run on the event loop).
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.hits = 0
        self.misses = 0
        self._entries: dict[K, V] = {}

    def get(self, key: K) -> V | None:
        """The cached value for `key`, or None (a miss: compute it and `put` it)."""
        value = self._entries.get(key)
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    def put(self, key: K, value: V) -> None:
        """Store `value` under `key`, making room by dropping the oldest entry when full."""
        if key not in self._entries and len(self._entries) >= self.capacity:
            del self._entries[next(iter(self._entries))]
        self._entries[key] = value

    def get_or_make(self, key: K, make: Callable[[], V]) -> V:
        """The cached value for `key`, else `make()` stored under it. An exception from make() stores nothing."""
        value = self.get(key)
        if value is None:
            value = make()
            self.put(key, value)
        return value

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries
