"""cgroup v1: a container's spec and stats from its directory in each controller's hierarchy."""

from __future__ import annotations

import os

from tracer.stats.cgroups._files import MAX, copy_as_is, count_lines, per_node, read, read_int, read_kv
from tracer.stats.model import (
    CpuCFS,
    CpuSpec,
    CpuStats,
    CpuUsage,
    DiskIoStats,
    HugetlbStats,
    MemoryEvents,
    MemoryNumaStats,
    MemorySpec,
    MemoryStats,
    MemoryStatsMemoryData,
    PerDiskStats,
    ProcessSpec,
    ProcessStats,
)

_TICK_NS = 10**9 // os.sysconf("SC_CLK_TCK")  # cpuacct.stat counts USER_HZ ticks


def cpu_spec(cpu: str | None, cpuset: str | None) -> CpuSpec:
    spec = CpuSpec()
    if cpu:
        spec.limit = read_int(cpu + "/cpu.shares") or 0
        quota = read_int(cpu + "/cpu.cfs_quota_us")
        spec.quota = quota if quota and quota > 0 else 0
        spec.period = read_int(cpu + "/cpu.cfs_period_us") or 0
    if cpuset:
        spec.mask = (read(cpuset + "/cpuset.cpus") or b"").strip().decode()
    return spec


def memory_spec(memory: str) -> MemorySpec:
    return MemorySpec(limit=_limit(read_int(memory + "/memory.limit_in_bytes")),
                      reservation=_limit(read_int(memory + "/memory.soft_limit_in_bytes")),
                      swap_limit=_limit(read_int(memory + "/memory.memsw.limit_in_bytes")))


def _limit(value: int | None) -> int:
    # cAdvisor reads the v1 files raw: no limit stays the kernel's 9223372036854771712 (only a
    # v2 "max" becomes MaxUint64), and a consumer comparing with it must see that number.
    return value or 0


def process_spec(pids: str) -> ProcessSpec:
    return ProcessSpec(limit=read_int(pids + "/pids.max") or 0)


def cpu_stats(cpu: str | None, cpuacct: str | None, per_cpu: bool) -> CpuStats:
    stats = CpuStats()
    if cpuacct:
        ticks = read_kv(cpuacct + "/cpuacct.stat")
        stats.usage = CpuUsage(total=read_int(cpuacct + "/cpuacct.usage") or 0,
                               user=ticks.get(b"user", 0) * _TICK_NS, system=ticks.get(b"system", 0) * _TICK_NS)
        if per_cpu:
            stats.usage.per_cpu = [int(v) for v in (read(cpuacct + "/cpuacct.usage_percpu") or b"").split()]
    if cpu:
        cfs = read_kv(cpu + "/cpu.stat")
        stats.cfs = CpuCFS(cfs.get(b"nr_periods", 0), cfs.get(b"nr_throttled", 0), cfs.get(b"throttled_time", 0),
                           cfs.get(b"nr_bursts", 0), cfs.get(b"burst_time", 0))
    return stats


def memory_stats(memory: str, numa: bool = False) -> MemoryStats:
    st = read_kv(memory + "/memory.stat")
    # With use_hierarchy (always on since 5.x), total_* covers the subtree, as usage does.
    p = b"total_" if b"total_rss" in st else b""
    usage = read_int(memory + "/memory.usage_in_bytes") or 0
    inactive = st.get(p + b"inactive_file", 0)
    # cAdvisor (libcontainer handler) fills both container_data and hierarchical_data from the
    # local pgfault/pgmajfault, never total_*: for the root and any parent they differ.
    faults = MemoryStatsMemoryData(st.get(b"pgfault", 0), st.get(b"pgmajfault", 0))
    oom = read_kv(memory + "/memory.oom_control")
    stats = MemoryStats(
        usage=usage, max_usage=read_int(memory + "/memory.max_usage_in_bytes") or 0,
        cache=st.get(p + b"cache", 0), rss=st.get(p + b"rss", 0), swap=st.get(p + b"swap", 0),
        mapped_file=st.get(p + b"mapped_file", 0), working_set=max(usage - inactive, 0),
        total_active_file=st.get(p + b"active_file", 0), total_inactive_file=inactive,
        failcnt=read_int(memory + "/memory.failcnt") or 0,
        kernel_usage=read_int(memory + "/memory.kmem.usage_in_bytes") or 0,
        container_data=faults, hierarchical_data=MemoryStatsMemoryData(faults.pgfault, faults.pgmajfault),
        events=MemoryEvents(oom_kill=oom.get(b"oom_kill", 0)))
    copy_as_is(st, stats)
    if numa:
        stats.container_data.numa_stats, stats.hierarchical_data.numa_stats = numa_stats(memory)
    return stats


