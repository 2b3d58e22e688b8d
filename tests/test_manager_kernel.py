"""The Interface on this machine's real cgroups (v1 here): a known allocation, a CPU burner
under a CFS quota, a cgroup removed between sweeps, MachineInfo against the system's tools."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pytest

from tests.cgroups import Cgroup
from tracer.stats.cgroups import ContainerGone
from tracer.stats.manager import Manager, ManagerConfig
from tracer.stats.model import ContainerInfoRequest, EventRequest, RequestOptions, to_json

pytestmark = pytest.mark.root
MiB = 1 << 20
# Touches every page of N MiB, says so on stdout, then sleeps.
ALLOC = ("a = bytearray({n} << 20)\nfor i in range(0, len(a), 4096):\n    a[i] = 1\n"
         "import time\ntime.sleep(60)\n")
BURN = "while True:\n    pass\n"


@pytest.fixture
def manager():
    m = Manager(ManagerConfig(housekeeping_interval=0.25, discovery_interval=0.5))
    m.start()
    yield m
    m.stop()


def test_memory_of_a_known_allocation(manager):
    cg = Cgroup.create("mem", memory_limit_in_bytes=str(256 * MiB), pids_max="50")
    proc = cg.spawn(ALLOC.format(n=64))
    try:
        time.sleep(1.0)
        manager.discover()
        manager.sweep([cg.name])
        info = manager.container_info(cg.name, ContainerInfoRequest(num_stats=1))
        mem = info.stats[-1].memory
        assert 64 * MiB <= mem.usage < 64 * MiB + 40 * MiB, mem.usage  # the bytearray plus the interpreter
        assert 64 * MiB <= mem.working_set <= mem.usage
        assert mem.rss >= 64 * MiB
        assert info.spec.memory.limit == 256 * MiB and info.spec.has_memory
        assert info.spec.processes.limit == 50
        assert info.stats[-1].processes.threads_current >= 1
        assert info.reference.name == cg.name
        assert cg.name in [r.name for r in manager.container_info("/").subcontainers]
    finally:
        proc.kill()
        proc.wait()
        cg.remove()


def test_cpu_burner_under_a_cfs_quota(manager):
    cg = Cgroup.create("cpu", cpu_cfs_period_us="100000", cpu_cfs_quota_us="20000")
    proc = cg.spawn(BURN)
    try:
        manager.discover()
        time.sleep(2.5)  # ten sweeps at 0.25 s
        info = manager.container_info_v2(cg.name, RequestOptions(count=-1))[cg.name]
        assert info.spec.cpu.quota == 20000 and info.spec.cpu.period == 100000
        latest = info.stats[-1]
        assert latest.cpu.cfs.throttled_periods > 0 and latest.cpu.cfs.throttled_time > 0
        rates = [s.cpu_inst.usage.total for s in info.stats[2:] if s.cpu_inst is not None]
        assert rates, "no CpuInst computed"
        mean = sum(rates) / len(rates)
        assert 0.14e9 <= mean <= 0.26e9, f"{mean / 1e9:.3f} cores under a 0.2-core quota"
        assert len(latest.cpu.usage.per_cpu) == os.cpu_count()
        assert info.stats[0].cpu_inst is None  # no earlier sample for the first
    finally:
        proc.kill()
        proc.wait()
        cg.remove()


def test_a_removed_cgroup_is_dropped_with_a_deletion_event(manager):
    cg = Cgroup.create("gone")
    manager.discover()
    assert cg.name in manager.names()
    watch = manager.watch_events(EventRequest(container_name=cg.name))
    cg.remove()
    report = manager.sweep()
    assert cg.name in report.gone and cg.name not in manager.names()
    event = watch.get(timeout=2)
    assert event is not None and event.event_type == "containerDeletion" and event.container_name == cg.name
    with pytest.raises(ContainerGone):
        manager.container_info(cg.name)


def test_max_age_zero_collects_now(manager):
    before = manager.container_info("/", ContainerInfoRequest(num_stats=1)).stats[-1].timestamp
    time.sleep(0.05)
    info = manager.get_requested_containers_info("/", RequestOptions(count=1, max_age=0))["/"]
    assert info.stats[-1].timestamp > before


def test_an_unknown_id_type_is_refused(manager):
    with pytest.raises(ValueError, match="invalid request type"):
        manager.get_requested_containers_info("/", RequestOptions(id_type="pod"))


def test_history_is_bounded_by_time():
    m = Manager(ManagerConfig(housekeeping_interval=0.1, history_seconds=0.5))
    m.start()
    try:
        time.sleep(1.5)
        stats = m.container_info("/", ContainerInfoRequest(num_stats=-1)).stats
        assert 2 <= len(stats) <= 6
    finally:
        m.stop()


def test_machine_info_matches_the_system(manager):
    info = manager.machine_info()
    nproc = int(subprocess.run(["nproc", "--all"], capture_output=True, text=True).stdout)
    assert info.num_cores == nproc
    meminfo = open("/proc/meminfo").read()
    assert info.memory_capacity == int(re.search(r"MemTotal:\s+(\d+) kB", meminfo).group(1)) * 1024
    links = json.loads(subprocess.run(["ip", "-j", "link"], capture_output=True, text=True).stdout)
    expected = {(link["ifname"], link["address"], link["mtu"]) for link in links if link["ifname"] != "lo"}
    assert {(n.name, n.mac_address, n.mtu) for n in info.network_devices} == expected
    assert info.boot_id == open("/proc/sys/kernel/random/boot_id").read().strip()
    assert sum(len(c.threads) for node in info.topology for c in node.cores) == nproc
    assert info.filesystems and all(f.capacity > 0 for f in info.filesystems)
    assert to_json(info)["num_cores"] == nproc


def test_root_stats_have_host_network_and_filesystems(manager):
    stats = manager.container_info("/", ContainerInfoRequest(num_stats=1)).stats[-1]
    names = {i.name for i in stats.network.interfaces}
    assert names and "lo" not in names
    assert stats.filesystem and stats.filesystem[0].limit > 0
    fs = manager.root_fs_info()
    assert fs.mountpoint == "/" and fs.capacity >= fs.available > 0


def test_network_of_a_container_in_its_own_namespace(manager):
    ns = f"oomtrace-test-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    cg = Cgroup.create("net")
    try:
        subprocess.run(["ip", "-n", ns, "link", "add", "vt0", "type", "veth", "peer", "name", "vt1"], check=True)
        for dev, addr in (("vt0", "10.99.0.1/24"), ("vt1", "10.99.0.2/24")):
            subprocess.run(["ip", "-n", ns, "addr", "add", addr, "dev", dev], check=True)
            subprocess.run(["ip", "-n", ns, "link", "set", dev, "up"], check=True)
        proc = subprocess.Popen(["ip", "netns", "exec", ns, "sleep", "30"])
        cg.add(proc.pid)
        time.sleep(0.3)
        manager.discover()
        before = _ip_stats(ns, "vt0")
        manager.sweep([cg.name])
        after = _ip_stats(ns, "vt0")
        info = manager.container_info(cg.name, ContainerInfoRequest(num_stats=1))
        assert info.spec.has_network
        got = {i.name: i for i in info.stats[-1].network.interfaces}
        assert set(got) == {"vt0", "vt1"}  # the container's own links, not the host's
        assert before["tx"]["packets"] <= got["vt0"].tx_packets <= after["tx"]["packets"]
        assert before["tx"]["bytes"] <= got["vt0"].tx_bytes <= after["tx"]["bytes"]
        proc.kill()
        proc.wait()
    finally:
        cg.remove()
        subprocess.run(["ip", "netns", "del", ns])


def _ip_stats(ns: str, dev: str) -> dict:
    out = subprocess.run(["ip", "-n", ns, "-s", "-j", "link", "show", dev], capture_output=True, text=True).stdout
    return json.loads(out)[0]["stats64"]
