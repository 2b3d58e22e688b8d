"""info/v1 → info/v2, as cAdvisor's info/v2/conversion.go: the v2 shapes are derived from v1
samples, never collected directly."""

from __future__ import annotations

import dataclasses

from tracer.stats.model import (
    ContainerSpec,
    ContainerSpecV2,
    ContainerStats,
    ContainerStatsV2,
    CpuInstStats,
    CpuInstUsage,
    FilesystemStatsV2,
    NetworkStatsV2,
)


def spec_v2(spec: ContainerSpec, aliases: list[str], namespace: str) -> ContainerSpecV2:
    fields = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}
    return ContainerSpecV2(**fields, aliases=aliases, namespace=namespace)


def cpu_inst(prev: ContainerStats | None, cur: ContainerStats) -> CpuInstStats | None:
    """CPU use between two samples in nanocores (CPU-ns per second), as cAdvisor's InstCpuStats:
    None when there is no earlier sample, time went backwards or a counter decreased."""
    if prev is None or prev.cpu is None or cur.cpu is None:
        return None
    dt = cur.timestamp - prev.timestamp
    a, b = prev.cpu.usage, cur.cpu.usage
    if dt <= 0 or b.total < a.total or b.user < a.user or b.system < a.system:
        return None
    per_cpu = []
    if len(a.per_cpu) == len(b.per_cpu):
        per_cpu = [int((y - x) / dt) if y >= x else 0 for x, y in zip(a.per_cpu, b.per_cpu, strict=True)]
    return CpuInstStats(CpuInstUsage(int((b.total - a.total) / dt), per_cpu, int((b.user - a.user) / dt),
                                     int((b.system - a.system) / dt)))


def stats_v2(spec: ContainerSpec, prev: ContainerStats | None, cur: ContainerStats) -> ContainerStatsV2:
    """info/v2 from v1, as cAdvisor's ContainerStatsFromV1: a part only where the spec has it."""
    out = ContainerStatsV2(timestamp=cur.timestamp)
    if spec.has_cpu:
        out.cpu = cur.cpu
        out.cpu_inst = cpu_inst(prev, cur)
    if spec.has_memory:
        out.memory = cur.memory
    if spec.has_diskio:
        out.diskio = cur.diskio
    if spec.has_hugetlb:
        out.hugetlb = cur.hugetlb
    if spec.has_processes:
        out.processes = cur.processes
    if spec.has_network and cur.network is not None:
        out.network = NetworkStatsV2(cur.network.interfaces)
    if spec.has_filesystem and len(cur.filesystem) == 1:
        # cAdvisor's rule: one filesystem or none (a container on several, or the root on more
        # than one device, gets no v2 filesystem stats), and its inode "usage" is FsStats.Inodes:
        # for a container the inodes its layer uses, for the root the filesystem's inode count.
        only = cur.filesystem[0]
        out.filesystem = FilesystemStatsV2(only.usage, only.base_usage, only.inodes)
    return out

