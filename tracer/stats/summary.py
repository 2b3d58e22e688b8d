"""Derived usage (/api/v2.0/summary) from a container's history, as cAdvisor's summary
reader derives it: CPU in millicores between consecutive samples, memory as the working set,
mean/std/max/50/90/95th percentiles over the last minute.

The hour and day windows need an hour and a day of history; the Manager keeps two minutes
(cAdvisor's storage_duration), so they report how much of the window is covered and no
figures (present false), rather than a minute's figures passed off as an hour's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from tracer.stats.model import ContainerStats
from tracer.stats.model.rest import DerivedStats, InstantUsage, Percentiles, Usage

MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0


def percentiles(values: Sequence[int]) -> Percentiles:
    if not values:
        return Percentiles()
    ordered = sorted(values)
    n = len(ordered)
    mean = sum(ordered) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in ordered) / n)

    def at(p: float) -> int:  # nearest rank
        return ordered[min(n - 1, max(0, math.ceil(p * n) - 1))]

    return Percentiles(True, int(mean), int(std), ordered[-1], at(0.5), at(0.9), at(0.95), n)


def _millicores(prev: ContainerStats, cur: ContainerStats) -> int | None:
    if prev.cpu is None or cur.cpu is None:
        return None
    dt = cur.timestamp - prev.timestamp
    used = cur.cpu.usage.total - prev.cpu.usage.total
    return int(used / dt / 1e6) if dt > 0 and used >= 0 else None


def _window(history: Sequence[ContainerStats], seconds: float) -> Usage:
    if len(history) < 2:
        return Usage()
    span = history[-1].timestamp - history[0].timestamp
    complete = int(min(100.0, 100.0 * span / seconds))
    if span < seconds * 0.999 and seconds > MINUTE:
        return Usage(percent_complete=complete)
    start = history[-1].timestamp - seconds
    recent = [s for s in history if s.timestamp >= start]
    cpu = [m for a, b in zip(recent, recent[1:]) if (m := _millicores(a, b)) is not None]
    memory = [s.memory.working_set for s in recent if s.memory is not None]
    return Usage(complete, percentiles(cpu), percentiles(memory))


def derive(history: Sequence[ContainerStats], now: float) -> DerivedStats:
    out = DerivedStats(timestamp=now)
    if not history:
        return out
    latest = history[-1]
    cpu = _millicores(history[-2], latest) if len(history) >= 2 else None
    out.latest_usage = InstantUsage(cpu or 0, latest.memory.working_set if latest.memory is not None else 0)
    out.minute_usage = _window(history, MINUTE)
    out.hour_usage = _window(history, HOUR)
    out.day_usage = _window(history, DAY)
    return out
