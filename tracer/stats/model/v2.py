"""cAdvisor's info/v2: derived from info/v1 (stats.conversion), never collected directly."""

from __future__ import annotations

from dataclasses import dataclass

from tracer.stats.model._json import json_field, json_time
from tracer.stats.model.v1 import (
    ContainerSpec,
    CpuStats,
    DiskIoStats,
    HugetlbStats,
    InterfaceStats,
    MemoryStats,
    ProcessStats,
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


@dataclass(slots=True)
class FilesystemStatsV2:
    total_usage_bytes: int | None = json_field("totalUsageBytes", None, omitempty=True)
    base_usage_bytes: int | None = json_field("baseUsageBytes", None, omitempty=True)
    inode_usage: int | None = json_field("containter_inode_usage", None, omitempty=True)  # sic, as cAdvisor


@dataclass(slots=True)
class ContainerStatsV2:
    timestamp: float = json_time("timestamp")
    cpu: CpuStats | None = json_field("cpu", None, omitempty=True)
    cpu_inst: CpuInstStats | None = json_field("cpu_inst", None, omitempty=True)
    diskio: DiskIoStats | None = json_field("diskio", None, omitempty=True)
    memory: MemoryStats | None = json_field("memory", None, omitempty=True)
    hugetlb: dict[str, HugetlbStats] | None = json_field("hugetlb", None, omitempty=True)
    network: NetworkStatsV2 | None = json_field("network", None, omitempty=True)
    processes: ProcessStats | None = json_field("processes", None, omitempty=True)
    filesystem: FilesystemStatsV2 | None = json_field("filesystem", None, omitempty=True)


@dataclass(slots=True)
class ContainerInfoV2:
    spec: ContainerSpecV2 = json_field("spec", factory=ContainerSpecV2)
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
    inodes: int | None = json_field("inodes", None, omitempty=True)
    inodes_free: int | None = json_field("inodes_free", None, omitempty=True)


@dataclass(frozen=True, slots=True)
class RequestOptions:  # info/v2
    id_type: str = "name"  # "name" or "docker"
    count: int = 64  # -1: all
    recursive: bool = False
    max_age: float | None = None  # seconds; None: the cache; 0: collect now
