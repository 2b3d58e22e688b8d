"""Parts of a sample that hold nothing (a collector that is off, no PSI on v1, the socket
counts cAdvisor writes as zeros) replaced by one shared instance, never changed after: the
history of 1,000 containers × 13 samples holds each empty part once, not 13,000 times
(scripts/bench_stats.py prints the history's memory). Samples are read, never written, once
the sweep has made them."""

from __future__ import annotations

from typing import Any

from tracer.stats.model import (
    ContainerStats,
    CpuSchedstat,
    CPUSetStats,
    Health,
    LoadStats,
    MemoryNumaStats,
    PSIStats,
    ResctrlStats,
    TcpAdvancedStat,
    TcpStat,
    UdpStat,
)

_EMPTY: dict[type, Any] = {t: t() for t in (LoadStats, ResctrlStats, CPUSetStats, Health, PSIStats, CpuSchedstat,
                                            MemoryNumaStats, TcpStat, UdpStat, TcpAdvancedStat)}
_NONE: tuple = ()  # the one empty tuple: an empty list's stand-in that cannot be appended to


def share_empty(stats: ContainerStats) -> ContainerStats:
    for name in ("task_stats", "resctrl", "cpuset", "health"):
        _swap(stats, name)
    for name in ("accelerators", "perf_stats", "perf_uncore_stats", "filesystem"):
        if not getattr(stats, name):
            setattr(stats, name, _NONE)
    if stats.cpu is not None:
        _swap(stats.cpu, "psi")
        _swap(stats.cpu, "schedstat")
    if stats.memory is not None:
        _swap(stats.memory, "psi")
        _swap(stats.memory.container_data, "numa_stats")
        _swap(stats.memory.hierarchical_data, "numa_stats")
    if stats.diskio is not None:
        _swap(stats.diskio, "psi")
    if stats.network is not None:
        for name in ("tcp", "tcp6", "udp", "udp6", "tcp_advanced"):
            _swap(stats.network, name)
    return stats


def _swap(obj: Any, name: str) -> None:
    value = getattr(obj, name)
    empty = _EMPTY.get(type(value))
    if empty is not None and value is not empty and value == empty:
        setattr(obj, name, empty)
