"""The shapes only cAdvisor's REST API v2.0 serves (info/v2): Attributes, the deprecated
per-sample stats of /api/v2.0/stats, and the derived usage of /api/v2.0/summary."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tracer.stats.model._json import json_field, json_time
from tracer.stats.model.v1 import (
    CpuStats,
    DiskInfo,
    DiskIoStats,
    FsInfo,
    FsStats,
    HugePagesInfo,
    HugetlbStats,
    LoadStats,
    MemoryStats,
    NetInfo,
    Node,
    ProcessStats,
    ResctrlStats,
)
from tracer.stats.model.v2 import CpuInstStats, NetworkStatsV2


@dataclass(slots=True)
class Attributes:
    kernel_version: str = json_field("kernel_version", "")
    container_os_version: str = json_field("container_os_version", "")
    docker_version: str = json_field("docker_version", "")
    docker_api_version: str = json_field("docker_api_version", "")
    cadvisor_version: str = json_field("cadvisor_version", "")
    num_cores: int = json_field("num_cores")
    cpu_frequency_khz: int = json_field("cpu_frequency_khz")
    memory_capacity: int = json_field("memory_capacity")
    machine_id: str = json_field("machine_id", "")
    system_uuid: str = json_field("system_uuid", "")
    hugepages: list[HugePagesInfo] = json_field("hugepages", factory=list)
    filesystems: list[FsInfo] = json_field("filesystems", factory=list)
    disk_map: dict[str, DiskInfo] = json_field("disk_map", factory=dict)
    network_devices: list[NetInfo] = json_field("network_devices", factory=list)
    topology: list[Node] = json_field("topology", factory=list)
    cloud_provider: str = json_field("cloud_provider", "Unknown")
    instance_type: str = json_field("instance_type", "Unknown")


@dataclass(slots=True)
class DeprecatedContainerStats:  # /api/v2.0/stats: each part by value, with its has_ flag
    timestamp: float = json_time("timestamp")
    has_cpu: bool = json_field("has_cpu", False)
    cpu: CpuStats = json_field("cpu", omitempty=True, factory=CpuStats)
    cpu_inst: CpuInstStats | None = json_field("cpu_inst", omitempty=True, pointer=True)
    has_diskio: bool = json_field("has_diskio", False)
    diskio: DiskIoStats = json_field("diskio", omitempty=True, factory=DiskIoStats)
    has_memory: bool = json_field("has_memory", False)
    memory: MemoryStats = json_field("memory", omitempty=True, factory=MemoryStats)
    has_hugetlb: bool = json_field("has_hugetlb", False)
    hugetlb: dict[str, HugetlbStats] = json_field("hugetlb", omitempty=True, factory=dict)
    has_network: bool = json_field("has_network", False)
    network: NetworkStatsV2 = json_field("network", omitempty=True, factory=NetworkStatsV2)
    has_processes: bool = json_field("has_processes", False)
    processes: ProcessStats = json_field("processes", omitempty=True, factory=ProcessStats)
    has_filesystem: bool = json_field("has_filesystem", False)
    filesystem: list[FsStats] = json_field("filesystem", omitempty=True, factory=list)
    has_load: bool = json_field("has_load", False)
    load_stats: LoadStats = json_field("load_stats", omitempty=True, factory=LoadStats)
    has_custom_metrics: bool = json_field("has_custom_metrics", False)
    custom_metrics: dict[str, list[Any]] = json_field("custom_metrics", omitempty=True, factory=dict)
    perf_stats: list[dict[str, Any]] = json_field("perf_stats", omitempty=True, factory=list)
    perf_uncore_stats: list[dict[str, Any]] = json_field("perf_uncore_stats", omitempty=True, factory=list)
    referenced_memory: int = json_field("referenced_memory", omitempty=True)
    resctrl: ResctrlStats = json_field("resctrl", omitempty=True, factory=ResctrlStats)


@dataclass(slots=True)
class Percentiles:
    present: bool = json_field("present", False)
    mean: int = json_field("mean")
    std: int = json_field("std")
    max: int = json_field("max")
    fifty: int = json_field("fifty")
    ninety: int = json_field("ninety")
    ninetyfive: int = json_field("ninetyfive")
    count: int = json_field("count")


@dataclass(slots=True)
class Usage:
    percent_complete: int = json_field("percent_complete")  # how much of the window has data, 0-100
    cpu: Percentiles = json_field("cpu", factory=Percentiles)  # millicores
    memory: Percentiles = json_field("memory", factory=Percentiles)  # bytes


@dataclass(slots=True)
class InstantUsage:
    cpu: int = json_field("cpu")  # millicores
    memory: int = json_field("memory")  # bytes


@dataclass(slots=True)
class DerivedStats:
    timestamp: float = json_time("timestamp")
    latest_usage: InstantUsage = json_field("latest_usage", factory=InstantUsage)
    minute_usage: Usage = json_field("minute_usage", factory=Usage)
    hour_usage: Usage = json_field("hour_usage", factory=Usage)
    day_usage: Usage = json_field("day_usage", factory=Usage)
