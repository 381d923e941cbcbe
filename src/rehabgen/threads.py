"""How many CPU threads torch uses: one policy for every command that runs a model.

torch starts one OpenMP thread per core in every process, and idle OpenMP threads spin while
they wait. Two such jobs on a 2-core machine fought so hard that diffusion training fell from
4.6 to 0.3 steps/s. The policy: `--threads N`, else `OMP_NUM_THREADS`, else the cores this
process may really use (its CPU affinity, a container's CPU quota, shared among the
data-parallel processes of this machine); and idle threads sleep instead of spinning
(`OMP_WAIT_POLICY=PASSIVE` unless set), so a job that shares its cores slows down in
proportion instead of collapsing.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path


def _cgroup_cpus() -> float | None:
    """CPUs granted by a cgroup quota (v2 cpu.max, else v1 cfs), None when unlimited or unknown."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def available_cores() -> int:
    """Cores this process may run on: not os.cpu_count(), which ignores taskset and containers."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity API (macOS, Windows)
        n = os.cpu_count() or 1
    quota = _cgroup_cpus()
    if quota is not None:
        n = min(n, math.ceil(quota))
    return max(1, n)


def choose_threads(requested: int | None = None) -> tuple[int, str]:
    """(threads, where the number comes from)."""
    if requested is not None:
        return int(requested), "--threads"
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    try:
        n = int(env.split(",")[0]) if env else 0
    except ValueError:
        n = 0
    if n >= 1:
        return n, f"OMP_NUM_THREADS={env}"
    cores = available_cores()
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))  # set by torchrun
    if local > 1:
        return max(1, cores // local), f"{cores} available core(s) shared by {local} processes"
    return cores, f"{cores} available core(s)"


def sleep_when_idle() -> bool:
    """Idle OpenMP threads sleep instead of spinning, unless OMP_WAIT_POLICY says otherwise.
    libgomp reads the variable once, when torch loads it: this must run before `import torch`
    (the command line calls it on import); returns whether it still could."""
    if "torch" in sys.modules:
        return False
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return True


def use_threads(requested: int | None = None) -> str:
    """Apply the policy to torch; returns the one line a command prints at start."""
    sleep_when_idle()
    import torch

    n, why = choose_threads(requested)
    torch.set_num_threads(n)
    cores = available_cores()
    over = f", more than the {cores} available core(s)" if n > cores else ""
    return f"threads: {n} ({why}{over}; --threads N or OMP_NUM_THREADS to change)"
