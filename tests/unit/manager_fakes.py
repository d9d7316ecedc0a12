"""Test doubles for the ModelManager: a fake on-disk repository and a holdable, recording backend factory.

The manager, the layout scan, the warm-up and the DynamicBatcher are real; only the backend
(TensorFlow / LiteRT) is fake, so these tests need neither.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from pathlib import Path

import numpy as np

from contract.layout import variant_path
from service.batching import DynamicBatcher
from service.errors import ModelLoadError
from service.repository.manager import ModelManager
from service.repository.variants import VersionFiles
from service.runtime.base import SignatureSpec, TensorSpec
from service.settings import Settings

WAIT_S = 30.0  # bound for "does not hang"; never an assertion on speed
SPEC = SignatureSpec(
    "serving_default",
    inputs={"x": TensorSpec("x", np.dtype(np.float32), (None, 3))},
    outputs={"y": TensorSpec("y", np.dtype(np.float32), (None, 3))},
)


def publish(root: Path, model: str, version: int, *, corrupt: bool = False, tflite: bool = False) -> Path:
    """Write a fake version folder the way the trainer does: a temporary folder, then a rename."""
    tmp = root / model / f".tmp-{version}-x"
    tmp.mkdir(parents=True)
    (tmp / "saved_model.pb").write_bytes(b"corrupt" if corrupt else b"fake")
    if tflite:
        variant_path(tmp, "float32").parent.mkdir()
        variant_path(tmp, "float32").write_bytes(b"fake")
    final = root / model / str(version)
    tmp.rename(final)
    return final


class FakeBackend:
    """y = x * version. Records unload()."""

    def __init__(self, version: int, variant: str) -> None:
        self.version = version
        self.variant = variant
        self.unloaded = False

    @property
    def signatures(self):
        return {"serving_default": SPEC}

    def load(self) -> None:
        pass

    def predict(self, signature: str, inputs):
        return {"y": inputs["x"] * self.version}

    def worker_predict_fns(self, signature: str):
        return [lambda inputs: self.predict(signature, inputs)]

    def unload(self) -> None:
        self.unloaded = True


class FakeFactory:
    """Backend factory: fails on a 'corrupt' saved_model.pb; `hold(model, version)` blocks its load."""

    def __init__(self) -> None:
        self.calls: Counter[tuple[str, int, str]] = Counter()
        self.backends: list[FakeBackend] = []
        self._gates: dict[tuple[str, int], threading.Event] = {}

    def hold(self, model: str, version: int) -> threading.Event:
        """Block loads of model/version until the returned event is set."""
        gate = self._gates[(model, version)] = threading.Event()
        return gate

    def __call__(self, files: VersionFiles, variant: str | None = None) -> FakeBackend:
        source, variant = files.source, variant or "savedmodel"
        self.calls[(source.model, source.version, variant)] += 1
        corrupt = (source.path / "saved_model.pb").read_bytes() == b"corrupt"  # files are read, then the hold
        gate = self._gates.get((source.model, source.version))
        if gate is not None and not gate.wait(WAIT_S):
            raise ModelLoadError("test gate never opened")
        if corrupt:
            raise ModelLoadError(f"{source.path}: cannot load SavedModel: corrupt")
        backend = FakeBackend(source.version, variant)
        self.backends.append(backend)
        return backend


def settings_for(root: Path, **models) -> Settings:
    return Settings(
        repository={"path": root, "poll_interval_s": 0},
        batching={"batch_timeout_ms": 0, "max_batch_size": 4},
        metrics={"enabled": False},
        models=models,
    )


def make_manager(root: Path, factory: FakeFactory, settings: Settings | None = None, **models) -> ModelManager:
    """A real ModelManager over the fake factory and real DynamicBatchers."""
    settings = settings or settings_for(root, **models)

    def batcher(servable, spec):
        return DynamicBatcher([lambda inputs: servable.backend.predict(spec.name, inputs)], settings.batching)

    return ModelManager(settings, factory, batcher)


def states(manager: ModelManager, model: str) -> dict[int, str]:
    return {s.version: s.state.name for s in manager.versions_of(model)}


async def settle(manager: ModelManager, model: str, until: dict[int, str]) -> None:
    """Yield to the loop until `model`'s states equal `until` (bounded by WAIT_S)."""
    async def wait():
        while model not in manager.model_names() or states(manager, model) != until:
            await asyncio.sleep(0.01)

    try:
        await asyncio.wait_for(wait(), WAIT_S)
    except TimeoutError:
        current = states(manager, model) if model in manager.model_names() else "untracked"
        raise AssertionError(f"{model}: wanted {until}, still {current}") from None
