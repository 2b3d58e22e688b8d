"""The container data model: cAdvisor's info/v1 and info/v2 shapes as typed dataclasses.

Plain data; imports nothing from oomtrace. Field names are snake_case Python; to_json() gives
cAdvisor's JSON names (json= in a field's metadata, omitempty as in Go: zero scalars and empty
lists and maps are left out, nested structs never are). Times are Unix seconds (float) here
and RFC 3339 strings in JSON; sizes are bytes, CPU times nanoseconds, as in cAdvisor.
"""

from __future__ import annotations

import dataclasses
import datetime
from dataclasses import dataclass, field
from typing import Any


def _f(json: str, default: Any = 0, omitempty: bool = False, factory: Any = None) -> Any:
    meta = {"json": json, "omitempty": omitempty}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _time(json: str, omitempty: bool = False) -> Any:
    return field(default=0.0, metadata={"json": json, "omitempty": omitempty, "time": True})


def _inline() -> Any:
    return field(default_factory=lambda: InterfaceStats(), metadata={"inline": True})


# --- machine ---------------------------------------------------------------------------------

@dataclass(slots=True)
class FsInfo:  # info/v1 FsInfo (machine-level)
    device: str = _f("device", "")
    capacity: int = _f("capacity")
    type: str = _f("type", "")
    inodes: int = _f("inodes")
    has_inodes: bool = _f("has_inodes", False)


@dataclass(slots=True)
class Cache:
    id: int = _f("id")
    size: int = _f("size")
    type: str = _f("type", "")
    level: int = _f("level")


@dataclass(slots=True)
class Core:
    id: int = _f("core_id")
    threads: list[int] = _f("thread_ids", factory=list)
    caches: list[Cache] = _f("caches", factory=list)
    uncore_caches: list[Cache] = _f("uncore_caches", factory=list)
    socket_id: int = _f("socket_id")


@dataclass(slots=True)
class HugePagesInfo:
    page_size: int = _f("page_size")  # kB, as cAdvisor
    num_pages: int = _f("num_pages")


@dataclass(slots=True)
class Node:
    id: int = _f("node_id")
    memory: int = _f("memory")
    hugepages: list[HugePagesInfo] = _f("hugepages", factory=list)
    cores: list[Core] = _f("cores", factory=list)
    caches: list[Cache] = _f("caches", factory=list)
    distances: list[int] = _f("distances", factory=list)


@dataclass(slots=True)
class DiskInfo:
    name: str = _f("name", "")
    major: int = _f("major")
    minor: int = _f("minor")
    size: int = _f("size")
    scheduler: str = _f("scheduler", "")


@dataclass(slots=True)
class NetInfo:
    name: str = _f("name", "")
    mac_address: str = _f("mac_address", "")
    speed: int = _f("speed")  # Mb/s; -1 when the link does not say
    mtu: int = _f("mtu")


@dataclass(slots=True)
class MachineInfo:
    timestamp: float = _time("timestamp")
    cpu_vendor_id: str = _f("vendor_id", "")
    num_cores: int = _f("num_cores")
    num_physical_cores: int = _f("num_physical_cores")
    num_sockets: int = _f("num_sockets")
    cpu_frequency_khz: int = _f("cpu_frequency_khz")
    memory_capacity: int = _f("memory_capacity")
    swap_capacity: int = _f("swap_capacity")
    hugepages: list[HugePagesInfo] = _f("hugepages", factory=list)
    machine_id: str = _f("machine_id", "")
    system_uuid: str = _f("system_uuid", "")
    boot_id: str = _f("boot_id", "")
    filesystems: list[FsInfo] = _f("filesystems", factory=list)
    disk_map: dict[str, DiskInfo] = _f("disk_map", factory=dict)
    network_devices: list[NetInfo] = _f("network_devices", factory=list)
    topology: list[Node] = _f("topology", factory=list)
    cloud_provider: str = _f("cloud_provider", "Unknown")
    instance_type: str = _f("instance_type", "Unknown")
    instance_id: str = _f("instance_id", "None")


@dataclass(slots=True)
class VersionInfo:
    kernel_version: str = _f("kernel_version", "")
    container_os_version: str = _f("container_os_version", "")
    docker_version: str = _f("docker_version", "")
    docker_api_version: str = _f("docker_api_version", "")
    cadvisor_version: str = _f("cadvisor_version", "")  # oomtrace's own version
    cadvisor_revision: str = _f("cadvisor_revision", "")


# --- container spec ----------------------------------------------------------------------------

@dataclass(slots=True)
class ContainerReference:
    id: str = _f("id", "", omitempty=True)
    name: str = _f("name", "")
    aliases: list[str] = _f("aliases", omitempty=True, factory=list)
    namespace: str = _f("namespace", "", omitempty=True)


