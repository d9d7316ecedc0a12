"""Readiness shared by the workers: one flag per worker slot in shared memory, read by every worker and the parent.

Why shared memory: a health check on the shared port reaches whichever worker the kernel picked
for that connection, so every worker must be able to answer for all of them. Each worker writes
only its own slot (1 once its models are loaded, 0 when it drains); the parent clears the slot of
a worker that died. A worker answers SERVING for the server ("") only while every slot is 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from multiprocessing.context import SpawnContext
from typing import Any


class ReadinessBoard:
    """`slots` flags in shared memory (a multiprocessing array, passed to spawned workers).

    NOTE: a byte per slot is written whole, so readers need no lock: they may see a change late
    (the next poll), never a torn value.
    """

    def __init__(self, flags: Any) -> None:
        self._flags = flags

    @classmethod
    def create(cls, context: SpawnContext, slots: int) -> ReadinessBoard:
        return cls(context.RawArray("b", slots))

    def __getstate__(self) -> Any:
        return self._flags

    def __setstate__(self, flags: Any) -> None:
        self._flags = flags

    def set(self, slot: int, ready: bool) -> None:
        self._flags[slot] = 1 if ready else 0

    def is_ready(self, slot: int) -> bool:
        return bool(self._flags[slot])

    def ready_count(self) -> int:
        return sum(1 for flag in self._flags if flag)

    def all_ready(self) -> bool:
        return all(self._flags)


@dataclass(frozen=True)
class WorkerRole:
    """What a server process needs to know when it runs as worker `index` of `count` under a supervisor."""

    index: int
    count: int
    board: ReadinessBoard

    @property
    def name(self) -> str:
        return f"w{self.index}"

    def report(self, ready: bool) -> bool:
        """Publish this worker's own readiness; return whether the server as a whole is ready (every worker)."""
        self.board.set(self.index, ready)
        return ready and self.board.all_ready()
