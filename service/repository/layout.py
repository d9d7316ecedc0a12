"""On-disk layout of the model repository: `<root>/<model>/<version>/`, validated and confined to root.

The trainer publishes a version by renaming a finished temporary folder to its integer
name, so any integer folder seen here is complete. Everything else (dot-folders,
non-integer names, files) is ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.errors import InvalidArgument, ModelLoadError

MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
MAX_VERSION = 2**63 - 1
CARD_FILE = "model_card.json"


def validate_model_name(name: str) -> str:
    """Return `name` if it is a safe model name; raise InvalidArgument otherwise."""
    if not MODEL_NAME_RE.fullmatch(name) or ".." in name:
        shown = name if len(name) <= 64 else name[:64] + "..."
        raise InvalidArgument(
            f"model_spec.name: {shown!r} is not a valid model name "
            "(expected 1-128 characters of letters, digits, '_', '.', '-', starting with a letter or digit)"
        )
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
        self.root = root.resolve()

    def model_names(self) -> list[str]:
        """Names of model folders with valid names, sorted."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and MODEL_NAME_RE.fullmatch(p.name))

    def versions(self, model: str) -> list[VersionDir]:
        """Complete versions of `model`, ascending."""
        model_dir = self._confined(self.root / validate_model_name(model))
        if not model_dir.is_dir():
            return []
        found = []
        for entry in model_dir.iterdir():
            version = _parse_version(entry.name)
            if version is not None and entry.is_dir() and self._confined(entry.resolve()) and _has_artifact(entry):
                found.append(VersionDir(model, version, entry, _fingerprint(entry)))
        return sorted(found, key=lambda v: v.version)

    def _confined(self, path: Path) -> Path:
        resolved = path.resolve()
        if not resolved.is_relative_to(self.root):
            raise InvalidArgument(f"path {path.name!r} resolves outside the model repository")
        return resolved


def read_card(version_dir: Path) -> dict[str, Any] | None:
    """The version's model card, or None if it has none. Raises ModelLoadError if it is malformed."""
    card_path = version_dir / CARD_FILE
    if not card_path.is_file():
        return None
    try:
        card = json.loads(card_path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{card_path}: unreadable model card: {exc}") from exc
    if not isinstance(card, dict):
        raise ModelLoadError(f"{card_path}: model card must be a JSON object")
    return card


def _parse_version(name: str) -> int | None:
    if not name.isdigit() or name.startswith("0"):
        return None
    version = int(name)
    return version if 0 < version <= MAX_VERSION else None


def _has_artifact(path: Path) -> bool:
    return (path / "saved_model.pb").is_file() or any((path / "tflite").glob("*.tflite"))


def _fingerprint(path: Path) -> str:
    """Cheap change detector: names, sizes and mtimes of every file in the version."""
    parts = []
    for dirpath, _dirs, files in os.walk(path):
        for file in sorted(files):
            stat = os.stat(os.path.join(dirpath, file))
            parts.append(f"{os.path.relpath(os.path.join(dirpath, file), path)}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("|".join(sorted(parts)).encode()).hexdigest()[:16]
