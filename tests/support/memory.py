"""Resident memory of a process from /proc/<pid>/status: current (VmRSS, RssAnon) and peak (VmHWM, resettable)."""

from __future__ import annotations

import contextlib

MIB = 1024 * 1024


def _status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise LookupError(f"{field} not in /proc/{pid}/status")


def rss_bytes(pid: int) -> int:
    """The process's resident set size now."""
    return _status_kib(pid, "VmRSS") * 1024


def anon_rss_bytes(pid: int) -> int:
    """Resident anonymous memory (heap, stacks, arenas): what a leak grows. Unlike VmRSS it leaves out
    pages of mapped files such as TensorFlow's shared libraries, which the kernel may drop and fault
    back in under memory pressure from other processes."""
    return _status_kib(pid, "RssAnon") * 1024


def peak_rss_bytes(pid: int) -> int:
    """The highest resident set size since the process started or since reset_peak_rss()."""
    return _status_kib(pid, "VmHWM") * 1024


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux clear_refs "5"); False where that is not permitted."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/clear_refs", "w") as refs:
        refs.write("5")
        return True
    return False