@dataclass(slots=True)
class CpuSpec:
    limit: int = _f("limit")  # shares (v2: weight converted to shares)
    max_limit: int = _f("max_limit")
    mask: str = _f("mask", "", omitempty=True)
    quota: int = _f("quota", omitempty=True)  # µs per period; 0 = none
    period: int = _f("period", omitempty=True)


@dataclass(slots=True)
class MemorySpec:
    limit: int = _f("limit", omitempty=True)  # 2**64-1 style "max" is kept as cAdvisor does
    reservation: int = _f("reservation", omitempty=True)
    swap_limit: int = _f("swap_limit", omitempty=True)


@dataclass(slots=True)
class ProcessSpec:
    limit: int = _f("limit", omitempty=True)


@dataclass(slots=True)
class ContainerSpec:
    creation_time: float = _time("creation_time", omitempty=True)
    labels: dict[str, str] = _f("labels", omitempty=True, factory=dict)
    envs: dict[str, str] = _f("envs", omitempty=True, factory=dict)
    has_cpu: bool = _f("has_cpu", False)
    cpu: CpuSpec = _f("cpu", factory=CpuSpec)
    has_memory: bool = _f("has_memory", False)
    memory: MemorySpec = _f("memory", factory=MemorySpec)
    has_hugetlb: bool = _f("has_hugetlb", False)
    has_network: bool = _f("has_network", False)
    has_processes: bool = _f("has_processes", False)
    processes: ProcessSpec = _f("processes", factory=ProcessSpec)
    has_filesystem: bool = _f("has_filesystem", False)
    has_diskio: bool = _f("has_diskio", False)
    has_custom_metrics: bool = _f("has_custom_metrics", False)
    image: str = _f("image", "", omitempty=True)


# --- container stats -------------------------------------------------------------------------

@dataclass(slots=True)
class PSIData:
    total: int = _f("total")  # µs stalled, as the kernel counts
    avg10: float = _f("avg10", 0.0)
    avg60: float = _f("avg60", 0.0)
    avg300: float = _f("avg300", 0.0)


@dataclass(slots=True)
class PSIStats:
    full: PSIData = _f("full", factory=PSIData)
    some: PSIData = _f("some", factory=PSIData)


@dataclass(slots=True)
class CpuUsage:
    total: int = _f("total")
    per_cpu: list[int] = _f("per_cpu_usage", omitempty=True, factory=list)
    user: int = _f("user")
    system: int = _f("system")


@dataclass(slots=True)
class CpuCFS:
    periods: int = _f("periods")
    throttled_periods: int = _f("throttled_periods")
    throttled_time: int = _f("throttled_time")


@dataclass(slots=True)
class CpuSchedstat:
    run_time: int = _f("run_time")
    runqueue_time: int = _f("runqueue_time")
    run_periods: int = _f("run_periods")


@dataclass(slots=True)
class CpuStats:
    usage: CpuUsage = _f("usage", factory=CpuUsage)
    cfs: CpuCFS = _f("cfs", factory=CpuCFS)
    schedstat: CpuSchedstat = _f("schedstat", factory=CpuSchedstat)
    load_average: int = _f("load_average")
    load_d_average: int = _f("load_d_average")
    psi: PSIStats = _f("psi", factory=PSIStats)


@dataclass(slots=True)
class MemoryStatsMemoryData:
    pgfault: int = _f("pgfault")
    pgmajfault: int = _f("pgmajfault")


@dataclass(slots=True)
class MemoryEvents:  # v2 memory.events (cAdvisor HEAD: Events{High, Max}); oomtrace adds the rest
    low: int = _f("low")
    high: int = _f("high")
    max: int = _f("max")
    oom: int = _f("oom")
    oom_kill: int = _f("oom_kill")


@dataclass(slots=True)
class MemoryStats:
    usage: int = _f("usage")
    max_usage: int = _f("max_usage")
    cache: int = _f("cache")
    rss: int = _f("rss")
    swap: int = _f("swap")
    mapped_file: int = _f("mapped_file")
    working_set: int = _f("working_set")
    total_active_file: int = _f("total_active_file")
    total_inactive_file: int = _f("total_inactive_file")
    failcnt: int = _f("failcnt")
    kernel_usage: int = _f("kernel")
    container_data: MemoryStatsMemoryData = _f("container_data", factory=MemoryStatsMemoryData)
    hierarchical_data: MemoryStatsMemoryData = _f("hierarchical_data", factory=MemoryStatsMemoryData)
    events: MemoryEvents = _f("events", factory=MemoryEvents)
    psi: PSIStats = _f("psi", factory=PSIStats)


