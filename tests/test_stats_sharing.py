"""Empty parts of samples are one shared instance (tracer/stats/sharing.py): the history holds
them once, and the JSON is the same as with parts of their own."""

from __future__ import annotations

import copy

from tracer.stats.model import ContainerStats, CpuStats, MemoryStats, NetworkStats, to_json
from tracer.stats.sharing import share_empty


def _sample() -> ContainerStats:
    return ContainerStats(timestamp=1.0, cpu=CpuStats(), memory=MemoryStats(usage=5), network=NetworkStats())


def test_empty_parts_are_shared_and_the_json_is_unchanged():
    a, b = _sample(), _sample()
    before = to_json(copy.deepcopy(a))
    share_empty(a)
    share_empty(b)
    for part in (lambda s: s.task_stats, lambda s: s.cpu.psi, lambda s: s.memory.psi,
                 lambda s: s.memory.container_data.numa_stats, lambda s: s.network.tcp_advanced,
                 lambda s: s.network.udp6, lambda s: s.resctrl, lambda s: s.health):
        assert part(a) is part(b)
    assert a.perf_stats == () and a.filesystem == ()
    assert to_json(a) == before


def test_parts_that_hold_something_keep_their_own():
    a, b = _sample(), _sample()
    a.cpu.psi.some.total = 7
    a.memory.container_data.numa_stats.anon[0] = 3
    share_empty(a)
    share_empty(b)
    assert a.cpu.psi is not b.cpu.psi and a.cpu.psi.some.total == 7
    assert a.memory.container_data.numa_stats.anon == {0: 3}
    assert b.cpu.psi.some.total == 0  # the shared empty one was not touched
