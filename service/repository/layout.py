"""On-disk layout of the model repository: `<root>/<model>/<version>/`, validated and confined to root.

The trainer publishes a version by renaming a finished temporary folder to its integer
name, so any integer folder seen here is complete. Everything else (dot-folders,
non-integer names, files) is ignored.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from contract.card import CardError, ModelCard, load_card
from contract.layout import MODEL_NAME_RULE, has_artifact, is_model_name, parse_version
from service.errors import InvalidArgument, ModelLoadError

log = logging.getLogger(__name__)


def validate_model_name(name: str) -> str:
    """Return `name` if it is a safe model name; raise InvalidArgument otherwise."""
    if not is_model_name(name):
        shown = name if len(name) <= 64 else name[:64] + "..."
        raise InvalidArgument(f"model_spec.name: {shown!r} is not a valid model name (expected {MODEL_NAME_RULE})")
    return name


@dataclass(frozen=True)
class VersionDir:
    """A complete version folder, with a fingerprint that changes when its files change."""

    model: str
    version: int
    path: Path
    fingerprint: str


class RepositoryLayout:
    """Reads the repository tree. Safe against traversal: every path stays under the root.

    NOTE: methods do blocking file I/O; call them from a worker thread, not the event loop.
    """

    def __init__(self, root: Path) -> None:
        self.configured = Path(os.path.abspath(root))
        self.root = root.resolve()
        self._warned: set[Path] = set()  # escaping symlinks already logged
        self._scan_problem = ""

    def scan(self) -> dict[str, dict[int, VersionDir] | None] | None:
        """model -> version -> VersionDir; a model maps to None when its folder could not be read,
        and the whole result is None when the root could not be read (each problem logged once).
        """
        try:
            names = self.model_names()
        except OSError as exc:
            self._note_problem(f"cannot read the model repository, keeping current versions: {exc}")
            return None
        result: dict[str, dict[int, VersionDir] | None] = {}
        for name in names:
            try:
                result[name] = {v.version: v for v in self.versions(name)}
            except (OSError, InvalidArgument) as exc:
                self._note_problem(f"cannot read model {name!r}, keeping its current versions: {exc}")
                result[name] = None
        return result

    def _note_problem(self, message: str) -> None:
        if message != self._scan_problem:  # once per distinct problem, not once per poll
            self._scan_problem = message
            log.warning("%s", message)

    def model_names(self) -> list[str]:
        """Names of model folders with valid names, sorted.

        Raises FileNotFoundError / NotADirectoryError if the root is missing: a vanished root is a
        scan failure (keep serving), never "every model was deleted".
        """
        if not self.root.is_dir():
            raise FileNotFoundError(f"model repository {self.root} is not a directory")
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and is_model_name(p.name))

    def versions(self, model: str) -> list[VersionDir]:
        """Complete versions of `model`, ascending.

        Skips (with one warning) version folders that resolve outside the root, and folders
        deleted while being scanned. Raises InvalidArgument if the model folder escapes the root.
        """
        model_dir = self._confined(self.root / validate_model_name(model))
        if not model_dir.is_dir():
            return []
        found = []
        for entry in model_dir.iterdir():
            version = parse_version(entry.name)
            if version is None:
                continue
            try:
                if entry.is_dir() and self._inside(entry) and has_artifact(entry):
                    found.append(VersionDir(model, version, entry, _fingerprint(entry)))
            except FileNotFoundError:
                continue  # deleted while we looked at it: it is gone
        return sorted(found, key=lambda v: v.version)

    def is_model_path(self, model: str, path: str) -> bool:
        """True if `path` names `model`'s folder under the root, judged lexically.

        NOTE: never touches the file system, so a client-supplied path cannot make us read or
        probe anything outside the root (the CVE-2023-31036 lesson).
        """
        candidates = {self.configured / validate_model_name(model), self.root / model}
        return os.path.normpath(path) in {os.path.normpath(str(c)) for c in candidates}

    def _confined(self, path: Path) -> Path:
        resolved = path.resolve()
        if not resolved.is_relative_to(self.root):
            raise InvalidArgument(f"path {path.name!r} resolves outside the model repository")
        return resolved

    def _inside(self, entry: Path) -> bool:
        if entry.resolve().is_relative_to(self.root):
            return True
        if entry not in self._warned:
            self._warned.add(entry)
            log.warning("ignoring %s: it resolves outside the model repository %s", entry, self.root)
        return False


def read_card(version_dir: Path) -> ModelCard | None:
    """The version's model card, typed, or None if it has none.

    Raises ModelLoadError naming the file and the field when the card is unreadable, breaks the
    schema (contract/model_card.schema.json) or has a major schema_version this server does not know.
    """
    try:
        return load_card(version_dir)
    except CardError as exc:
        raise ModelLoadError(str(exc)) from exc


def _fingerprint(path: Path) -> str:
    """Cheap change detector: names, sizes and mtimes of every file in the version."""
    parts = []
    for dirpath, _dirs, files in os.walk(path):
        for file in sorted(files):
            stat = os.stat(os.path.join(dirpath, file))
            parts.append(f"{os.path.relpath(os.path.join(dirpath, file), path)}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("|".join(sorted(parts)).encode()).hexdigest()[:16]
