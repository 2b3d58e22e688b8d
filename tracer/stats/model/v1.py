"""cAdvisor's info/v1: the machine, and a container's reference, spec, stats and info."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tracer.stats.model._json import json_field, json_time


def _inline() -> Any:
    """The first interface's counters, inlined into NetworkStats as Go's embedded struct is."""
    return field(default_factory=lambda: InterfaceStats(), metadata={"inline": True})


# --- machine ---------------------------------------------------------------------------------

@dataclass(slots=True)
class FsInfo:  # info/v1 FsInfo (machine-level)
    device: str = json_field("device", "")
    capacity: int = json_field("capacity")
    type: str = json_field("type", "")
    inodes: int = json_field("inodes")
    has_inodes: bool = json_field("has_inodes", False)


@dataclass(slots=True)
class Cache:
    id: int = json_field("id")
    size: int = json_field("size")
    type: str = json_field("type", "")
    level: int = json_field("level")


@dataclass(slots=True)
class Core:
    id: int = json_field("core_id")
    threads: list[int] = json_field("thread_ids", factory=list)
    caches: list[Cache] = json_field("caches", factory=list)
    uncore_caches: list[Cache] = json_field("uncore_caches", factory=list)
    socket_id: int = json_field("socket_id")


@dataclass(slots=True)
class HugePagesInfo:
    page_size: int = json_field("page_size")  # kB, as cAdvisor
    num_pages: int = json_field("num_pages")


@dataclass(slots=True)
class Node:
    id: int = json_field("node_id")
    memory: int = json_field("memory")
    hugepages: list[HugePagesInfo] = json_field("hugepages", factory=list)
    cores: list[Core] = json_field("cores", factory=list)
    caches: list[Cache] = json_field("caches", factory=list)
    distances: list[int] = json_field("distances", factory=list)


@dataclass(slots=True)
class DiskInfo:
    name: str = json_field("name", "")
    major: int = json_field("major")
    minor: int = json_field("minor")
    size: int = json_field("size")
    scheduler: str = json_field("scheduler", "")


@dataclass(slots=True)
class NetInfo:
    name: str = json_field("name", "")
    mac_address: str = json_field("mac_address", "")
    speed: int = json_field("speed")  # Mb/s; -1 when the link does not say
    mtu: int = json_field("mtu")


@dataclass(slots=True)
class MachineInfo:
    timestamp: float = json_time("timestamp")
    cpu_vendor_id: str = json_field("vendor_id", "")
    num_cores: int = json_field("num_cores")
    num_physical_cores: int = json_field("num_physical_cores")
    num_sockets: int = json_field("num_sockets")
    cpu_frequency_khz: int = json_field("cpu_frequency_khz")
    memory_capacity: int = json_field("memory_capacity")
    swap_capacity: int = json_field("swap_capacity")
    hugepages: list[HugePagesInfo] = json_field("hugepages", factory=list)
    machine_id: str = json_field("machine_id", "")
    system_uuid: str = json_field("system_uuid", "")
    boot_id: str = json_field("boot_id", "")
    filesystems: list[FsInfo] = json_field("filesystems", factory=list)
    disk_map: dict[str, DiskInfo] = json_field("disk_map", factory=dict)
    network_devices: list[NetInfo] = json_field("network_devices", factory=list)
    topology: list[Node] = json_field("topology", factory=list)
    cloud_provider: str = json_field("cloud_provider", "Unknown")
    instance_type: str = json_field("instance_type", "Unknown")
    instance_id: str = json_field("instance_id", "None")


@dataclass(slots=True)
class VersionInfo:
    kernel_version: str = json_field("kernel_version", "")
    container_os_version: str = json_field("container_os_version", "")
    docker_version: str = json_field("docker_version", "")
    docker_api_version: str = json_field("docker_api_version", "")
    cadvisor_version: str = json_field("cadvisor_version", "")  # oomtrace's own version
    cadvisor_revision: str = json_field("cadvisor_revision", "")


# --- container spec ----------------------------------------------------------------------------

@dataclass(slots=True)
class ContainerReference:
    id: str = json_field("id", "", omitempty=True)
    name: str = json_field("name", "")
    aliases: list[str] = json_field("aliases", omitempty=True, factory=list)
    namespace: str = json_field("namespace", "", omitempty=True)


@dataclass(slots=True)
class CpuSpec:
    limit: int = json_field("limit")  # shares (v2: weight converted to shares)
    max_limit: int = json_field("max_limit")
    mask: str = json_field("mask", "", omitempty=True)
    quota: int = json_field("quota", omitempty=True)  # µs per period; 0 = none
    period: int = json_field("period", omitempty=True)


@dataclass(slots=True)
class MemorySpec:
    limit: int = json_field("limit", omitempty=True)  # 2**64-1 style "max" is kept as cAdvisor does
    reservation: int = json_field("reservation", omitempty=True)
    swap_limit: int = json_field("swap_limit", omitempty=True)


@dataclass(slots=True)
class ProcessSpec:
    limit: int = json_field("limit", omitempty=True)


@dataclass(slots=True)
class ContainerSpec:
    creation_time: float = json_time("creation_time", omitempty=True)
    labels: dict[str, str] = json_field("labels", omitempty=True, factory=dict)
    envs: dict[str, str] = json_field("envs", omitempty=True, factory=dict)
    has_cpu: bool = json_field("has_cpu", False)
    cpu: CpuSpec = json_field("cpu", factory=CpuSpec)
    has_memory: bool = json_field("has_memory", False)
    memory: MemorySpec = json_field("memory", factory=MemorySpec)
    has_hugetlb: bool = json_field("has_hugetlb", False)
    has_network: bool = json_field("has_network", False)
    has_processes: bool = json_field("has_processes", False)
    processes: ProcessSpec = json_field("processes", factory=ProcessSpec)
    has_filesystem: bool = json_field("has_filesystem", False)
    has_diskio: bool = json_field("has_diskio", False)
    has_custom_metrics: bool = json_field("has_custom_metrics", False)
    image: str = json_field("image", "", omitempty=True)


# --- container stats -------------------------------------------------------------------------

@dataclass(slots=True)
class PSIData:
    total: int = json_field("total")  # µs stalled, as the kernel counts
    avg10: float = json_field("avg10", 0.0)
    avg60: float = json_field("avg60", 0.0)
    avg300: float = json_field("avg300", 0.0)


@dataclass(slots=True)
class PSIStats:
    full: PSIData = json_field("full", factory=PSIData)
    some: PSIData = json_field("some", factory=PSIData)


@dataclass(slots=True)
class CpuUsage:
    total: int = json_field("total")
    per_cpu: list[int] = json_field("per_cpu_usage", omitempty=True, factory=list)
    user: int = json_field("user")
    system: int = json_field("system")


@dataclass(slots=True)
class CpuCFS:
    periods: int = json_field("periods")
    throttled_periods: int = json_field("throttled_periods")
    throttled_time: int = json_field("throttled_time")


@dataclass(slots=True)
class CpuSchedstat:
    run_time: int = json_field("run_time")
    runqueue_time: int = json_field("runqueue_time")
    run_periods: int = json_field("run_periods")


@dataclass(slots=True)
class CpuStats:
    usage: CpuUsage = json_field("usage", factory=CpuUsage)
    cfs: CpuCFS = json_field("cfs", factory=CpuCFS)
    schedstat: CpuSchedstat = json_field("schedstat", factory=CpuSchedstat)
    load_average: int = json_field("load_average")
    load_d_average: int = json_field("load_d_average")
    psi: PSIStats = json_field("psi", factory=PSIStats)


@dataclass(slots=True)
class MemoryStatsMemoryData:
    pgfault: int = json_field("pgfault")
    pgmajfault: int = json_field("pgmajfault")


@dataclass(slots=True)
class MemoryEvents:  # v2 memory.events (cAdvisor HEAD: Events{High, Max}); oomtrace adds the rest
    low: int = json_field("low")
    high: int = json_field("high")
    max: int = json_field("max")
    oom: int = json_field("oom")
    oom_kill: int = json_field("oom_kill")


@dataclass(slots=True)
class MemoryStats:
    usage: int = json_field("usage")
    max_usage: int = json_field("max_usage")
    cache: int = json_field("cache")
    rss: int = json_field("rss")
    swap: int = json_field("swap")
    mapped_file: int = json_field("mapped_file")
    working_set: int = json_field("working_set")
    total_active_file: int = json_field("total_active_file")
    total_inactive_file: int = json_field("total_inactive_file")
    failcnt: int = json_field("failcnt")
    kernel_usage: int = json_field("kernel")
    container_data: MemoryStatsMemoryData = json_field("container_data", factory=MemoryStatsMemoryData)
    hierarchical_data: MemoryStatsMemoryData = json_field("hierarchical_data", factory=MemoryStatsMemoryData)
    events: MemoryEvents = json_field("events", factory=MemoryEvents)
    psi: PSIStats = json_field("psi", factory=PSIStats)


@dataclass(slots=True)
class HugetlbStats:
    usage: int = json_field("usage", omitempty=True)
    max_usage: int = json_field("max_usage", omitempty=True)
    failcnt: int = json_field("failcnt")


@dataclass(slots=True)
class PerDiskStats:
    device: str = json_field("device", "")
    major: int = json_field("major")
    minor: int = json_field("minor")
    stats: dict[str, int] = json_field("stats", factory=dict)


@dataclass(slots=True)
class DiskIoStats:
    io_service_bytes: list[PerDiskStats] = json_field("io_service_bytes", omitempty=True, factory=list)
    io_serviced: list[PerDiskStats] = json_field("io_serviced", omitempty=True, factory=list)
    io_queued: list[PerDiskStats] = json_field("io_queued", omitempty=True, factory=list)
    sectors: list[PerDiskStats] = json_field("sectors", omitempty=True, factory=list)
    io_service_time: list[PerDiskStats] = json_field("io_service_time", omitempty=True, factory=list)
    io_wait_time: list[PerDiskStats] = json_field("io_wait_time", omitempty=True, factory=list)
    io_merged: list[PerDiskStats] = json_field("io_merged", omitempty=True, factory=list)
    io_time: list[PerDiskStats] = json_field("io_time", omitempty=True, factory=list)
    psi: PSIStats = json_field("psi", factory=PSIStats)


@dataclass(slots=True)
class InterfaceStats:
    name: str = json_field("name", "")
    rx_bytes: int = json_field("rx_bytes")
    rx_packets: int = json_field("rx_packets")
    rx_errors: int = json_field("rx_errors")
    rx_dropped: int = json_field("rx_dropped")
    tx_bytes: int = json_field("tx_bytes")
    tx_packets: int = json_field("tx_packets")
    tx_errors: int = json_field("tx_errors")
    tx_dropped: int = json_field("tx_dropped")


@dataclass(slots=True)
class NetworkStats:
    first: InterfaceStats = _inline()  # cAdvisor inlines the first interface, for old readers
    interfaces: list[InterfaceStats] = json_field("interfaces", omitempty=True, factory=list)


@dataclass(slots=True)
class ProcessStats:
    process_count: int = json_field("process_count")
    fd_count: int = json_field("fd_count")
    socket_count: int = json_field("socket_count")
    threads_current: int = json_field("threads_current", omitempty=True)
    threads_max: int = json_field("threads_max", omitempty=True)


@dataclass(slots=True)
class FsStats:
    device: str = json_field("device", "", omitempty=True)
    type: str = json_field("type", "")
    limit: int = json_field("capacity")
    usage: int = json_field("usage")
    base_usage: int = json_field("base_usage")
    available: int = json_field("available")
    has_inodes: bool = json_field("has_inodes", False)
    inodes: int = json_field("inodes")
    inodes_free: int = json_field("inodes_free")
    reads_completed: int = json_field("reads_completed")
    reads_merged: int = json_field("reads_merged")
    sectors_read: int = json_field("sectors_read")
    read_time: int = json_field("read_time")
    writes_completed: int = json_field("writes_completed")
    writes_merged: int = json_field("writes_merged")
    sectors_written: int = json_field("sectors_written")
    write_time: int = json_field("write_time")
    io_in_progress: int = json_field("io_in_progress")
    io_time: int = json_field("io_time")
    weighted_io_time: int = json_field("weighted_io_time")


@dataclass(slots=True)
class ContainerStats:  # info/v1; a part that was not collected is None (cAdvisor HEAD: nil pointers)
    timestamp: float = json_time("timestamp")
    cpu: CpuStats | None = json_field("cpu", None, omitempty=True)
    diskio: DiskIoStats | None = json_field("diskio", None, omitempty=True)
    memory: MemoryStats | None = json_field("memory", None, omitempty=True)
    hugetlb: dict[str, HugetlbStats] = json_field("hugetlb", omitempty=True, factory=dict)
    network: NetworkStats | None = json_field("network", None, omitempty=True)
    filesystem: list[FsStats] = json_field("filesystem", omitempty=True, factory=list)
    processes: ProcessStats | None = json_field("processes", None, omitempty=True)
    oom_events: int = json_field("oom_events", omitempty=True)


@dataclass(slots=True)
class ContainerInfo:  # info/v1: the reference is inlined, as Go's embedded struct is
    reference: ContainerReference = field(default_factory=ContainerReference, metadata={"inline": True})
    subcontainers: list[ContainerReference] = json_field("subcontainers", omitempty=True, factory=list)
    spec: ContainerSpec = json_field("spec", factory=ContainerSpec)
    stats: list[ContainerStats] = json_field("stats", omitempty=True, factory=list)


@dataclass(frozen=True, slots=True)
class ContainerInfoRequest:  # info/v1
    num_stats: int = 60  # -1: all
    start: float | None = None
    end: float | None = None
