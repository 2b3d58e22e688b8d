"""cAdvisor master's fields (memory.stat's file_dirty … workingset_refault_*, numa_stats,
cpuset.memory_migrate) and pids.max "max" in the spec: on the v2 trees captured from Debian's
kernels (tests/fixtures), and on a real v1 cgroup here, each against the kernel's own files
read by hand."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.cgroups import Cgroup
from tracer.stats.cgroups import UNLIMITED, Layout, StatsOptions, read_spec, read_stats
from tracer.stats.model import to_json

FIXTURES = Path(__file__).resolve().parent / "fixtures"
POD = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0a1b2c3d_4e5f_6789_abcd_ef0123456789.slice"
LEAF = POD + "/cri-containerd-32a574834001b70cb986f9512f63f7a915756163f5bce0d64d17122369108c7a.scope"
OOMED = POD + "/cri-containerd-6c9b9923093b0bb26dd49c0930b9d442e37c316c81a34401ea1a3578252ef805.scope"
MASTER_KEYS = ("file_dirty", "file_writeback", "pgscan", "pgsteal", "workingset_refault_file",
               "workingset_refault_anon")
PAGE = os.sysconf("SC_PAGE_SIZE")
ON = StatsOptions(numa=True, cpuset=True)  # cAdvisor's memory_numa and cpuset metrics; off by default


def _kv(path: Path) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split() for line in path.read_text().splitlines())}


def _devices(major, minor):
    return f"dev{major}:{minor}"


@pytest.mark.parametrize("tree", ["cgroup-v2-debian12-6.1", "cgroup-v2-debian13-6.12"])
def test_v2_memory_stat_keys_and_numa(tree):
    root = FIXTURES / tree / "sys/fs/cgroup"
    d = root / LEAF.lstrip("/")
    layout = Layout.unified(str(root))
    stats = read_stats(layout.dirs(LEAF), 1.0, _devices, ON)
    seen = []
    for name in (LEAF, OOMED):
        st = _kv(root / name.lstrip("/") / "memory.stat")
        got = read_stats(layout.dirs(name), 1.0, _devices).memory
        assert {k: getattr(got, k) for k in MASTER_KEYS} == {k: st[k] for k in MASTER_KEYS}
        seen += [st[k] for k in MASTER_KEYS]
    assert any(seen)  # the OOMed container scanned pages: not a comparison of zeros
    numa = {}
    for line in (d / "memory.numa_stat").read_text().splitlines():
        key, *nodes = line.split()
        numa[key] = {int(n.split("=")[0][1:]): int(n.split("=")[1]) // PAGE for n in nodes}
    got = stats.memory.container_data.numa_stats
    assert (got.file, got.anon, got.unevictable) == (numa["file"], numa["anon"], numa["unevictable"])
    assert sum(got.anon.values()) == _kv(d / "memory.stat")["anon"] // PAGE > 0  # one node: all of it
    assert stats.memory.hierarchical_data.numa_stats == got  # v2 has only the subtree's figures
    assert stats.cpuset.memory_migrate == 0  # v2 has no cpuset.memory_migrate
    off = read_stats(Layout.unified(str(root)).dirs(LEAF), 1.0, _devices)  # off by default, as cAdvisor
    assert not off.memory.container_data.numa_stats.anon
    assert to_json(off.memory)["container_data"]["numa_stats"] == {}  # a struct stays, its empty maps go, as Go's


@pytest.mark.parametrize("tree", ["cgroup-v2-debian12-6.1", "cgroup-v2-debian13-6.12"])
def test_v2_spec_of_a_pids_max_of_max(tree):
    """cAdvisor's readUInt64 gives pids.max "max" as MaxUint64 in the spec (threads_max, from
    runc, is 0 then)."""
    root = FIXTURES / tree / "sys/fs/cgroup"
    assert (root / POD.lstrip("/") / "pids.max").read_text().strip() == "max"
    layout = Layout.unified(str(root))
    assert read_spec(layout.dirs(POD)).processes.limit == UNLIMITED == 2**64 - 1
    assert read_stats(layout.dirs(POD), 1.0, _devices).processes.threads_max == 0


@pytest.mark.root
def test_v1_master_fields_numa_and_memory_migrate():
    layout = Layout.detect()
    if layout.controllers["memory"][0] != 1 or "cpuset" not in layout.controllers:
        pytest.skip("this machine's memory or cpuset controller is not on cgroup v1")
    cg = Cgroup.create("master", layout)
    cpuset = Path(cg.dirs["cpuset"])
    # a child cpuset has no cpus or mems until given some; a process needs both to join
    (cpuset / "cpuset.cpus").write_text((cpuset.parent / "cpuset.cpus").read_text())
    (cpuset / "cpuset.mems").write_text((cpuset.parent / "cpuset.mems").read_text())
    (cpuset / "cpuset.memory_migrate").write_text("1")
    proc = cg.spawn("a = bytearray(32 << 20)\nfor i in range(0, len(a), 4096):\n    a[i] = 1\n"
                    "import time\ntime.sleep(60)\n")
    try:
        time.sleep(1.0)
        stats = read_stats(layout.dirs(cg.name), 1.0, _devices, ON)
        default = read_stats(layout.dirs(cg.name), 1.0, _devices)
        memory = cg.dir
        st = _kv(memory / "memory.stat")
        numa_lines = {line.split()[0].split("=")[0]: line.split()[1:]
                      for line in (memory / "memory.numa_stat").read_text().splitlines()}
        spec = read_spec(layout.dirs(cg.name))
    finally:
        proc.kill()
        proc.wait()
        cg.remove()
    # As cAdvisor master: the keys by their own names; v1 has workingset_refault_* (the cgroup's
    # own, not total_) and no file_dirty/file_writeback/pgscan/pgsteal (it says dirty, writeback).
    assert stats.memory.workingset_refault_file == st["workingset_refault_file"]
    assert stats.memory.workingset_refault_anon == st["workingset_refault_anon"]
    assert (stats.memory.file_dirty, stats.memory.file_writeback, stats.memory.pgscan, stats.memory.pgsteal) == (
        0, 0, 0, 0)

    def nodes(key):
        return {int(n.split("=")[0][1:]): int(n.split("=")[1]) for n in numa_lines[key]}

    own, subtree = stats.memory.container_data.numa_stats, stats.memory.hierarchical_data.numa_stats
    assert own.anon == nodes("anon") and own.file == nodes("file") and own.unevictable == nodes("unevictable")
    assert subtree.anon == nodes("hierarchical_anon") and subtree.file == nodes("hierarchical_file")
    assert sum(own.anon.values()) * PAGE >= 32 << 20  # the bytearray, in pages
    assert stats.cpuset.memory_migrate == 1
    assert default.cpuset.memory_migrate == 0 and not default.memory.container_data.numa_stats.anon
    assert spec.processes.limit == UNLIMITED  # pids.max "max", as cAdvisor's readUInt64
    assert stats.processes.threads_max == 0


def test_v2_filesystem_stats_follow_cadvisors_rule():
    """ContainerStatsFromV1: one filesystem gives totalUsageBytes, baseUsageBytes and, as inode
    "usage", FsStats.Inodes (for the root: the filesystem's inode count); several give none."""
    from tracer.stats.conversion import stats_v2
    from tracer.stats.model import ContainerSpec, ContainerStats, FsStats

    spec = ContainerSpec(has_filesystem=True)
    one = FsStats(device="/dev/vda", limit=100, usage=40, base_usage=3, inodes=1000, inodes_free=900)
    got = stats_v2(spec, None, ContainerStats(timestamp=1.0, filesystem=[one])).filesystem
    assert got is not None and (got.total_usage_bytes, got.base_usage_bytes, got.inode_usage) == (40, 3, 1000)
    assert stats_v2(spec, None, ContainerStats(timestamp=1.0, filesystem=[one, one])).filesystem is None
