"""The CPUs this process may run on: one answer for the native thread team and the benchmark."""

from __future__ import annotations

import os


def usable_cpus() -> int:
    """The CPUs in this process's affinity mask (Linux: what ``taskset``, cgroups' cpusets and
    ``docker --cpuset-cpus`` leave it), else every CPU the OS reports (macOS has no mask); >= 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
