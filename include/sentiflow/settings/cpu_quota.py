"""How many CPUs this process may use: the cgroup CPU quota when there is one, else the CPUs it may run on.

``os.cpu_count()`` answers the node's cores: a pod limited to 2 CPUs on a 64-core node would size its
torch/ONNX thread pools for 64 and be throttled by the CFS quota all the time. The quota is read from
cgroup v2 ``cpu.max`` (``"<quota> <period>"`` or ``"max <period>"``) of this process's cgroup and its
ancestors, or cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (quota ``-1``: none). A fractional
quota rounds down (1.5 CPUs: one busy thread), never below 1.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
SELF_CGROUP = Path("/proc/self/cgroup")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _v2_dirs(root: Path, self_cgroup: Path) -> list[Path]:
    """This process's cgroup v2 directory and its ancestors up to the mount (a container sees ``/``)."""
    rel = next((line[3:] for line in (_read(self_cgroup) or "").splitlines() if line.startswith("0::")), "/")
    here = root / rel.strip("/")
    dirs = [here, *here.parents]
    return [d for d in dirs if d == root or root in d.parents]


def _quota_v2(text: str | None) -> float | None:
    if not text:
        return None
    quota, _, period = text.partition(" ")
    if quota == "max" or not period:
        return None
    return int(quota) / int(period)


def cgroup_cpu_limit(root: Path | None = None, self_cgroup: Path | None = None) -> float | None:
    """CPUs allowed by the cgroup quota (e.g. 1.5), or None when no quota applies or none is readable."""
    root, self_cgroup = root or CGROUP_ROOT, self_cgroup or SELF_CGROUP
    limits = [q for d in _v2_dirs(root, self_cgroup) if (q := _quota_v2(_read(d / "cpu.max"))) is not None]
    if limits:
        return min(limits)
    for v1 in ("cpu,cpuacct", "cpu"):
        quota, period = _read(root / v1 / "cpu.cfs_quota_us"), _read(root / v1 / "cpu.cfs_period_us")
        if quota and period and int(quota) > 0 and int(period) > 0:
            return int(quota) / int(period)
    return None


def _schedulable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))  # honours cpusets (docker --cpuset-cpus, static CPU manager)
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def available_cpus(root: Path | None = None, self_cgroup: Path | None = None) -> int:
    """Whole CPUs this process may keep busy: min(schedulable CPUs, the cgroup quota rounded down), >= 1."""
    cpus = _schedulable_cpus()
    limit = cgroup_cpu_limit(root, self_cgroup)
    if limit is not None:
        cpus = min(cpus, math.floor(limit))
    return max(1, cpus)


def threads_per_worker(workers: int, root: Path | None = None, self_cgroup: Path | None = None) -> int:
    """Intra-op threads for each of ``workers`` processes sharing this container's CPUs (>= 1)."""
    return max(1, available_cpus(root, self_cgroup) // max(1, workers))
