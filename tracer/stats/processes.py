"""Open files and sockets of a container's processes, counted as cAdvisor's `process` metrics
count them (libcontainer handler processStatsFromProcs): every entry of /proc/<pid>/fd of each
pid in the cgroup's cgroup.procs, and of those the links that start with "socket".

It costs a directory listing per process and a readlink per descriptor, so it is opt-in
(ManagerConfig.process_counts; cAdvisor too leaves it off by default) and bounded: at most
max_pids processes and max_fds readlinks per container per sweep. What the bounds skip is
counted, never silently lost.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class FdLimits:
    max_pids: int = 1024  # processes walked per container per sweep
    max_fds: int = 16384  # descriptors whose link is read per container per sweep (≈ 4 µs each)


@dataclass
class FdCounts:
    fds: int = 0  # entries of /proc/<pid>/fd of the processes walked
    sockets: int = 0  # of those read, links "socket:[inode]"
    skipped_pids: int = 0  # processes not walked (past max_pids)
    skipped_fds: int = 0  # descriptors counted in fds whose link was not read (past max_fds)
    gone: int = 0  # processes that exited before their fd directory was listed

    def add(self, other: FdCounts) -> None:
        for name in ("fds", "sockets", "skipped_pids", "skipped_fds", "gone"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def count(pids: list[int], limits: FdLimits, proc: str = "/proc") -> FdCounts:
    """The descriptors and sockets of PIDS, within LIMITS."""
    out = FdCounts(skipped_pids=max(0, len(pids) - limits.max_pids))
    budget = limits.max_fds
    for pid in pids[:limits.max_pids]:
        directory = f"{proc}/{pid}/fd"
        try:
            names = os.listdir(directory)
        except OSError:  # exited, or a kernel thread's fd table we may not read
            out.gone += 1
            continue
        out.fds += len(names)
        read = names[:budget]
        out.skipped_fds += len(names) - len(read)
        budget -= len(read)
        for name in read:
            try:
                if os.readlink(f"{directory}/{name}").startswith("socket"):
                    out.sockets += 1
            except OSError:  # closed meanwhile
                continue
    return out
