"""Container stats read from live cgroup v2 files (memory, cpu, io, pids, memory.events)."""

from __future__ import annotations

import os
import time

from tests.cgroups import Cgroup
from tests.kernel import oom_once
from tracer.stats.cgroups import Layout, StatsOptions
from tracer.stats.manager import Manager, ManagerConfig
from tracer.stats.model import ContainerInfoRequest, RequestOptions

MiB = 1 << 20
WORK = ("import os, time\na = bytearray(64 << 20)\nfor i in range(0, len(a), 4096):\n    a[i] = 1\n"
        "with open('/var/tmp/oomtrace-vm-io', 'wb') as f:\n    f.write(os.urandom(16 << 20))\n"
        "    f.flush()\n    os.fsync(f.fileno())\nt = time.time()\nwhile time.time() - t < 60:\n    pass\n")


def test_v2_stats_of_a_working_container():
    layout = Layout.detect()
    assert {v for v, _ in layout.controllers.values()} == {2}, layout
    cg = Cgroup.create("vm-stats", layout, memory_max=str(256 * MiB), cpu_max="20000 100000", pids_max="50")
    m = Manager(ManagerConfig(housekeeping_interval=1.0, network=False, stats=StatsOptions(numa=True)),
                layout=layout)  # numa_stats: off by default, as in cAdvisor and kubelet
    proc = cg.spawn(WORK)
    try:
        m.start()
        time.sleep(12)  # the allocation and the write under emulation, then seconds of throttled burning
        info = m.container_info_v2(cg.name, RequestOptions(count=-1, max_age=0))[cg.name]
        spec, latest = info.spec, info.stats[-1]
        assert (spec.memory.limit, spec.cpu.quota, spec.cpu.period, spec.processes.limit) == (
            256 * MiB, 20000, 100000, 50)
        assert 64 * MiB <= latest.memory.usage <= 256 * MiB and latest.memory.rss >= 64 * MiB
        assert latest.memory.working_set == latest.memory.usage - latest.memory.total_inactive_file
        if _has_peak(cg.dir):
            assert latest.memory.max_usage >= latest.memory.usage  # memory.peak
        else:  # before 5.19 v2 has no memory.peak: 0, as cAdvisor reports it there
            assert latest.memory.max_usage == 0
        assert latest.cpu.cfs.throttled_periods > 0 and latest.cpu.usage.total > 0
        assert latest.cpu.psi.some.total > 0  # cpu.pressure
        writes = sum(d.stats["Write"] for d in latest.diskio.io_service_bytes)
        assert writes >= 16 * MiB, latest.diskio
        assert latest.processes.threads_current >= 1 and latest.processes.threads_max == 50
        # memory.numa_stat (5.8+), bytes turned into pages: the 64 MiB written are anon somewhere
        numa = latest.memory.container_data.numa_stats
        assert sum(numa.anon.values()) * os.sysconf("SC_PAGE_SIZE") >= 64 * MiB, numa
        assert 0 < spec.creation_time <= time.time()
        rates = [s.cpu_inst.usage.total for s in info.stats[-4:] if s.cpu_inst is not None]
        assert rates and max(rates) <= 0.3e9  # never above the 0.2-core quota by much
    finally:
        proc.kill()
        proc.wait()
        m.stop()
        cg.remove()
        os.unlink("/var/tmp/oomtrace-vm-io") if os.path.exists("/var/tmp/oomtrace-vm-io") else None


def test_memory_events_count_a_real_oom_kill():
    cg, _ = oom_once("vm-events", 32 * MiB)
    try:
        layout = Layout.detect()
        m = Manager(ManagerConfig(network=False), layout=layout)
        m.start(background=False)
        stats = m.container_info(cg.path, ContainerInfoRequest(num_stats=1)).stats[-1]
        assert stats.memory.events.oom_kill == 1 and stats.memory.events.oom == 1
        assert stats.oom_events == 1
        if _has_peak(cg.dir):
            assert stats.memory.max_usage >= 30 * MiB
        else:  # 5.10: no memory.peak (5.19+); cAdvisor reports 0 there too
            assert stats.memory.max_usage == 0
        m.stop()
    finally:
        cg.remove()


def _has_peak(directory) -> bool:
    """memory.peak came in 5.19; the 5.10 suite has none, and the reader must give 0 then."""
    return os.path.exists(os.path.join(str(directory), "memory.peak"))