@dataclass(slots=True)
class HugetlbStats:
    usage: int = _f("usage", omitempty=True)
    max_usage: int = _f("max_usage", omitempty=True)
    failcnt: int = _f("failcnt")


@dataclass(slots=True)
class PerDiskStats:
    device: str = _f("device", "")
    major: int = _f("major")
    minor: int = _f("minor")
    stats: dict[str, int] = _f("stats", factory=dict)


@dataclass(slots=True)
class DiskIoStats:
    io_service_bytes: list[PerDiskStats] = _f("io_service_bytes", omitempty=True, factory=list)
    io_serviced: list[PerDiskStats] = _f("io_serviced", omitempty=True, factory=list)
    io_queued: list[PerDiskStats] = _f("io_queued", omitempty=True, factory=list)
    sectors: list[PerDiskStats] = _f("sectors", omitempty=True, factory=list)
    io_service_time: list[PerDiskStats] = _f("io_service_time", omitempty=True, factory=list)
    io_wait_time: list[PerDiskStats] = _f("io_wait_time", omitempty=True, factory=list)
    io_merged: list[PerDiskStats] = _f("io_merged", omitempty=True, factory=list)
    io_time: list[PerDiskStats] = _f("io_time", omitempty=True, factory=list)
    psi: PSIStats = _f("psi", factory=PSIStats)


@dataclass(slots=True)
class InterfaceStats:
    name: str = _f("name", "")
    rx_bytes: int = _f("rx_bytes")
    rx_packets: int = _f("rx_packets")
    rx_errors: int = _f("rx_errors")
    rx_dropped: int = _f("rx_dropped")
    tx_bytes: int = _f("tx_bytes")
    tx_packets: int = _f("tx_packets")
    tx_errors: int = _f("tx_errors")
    tx_dropped: int = _f("tx_dropped")


@dataclass(slots=True)
class NetworkStats:
    first: InterfaceStats = _inline()  # cAdvisor inlines the first interface, for old readers
    interfaces: list[InterfaceStats] = _f("interfaces", omitempty=True, factory=list)


@dataclass(slots=True)
class ProcessStats:
    process_count: int = _f("process_count")
    fd_count: int = _f("fd_count")
    socket_count: int = _f("socket_count")
    threads_current: int = _f("threads_current", omitempty=True)
    threads_max: int = _f("threads_max", omitempty=True)


@dataclass(slots=True)
class FsStats:
    device: str = _f("device", "", omitempty=True)
    type: str = _f("type", "")
    limit: int = _f("capacity")
    usage: int = _f("usage")
    base_usage: int = _f("base_usage")
    available: int = _f("available")
    has_inodes: bool = _f("has_inodes", False)
    inodes: int = _f("inodes")
    inodes_free: int = _f("inodes_free")
    reads_completed: int = _f("reads_completed")
    reads_merged: int = _f("reads_merged")
    sectors_read: int = _f("sectors_read")
    read_time: int = _f("read_time")
    writes_completed: int = _f("writes_completed")
    writes_merged: int = _f("writes_merged")
    sectors_written: int = _f("sectors_written")
    write_time: int = _f("write_time")
    io_in_progress: int = _f("io_in_progress")
    io_time: int = _f("io_time")
    weighted_io_time: int = _f("weighted_io_time")


@dataclass(slots=True)
class ContainerStats:  # info/v1; a part that was not collected is None (cAdvisor HEAD: nil pointers)
    timestamp: float = _time("timestamp")
    cpu: CpuStats | None = _f("cpu", None, omitempty=True)
    diskio: DiskIoStats | None = _f("diskio", None, omitempty=True)
    memory: MemoryStats | None = _f("memory", None, omitempty=True)
    hugetlb: dict[str, HugetlbStats] = _f("hugetlb", omitempty=True, factory=dict)
    network: NetworkStats | None = _f("network", None, omitempty=True)
    filesystem: list[FsStats] = _f("filesystem", omitempty=True, factory=list)
    processes: ProcessStats | None = _f("processes", None, omitempty=True)
    oom_events: int = _f("oom_events", omitempty=True)


@dataclass(slots=True)
class ContainerInfo:  # info/v1: the reference is inlined, as Go's embedded struct is
    reference: ContainerReference = field(default_factory=ContainerReference, metadata={"inline": True})
    subcontainers: list[ContainerReference] = _f("subcontainers", omitempty=True, factory=list)
    spec: ContainerSpec = _f("spec", factory=ContainerSpec)
    stats: list[ContainerStats] = _f("stats", omitempty=True, factory=list)


@dataclass(frozen=True, slots=True)
class ContainerInfoRequest:  # info/v1
    num_stats: int = 60  # -1: all
    start: float | None = None
    end: float | None = None


# --- info/v2 -----------------------------------------------------------------------------------

