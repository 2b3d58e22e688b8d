"""cgroup v1 readers on a real tree captured from this project's test host (Linux 6.18, cpu,
cpuacct, cpuset, memory, pids and blkio on v1, hugetlb on v2) by scripts/capture_cgroup_v1.py:
tests/fixtures/cgroup-v1-6.18, provenance in tests/fixtures/README.md. No root needed.

Every expected value is worked out here from the fixture's files, the way the kernel documents
them, not taken from the code under test."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracer.stats.cgroups import ContainerGone, DeviceNames, Layout, StatsOptions, read_spec, read_stats
from tracer.stats.manager import Manager, ManagerConfig
from tracer.stats.model import RequestOptions, to_json

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "cgroup-v1-6.18"
CGROUP = FIXTURE / "sys" / "fs" / "cgroup"
V1 = ("cpu", "cpuacct", "cpuset", "memory", "pids", "blkio")
MiB = 1 << 20
USER_HZ = 100  # cpuacct.stat counts USER_HZ ticks, 100 per second on every Linux architecture
# "No limit" on v1: PAGE_COUNTER_MAX (LONG_MAX / PAGE_SIZE) pages of 4 KiB, in bytes.
V1_NO_LIMIT = (2**63 - 1) // 4096 * 4096
UNLIMITED = 2**64 - 1  # what the readers report for "no limit", as cAdvisor (MaxUint64)


def _only(pattern: str) -> str:
    (found,) = (CGROUP / "memory").glob(pattern)
    return "/" + found.name


WORK = _only("oomtrace-capture-workload-*")  # the names carry a random suffix: see capture-info.txt
OOMED = _only("oomtrace-capture-oom-*")


def text(controller: str, name: str, file: str) -> str:
    return (CGROUP / controller / name.lstrip("/") / file).read_text()


def num(controller: str, name: str, file: str) -> int:
    return int(text(controller, name, file))


def pairs(controller: str, name: str, file: str) -> dict[str, int]:
    """'key value' lines (memory.stat, cpu.stat, cpuacct.stat, memory.oom_control)."""
    return {k: int(v) for k, v in (line.split() for line in text(controller, name, file).splitlines())}


def blkio(name: str, file: str) -> dict[tuple[int, int], dict[str, int]]:
    """'MAJ:MIN Op value' lines; the closing 'Total N' line is not a device's."""
    out: dict[tuple[int, int], dict[str, int]] = {}
    for line in text("blkio", name, file).splitlines():
        dev, *rest = line.split()
        if ":" in dev:
            major, minor = dev.split(":")
            out.setdefault((int(major), int(minor)), {})[rest[0]] = int(rest[1])
    return out


@pytest.fixture(scope="module")
def layout() -> Layout:
    return Layout.detect(FIXTURE / "proc", root=str(FIXTURE))


@pytest.fixture(scope="module")
def devices() -> DeviceNames:
    return DeviceNames(str(FIXTURE / "sys"))


def test_layout_from_the_captured_mountinfo(layout):
    """Every cgroup mount of proc/self/mountinfo, with the controllers its super options name."""
    expected = {}
    for line in (FIXTURE / "proc/self/mountinfo").read_text().splitlines():
        fields, _, tail = line.partition(" - ")
        fstype, _, options = tail.split()
        point = fields.split()[4]
        if fstype == "cgroup":
            for option in options.split(","):
                if option in V1:
                    expected[option] = (1, str(FIXTURE) + point)
        elif fstype == "cgroup2":
            enabled = (FIXTURE / point.lstrip("/") / "cgroup.controllers").read_text().split()
            assert enabled == ["hugetlb"]
            expected["hugetlb"] = (2, str(FIXTURE) + point)
    assert set(expected) == {*V1, "hugetlb"}
    assert layout.controllers == expected
    assert {"/", WORK, OOMED} <= layout.names()


def test_workload_spec(layout):
    spec = read_spec(layout.dirs(WORK))
    assert spec.memory.limit == num("memory", WORK, "memory.limit_in_bytes") == 200 * MiB
    assert num("memory", WORK, "memory.soft_limit_in_bytes") == V1_NO_LIMIT
    assert num("memory", WORK, "memory.memsw.limit_in_bytes") == V1_NO_LIMIT
    assert spec.memory.reservation == spec.memory.swap_limit == V1_NO_LIMIT  # raw, as cAdvisor reads v1
    assert spec.cpu.limit == num("cpu", WORK, "cpu.shares") == 512
    assert (spec.cpu.quota, spec.cpu.period) == (num("cpu", WORK, "cpu.cfs_quota_us"),
                                                 num("cpu", WORK, "cpu.cfs_period_us")) == (50000, 100000)
    assert spec.cpu.mask == text("cpuset", WORK, "cpuset.cpus").strip() == "1"
    assert spec.processes.limit == num("pids", WORK, "pids.max") == 100
    assert spec.has_cpu and spec.has_memory and spec.has_processes and spec.has_diskio
    assert not spec.has_hugetlb  # hugetlb is on v2 here, and the capture made no v2 cgroup
    assert not spec.has_network and not spec.has_filesystem  # only the root has those


