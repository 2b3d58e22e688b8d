"""The model's JSON (cAdvisor's names), container names → runtime and pod, CpuInst, the event store."""

from __future__ import annotations

import threading

import pytest

from tracer.stats.cgroups.naming import identify
from tracer.stats.container_events import EventPolicy, EventStore, oom_events
from tracer.stats.conversion import cpu_inst
from tracer.stats.model import (
    ContainerInfo,
    ContainerReference,
    ContainerSpec,
    ContainerStats,
    ContainerStatsV2,
    CpuStats,
    CpuUsage,
    Event,
    EventData,
    EventRequest,
    FilesystemStatsV2,
    FsInfoV2,
    FsStats,
    InterfaceStats,
    MemoryStats,
    NetworkStats,
    OomKillEventData,
    rfc3339,
    to_json,
)

ID = "32a574834001b70cb986f9512f63f7a915756163f5bce0d64d17122369108c7a"


def test_json_uses_cadvisor_names_and_go_omitempty():
    stats = ContainerStats(timestamp=1700000000.5, cpu=CpuStats(usage=CpuUsage(total=5, per_cpu=[2, 3])),
                           memory=MemoryStats(usage=10, kernel_usage=1),
                           network=NetworkStats(InterfaceStats("eth0", rx_bytes=7), [InterfaceStats("eth0", 7)]),
                           filesystem=[FsStats(device="/dev/vda", limit=100)])
    doc = to_json(stats)
    assert doc["timestamp"] == "2023-11-14T22:13:20.5Z"  # Go's RFC3339Nano: trailing zeros trimmed
    assert doc["cpu"]["usage"] == {"total": 5, "per_cpu_usage": [2, 3], "user": 0, "system": 0}
    assert doc["memory"]["kernel"] == 1 and "diskio" not in doc and "processes" not in doc
    assert doc["network"]["name"] == "eth0" and doc["network"]["rx_bytes"] == 7  # the inlined first interface
    assert doc["filesystem"][0]["capacity"] == 100
    info = to_json(ContainerInfo(ContainerReference(name="/a", aliases=["x"], namespace="docker")))
    assert info["name"] == "/a" and info["aliases"] == ["x"] and "id" not in info and "stats" not in info
    assert to_json(Event("/a", 1.0, "oomKill", EventData(OomKillEventData(7, "java")))) == {
        "container_name": "/a", "timestamp": rfc3339(1.0), "event_type": "oomKill",
        "event_data": {"oom": {"pid": 7, "process_name": "java", "constraint": ""}}}
    assert rfc3339(0) == "0001-01-01T00:00:00Z"


def _oom_record(constraint: str, cgroup: str | None, memcg: str | None) -> dict:
    return {"type": "oom_kill", "pid": 7, "comm": "java", "constraint": constraint, "cgroup": cgroup, "memcg": memcg}


def test_oom_events_are_named_as_cadvisors_oomparser_names_them():
    oom, kill = oom_events(_oom_record("memcg", "/pod/ctr", "/pod"), 5.0)
    assert (oom.container_name, oom.event_type, oom.event_data.oom) == ("/pod/ctr", "oom", None)
    assert (kill.container_name, kill.event_type) == ("/pod", "oomKill")
    assert to_json(kill.event_data) == {"oom": {"pid": 7, "process_name": "java", "constraint": "CONSTRAINT_MEMCG"}}
    # A global OOM (and a cpuset or mempolicy one) is `/` for both: kubelet's "System OOM".
    for constraint in ("global", "cpuset", "mempolicy"):
        oom, kill = oom_events(_oom_record(constraint, "/user.slice/x", None), 5.0)
        assert (oom.container_name, kill.container_name) == ("/", "/")
        assert to_json(kill.event_data) == {"oom": {"pid": 7, "process_name": "java", "constraint": ""}}
    # The memcg's path unresolved: the victim's cgroup (inside it), never `/`.
    assert oom_events(_oom_record("memcg", "/pod/ctr", None), 5.0)[1].container_name == "/pod/ctr"


