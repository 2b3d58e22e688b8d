"""Container stats as stream records (`run --stats`): one flat `container_stats` map per
container per sweep, queued by the housekeeping thread and drained by the engine's loop."""

from __future__ import annotations

import queue
from collections.abc import Iterator

from tracer.stats.conversion import cpu_inst
from tracer.stats.manager import Manager
from tracer.stats.model import ContainerStats


def stats_record(name: str, previous: ContainerStats | None, stats: ContainerStats, limit: int) -> dict:
    rec: dict = {"type": "container_stats", "time": round(stats.timestamp, 6), "cgroup": name}
    if stats.cpu is not None:
        usage, cfs = stats.cpu.usage, stats.cpu.cfs
        inst = cpu_inst(previous, stats)
        rec.update(cpu_usage_ns=usage.total, cpu_user_ns=usage.user, cpu_system_ns=usage.system,
                   cpu_nanocores=inst.usage.total if inst else None, cpu_periods=cfs.periods,
                   cpu_throttled_periods=cfs.throttled_periods, cpu_throttled_ns=cfs.throttled_time)
    if stats.memory is not None:
        m = stats.memory
        rec.update(memory_usage=m.usage, memory_working_set=m.working_set, memory_rss=m.rss,
                   memory_cache=m.cache, memory_swap=m.swap, memory_limit=limit or None,
                   memory_failcnt=m.failcnt, memory_pgmajfault=m.container_data.pgmajfault,
                   oom_kills=m.events.oom_kill)
    if stats.processes is not None:
        rec.update(pids=stats.processes.threads_current, pids_limit=stats.processes.threads_max or None)
    return rec


class StatsFeed:
    """Turns each sweep of MANAGER into records; the engine takes them with drain()."""

    def __init__(self, manager: Manager, max_pending: int = 100_000) -> None:
        self.manager = manager
        self.dropped = 0
        self._queue: queue.Queue[dict] = queue.Queue(max_pending)
        manager.on_sweep(self._on_sweep)

    def _on_sweep(self, now: float, changes: dict) -> None:
        for name, (previous, stats) in changes.items():
            limit = self.manager.memory_limit(name)
            try:
                self._queue.put_nowait(stats_record(name, previous, stats, limit))
            except queue.Full:  # the engine is not draining: count, never block housekeeping
                self.dropped += 1

    def drain(self) -> Iterator[dict]:
        while True:
            try:
                yield self._queue.get_nowait()
            except queue.Empty:
                return