def test_unlimited_values_of_the_oom_sibling(layout, devices):
    spec = read_spec(layout.dirs(OOMED))
    assert spec.memory.limit == num("memory", OOMED, "memory.limit_in_bytes") == 32 * MiB
    assert num("cpu", OOMED, "cpu.cfs_quota_us") == -1 and spec.cpu.quota == 0  # -1: no quota
    assert spec.cpu.limit == num("cpu", OOMED, "cpu.shares") == 1024
    assert text("pids", OOMED, "pids.max").strip() == "max" and spec.processes.limit == UNLIMITED
    # The stats' threads_max is runc's pids limit, which cAdvisor reports: 0 for "max".
    assert read_stats(layout.dirs(OOMED), 1.0, devices).processes.threads_max == 0


def test_workload_cpu(layout, devices):
    cpu = read_stats(layout.dirs(WORK), 1.0, devices).cpu
    total = num("cpuacct", WORK, "cpuacct.usage")
    per_cpu = [int(v) for v in text("cpuacct", WORK, "cpuacct.usage_percpu").split()]
    assert cpu.usage.total == total and cpu.usage.per_cpu == per_cpu
    assert len(per_cpu) == 2 and sum(per_cpu) == total  # the capture host has 2 CPUs ...
    assert per_cpu[0] == 0 and per_cpu[1] > 1e9  # ... and cpuset.cpus "1" kept all of it on CPU 1
    ticks = pairs("cpuacct", WORK, "cpuacct.stat")
    assert cpu.usage.user == ticks["user"] * (10**9 // USER_HZ)
    assert cpu.usage.system == ticks["system"] * (10**9 // USER_HZ)
    # Ticks and the nanosecond counters measure the same time, to within a few ticks.
    assert abs(cpu.usage.user - num("cpuacct", WORK, "cpuacct.usage_user")) < 0.1 * total
    cfs = pairs("cpu", WORK, "cpu.stat")
    assert (cpu.cfs.periods, cpu.cfs.throttled_periods, cpu.cfs.throttled_time) == (
        cfs["nr_periods"], cfs["nr_throttled"], cfs["throttled_time"])  # v1 throttled_time is in ns
    assert cfs["nr_throttled"] > 0 and cfs["throttled_time"] > 0  # two burners under half a CPU
    no_per_cpu = read_stats(layout.dirs(WORK), 1.0, devices, StatsOptions(per_cpu=False)).cpu
    assert no_per_cpu.usage.per_cpu == [] and no_per_cpu.usage.total == total


def test_workload_memory(layout, devices):
    stats = read_stats(layout.dirs(WORK), 1.0, devices)
    mem = stats.memory
    st = pairs("memory", WORK, "memory.stat")
    usage = num("memory", WORK, "memory.usage_in_bytes")
    assert mem.usage == usage and mem.max_usage == num("memory", WORK, "memory.max_usage_in_bytes")
    assert mem.working_set == usage - st["total_inactive_file"]
    assert (mem.rss, mem.cache, mem.swap, mem.mapped_file) == (
        st["total_rss"], st["total_cache"], st["total_swap"], st["total_mapped_file"])
    assert (mem.total_active_file, mem.total_inactive_file) == (st["total_active_file"], st["total_inactive_file"])
    assert mem.container_data.pgfault == st["total_pgfault"] and mem.container_data.pgmajfault == st["total_pgmajfault"]
    assert mem.kernel_usage == num("memory", WORK, "memory.kmem.usage_in_bytes")
    assert mem.failcnt == num("memory", WORK, "memory.failcnt") == 0  # it never reached its limit
    assert mem.events.oom_kill == pairs("memory", WORK, "memory.oom_control")["oom_kill"] == 0
    assert stats.oom_events == 0
    # The known load: 100 MiB of touched anonymous memory, a 50 MiB file read back into the page cache.
    assert 100 * MiB <= mem.rss < 120 * MiB and 45 * MiB <= mem.cache <= 51 * MiB
    assert mem.working_set < mem.usage - 45 * MiB  # the file's pages are inactive: not working set


def test_oom_killed_sibling(layout, devices):
    stats = read_stats(layout.dirs(OOMED), 1.0, devices)
    oom = pairs("memory", OOMED, "memory.oom_control")
    assert oom == {"oom_kill_disable": 0, "under_oom": 0, "oom_kill": 1}
    assert stats.memory.events.oom_kill == stats.oom_events == 1
    assert stats.memory.failcnt == num("memory", OOMED, "memory.failcnt") > 0
    assert stats.memory.max_usage == num("memory", OOMED, "memory.max_usage_in_bytes") == 32 * MiB
    assert stats.memory.usage == num("memory", OOMED, "memory.usage_in_bytes") < 1 * MiB  # the victim is gone
    assert stats.processes.process_count == 0 and text("cpu", OOMED, "cgroup.procs") == ""
    assert stats.processes.threads_current == num("pids", OOMED, "pids.current") == 0


def test_workload_processes(layout, devices):
    procs = read_stats(layout.dirs(WORK), 1.0, devices).processes
    members = text("cpu", WORK, "cgroup.procs").split()
    assert procs.process_count == len(members) == 1
    assert (procs.threads_current, procs.threads_max) == (num("pids", WORK, "pids.current"),
                                                          num("pids", WORK, "pids.max")) == (1, 100)
    assert num("pids", WORK, "pids.peak") >= 3  # the workload and its two CPU burners
    # The workload's own /proc/<pid>/cgroup names the same cgroup in every v1 hierarchy.
    own = (FIXTURE / "proc" / members[0] / "cgroup").read_text().splitlines()
    paths = {ctrls: path for _, ctrls, path in (line.split(":", 2) for line in own)}
    assert {paths[c] for c in V1} == {WORK}


def test_workload_blkio(layout, devices):
    diskio = read_stats(layout.dirs(WORK), 1.0, devices).diskio
    uevent = dict(line.split("=", 1) for line in (FIXTURE / "sys/dev/block/254:0/uevent").read_text().split())
    for attr, file in (("io_service_bytes", "blkio.throttle.io_service_bytes_recursive"),
                       ("io_serviced", "blkio.throttle.io_serviced_recursive")):
        expected = blkio(WORK, file)
        assert list(expected) == [(254, 0)]  # the root disk, /dev/vda
        (disk,) = getattr(diskio, attr)
        assert (disk.device, disk.major, disk.minor) == ("/dev/" + uevent["DEVNAME"], 254, 0)
        assert disk.stats == expected[(254, 0)]
    (service_bytes,) = diskio.io_service_bytes
    assert service_bytes.stats["Read"] >= 50 * MiB and service_bytes.stats["Write"] >= 50 * MiB  # the file
    assert blkio(OOMED, "blkio.throttle.io_service_bytes_recursive") == {}  # only "Total 0"
    assert read_stats(layout.dirs(OOMED), 1.0, devices).diskio.io_service_bytes == []


def test_root_of_every_hierarchy(layout, devices):
    stats = read_stats(layout.dirs("/"), 1.0, devices)
    assert stats.cpu.usage.total == num("cpuacct", "/", "cpuacct.usage")
    assert stats.memory.usage == num("memory", "/", "memory.usage_in_bytes")
    st = pairs("memory", "/", "memory.stat")
    assert stats.memory.working_set == max(stats.memory.usage - st["total_inactive_file"], 0)
    assert read_spec(layout.dirs("/")).memory.limit == V1_NO_LIMIT  # the root has no limit: the kernel's figure


def test_a_missing_cgroup_is_gone(layout, devices):
    with pytest.raises(ContainerGone):
        read_stats(layout.dirs(WORK + "/nope"), 1.0, devices)
    with pytest.raises(ContainerGone):
        read_spec(layout.dirs("/nope"))


def test_manager_over_the_v1_tree(layout):
    m = Manager(ManagerConfig(network=False), layout=layout)
    m.start(background=False)
    try:
        info = m.container_info_v2("/", RequestOptions(recursive=True, count=1))
        assert {WORK, OOMED} <= set(info)
        work = info[WORK]
        assert work.spec.namespace == "" and work.spec.aliases == []  # no runtime's naming
        doc = to_json(work)
        assert doc["spec"]["memory"]["limit"] == 200 * MiB and doc["spec"]["cpu"]["limit"] == 512
        assert doc["stats"][0]["memory"]["working_set"] == work.stats[0].memory.working_set
        assert info[OOMED].stats[0].memory.failcnt == num("memory", OOMED, "memory.failcnt")
    finally:
        m.stop()
