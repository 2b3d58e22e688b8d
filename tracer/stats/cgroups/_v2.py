"""cgroup v2: a container's spec and stats from its one directory in the unified hierarchy."""

from __future__ import annotations

import os

from tracer.stats.cgroups._files import MAX, copy_as_is, count_lines, per_node, read, read_int, read_kv, read_psi
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


def cpu_spec(d: str) -> CpuSpec:
    spec = CpuSpec()
    weight = read_int(d + "/cpu.weight")
    if weight:  # cAdvisor's conversion of weight (1..10000) back to shares (2..262144)
        spec.limit = 2 + ((weight - 1) * 262142) // 9999
    quota_period = (read(d + "/cpu.max") or b"").split()
    if len(quota_period) == 2:
        spec.quota = 0 if quota_period[0] == b"max" else int(quota_period[0])
        spec.period = int(quota_period[1])
    spec.mask = (read(d + "/cpuset.cpus.effective") or b"").strip().decode()
    return spec


def memory_spec(d: str) -> MemorySpec:
    return MemorySpec(limit=read_int(d + "/memory.max") or 0, reservation=read_int(d + "/memory.min") or 0,
                      swap_limit=read_int(d + "/memory.swap.max") or 0)


def process_spec(d: str) -> ProcessSpec:
    return ProcessSpec(limit=read_int(d + "/pids.max") or 0)


def cpu_stats(d: str) -> CpuStats:
    st = read_kv(d + "/cpu.stat")
    stats = CpuStats(
        usage=CpuUsage(total=st.get(b"usage_usec", 0) * 1000, user=st.get(b"user_usec", 0) * 1000,
                       system=st.get(b"system_usec", 0) * 1000),
        cfs=CpuCFS(st.get(b"nr_periods", 0), st.get(b"nr_throttled", 0), st.get(b"throttled_usec", 0) * 1000,
                   st.get(b"nr_bursts", 0), st.get(b"burst_usec", 0) * 1000))
    stats.psi = read_psi(d + "/cpu.pressure") or stats.psi
    return stats


_PAGE = os.sysconf("SC_PAGE_SIZE")


def memory_stats(d: str, root: bool, numa: bool = False) -> MemoryStats:
    st = read_kv(d + "/memory.stat")
    anon, file = st.get(b"anon", 0), st.get(b"file", 0)
    # The root has no memory.current: its usage is what memory.stat accounts, as in cAdvisor.
    usage = anon + file if root else (read_int(d + "/memory.current") or 0)
    inactive = st.get(b"inactive_file", 0)
    events = read_kv(d + "/memory.events")
    faults = MemoryStatsMemoryData(st.get(b"pgfault", 0), st.get(b"pgmajfault", 0))
    stats = MemoryStats(
        usage=usage, max_usage=read_int(d + "/memory.peak") or 0, cache=file, rss=anon,
        swap=read_int(d + "/memory.swap.current") or 0, mapped_file=st.get(b"file_mapped", 0),
        working_set=max(usage - inactive, 0), total_active_file=st.get(b"active_file", 0),
        total_inactive_file=inactive, kernel_usage=st.get(b"kernel", 0),
        container_data=faults, hierarchical_data=faults,
        events=MemoryEvents(events.get(b"low", 0), events.get(b"high", 0), events.get(b"max", 0),
                            events.get(b"oom", 0), events.get(b"oom_kill", 0)))
    stats.psi = read_psi(d + "/memory.pressure") or stats.psi
    copy_as_is(st, stats)
    if numa:
        stats.container_data.numa_stats = numa_stats(d)  # hierarchical_data is the same: v2 has no local figures
    return stats


def numa_stats(d: str) -> MemoryNumaStats:
    """memory.numa_stat ("anon N0=bytes …"): file, anon and unevictable per node, in pages as
    v1's file counts them (cAdvisor reads no NUMA figures on v2)."""
    out = MemoryNumaStats()
    for line in (read(d + "/memory.numa_stat") or b"").splitlines():
        key, *nodes = line.split()
        name = key.decode()
        if name in ("file", "anon", "unevictable"):
            setattr(out, name, {n: v // _PAGE for n, v in per_node(nodes).items()})
    return out


def process_stats(d: str) -> ProcessStats:
    return ProcessStats(process_count=count_lines(d + "/cgroup.procs") or 0,
                        threads_current=read_int(d + "/pids.current") or 0,
                        threads_max=_pids_max(d))


def _pids_max(d: str) -> int:
    """pids.max, 0 for "max", as runc (and so cAdvisor) reports an unlimited pids controller."""
    value = read_int(d + "/pids.max") or 0
    return 0 if value == MAX else value


def diskio_stats(d: str, device_name) -> DiskIoStats:
    stats = DiskIoStats()
    for line in (read(d + "/io.stat") or b"").splitlines():
        dev, *pairs = line.split()
        if b":" not in dev:
            continue
        major, minor = map(int, dev.split(b":"))
        values = {k: int(v) for k, _, v in (p.partition(b"=") for p in pairs) if v.isdigit()}
        name = device_name(major, minor)
        stats.io_service_bytes.append(PerDiskStats(name, major, minor, {
            "Read": values.get(b"rbytes", 0), "Write": values.get(b"wbytes", 0),
            "Discard": values.get(b"dbytes", 0), "Total": values.get(b"rbytes", 0) + values.get(b"wbytes", 0)}))
        stats.io_serviced.append(PerDiskStats(name, major, minor, {
            "Read": values.get(b"rios", 0), "Write": values.get(b"wios", 0),
            "Discard": values.get(b"dios", 0), "Total": values.get(b"rios", 0) + values.get(b"wios", 0)}))
    stats.psi = read_psi(d + "/io.pressure") or stats.psi
    return stats


def hugetlb_stats(d: str, sizes: tuple[str, ...]) -> dict[str, HugetlbStats]:
    out = {}
    for size in sizes:
        usage = read_int(f"{d}/hugetlb.{size}.rsvd.current")
        usage = usage if usage is not None else read_int(f"{d}/hugetlb.{size}.current")
        if usage is not None:
            out[size] = HugetlbStats(usage, 0, read_kv(f"{d}/hugetlb.{size}.events").get(b"max", 0))
    return out
