"""fd_count and socket_count (ProcessStats) on a real cgroup: counted only when asked
(ManagerConfig.process_counts), as cAdvisor's process metrics count them, and bounded."""

from __future__ import annotations

import os
import time

import pytest

from tests.cgroups import Cgroup
from tracer.stats.manager import Manager, ManagerConfig
from tracer.stats.processes import FdLimits

pytestmark = pytest.mark.root
# 20 more files and 4 socket pairs (8 sockets), then sleep.
HOLDER = ("import os, socket, time\nfiles = [open('/dev/null') for _ in range(20)]\n"
          "pairs = [socket.socketpair() for _ in range(4)]\ntime.sleep(120)\n")


def _by_hand(pids: list[int]) -> tuple[int, int]:
    """cAdvisor's count, done here: entries of /proc/<pid>/fd, and links starting "socket"."""
    fds = sockets = 0
    for pid in pids:
        names = os.listdir(f"/proc/{pid}/fd")
        fds += len(names)
        sockets += sum(os.readlink(f"/proc/{pid}/fd/{n}").startswith("socket") for n in names)
    return fds, sockets


@pytest.fixture(scope="module")
def holders():
    cg = Cgroup.create("fds")
    procs = [cg.spawn(HOLDER) for _ in range(3)]
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(
                sum(os.readlink(f"/proc/{p.pid}/fd/{n}").startswith("socket") for n in os.listdir(f"/proc/{p.pid}/fd"))
                >= 8 for p in procs):
            time.sleep(0.05)
        yield cg, procs
    finally:
        for p in procs:
            p.kill()
            p.wait()
        cg.remove()


def _sample(cg: Cgroup, config: ManagerConfig):
    """One sweep of CG alone: the Manager's totals are then CG's."""
    m = Manager(config)
    m.discover(emit=False)
    m.sweep([cg.name])
    try:
        return m.container_info(cg.name).stats[-1].processes, m.fd_counts
    finally:
        m.stop()


def test_counts_match_a_count_by_hand(holders):
    cg, procs = holders
    stats, totals = _sample(cg, ManagerConfig(network=False, process_counts=True))
    fds, sockets = _by_hand([p.pid for p in procs])
    assert stats.process_count == 3
    assert (stats.fd_count, stats.socket_count) == (fds, sockets)
    assert sockets == 3 * 8 and fds >= 3 * (20 + 8 + 3)
    assert totals.skipped_pids == totals.skipped_fds == 0


def test_off_by_default(holders):
    cg, _ = holders
    stats, totals = _sample(cg, ManagerConfig(network=False))
    assert (stats.fd_count, stats.socket_count) == (0, 0) and totals.fds == 0


def test_bounds_skip_and_say_so(holders):
    cg, procs = holders
    pids = sorted(p.pid for p in procs)
    stats, totals = _sample(cg, ManagerConfig(network=False, process_counts=True,
                                              process_count_limits=FdLimits(max_pids=2, max_fds=10)))
    fds, _ = _by_hand(pids[:2])  # cgroup.procs lists pids in order
    assert stats.fd_count == fds  # every descriptor of the pids walked is counted
    assert stats.socket_count <= 8  # links read for 10 descriptors only
    assert (totals.skipped_pids, totals.skipped_fds, totals.gone) == (1, fds - 10, 0)