def numa_stats(memory: str) -> tuple[MemoryNumaStats, MemoryNumaStats]:
    """memory.numa_stat: (the cgroup's own, its subtree's) pages per node of file, anon and
    unevictable, as cAdvisor's memory_numa metrics read them ("file=85 N0=85",
    "hierarchical_file=…")."""
    own, subtree = MemoryNumaStats(), MemoryNumaStats()
    for line in (read(memory + "/memory.numa_stat") or b"").splitlines():
        head, *nodes = line.split()
        key = head.partition(b"=")[0].decode()
        target = subtree if key.startswith("hierarchical_") else own
        key = key.removeprefix("hierarchical_")
        if key in ("file", "anon", "unevictable"):
            setattr(target, key, per_node(nodes))
    return own, subtree


def memory_migrate(cpuset: str) -> int:
    return read_int(cpuset + "/cpuset.memory_migrate") or 0


def process_stats(pids: str, cpu_or_any: str | None) -> ProcessStats:
    return ProcessStats(process_count=(count_lines(cpu_or_any + "/cgroup.procs") or 0) if cpu_or_any else 0,
                        threads_current=read_int(pids + "/pids.current") or 0,
                        threads_max=_pids_max(pids))


def _pids_max(pids: str) -> int:
    """pids.max, 0 for "max": runc's pids limit, which cAdvisor reports, is 0 when unlimited."""
    value = read_int(pids + "/pids.max") or 0
    return 0 if value == MAX else value


def diskio_stats(blkio: str, device_name) -> DiskIoStats:
    stats = DiskIoStats()
    for attr, name in (("io_service_bytes", "io_service_bytes"), ("io_serviced", "io_serviced")):
        data = (read(f"{blkio}/blkio.throttle.{name}_recursive") or read(f"{blkio}/blkio.throttle.{name}")
                or read(f"{blkio}/blkio.{name}_recursive"))
        setattr(stats, attr, _per_disk(data or b"", device_name))
    return stats


def _per_disk(data: bytes, device_name) -> list[PerDiskStats]:
    disks: dict[tuple[int, int], PerDiskStats] = {}
    for line in data.splitlines():
        parts = line.split()
        if len(parts) != 3 or b":" not in parts[0]:
            continue  # the "Total N" line
        major, minor = map(int, parts[0].split(b":"))
        disk = disks.get((major, minor))
        if disk is None:
            disk = disks[(major, minor)] = PerDiskStats(device_name(major, minor), major, minor, {})
        disk.stats[parts[1].decode()] = int(parts[2])
    return list(disks.values())


def hugetlb_stats(hugetlb: str, sizes: tuple[str, ...]) -> dict[str, HugetlbStats]:
    out = {}
    for size in sizes:
        base = f"{hugetlb}/hugetlb.{size}"
        usage = read_int(base + ".usage_in_bytes")
        if usage is not None:
            out[size] = HugetlbStats(usage, read_int(base + ".max_usage_in_bytes") or 0,
                                     read_int(base + ".failcnt") or 0)
    return out
