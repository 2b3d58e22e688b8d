"""cgroup v2 readers on real file trees captured from Debian 12 (6.1) and 13 (6.12) kernels
(tests/fixtures, provenance in its README): this machine has no v2 controllers, and the
VM suite runs the same readers on those kernels for real."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracer.stats.cgroups import ContainerGone, Layout, read_spec, read_stats
from tracer.stats.manager import Manager, ManagerConfig
from tracer.stats.model import RequestOptions, to_json

FIXTURES = Path(__file__).resolve().parent / "fixtures"
POD = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0a1b2c3d_4e5f_6789_abcd_ef0123456789.slice"
LEAF = POD + "/cri-containerd-32a574834001b70cb986f9512f63f7a915756163f5bce0d64d17122369108c7a.scope"
OOMED = POD + "/cri-containerd-6c9b9923093b0bb26dd49c0930b9d442e37c316c81a34401ea1a3578252ef805.scope"

# The README's table of key values at capture.
EXPECTED = {
    "cgroup-v2-debian12-6.1": dict(current=161878016, peak=164057088, anon=108806144, file=52641792,
                                   rbytes=52641792, rios=92, wios=45, usage_usec=3624846, periods=74, throttled=71,
                                   throttled_usec=8426682, oom_max=35, oom_current=28672),
    "cgroup-v2-debian13-6.12": dict(current=161906688, peak=164052992, anon=108957696, file=52510720,
                                    rbytes=52510720, rios=73, wios=44, usage_usec=3648768, periods=75, throttled=72,
                                    throttled_usec=8524261, oom_max=38, oom_current=32768),
}


def _devices(major, minor):
    return f"dev{major}:{minor}"


@pytest.fixture(params=sorted(EXPECTED))
def tree(request):
    root = FIXTURES / request.param
    return request.param, Layout.unified(str(root / "sys/fs/cgroup"))


def test_layout_puts_every_controller_on_v2(tree):
    _, layout = tree
    assert {c: v for c, (v, _) in layout.controllers.items()} == {
        "cpu": 2, "cpuacct": 2, "cpuset": 2, "memory": 2, "pids": 2, "blkio": 2, "hugetlb": 2}
    assert {"/", POD, LEAF, OOMED} <= layout.names()


def test_workload_leaf_spec(tree):
    _, layout = tree
    spec = read_spec(layout.dirs(LEAF))
    assert (spec.memory.limit, spec.cpu.quota, spec.cpu.period, spec.processes.limit) == (
        209715200, 50000, 100000, 100)
    assert spec.cpu.limit == 2 + (100 - 1) * 262142 // 9999  # cpu.weight 100 → 1024-ish shares, as cAdvisor
    assert spec.has_cpu and spec.has_memory and spec.has_diskio and spec.has_processes and spec.has_hugetlb


def test_workload_leaf_stats(tree):
    name, layout = tree
    want = EXPECTED[name]
    stats = read_stats(layout.dirs(LEAF), 1.0, _devices)
    mem = stats.memory
    assert (mem.usage, mem.max_usage, mem.rss, mem.cache) == (want["current"], want["peak"], want["anon"],
                                                               want["file"])
    assert mem.working_set == mem.usage - mem.total_inactive_file
    cpu = stats.cpu
    assert cpu.usage.total == want["usage_usec"] * 1000 and cpu.usage.per_cpu == []  # v2 has no per-CPU figures
    assert (cpu.cfs.periods, cpu.cfs.throttled_periods, cpu.cfs.throttled_time) == (
        want["periods"], want["throttled"], want["throttled_usec"] * 1000)
    assert cpu.psi.some.total > 0 and cpu.psi.some.avg10 > 0
    (disk,) = stats.diskio.io_service_bytes
    assert (disk.device, disk.major, disk.minor) == ("dev254:0", 254, 0)
    assert disk.stats["Read"] == want["rbytes"] and disk.stats["Write"] == 52428800
    assert stats.diskio.io_serviced[0].stats["Read"] == want["rios"]
    assert stats.diskio.io_serviced[0].stats["Write"] == want["wios"]
    assert stats.processes.process_count == 1 and stats.processes.threads_current == 1
    assert stats.processes.threads_max == 100
    assert "2MB" in stats.hugetlb


def test_oom_killed_leaf_reports_its_oom(tree):
    name, layout = tree
    stats = read_stats(layout.dirs(OOMED), 1.0, _devices)
    ev = stats.memory.events
    assert (ev.max, ev.oom, ev.oom_kill) == (EXPECTED[name]["oom_max"], 1, 1)
    assert stats.oom_events == 1
    assert stats.memory.usage == EXPECTED[name]["oom_current"] and stats.memory.max_usage == 33554432
    assert stats.processes.process_count == 0


def test_root_usage_comes_from_memory_stat(tree):
    _, layout = tree
    stats = read_stats(layout.dirs("/"), 1.0, _devices)
    root = layout.dirs("/").present()["memory"]
    lines = dict(line.split() for line in Path(root, "memory.stat").read_text().splitlines())
    assert stats.memory.usage == int(lines["anon"]) + int(lines["file"])


def test_a_missing_cgroup_is_gone(tree):
    _, layout = tree
    with pytest.raises(ContainerGone):
        read_stats(layout.dirs(POD + "/nope.scope"), 1.0, _devices)


def test_manager_over_a_fixture_tree(tree):
    """The Interface on a v2 tree: names, aliases, pod labels, info/v2 JSON with cAdvisor's names."""
    _, layout = tree
    m = Manager(ManagerConfig(network=False), layout=layout)
    m.start(background=False)
    info = m.container_info_v2(POD, RequestOptions(recursive=True, count=1))
    assert set(info) == {POD, LEAF, OOMED}
    leaf = info[LEAF]
    assert leaf.spec.namespace == "containerd" and leaf.spec.aliases[1] == "32a574834001"
    assert leaf.spec.labels["io.kubernetes.pod.uid"] == "0a1b2c3d-4e5f-6789-abcd-ef0123456789"
    assert leaf.spec.labels["qos_class"] == "burstable"
    doc = to_json(leaf)
    assert doc["spec"]["memory"]["limit"] == 209715200 and doc["spec"]["has_cpu"] is True
    assert doc["stats"][0]["memory"]["working_set"] == leaf.stats[0].memory.working_set
    assert "cpu_inst" not in doc["stats"][0]  # one sample: no rate yet
    m.stop()
