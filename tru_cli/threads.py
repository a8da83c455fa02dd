"""CPU threads per torch process (`device.num_threads`). Several torch processes that each take every
core thrash: measured here, four jobs on 2 cores made a 4-minute `make demo` take over 30 minutes.
So tru gives each process the cores divided by the torch processes it runs at once on this machine:
the jobs of a sweep under a parallel local launcher (submitit_local), the ranks of `device=ddp_sim`.
The launching process exports that count as TRU_LOCAL_JOBS; every process it starts inherits it."""

from __future__ import annotations

import os
import sys

LOCAL_JOBS_ENV = "TRU_LOCAL_JOBS"


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may use (taskset, cgroups' cpusets)
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def local_jobs() -> int:
    try:
        return max(1, int(os.environ.get(LOCAL_JOBS_ENV, "1")))
    except ValueError:
        return 1


def count(device, jobs: int | None = None) -> int:
    """`device.num_threads`, or the cores shared out among `jobs` local torch processes (default:
    TRU_LOCAL_JOBS)."""
    chosen = device.get("num_threads")
    if chosen:
        return int(chosen)
    return max(1, cores() // (jobs or local_jobs()))


def apply(device) -> int:
    """Set this process's torch threads (before torch starts its pools where it can); returns the count."""
    n = count(device)
    if "torch" in sys.modules:
        import torch

        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
    else:  # read by torch (OpenMP) when it is first imported
        os.environ["OMP_NUM_THREADS"] = str(n)
    return n
