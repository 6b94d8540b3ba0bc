"""``usable_cores()``: how many CPU cores this process may really use.

``os.cpu_count()`` (and torch's default thread count) is the node's core count. In a pod with a
CPU limit the kernel's CFS quota allows far fewer: a server that starts 64 torch threads under
a 2-core limit spends most of its time throttled. The usable count is the smallest of the CPU
affinity mask and the cgroup's quota (v2 ``cpu.max``, or v1 ``cpu.cfs_quota_us`` /
``cpu.cfs_period_us``), rounded up, never below 1.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

__all__ = ["cgroup_cpu_limit", "usable_cores"]

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cgroup_cpu_limit(root: Path = CGROUP_ROOT) -> float | None:
    """The CPU quota in cores of the cgroup at ``root`` (None: no limit or no cgroup)."""
    text = _read(root / "cpu.max")  # cgroup v2: "QUOTA PERIOD" or "max PERIOD"
    if text is not None:
        parts = text.split()
        if len(parts) == 2 and parts[0] != "max":
            try:
                return int(parts[0]) / int(parts[1])
            except (ValueError, ZeroDivisionError):
                return None
        return None
    quota = _read(root / "cpu" / "cpu.cfs_quota_us") or _read(root / "cpu.cfs_quota_us")
    period = _read(root / "cpu" / "cpu.cfs_period_us") or _read(root / "cpu.cfs_period_us")
    try:
        if quota is not None and period is not None and int(quota) > 0:
            return int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        pass
    return None


def usable_cores(root: Path = CGROUP_ROOT) -> int:
    """Cores this process may use: the affinity mask capped by the cgroup quota (>= 1)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    limit = cgroup_cpu_limit(root)
    if limit is not None:
        cores = min(cores, math.ceil(limit))
    return max(1, cores)
