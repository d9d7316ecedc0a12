"""ModelManager: discovers versions, loads and warms them in the background, swaps, drains, unloads.

Lifecycle of a version: START -> LOADING -> AVAILABLE -> UNLOADING -> END (or LOADING -> END
with an error). A new version is loaded and warmed before it is served; versions no longer
wanted are unloaded only once a wanted version is AVAILABLE, so a model never loses its last
serving version to a policy change. A failed version is retried only when its files change.
Wanted = the version policy's picks, plus every version a label points at, plus (latest
policy only) the newest loadable version while every pick has failed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from service.errors import FailedPrecondition, InvalidArgument, ModelLoadError, NotFound, Unavailable
from service.repository.layout import RepositoryLayout, VersionDir, read_card, validate_model_name
from service.repository.live_config import ConfigWatcher, check_labels, live_part, with_live
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
START, LOADING, AVAILABLE, UNLOADING, END = VersionState


class ModelManager:
    """Owns every ServableVersion. Construct cheaply; `reconcile()` does the work.

    backend_factory builds and loads a Backend (blocking; runs on the loader pool) and raises
    ModelLoadError. batcher_factory makes one batcher per signature of a loaded version.
    listeners are called on the event loop after every state change; one that raises is logged.
    NOTE: all public methods must be called on the event loop thread. Scans and unloads run on
    their own thread, so they never queue behind a long load on the loader pool.
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
        self._io = ThreadPoolExecutor(1, thread_name_prefix="repository-io")
        self._models: dict[str, ModelSettings] = dict(settings.models)  # live: policies and labels
        self._disk: dict[str, dict[int, VersionDir]] = {}  # the last successful scan of each model
        self._versions: dict[str, dict[int, ServableVersion]] = {}
        self._failed: dict[tuple[str, int], str] = {}  # (model, version) -> fingerprint that failed
        self._loads: set[asyncio.Task] = set()
        self._unloads: set[asyncio.Task] = set()
        self._reconcile_lock = asyncio.Lock()
        self._stopping = False
        self.config_watcher = ConfigWatcher(settings, self.apply_model_config)

    def add_listener(self, listener: Listener) -> None:
        """Call `listener(servable)` on the event loop after every state change from now on."""
        self._listeners.append(listener)

    # ---- queries -------------------------------------------------------------------------

    def resolve(self, model: str, version: int | None = None, label: str | None = None) -> ServableVersion:
        """The AVAILABLE version to serve; raises NotFound naming what was asked for."""
        validate_model_name(model)
        versions = self._versions.get(model, {})
        available = {v: s for v, s in versions.items() if s.state is AVAILABLE}
        if not versions:
            raise NotFound(f"model_spec.name: model {model!r} is not served")
        if label:
            version = self.label_version(model, label)
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
        return any(s.state is AVAILABLE for s in self._versions.get(model, {}).values())

    def model_settings(self, model: str) -> ModelSettings:
        """`model`'s settings, with the live version policy and labels."""
        return self._models.get(model, ModelSettings())

    def is_repository_path(self, model: str, path: str) -> bool:
        """True if `path` names `model`'s folder in the repository (lexical check, no file access)."""
        return self._layout.is_model_path(model, path)

    def label_version(self, model: str, label: str) -> int:
        """The version `label` points at for `model`; InvalidArgument if it has no such label."""
        labels = self.model_settings(model).version_labels
        if label not in labels:
            known = ", ".join(repr(lb) for lb in sorted(labels)) or "none"
            raise InvalidArgument(f"model_spec.version_label: model {model!r} has no label {label!r} (labels: {known})")
        return labels[label]

    # ---- live config -----------------------------------------------------------------------

    def apply_model_config(
        self, models: Mapping[str, ModelSettings], *, replace: bool = True, known_only: bool = False
    ) -> None:
        """Apply version policies and labels now; other per-model fields are ignored (restart).

        replace=True: `models` is the whole per-model config (the config file), so models left
        out get the default policy and no labels. replace=False: only the named models change.
        known_only: every named model must be in the repository. Raises InvalidArgument (unknown
        model) or FailedPrecondition (a label pointing at a version that is not AVAILABLE);
        nothing changes then.
        """
        unknown = sorted(set(models) - set(self._versions) - set(self._disk)) if known_only else []
        if unknown:
            raise InvalidArgument(f"model_config_list: no model {unknown[0]!r} in the repository")
        fresh = {n: with_live(cfg, None) for n, cfg in self._models.items()} if replace else dict(self._models)
        for name, cfg in models.items():
            fresh[name] = with_live(self.model_settings(name), cfg)
        check_labels({name: fresh[name] for name in models}, self._versions)
        old, self._models = self._models, fresh
        changed = [n for n in sorted(set(fresh) | set(old)) if live_part(fresh.get(n)) != live_part(old.get(n))]
        for name in changed:
            log.info("model %s: live config now %s", name, live_part(fresh.get(name)))
            self._reconcile_model(name)

    # ---- discovery -------------------------------------------------------------------------

    async def reconcile(self, wait: bool = False) -> None:
        """Bring served versions in line with the repository and the policy.

        Starts background loads for wanted versions and unloads versions that are gone or
        unwanted. A model whose folder cannot be scanned (or every model, if the root cannot)
        keeps what it serves. With wait=True, returns once the loads it started have finished
        and what they replace is unloading (used at start-up).
        """
        async with self._reconcile_lock:
            scan = await asyncio.get_running_loop().run_in_executor(self._io, self._layout.scan)
            if scan is None:
                return
            for model in set(self._disk) - set(scan):
                del self._disk[model]
            self._disk.update({model: found for model, found in scan.items() if found is not None})
            started = [
                task for model in sorted(set(self._versions) | set(self._disk))
                if scan.get(model, {}) is not None for task in self._reconcile_model(model)
            ]
        while wait and started:  # a failed load may start a fallback load: wait for that too
            await asyncio.gather(*started, return_exceptions=True)
            started = [task for task in self._loads if not task.done()]
        if wait:
            try:
                check_labels(self._models, self._versions)
            except FailedPrecondition as exc:
                log.error("%s; requests for that label fail until it is fixed", exc.message)

    def _reconcile_model(self, model: str) -> list[asyncio.Task]:
        """Start loads and unloads for `model` against the last scan; returns the loads started.

        A version that failed with the files it still has is never retried, and its END entry
        (with the error) stays visible in status until its folder changes or goes away.
        """
        if self._stopping:
            return []
        found = self._disk.get(model, {})
        tracked = self._versions.setdefault(model, {})
        failed = {v for v, source in found.items() if self._failed.get((model, v)) == source.fingerprint}
        wanted = self._wanted(model, found, failed)
        started = [
            self._start_load(found[v]) for v in sorted(wanted - failed) if v not in tracked or tracked[v].state is END
        ]
        ready = any(tracked[v].state is AVAILABLE for v in wanted if v in tracked)
        for version, servable in list(tracked.items()):
            gone = version not in found
            if servable.state is AVAILABLE and (gone or (version not in wanted and ready)):
                self._start_unload(servable, "removed from disk" if gone else "not wanted by the version policy")
            elif servable.state is END and gone:
                del tracked[version]
        for key in [k for k in self._failed if k[0] == model and k[1] not in found]:
            del self._failed[key]
        if not tracked and not found:
            self._versions.pop(model, None)
        return started

    def _wanted(self, model: str, found: Mapping[int, VersionDir], failed: set[int]) -> set[int]:
        settings = self.model_settings(model)
        wanted = wanted_versions(list(found), settings) | {v for v in settings.version_labels.values() if v in found}
        loadable = set(found) - failed
        if settings.version_policy == "latest" and loadable and not wanted & loadable:
            wanted.add(max(loadable))  # every pick failed: keep (or bring back) the newest one that works
        return wanted

    # ---- load ------------------------------------------------------------------------------

    def _start_load(self, source: VersionDir) -> asyncio.Task:
        # Tracked (START) before the task runs, so a second pass in the same loop turn cannot load it twice.
        servable = ServableVersion(source)
        self._versions.setdefault(source.model, {})[source.version] = servable
        self._set_state(servable, START)
        return self._spawn(self._load(servable), self._loads)

    async def _load(self, servable: ServableVersion) -> None:
        key = (servable.model, servable.version)
        if await self._activate(servable, variant=None):
            self._failed.pop(key, None)
        else:
            self._failed[key] = servable.source.fingerprint
        if self._versions.get(servable.model, {}).get(servable.version) is servable:
            self._reconcile_model(servable.model)  # swap: unload what this version replaces

    async def _activate(self, servable: ServableVersion, variant: str | None) -> bool:
        """LOADING -> load, warm up, start batchers -> AVAILABLE (True) or END with an error (False)."""
        self._set_state(servable, LOADING)
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        try:
            loaded = await loop.run_in_executor(self._loader, self._load_blocking, servable.source, variant)
            servable.card, servable.available_variants, servable.backend, servable.load_s, servable.warmup_s = loaded
            for name, spec in servable.signatures.items():
                servable.batchers[name] = self._batcher_factory(servable, spec)
                await servable.batchers[name].start()
        except Exception as exc:  # a bad model must never take the server down
            servable.error = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            log.error("model %s version %s failed to load: %s", servable.model, servable.version, servable.error)
            await self._release(servable)
            self._set_state(servable, END)
            return False
        log.info(
            "model %s version %s AVAILABLE (variant %s, load %.2fs, warm-up %.2fs, total %.2fs)", servable.model,
            servable.version, servable.variant, servable.load_s, servable.warmup_s, time.monotonic() - started,
        )
        self._set_state(servable, AVAILABLE)
        return True

    def _load_blocking(self, source: VersionDir, variant: str | None) -> tuple:
        """(card, variants, backend, load_s, warmup_s). NOTE: runs on a loader thread; touches no servable."""
        started = time.monotonic()
        card = read_card(source.path)
        variants = tuple(discover_variants(source.path, card))
        backend = self._backend_factory(source, card, variant)
        load_s = time.monotonic() - started
        batching = self._settings.batching_for(source.model)
        try:
            for signature, batch in warmup_batches(backend.signatures, card, batching):
                backend.predict(signature, batch)
        except Exception as exc:
            backend.unload()
            raise ModelLoadError(f"warm-up failed: {type(exc).__name__}: {exc}") from exc
        return card, variants, backend, load_s, time.monotonic() - started - load_s

    async def with_variant(self, servable: ServableVersion, variant: str) -> ServableVersion:
        """`servable` served by `variant` (a per-request override), loading that variant on first use.

        Raises NotFound for an unknown or unpublished variant, FailedPrecondition for savedmodel
        without TensorFlow, Unavailable if the variant failed to load or its version is unloading.
        """
        if variant == servable.variant:
            return servable
        require_variant(variant, servable.available_variants, tf_available=is_tensorflow_available())
        task = servable.alternates.get(variant)
        if task is None:
            task = self._spawn(self._load_alternate(servable, variant), self._loads)
            servable.alternates[variant] = task
        alternate = await asyncio.shield(task)
        if alternate.state is not AVAILABLE:
            why = f"failed to load: {alternate.error}" if alternate.error else "is unloading; retry"
            raise Unavailable(f"model {servable.model!r} version {servable.version} variant {variant!r} {why}")
        return alternate

    async def _load_alternate(self, servable: ServableVersion, variant: str) -> ServableVersion:
        alternate = ServableVersion(servable.source)
        if await self._activate(alternate, variant) and servable.state is not AVAILABLE:
            # Its version started unloading while this variant loaded: unload() could not see it.
            await self.unload(alternate, reason="its version was unloaded while this variant loaded")
        return alternate

    # ---- unload ----------------------------------------------------------------------------

    def _start_unload(self, servable: ServableVersion, reason: str) -> None:
        self._spawn(self.unload(servable, reason), self._unloads)

    async def unload(self, servable: ServableVersion, reason: str) -> None:
        """Stop new requests, finish queued and in-flight ones, then release the backend."""
        if servable.state is not AVAILABLE:
            return
        log.info("unloading model %s version %s (%s)", servable.model, servable.version, reason)
        self._set_state(servable, UNLOADING)
        for task in servable.alternates.values():
            if task.done() and not task.cancelled() and task.exception() is None:
                await self.unload(task.result(), reason=f"{reason} (alternate variant)")
        await self._release(servable)
        self._set_state(servable, END)
        tracked = self._versions.get(servable.model, {})
        if tracked.get(servable.version) is servable:
            del tracked[servable.version]

    async def _release(self, servable: ServableVersion) -> None:
        """Drain the batchers (queued requests run now), wait for in-flight requests, unload the backend."""
        for batcher in servable.batchers.values():
            try:
                await batcher.stop(drain=True)
            except Exception:
                log.exception("model %s version %s: batcher failed to stop", servable.model, servable.version)
        await servable.wait_idle()
        if servable.backend is not None:
            try:
                await asyncio.get_running_loop().run_in_executor(self._io, servable.backend.unload)
            except Exception:
                log.exception("model %s version %s: backend failed to unload", servable.model, servable.version)

    async def stop(self) -> None:
        """Drain and unload everything (server shutdown).

        Loads in progress are abandoned: their thread finishes and its result is dropped.
        """
        self._stopping = True
        for task in list(self._loads):
            task.cancel()
        await asyncio.gather(*self._loads, return_exceptions=True)
        servables = [s for versions in self._versions.values() for s in versions.values()]
        draining = [self.unload(s, reason="server stopping") for s in servables]
        await asyncio.gather(*draining, *self._unloads, return_exceptions=True)
        self._loader.shutdown(wait=False, cancel_futures=True)
        self._io.shutdown(wait=False)

    async def poll_forever(self) -> None:
        """Every poll_interval_s, re-scan the repository and re-read a changed config file (no-op when 0)."""
        interval = self._settings.repository.poll_interval_s
        while interval > 0 and not self._stopping:
            await asyncio.sleep(interval)
            for step in (self.reconcile, self.config_watcher.poll):
                try:
                    await step()
                except Exception:
                    log.exception("%s failed; will retry", getattr(step, "__name__", step))

    def _spawn(self, coro, group: set[asyncio.Task]) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        group.add(task)
        task.add_done_callback(group.discard)
        return task

    def _set_state(self, servable: ServableVersion, state: VersionState) -> None:
        servable.state = state
        for listener in list(self._listeners):
            try:
                listener(servable)
            except Exception:  # metrics or health must never break a load or a drain
                log.exception("state listener %r failed", listener)

