"""Temporary version folders: who writes them, and reclaiming the ones whose writer was killed.

`publish` (models.export) writes `<repo>/<model>/.tmp-<version>-<random>/` and renames it when done.
A writer killed with SIGKILL (an OOM kill, a preempted Pod) leaves the folder behind. Each folder
holds WRITER_FILE naming its writer (host, boot id, pid and the pid's start time), so a later run
can tell a dead writer from a live one. A folder is reclaimed when it is older than a threshold and
- its writer ran on this host and is gone (another boot, no such pid, or the pid was reused), or
- its writer cannot be checked (another host, or no writer file) and it is older than FOREIGN_STALE_AFTER_S.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import time
from pathlib import Path

WRITER_FILE = ".writer.json"
TMP_NAME = re.compile(r"^\.tmp-\d+-[0-9a-f]+$")
DEFAULT_STALE_AFTER_S = 600.0
FOREIGN_STALE_AFTER_S = 6 * 3600.0  # no way to ask another host whether its writer lives


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), None if no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def writer_identity(pid: int | None = None) -> dict:
    """Who is writing: this host, boot, pid and the pid's start time."""
    pid = os.getpid() if pid is None else pid
    return {"host": socket.gethostname(), "boot_id": _boot_id(), "pid": pid, "start_ticks": _start_ticks(pid)}


def mark_writer(folder: Path) -> None:
    """Record this process as the writer of `folder` (call right after creating it)."""
    (folder / WRITER_FILE).write_text(json.dumps(writer_identity()))


def unmark_writer(folder: Path) -> None:
    """Remove the writer file before the folder becomes a version."""
    (folder / WRITER_FILE).unlink(missing_ok=True)


def _writer_gone(folder: Path, age_s: float) -> bool:
    try:
        writer = json.loads((folder / WRITER_FILE).read_text())
        same_host = writer["host"] == socket.gethostname()
    except (OSError, ValueError, KeyError, TypeError):
        return age_s > FOREIGN_STALE_AFTER_S
    if not same_host:
        return age_s > FOREIGN_STALE_AFTER_S
    if writer.get("boot_id") != _boot_id():
        return True
    pid = writer.get("pid")
    return not isinstance(pid, int) or _start_ticks(pid) is None or _start_ticks(pid) != writer.get("start_ticks")


def reclaim_stale_tmp(repository: Path, older_than_s: float) -> list[str]:
    """Remove stale `.tmp-*` folders under every model of `repository`; return one line per folder removed.

    Never raises for a folder it cannot read or remove (another run may be reclaiming it too).
    """
    if not repository.is_dir():
        return []
    removed = []
    now = time.time()
    for model_dir in (p for p in repository.iterdir() if p.is_dir()):
        for folder in (p for p in model_dir.iterdir() if TMP_NAME.match(p.name) and p.is_dir()):
            try:
                age_s = now - max(folder.stat().st_mtime, _mtime(folder / WRITER_FILE))
            except OSError:
                continue
            if age_s >= older_than_s and _writer_gone(folder, age_s):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(f"removed stale temporary folder {folder} ({age_s:.0f} s old, writer gone)")
    return removed


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