@dataclass(slots=True)
class ContainerSpecV2(ContainerSpec):  # info/v2: the v1 spec plus the reference's aliases and namespace
    aliases: list[str] = _f("aliases", omitempty=True, factory=list)
    namespace: str = _f("namespace", "", omitempty=True)


@dataclass(slots=True)
class CpuInstUsage:  # nanocores: CPU nanoseconds per second
    total: int = _f("total")
    per_cpu: list[int] = _f("per_cpu_usage", omitempty=True, factory=list)
    user: int = _f("user")
    system: int = _f("system")


@dataclass(slots=True)
class CpuInstStats:
    usage: CpuInstUsage = _f("usage", factory=CpuInstUsage)


@dataclass(slots=True)
class NetworkStatsV2:
    interfaces: list[InterfaceStats] = _f("interfaces", omitempty=True, factory=list)


@dataclass(slots=True)
class FilesystemStatsV2:
    total_usage_bytes: int | None = _f("totalUsageBytes", None, omitempty=True)
    base_usage_bytes: int | None = _f("baseUsageBytes", None, omitempty=True)
    inode_usage: int | None = _f("containter_inode_usage", None, omitempty=True)  # sic, as cAdvisor


@dataclass(slots=True)
class ContainerStatsV2:
    timestamp: float = _time("timestamp")
    cpu: CpuStats | None = _f("cpu", None, omitempty=True)
    cpu_inst: CpuInstStats | None = _f("cpu_inst", None, omitempty=True)
    diskio: DiskIoStats | None = _f("diskio", None, omitempty=True)
    memory: MemoryStats | None = _f("memory", None, omitempty=True)
    hugetlb: dict[str, HugetlbStats] | None = _f("hugetlb", None, omitempty=True)
    network: NetworkStatsV2 | None = _f("network", None, omitempty=True)
    processes: ProcessStats | None = _f("processes", None, omitempty=True)
    filesystem: FilesystemStatsV2 | None = _f("filesystem", None, omitempty=True)


@dataclass(slots=True)
class ContainerInfoV2:
    spec: ContainerSpecV2 = _f("spec", factory=ContainerSpecV2)
    stats: list[ContainerStatsV2] = _f("stats", omitempty=True, factory=list)


@dataclass(slots=True)
class FsInfoV2:
    timestamp: float = _time("timestamp")
    device: str = _f("device", "")
    mountpoint: str = _f("mountpoint", "")
    capacity: int = _f("capacity")
    available: int = _f("available")
    usage: int = _f("usage")
    labels: list[str] = _f("labels", factory=list)
    inodes: int | None = _f("inodes", None, omitempty=True)
    inodes_free: int | None = _f("inodes_free", None, omitempty=True)


@dataclass(frozen=True, slots=True)
class RequestOptions:  # info/v2
    id_type: str = "name"  # "name" or "docker"
    count: int = 64  # -1: all
    recursive: bool = False
    max_age: float | None = None  # seconds; None: the cache; 0: collect now


# --- events ----------------------------------------------------------------------------------

EVENT_TYPES = ("oom", "oomKill", "containerCreation", "containerDeletion")


@dataclass(slots=True)
class OomKillEventData:
    pid: int = _f("pid")
    process_name: str = _f("process_name", "")


@dataclass(slots=True)
class EventData:
    oom: OomKillEventData | None = _f("oom", None, omitempty=True)


@dataclass(slots=True)
class Event:
    container_name: str = _f("container_name", "")
    timestamp: float = _time("timestamp")
    event_type: str = _f("event_type", "")
    event_data: EventData = _f("event_data", factory=EventData)


@dataclass(frozen=True, slots=True)
class EventRequest:  # events.Request
    start_time: float | None = None
    end_time: float | None = None
    event_types: frozenset[str] = frozenset(EVENT_TYPES)
    max_events: int = 10  # the most recent N; <= 0: all
    container_name: str = "/"
    include_subcontainers: bool = False


# --- JSON --------------------------------------------------------------------------------------

def rfc3339(seconds: float) -> str:
    if not seconds:
        return "0001-01-01T00:00:00Z"  # Go's zero time
    stamp = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def to_json(value: Any) -> Any:
    """The JSON-able form, with cAdvisor's field names."""
    if dataclasses.is_dataclass(value):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            meta = f.metadata
            if meta.get("inline"):
                out.update(to_json(v))
                continue
            if meta.get("time"):
                if meta.get("omitempty") and not v:
                    continue
                out[meta["json"]] = rfc3339(v)
                continue
            if meta.get("omitempty") and (v is None or (not dataclasses.is_dataclass(v) and not v)):
                continue
            out[meta.get("json", f.name)] = to_json(v)
        return out
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value
