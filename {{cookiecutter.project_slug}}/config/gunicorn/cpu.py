"""The CPU budget: how many CPUs this process can really use.

os.cpu_count() counts the machine's CPUs, not the container's. Under Docker
`--cpus` or a Kubernetes CPU limit it reports every core of the node, and
presets sized from it start dozens of workers in a container allowed one or
two CPUs: they fight over the quota and run out of memory. The limits that
really apply are:

- the CPU affinity set: `taskset`, Docker `--cpuset-cpus`, Kubernetes' static
  CPU manager;
- the CFS quota: Docker `--cpus`, Kubernetes `resources.limits.cpu`, systemd
  `CPUQuota=`; cgroup v2 `cpu.max`, cgroup v1 `cpu.cfs_quota_us` over
  `cpu.cfs_period_us`, on the process's cgroup or any parent of it.

The budget is the smallest of these, a fractional quota rounded up (1.5 CPUs
can keep 2 busy part of the time), and at least 1. Memory limits are not read:
size memory from the workers this gives.
"""

import math
import os
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")


@dataclass(frozen=True)
class CpuBudget:
    cpus: int
    source: str  # what set the number, for the start-up log line

    def __str__(self):
        return f"{self.cpus} ({self.source})"


def affinity_cpus():
    """CPUs this process may be scheduled on (all of them where the OS cannot say)."""
    if hasattr(os, "sched_getaffinity"):  # Linux
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def quota_v2(directory):
    """CPUs allowed by a cgroup v2 `cpu.max` ("$QUOTA $PERIOD"; quota "max" = no limit)."""
    try:
        quota, period = (directory / "cpu.max").read_text().split()
        if quota == "max":
            return None
        quota, period = int(quota), int(period)
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def quota_v1(directory):
    """CPUs allowed by a cgroup v1 CFS quota (quota -1 = no limit)."""
    try:
        quota = int((directory / "cpu.cfs_quota_us").read_text())
        period = int((directory / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def cgroup_paths(proc_self_cgroup_text):
    """The process's cgroup in each hierarchy: {"v2": path, "v1": path of the cpu controller}."""
    paths = {}
    for line in proc_self_cgroup_text.splitlines():
        hierarchy_id, controllers, path = line.split(":", 2)
        if hierarchy_id == "0" and not controllers:
            paths["v2"] = path
        elif "cpu" in controllers.split(","):
            paths["v1"] = path
    return paths


def smallest_quota(mount, path, read_quota):
    """The smallest quota from the process's cgroup up to the mount's root.

    A parent's quota limits its children, so every level counts. Inside a
    container the process's path is usually not visible under the mount (the
    container's own cgroup is mounted as the root), so the root is read alone.
    """
    directory = mount / path.lstrip("/")
    if not directory.is_dir():
        directory = mount
    quotas = []
    while True:
        quota = read_quota(directory)
        if quota is not None:
            quotas.append(quota)
        if directory == mount:
            return min(quotas, default=None)
        directory = directory.parent


def cpu_budget(affinity=None, cgroup_root=CGROUP_ROOT, proc_self_cgroup=PROC_SELF_CGROUP):
    """The smallest of the affinity set and the cgroup v2/v1 quotas, rounded up, at least 1."""
    affinity = affinity_cpus() if affinity is None else affinity
    budget = CpuBudget(max(1, affinity), "CPU affinity")
    try:
        paths = cgroup_paths(proc_self_cgroup.read_text())
    except (OSError, ValueError):
        paths = {}
    v1_mount = next(
        (cgroup_root / name for name in ("cpu", "cpu,cpuacct") if (cgroup_root / name).is_dir()),
        None,
    )
    limits = [("cgroup v2 cpu.max", cgroup_root, paths.get("v2", "/"), quota_v2)]
    if v1_mount is not None:
        limits.append(("cgroup v1 CFS quota", v1_mount, paths.get("v1", "/"), quota_v1))
    for label, mount, path, read_quota in limits:
        quota = smallest_quota(mount, path, read_quota)
        if quota is not None and math.ceil(quota) < budget.cpus:
            source = label if quota.is_integer() else f"{label}, {quota:g} rounded up"
            budget = CpuBudget(max(1, math.ceil(quota)), source)
    return budget