def test_event_requests_as_cadvisor_reads_them():
    store = EventStore()
    store.add(Event("/a/b", 1.0, "oomKill"))
    assert store.get(EventRequest(event_types=frozenset(), container_name="/a", include_subcontainers=True)) == []
    assert len(store.get(EventRequest(container_name="", include_subcontainers=True))) == 1  # "" is everything
    assert store.get(EventRequest(container_name="", include_subcontainers=False)) == []
    with pytest.raises(ValueError, match="start time"):
        store.watch(EventRequest(start_time=0.5))


def test_go_time_format_trims_the_fraction():
    assert rfc3339(1700000000.0) == "2023-11-14T22:13:20Z"
    assert rfc3339(1700000000.123456) == "2023-11-14T22:13:20.123456Z"
    assert rfc3339(1700000000.12) == "2023-11-14T22:13:20.12Z"


def test_pointer_at_zero_is_kept_and_nil_is_dropped():
    # Go's omitempty leaves out a nil pointer only: inodes_free at 0 is kubelet's eviction signal.
    assert to_json(FsInfoV2(inodes=0, inodes_free=0))["inodes_free"] == 0
    assert "inodes_free" not in to_json(FsInfoV2())
    assert to_json(FilesystemStatsV2(0, 0, 0)) == {"totalUsageBytes": 0, "baseUsageBytes": 0,
                                                   "containter_inode_usage": 0}
    assert to_json(ContainerStatsV2(hugetlb={}))["hugetlb"] == {}  # *map: a pointer to an empty map
    # A time.Time with omitempty is a struct to Go: written even at its zero.
    assert to_json(ContainerSpec())["creation_time"] == "0001-01-01T00:00:00Z"
    # Nested structs with omitempty are written too (Go never omits a struct value).
    spec = to_json(ContainerSpec())
    assert spec["cpu"] == {"limit": 0, "max_limit": 0} and spec["memory"] == {} and spec["processes"] == {}
    net = to_json(NetworkStats())
    assert net["tcp"]["Established"] == 0 and net["udp6"] == {"Listen": 0, "Dropped": 0, "RxQueued": 0, "TxQueued": 0}


@pytest.mark.parametrize("name, namespace, cid, labels", [
    (f"/system.slice/docker-{ID}.scope", "docker", ID, {}),
    (f"/docker/{ID}", "docker", ID, {}),
    (f"/system.slice/crio-{ID}.scope", "crio", ID, {}),
    (f"/machine.slice/libpod-{ID}.scope", "podman", ID, {}),
    ("/system.slice/ssh.service", "systemd", "", {}),
    (f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1b2c3d4e_0000_1111_2222_333344445555.slice/"
     f"cri-containerd-{ID}.scope", "containerd", ID,
     {"io.kubernetes.pod.uid": "1b2c3d4e-0000-1111-2222-333344445555", "qos_class": "besteffort"}),
    (f"/kubepods/pod1b2c3d4e-0000-1111-2222-333344445555/{ID}", "containerd", ID,
     {"io.kubernetes.pod.uid": "1b2c3d4e-0000-1111-2222-333344445555", "qos_class": "guaranteed"}),
    ("/kubepods/burstable/pod1b2c3d4e-0000-1111-2222-333344445555", "", "",
     {"io.kubernetes.pod.uid": "1b2c3d4e-0000-1111-2222-333344445555", "qos_class": "burstable"}),
    ("/", "", "", {}),
    ("/user.slice/plain", "", "", {}),
])
def test_names(name, namespace, cid, labels):
    ident = identify(name)
    assert ident.namespace == namespace and ident.container_id == cid
    assert {k: v for k, v in ident.labels.items() if k != "container_id"} == labels
    if cid:
        assert ident.aliases == (cid, cid[:12])


