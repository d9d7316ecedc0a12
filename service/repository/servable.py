"""One loaded model version: its backend, its batchers, its state and its in-flight count."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from contract.card import ModelCard
from service.errors import InvalidArgument, Unavailable
from service.repository.layout import VersionDir
from service.runtime.base import DEFAULT_SIGNATURE, Backend, SignatureSpec


class VersionState(enum.Enum):
    """TF Serving's servable states (ModelVersionStatus.State)."""

    START = 10
    LOADING = 20
    AVAILABLE = 30
    UNLOADING = 40
    END = 50


class Batcher(Protocol):
    """What the manager needs of a batcher (service.batching.DynamicBatcher fits)."""

    async def start(self) -> None: ...
    async def submit(self, inputs: dict[str, np.ndarray], deadline: float | None = None) -> dict[str, np.ndarray]: ...
    async def stop(self, drain: bool = True) -> None: ...


@dataclass
class ServableVersion:
    """A model version as the manager tracks it.

    NOTE: mutated only on the event loop thread; `acquire` and `release` are not thread-safe.
    """

    source: VersionDir
    state: VersionState = VersionState.START
    error: str | None = None
    backend: Backend | None = None
    card: ModelCard | None = None
    batchers: dict[str, Batcher] = field(default_factory=dict)
    available_variants: tuple[str, ...] = ()
    alternates: dict[str, asyncio.Task] = field(default_factory=dict)  # variant -> task loading it
    load_s: float | None = None  # backend load incl. variant choice and consistency guard (metrics read it)
    warmup_s: float | None = None  # warm-up calls at every batch size
    inflight: int = 0
    _idle: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def model(self) -> str:
        return self.source.model

    @property
    def version(self) -> int:
        return self.source.version

    @property
    def variant(self) -> str:
        return self.backend.variant if self.backend is not None else ""

    @property
    def signatures(self) -> Mapping[str, SignatureSpec]:
        return self.backend.signatures if self.backend is not None else {}

    def signature(self, name: str) -> SignatureSpec:
        """The named signature ('' means serving_default); InvalidArgument (as TF Serving) if absent."""
        name = name or DEFAULT_SIGNATURE
        try:
            return self.signatures[name]
        except KeyError:
            known = ", ".join(repr(s) for s in sorted(self.signatures))
            raise InvalidArgument(
                f"model_spec.signature_name: model {self.model!r} version {self.version} has no signature "
                f"{name!r}; available: {known}"
            ) from None

    def acquire(self) -> None:
        """Count a request in; raises Unavailable if the version stopped taking requests."""
        if self.state is not VersionState.AVAILABLE:
            raise Unavailable(f"model {self.model!r} version {self.version} is {self.state.name.lower()}; retry")
        self.inflight += 1
        self._idle.clear()

    def release(self) -> None:
        """Count a request out; wakes `wait_idle` when the last one leaves."""
        self.inflight -= 1
        if self.inflight == 0:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Return once no request holds this version."""
        if self.inflight:
            await self._idle.wait()
