"""Smaller repositories for tests that start their own server: fewer models load faster."""

from __future__ import annotations

import shutil
from pathlib import Path


def copy_models(repo: Path, dest: Path, *names: str) -> Path:
    """Copy the named model folders of `repo` into `dest` (created); return dest.

    Copies rather than symlinks: the server refuses paths that resolve outside its repository.
    """
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copytree(repo / name, dest / name)
    return dest
