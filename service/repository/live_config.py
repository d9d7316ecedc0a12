"""Live per-model config: which settings apply at run time, and the config-file watcher that re-reads them.

Only each model's version policy and version labels (LIVE_FIELDS) apply while the server
runs; every other setting is read once at start-up and a change to it is logged as needing
a restart.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from service.errors import FailedPrecondition, ServingError
from service.repository.servable import VersionState
from service.settings import ModelSettings, Settings

log = logging.getLogger(__name__)

LIVE_FIELDS = frozenset({"version_policy", "num_versions", "versions", "version_labels"})
ApplyModels = Callable[[Mapping[str, ModelSettings]], None]


def live_part(settings: ModelSettings | None) -> dict[str, Any]:
    """The fields of `settings` that apply live (defaults when None)."""
    return (settings or ModelSettings()).model_dump(include=LIVE_FIELDS)


def with_live(base: ModelSettings, live: ModelSettings | None) -> ModelSettings:
    """`base` with its live fields taken from `live` (defaults when None)."""
    return base.model_copy(update=live_part(live))


def check_labels(models: Mapping[str, ModelSettings], versions: Mapping[str, Mapping[int, Any]]) -> None:
    """Raise FailedPrecondition unless every label points at an AVAILABLE version.

    `versions` maps model -> version -> ServableVersion (anything with a `state`).
    """
    for name, cfg in sorted(models.items()):
        for label, version in sorted(cfg.version_labels.items()):
            servable = versions.get(name, {}).get(version)
            if servable is None or servable.state is not VersionState.AVAILABLE:
                state = servable.state.name if servable is not None else "not loaded"
                raise FailedPrecondition(
                    f"models.{name}.version_labels: label {label!r} points at version {version} of model "
                    f"{name!r}, which is not available for inference ({state})"
                )


def restart_only_changes(old: Settings, new: Settings) -> list[str]:
    """Dotted names of settings that differ between `old` and `new` but only apply after a restart."""
    before, after = _without_live(old), _without_live(new)
    return _changed_keys(before, after, "")


def _without_live(settings: Settings) -> dict[str, Any]:
    dumped = settings.model_dump(mode="json")
    dumped["models"] = {
        name: {k: v for k, v in cfg.items() if k not in LIVE_FIELDS} for name, cfg in dumped["models"].items()
    }
    dumped["models"] = {name: cfg for name, cfg in dumped["models"].items() if cfg != _NON_LIVE_DEFAULTS}
    return dumped


_NON_LIVE_DEFAULTS = {k: v for k, v in ModelSettings().model_dump(mode="json").items() if k not in LIVE_FIELDS}


def _changed_keys(before: Any, after: Any, prefix: str) -> list[str]:
    if isinstance(before, dict) and isinstance(after, dict):
        keys = sorted(set(before) | set(after))
        return [c for k in keys for c in _changed_keys(before.get(k), after.get(k), f"{prefix}{k}.")]
    return [] if before == after else [prefix.rstrip(".")]


class ConfigWatcher:
    """Re-reads the config file when it changes and applies its per-model live settings.

    `poll()` compares the file's (mtime, size, inode) with the last one applied; on a change it
    rebuilds Settings exactly as start-up did (Settings.reload: CLI > env > file) and hands the
    models to `apply`, which raises a ServingError to reject them (the previous config stays).
    A rejected or unreadable file is retried on every poll until it applies or changes again
    (so a label waiting for its version applies once that version is AVAILABLE), but each
    distinct problem is logged once.
    NOTE: call poll() on the event loop; the file is read on a worker thread.
    """

    def __init__(self, settings: Settings, apply: ApplyModels) -> None:
        self._startup = settings
        self._apply = apply
        self._path = settings.config_file if settings.reloadable else None
        self._applied = _signature(self._path) if self._path is not None else None
        self._problem: tuple[Any, str] | None = None

    @property
    def enabled(self) -> bool:
        return self._path is not None

    async def poll(self) -> bool:
        """Apply the file if it changed since the last applied read; True if a new config was applied."""
        if self._path is None:
            return False
        loop = asyncio.get_running_loop()
        signature = await loop.run_in_executor(None, _signature, self._path)
        if signature == self._applied:
            return False
        try:
            fresh = await loop.run_in_executor(None, self._startup.reload)
            self._apply(fresh.models)
        except ServingError as exc:
            self._report(signature, f"config file {self._path} rejected, previous config kept: {exc.message}")
            return False
        except Exception as exc:  # unreadable TOML, failed validation, file gone: keep what we have
            self._report(signature, f"config file {self._path} unreadable, previous config kept: {exc}")
            return False
        self._applied, self._problem = signature, None
        log.info("config file %s re-read: version policies and labels applied", self._path)
        restart = restart_only_changes(self._startup, fresh)
        if restart:
            log.warning("config file %s: changes to %s apply only after a restart", self._path, ", ".join(restart))
        return True

    def _report(self, signature: Any, message: str) -> None:
        if self._problem != (signature, message):
            self._problem = (signature, message)
            log.error("%s", message)


def _signature(path: os.PathLike) -> tuple[int, int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size, stat.st_ino