def _sample(t, total, user, system, per_cpu):
    return ContainerStats(timestamp=t, cpu=CpuStats(usage=CpuUsage(total, per_cpu, user, system)))


def test_cpu_inst_is_nanocores_between_two_samples():
    a = _sample(10.0, 1_000_000_000, 600_000_000, 400_000_000, [500_000_000, 500_000_000])
    b = _sample(12.0, 1_500_000_000, 900_000_000, 600_000_000, [700_000_000, 800_000_000])
    inst = cpu_inst(a, b).usage
    assert (inst.total, inst.user, inst.system, inst.per_cpu) == (250_000_000, 150_000_000, 100_000_000,
                                                                  [100_000_000, 150_000_000])
    assert cpu_inst(b, a) is None  # backwards in time
    assert cpu_inst(a, _sample(12.0, 900_000_000, 600_000_000, 400_000_000, [])) is None  # a counter went down
    assert cpu_inst(None, a) is None


def _ev(name, t, kind="oomKill"):
    return Event(name, t, kind, EventData(OomKillEventData(1, "x")))


def test_event_queries_filter_by_type_time_container_and_subcontainers():
    store = EventStore()
    for i, name in enumerate(["/a", "/a/b", "/ab", "/c"]):
        store.add(_ev(name, 100.0 + i))
    store.add(_ev("/a", 99.0, "containerCreation"))
    every = frozenset({"oomKill", "containerCreation"})
    assert [e.container_name for e in store.get(EventRequest(container_name="/a", include_subcontainers=True,
                                                             event_types=every, max_events=0))] == ["/a", "/a", "/a/b"]
    assert [e.timestamp for e in store.get(EventRequest(container_name="/", include_subcontainers=True,
                                                        start_time=101, end_time=102))] == [101.0, 102.0]
    assert len(store.get(EventRequest(container_name="/", include_subcontainers=True, max_events=2))) == 2
    assert store.get(EventRequest(container_name="/a"))[0].container_name == "/a"


def test_retention_by_age_and_count_per_type():
    store = EventStore(EventPolicy(max_age=10, max_events=100, per_type_events={"containerCreation": 2},
                                   per_type_age={"oomKill": 1000}))
    for t in range(50):
        store.add(_ev("/x", float(t)))
        store.add(_ev("/x", float(t), "containerCreation"))
        store.add(_ev("/x", float(t), "containerDeletion"))
    everything = EventRequest(container_name="/", include_subcontainers=True, max_events=0,
                              event_types=frozenset({"oomKill", "containerCreation", "containerDeletion"}))
    kinds = [e.event_type for e in store.get(everything)]
    assert kinds.count("oomKill") == 50  # kept for 1000 s
    assert kinds.count("containerCreation") == 2  # count limit
    assert kinds.count("containerDeletion") == 11  # 10 s of them: t = 39..49


def test_a_slow_watcher_never_blocks_producers_and_counts_what_it_lost():
    store = EventStore()
    slow = store.watch(EventRequest(container_name="/", include_subcontainers=True), size=5)
    fast = store.watch(EventRequest(container_name="/", include_subcontainers=True), size=10_000)
    done = threading.Event()

    def produce():
        for i in range(1000):
            store.add(_ev(f"/c{i}", float(i)))
        done.set()

    threading.Thread(target=produce).start()
    assert done.wait(5), "a producer was blocked by a watcher that does not read"
    assert slow.dropped == 995 and fast.dropped == 0
    assert [slow.get(0).timestamp for _ in range(5)] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert slow.get(0) is None
    store.stop_watch(fast)
    store.add(_ev("/late", 2000.0))
    received = 0
    while fast.get(0) is not None:
        received += 1
    assert received == 1000  # nothing after its watch stopped
    with pytest.raises(ValueError):
        store.watch(EventRequest(end_time=5.0))
