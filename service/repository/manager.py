"""ModelManager: discovers versions, loads and warms them in the background, swaps, drains, unloads.

Lifecycle of a version: START -> LOADING -> AVAILABLE -> UNLOADING -> END (or LOADING -> END
with an error). A new version is loaded and warmed before it is served; versions the policy
no longer wants are unloaded only once a wanted version is AVAILABLE, so a model never loses
its last serving version to a policy change. A failed version is retried only when its files
change.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from service.errors import InvalidArgument, ModelLoadError, NotFound, Unavailable
from service.repository.layout import RepositoryLayout, VersionDir, read_card, validate_model_name
from service.repository.policy import wanted_versions
from service.repository.servable import Batcher, ServableVersion, VersionState
from service.repository.variants import discover_variants, require_variant
from service.repository.warmup import warmup_batches
from service.runtime.base import Backend, SignatureSpec
from service.runtime.devices import is_tensorflow_available
from service.settings import ModelSettings, Settings

log = logging.getLogger(__name__)

BackendFactory = Callable[[VersionDir, dict[str, Any] | None, str | None], Backend]
BatcherFactory = Callable[[ServableVersion, SignatureSpec], Batcher]
Listener = Callable[[ServableVersion], None]


class ModelManager:
    """Owns every ServableVersion. Construct cheaply; `reconcile()` does the work.

    backend_factory builds and loads a Backend (blocking; runs on the loader pool) and raises
    ModelLoadError. batcher_factory makes one batcher per signature of a loaded version.
    listeners are called on the event loop after every state change.
    NOTE: all public methods must be called on the event loop thread.
    """

    def __init__(
        self,
        settings: Settings,
        backend_factory: BackendFactory,
        batcher_factory: BatcherFactory,
        listeners: list[Listener] | None = None,
    ) -> None:
        self._settings = settings
        self._layout = RepositoryLayout(settings.repository.path)
        self._backend_factory = backend_factory
        self._batcher_factory = batcher_factory
        self._listeners = list(listeners or [])
        self._loader = ThreadPoolExecutor(settings.repository.load_parallelism, thread_name_prefix="loader")
        self._versions: dict[str, dict[int, ServableVersion]] = {}
        self._failed: dict[tuple[str, int], str] = {}  # (model, version) -> fingerprint that failed
        self._tasks: set[asyncio.Task] = set()
        self._reconcile_lock = asyncio.Lock()

    # ---- queries -------------------------------------------------------------------------

    def resolve(self, model: str, version: int | None = None, label: str | None = None) -> ServableVersion:
        """The AVAILABLE version to serve; raises NotFound naming what was asked for."""
        validate_model_name(model)
        versions = self._versions.get(model, {})
        available = {v: s for v, s in versions.items() if s.state is VersionState.AVAILABLE}
        if not versions:
            raise NotFound(f"model_spec.name: model {model!r} is not served")
        if label:
            version = self._label_version(model, label)
        if version is None:
            if not available:
                raise NotFound(f"model {model!r} has no available version yet")
            return available[max(available)]
        if version not in available:
            state = versions[version].state.name if version in versions else "not served"
            raise NotFound(f"model_spec.version: model {model!r} version {version} is not available ({state})")
        return available[version]

    def versions_of(self, model: str) -> list[ServableVersion]:
        """Every tracked version of `model` (any state), ascending; NotFound if the model is unknown."""
        validate_model_name(model)
        if model not in self._versions:
            raise NotFound(f"model_spec.name: model {model!r} is not served")
        return [self._versions[model][v] for v in sorted(self._versions[model])]

    def model_names(self) -> list[str]:
        return sorted(self._versions)

    def is_available(self, model: str) -> bool:
        """True while any version of `model` is AVAILABLE."""
        return any(s.state is VersionState.AVAILABLE for s in self._versions.get(model, {}).values())

    def model_settings(self, model: str) -> ModelSettings:
        return self._settings.models.get(model, ModelSettings())

    def _label_version(self, model: str, label: str) -> int:
        labels = self.model_settings(model).version_labels
        if label not in labels:
            known = ", ".join(repr(lb) for lb in sorted(labels)) or "none"
            raise InvalidArgument(f"model_spec.version_label: model {model!r} has no label {label!r} (labels: {known})")
        return labels[label]

    # ---- lifecycle ---------------------------------------------------------------------------

    async def reconcile(self, wait: bool = False) -> None:
        """Bring served versions in line with the repository and the policy.

        Starts background loads for wanted versions; unloads versions that are gone or unwanted
        (the latter only once the model has a wanted version AVAILABLE). With wait=True, returns
        after the loads it started have finished (used at start-up).
        """
        async with self._reconcile_lock:
            loop = asyncio.get_running_loop()
            disk = await loop.run_in_executor(self._loader, self._scan)
            started = [t for model, found in disk.items() for t in self._reconcile_model(model, found)]
            for model in set(self._versions) - set(disk):
                self._reconcile_model(model, {})
        if wait and started:
            await asyncio.gather(*started, return_exceptions=True)
            for model, found in disk.items():
                self._reconcile_model(model, found)  # unload what the new versions replace

    def _scan(self) -> dict[str, dict[int, VersionDir]]:
        return {m: {v.version: v for v in self._layout.versions(m)} for m in self._layout.model_names()}

    def _reconcile_model(self, model: str, found: dict[int, VersionDir]) -> list[asyncio.Task]:
        tracked = self._versions.setdefault(model, {})
        wanted = wanted_versions(list(found), self.model_settings(model))
        started = []
        for version in sorted(wanted):
            source = found[version]
            current = tracked.get(version)
            if current is None or (current.state is VersionState.END and self._changed(source)):
                started.append(self._spawn(self._load(ServableVersion(source))))
        wanted_ready = any(tracked[v].state is VersionState.AVAILABLE for v in wanted if v in tracked)
        for version, servable in list(tracked.items()):
            gone = version not in found
            if servable.state is VersionState.AVAILABLE and (gone or (version not in wanted and wanted_ready)):
                self._spawn(self.unload(servable, reason="removed from disk" if gone else "not in policy"))
            elif servable.state is VersionState.END and (gone or version not in wanted):
                del tracked[version]
        if not tracked and not found:
            self._versions.pop(model, None)
        return started

    def _changed(self, source: VersionDir) -> bool:
        return self._failed.get((source.model, source.version)) != source.fingerprint

    async def _load(self, servable: ServableVersion) -> None:
        self._versions.setdefault(servable.model, {})[servable.version] = servable
        if await self._activate(servable, variant=None):
            self._failed.pop((servable.model, servable.version), None)
            self._reconcile_after_load(servable.model)
        else:
            self._failed[(servable.model, servable.version)] = servable.source.fingerprint

    async def _activate(self, servable: ServableVersion, variant: str | None) -> bool:
        """LOADING -> load, warm up, start batchers -> AVAILABLE (True) or END with an error (False)."""
        self._set_state(servable, VersionState.LOADING)
        started = time.monotonic()
        try:
            await asyncio.get_running_loop().run_in_executor(self._loader, self._load_blocking, servable, variant)
        except Exception as exc:  # a bad model must never take the server down
            servable.error = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            log.error("model %s version %s failed to load: %s", servable.model, servable.version, servable.error)
            self._set_state(servable, VersionState.END)
            return False
        for name, spec in servable.signatures.items():
            servable.batchers[name] = self._batcher_factory(servable, spec)
            await servable.batchers[name].start()
        log.info(
            "model %s version %s AVAILABLE (variant %s, %.2fs)",
            servable.model, servable.version, servable.variant, time.monotonic() - started,
        )
        self._set_state(servable, VersionState.AVAILABLE)
        return True

    def _load_blocking(self, servable: ServableVersion, variant: str | None) -> None:
        servable.card = read_card(servable.source.path)
        servable.available_variants = tuple(discover_variants(servable.source.path, servable.card))
        backend = self._backend_factory(servable.source, servable.card, variant)
        batching = self._settings.batching_for(servable.model)
        try:
            for signature, batch in warmup_batches(backend.signatures, servable.card, batching):
                backend.predict(signature, batch)
        except Exception as exc:
            backend.unload()
            raise ModelLoadError(f"warm-up failed: {type(exc).__name__}: {exc}") from exc
        servable.backend = backend

    async def with_variant(self, servable: ServableVersion, variant: str) -> ServableVersion:
        """`servable` served by `variant` (a per-request override), loading that variant on first use.

        Raises NotFound for an unknown or unpublished variant, FailedPrecondition for savedmodel
        without TensorFlow, Unavailable if the variant failed to load.
        """
        if variant == servable.variant:
            return servable
        require_variant(variant, servable.available_variants, tf_available=is_tensorflow_available())
        task = servable.alternates.get(variant)
        if task is None:
            task = self._spawn(self._load_alternate(servable, variant))
            servable.alternates[variant] = task
        alternate = await asyncio.shield(task)
        if alternate.state is not VersionState.AVAILABLE:
            raise Unavailable(f"model {servable.model!r} version {servable.version} variant {variant!r} "
                              f"failed to load: {alternate.error}")
        return alternate

    async def _load_alternate(self, servable: ServableVersion, variant: str) -> ServableVersion:
        alternate = ServableVersion(servable.source)
        await self._activate(alternate, variant)
        return alternate

    def _reconcile_after_load(self, model: str) -> None:
        """After a swap, drop versions the policy no longer wants (found = what is tracked)."""
        tracked = self._versions.get(model, {})
        found = {v: s.source for v, s in tracked.items() if s.state is not VersionState.END}
        self._reconcile_model(model, found)

    async def unload(self, servable: ServableVersion, reason: str) -> None:
        """Stop new requests, finish queued and in-flight ones, then release the backend."""
        if servable.state is not VersionState.AVAILABLE:
            return
        log.info("unloading model %s version %s (%s)", servable.model, servable.version, reason)
        self._set_state(servable, VersionState.UNLOADING)
        for task in servable.alternates.values():
            if task.done() and not task.cancelled():
                await self.unload(task.result(), reason=f"{reason} (alternate variant)")
        for batcher in servable.batchers.values():
            await batcher.stop(drain=True)
        await servable.wait_idle()
        if servable.backend is not None:
            await asyncio.get_running_loop().run_in_executor(self._loader, servable.backend.unload)
        self._set_state(servable, VersionState.END)
        tracked = self._versions.get(servable.model, {})
        if tracked.get(servable.version) is servable:
            del tracked[servable.version]

    async def stop(self) -> None:
        """Drain and unload everything (server shutdown)."""
        for task in list(self._tasks):
            task.cancel()
        servables = [s for versions in self._versions.values() for s in versions.values()]
        await asyncio.gather(*(self.unload(s, reason="server stopping") for s in servables))
        self._loader.shutdown(wait=False, cancel_futures=True)

    async def poll_forever(self) -> None:
        """Re-scan the repository every poll_interval_s (no-op when it is 0)."""
        interval = self._settings.repository.poll_interval_s
        while interval > 0:
            await asyncio.sleep(interval)
            try:
                await self.reconcile()
            except Exception:
                log.exception("repository scan failed; will retry")

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _set_state(self, servable: ServableVersion, state: VersionState) -> None:
        servable.state = state
        for listener in self._listeners:
            listener(servable)

