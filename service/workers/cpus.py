"""How many CPU cores this process may use: its affinity mask, capped by a cgroup v2 CPU quota."""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def cgroup_cpu_limit(cpu_max: Path = CGROUP_CPU_MAX) -> float | None:
    """The cgroup v2 quota in cores ("200000 100000" -> 2.0), or None when unlimited or unreadable."""
    try:
        quota, period = cpu_max.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        cores = int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return None
    return cores if cores > 0 else None


def available_cpus(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """Cores this process may run on (sched_getaffinity), capped by the cgroup quota rounded up; at least 1.

    A quota of 1.5 cores gives 2: a worker that gets half a core still adds throughput, and
    rounding down would leave quota unused.
    """
    cores = len(os.sched_getaffinity(0))
    limit = cgroup_cpu_limit(cpu_max)
    if limit is not None:
        cores = min(cores, math.ceil(limit))
    return max(1, cores)
