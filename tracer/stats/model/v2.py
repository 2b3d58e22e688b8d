"""cAdvisor's info/v2: derived from info/v1 (stats.conversion), never collected directly."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tracer.stats.model._json import json_field, json_time
from tracer.stats.model.v1 import (
    ContainerSpec,
    CpuStats,
    DiskIoStats,
    HugetlbStats,
    InterfaceStats,
    LoadStats,
    MemoryStats,
    ProcessStats,
    ResctrlStats,
    TcpAdvancedStat,
    TcpStat,
    UdpStat,
)

# --- info/v2 -----------------------------------------------------------------------------------

@dataclass(slots=True)
class ContainerSpecV2(ContainerSpec):  # info/v2: the v1 spec plus the reference's aliases and namespace
    aliases: list[str] = json_field("aliases", omitempty=True, factory=list)
    namespace: str = json_field("namespace", "", omitempty=True)


@dataclass(slots=True)
class CpuInstUsage:  # nanocores: CPU nanoseconds per second
    total: int = json_field("total")
    per_cpu: list[int] = json_field("per_cpu_usage", omitempty=True, factory=list)
    user: int = json_field("user")
    system: int = json_field("system")


@dataclass(slots=True)
class CpuInstStats:
    usage: CpuInstUsage = json_field("usage", factory=CpuInstUsage)


@dataclass(slots=True)
class NetworkStatsV2:
    interfaces: list[InterfaceStats] = json_field("interfaces", omitempty=True, factory=list)
    tcp: TcpStat = json_field("tcp", factory=TcpStat)  # zeros, as cAdvisor without its tcp metrics
    tcp6: TcpStat = json_field("tcp6", factory=TcpStat)
    udp: UdpStat = json_field("udp", factory=UdpStat)
    udp6: UdpStat = json_field("udp6", factory=UdpStat)
    tcp_advanced: TcpAdvancedStat = json_field("tcp_advanced", factory=TcpAdvancedStat)


@dataclass(slots=True)
class FilesystemStatsV2:
    total_usage_bytes: int | None = json_field("totalUsageBytes", omitempty=True, pointer=True)
    base_usage_bytes: int | None = json_field("baseUsageBytes", omitempty=True, pointer=True)
    inode_usage: int | None = json_field("containter_inode_usage", omitempty=True, pointer=True)  # sic, as cAdvisor


@dataclass(slots=True)
class ContainerStatsV2:
    timestamp: float = json_time("timestamp")
    cpu: CpuStats | None = json_field("cpu", omitempty=True, pointer=True)
    cpu_inst: CpuInstStats | None = json_field("cpu_inst", omitempty=True, pointer=True)
    diskio: DiskIoStats | None = json_field("diskio", omitempty=True, pointer=True)
    memory: MemoryStats | None = json_field("memory", omitempty=True, pointer=True)
    hugetlb: dict[str, HugetlbStats] | None = json_field("hugetlb", omitempty=True, pointer=True)
    network: NetworkStatsV2 | None = json_field("network", omitempty=True, pointer=True)
    processes: ProcessStats | None = json_field("processes", omitempty=True, pointer=True)
    filesystem: FilesystemStatsV2 | None = json_field("filesystem", omitempty=True, pointer=True)
    load_stats: LoadStats | None = json_field("load_stats", omitempty=True, pointer=True)  # never collected
    accelerators: list[dict[str, Any]] = json_field("accelerators", omitempty=True, factory=list)
    custom_metrics: dict[str, list[Any]] = json_field("custom_metrics", omitempty=True, factory=dict)
    perf_stats: list[dict[str, Any]] = json_field("perf_stats", omitempty=True, factory=list)
    perf_uncore_stats: list[dict[str, Any]] = json_field("perf_uncore_stats", omitempty=True, factory=list)
    referenced_memory: int = json_field("referenced_memory", omitempty=True)
    resctrl: ResctrlStats = json_field("resctrl", omitempty=True, factory=ResctrlStats)


@dataclass(slots=True)
class ContainerInfoV2:
    spec: ContainerSpecV2 = json_field("spec", omitempty=True, factory=ContainerSpecV2)
    stats: list[ContainerStatsV2] = json_field("stats", omitempty=True, factory=list)


@dataclass(slots=True)
class FsInfoV2:
    timestamp: float = json_time("timestamp")
    device: str = json_field("device", "")
    mountpoint: str = json_field("mountpoint", "")
    capacity: int = json_field("capacity")
    available: int = json_field("available")
    usage: int = json_field("usage")
    labels: list[str] = json_field("labels", factory=list)
    inodes: int | None = json_field("inodes", omitempty=True, pointer=True)
    inodes_free: int | None = json_field("inodes_free", omitempty=True, pointer=True)


@dataclass(frozen=True, slots=True)
class RequestOptions:  # info/v2
    id_type: str = "name"  # "name" or "docker"
    count: int = 64  # -1: all
    recursive: bool = False
    max_age: float | None = None  # seconds; None: the cache; 0: collect now
